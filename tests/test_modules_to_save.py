"""ModulesToSaveWrapper: base-model modules trained in full beside the adapter (a SEQ_CLS head, or any
module named in ``modules_to_save``), saved under PEFT's keys and checked by name and shape on loading.

On the tiny BERT classifier of ``helpers.py``, with a P-Tuning v2 prefix.
"""

from __future__ import annotations

import copy

import peft
import pytest
import torch
from helpers import ATOL, config_pair, logits, make_pair, seq_cls_batch, seq_cls_model
from safetensors.torch import load_file, save_file
from torch import nn

from minipeft import PeftModel, TaskType, get_peft_model

NUM_VIRTUAL = 5


def configs(**kwargs):
    """The prefix's configuration for minipeft and for PEFT."""
    return config_pair(task_type=TaskType.SEQ_CLS, num_virtual_tokens=NUM_VIRTUAL, **kwargs)


def bert_pair(base: nn.Module):
    """The same prefix and head (``classifier``, moved away from the base model's) in minipeft and in PEFT."""
    return make_pair(base, task_type=TaskType.SEQ_CLS, num_virtual_tokens=NUM_VIRTUAL, head="classifier")


def test_extra_modules_to_save_are_trained_and_saved_as_peft_does(tmp_path):
    base = seq_cls_model("bert")
    ours_config, peft_config = configs(modules_to_save=["pooler"])
    ours = get_peft_model(copy.deepcopy(base), ours_config).eval()
    theirs = peft.get_peft_model(copy.deepcopy(base), peft_config).eval()
    assert ours.active_peft_config.modules_to_save == ["pooler", "classifier", "score"]
    assert {n for n, p in ours.named_parameters() if p.requires_grad} == {
        n for n, p in theirs.named_parameters() if p.requires_grad
    }
    with torch.no_grad():
        ours.get_base_model().bert.pooler.dense.weight.add_(1.0)  # the trained copy: the wrapper forwards to it
    ours.save_pretrained(tmp_path)
    assert "base_model.bert.pooler.dense.weight" in load_file(tmp_path / "adapter_model.safetensors")
    loaded = peft.PeftModel.from_pretrained(copy.deepcopy(base), tmp_path).eval()
    batch = seq_cls_batch(base)
    assert (logits(ours, **batch) - logits(loaded, **batch)).abs().max() <= ATOL
    again = PeftModel.from_pretrained(copy.deepcopy(base), tmp_path)
    assert (logits(ours, **batch) - logits(again, **batch)).abs().max() <= ATOL


def test_wrapping_a_wrapped_base_model_is_refused():
    base = seq_cls_model("bert")
    get_peft_model(base, configs()[0])
    with pytest.raises(ValueError, match="already wrapped"):
        get_peft_model(base, configs()[0])


def test_head_for_another_num_labels_is_refused_and_model_untouched(tmp_path):
    source, _ = bert_pair(seq_cls_model("bert", num_labels=3))
    source.save_pretrained(tmp_path)
    target = seq_cls_model("bert", num_labels=2)
    with pytest.raises(
        ValueError,
        match=r"classifier\.weight has shape \(3, 32\), the model needs \(2, 32\); .*\.bias has shape \(3,\), .* \(2,\)",
    ):
        PeftModel.from_pretrained(target, tmp_path)
    assert isinstance(target.classifier, nn.Linear)
    assert all(p.requires_grad for p in target.parameters())


def test_adapter_without_its_head_is_refused(tmp_path):
    source, _ = bert_pair(seq_cls_model("bert"))
    source.save_pretrained(tmp_path)
    path = tmp_path / "adapter_model.safetensors"
    save_file({"prompt_embeddings": load_file(path)["prompt_embeddings"]}, path)
    with pytest.raises(ValueError, match=r"has no base_model\.classifier\.weight, base_model\.classifier\.bias"):
        PeftModel.from_pretrained(seq_cls_model("bert"), tmp_path)


def test_stray_head_tensor_is_refused(tmp_path):
    source, _ = bert_pair(seq_cls_model("bert"))
    source.save_pretrained(tmp_path)
    path = tmp_path / "adapter_model.safetensors"
    save_file({**load_file(path), "base_model.classifierx.weight": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match=r"base_model\.classifierx\.weight, which no module"):
        PeftModel.from_pretrained(seq_cls_model("bert"), tmp_path)
