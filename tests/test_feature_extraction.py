"""Feature extraction (TaskType.FEATURE_EXTRACTION): a prefix and a soft prompt on bare backbones, against PEFT.

Tiny BertModel, RobertaModel and LlamaModel (a decoder's backbone), random weights built from configs:
the same adapter gives PEFT's ``last_hidden_state`` (a soft prompt's positions in front); nothing but
the adapter trains; the adapter files go both ways. One difference from PEFT: PEFT drops
``token_type_ids`` (with a warning), minipeft passes them on.
"""

from __future__ import annotations

import copy

import peft
import pytest
import torch
from helpers import ATOL, encoder_task_model, make_pair, padded_batch, seq_cls_batch
from torch import nn

from minipeft import PeftModel, PeftModelForFeatureExtraction, PrefixTuningConfig, PromptTuningConfig, TaskType

NUM_VIRTUAL = 4
ARCHS = ["bert", "roberta", "llama"]
METHODS = ["prefix", "prefix-mlp", "prompt"]


@pytest.fixture(params=ARCHS)
def arch(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(params=METHODS)
def method(request: pytest.FixtureRequest) -> str:
    return request.param


def pair(base: nn.Module, method: str):
    """The same prefix (``"prefix"``, ``"prefix-mlp"``: with the reparameterisation MLP) or soft prompt in both."""
    if method == "prompt":
        return make_pair(
            base, PromptTuningConfig, task_type=TaskType.FEATURE_EXTRACTION, num_virtual_tokens=NUM_VIRTUAL, scale=0.3
        )
    return make_pair(
        base,
        PrefixTuningConfig,
        task_type=TaskType.FEATURE_EXTRACTION,
        num_virtual_tokens=NUM_VIRTUAL,
        prefix_projection=method == "prefix-mlp",
    )


def one_segment_batch(base: nn.Module) -> dict[str, torch.Tensor]:
    """Two rows of 9 tokens, the second right-padded by 3, without ``token_type_ids`` (which PEFT drops)."""
    batch = seq_cls_batch(base)
    batch.pop("token_type_ids", None)
    return batch


def hidden(model, **inputs) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs).last_hidden_state


def test_wraps_the_backbone_and_trains_only_the_adapter(arch, method, capsys):
    base = encoder_task_model("bare", arch)
    ours, theirs = pair(base, method)
    assert isinstance(ours, PeftModelForFeatureExtraction)
    assert ours.active_peft_config.modules_to_save is None  # no head
    trainable = {name for name, p in ours.named_parameters() if p.requires_grad}
    assert trainable == {name for name, p in theirs.named_parameters() if p.requires_grad}
    assert all(name.startswith("prompt_encoder.default.") for name in trainable)
    ours.print_trainable_parameters()
    line = capsys.readouterr().out
    theirs.print_trainable_parameters()
    assert line == capsys.readouterr().out


def test_same_last_hidden_state_as_peft(arch, method):
    base = encoder_task_model("bare", arch)
    ours, theirs = pair(base, method)
    batch = one_segment_batch(base)
    a, b = hidden(ours, **batch), hidden(theirs, **batch)
    added = NUM_VIRTUAL if method == "prompt" else 0  # a soft prompt's positions come first
    assert a.shape == (2, added + 9, base.config.hidden_size)
    assert (a - b).abs().max() <= ATOL
    assert (a[:, added:] - hidden(base, **batch)).abs().max() > 1e-2, "the adapter should change the features"


@pytest.mark.parametrize("method", METHODS)
def test_llama_left_padded_batch_same_as_peft(method):
    base = encoder_task_model("bare", "llama")
    ours, theirs = pair(base, method)
    input_ids, attention_mask = padded_batch()
    a = hidden(ours, input_ids=input_ids, attention_mask=attention_mask)
    b = hidden(theirs, input_ids=input_ids, attention_mask=attention_mask)
    assert (a - b).abs().max() <= ATOL


@pytest.mark.parametrize("method", ["prefix", "prompt"])
def test_bert_token_type_ids_reach_the_model(method):
    """minipeft passes the segments on (a soft prompt is segment 0): BERT run by hand gives its features."""
    base = encoder_task_model("bare", "bert")
    ours, theirs = pair(base, method)
    batch = seq_cls_batch(base)  # two segments
    mask = torch.cat([torch.ones(2, NUM_VIRTUAL, dtype=torch.long), batch["attention_mask"]], 1)
    if method == "prefix":
        by_hand = hidden(base, **{**batch, "attention_mask": mask}, past_key_values=ours.get_prompt(2))
    else:
        embeds = torch.cat([ours.get_prompt(2), base.get_input_embeddings()(batch["input_ids"])], 1)
        segments = torch.cat([torch.zeros(2, NUM_VIRTUAL, dtype=torch.long), batch["token_type_ids"]], 1)
        by_hand = hidden(base, inputs_embeds=embeds, attention_mask=mask, token_type_ids=segments)
    a = hidden(ours, **batch)
    assert (a - by_hand).abs().max() <= ATOL
    one_segment = hidden(ours, **one_segment_batch(base))
    assert (a - one_segment).abs().max() > 1e-3, "the segments should matter"
    # PEFT warns "Token type ids are not supported for parameter efficient tuning" and drops them: one segment.
    with pytest.warns(UserWarning, match="Token type ids are not supported"):
        assert (hidden(theirs, **batch) - one_segment).abs().max() <= ATOL


def test_adapter_files_go_both_ways(arch, method, tmp_path):
    base = encoder_task_model("bare", arch)
    ours, theirs = pair(base, method)
    ours.save_pretrained(tmp_path / "ours")
    theirs.save_pretrained(tmp_path / "theirs")
    batch = one_segment_batch(base)
    expected = hidden(ours, **batch)
    loaded_in_peft = peft.PeftModel.from_pretrained(copy.deepcopy(base), tmp_path / "ours").eval()
    assert isinstance(loaded_in_peft, peft.PeftModelForFeatureExtraction)
    assert (hidden(loaded_in_peft, **batch) - expected).abs().max() <= ATOL
    loaded_in_minipeft = PeftModel.from_pretrained(copy.deepcopy(base), tmp_path / "theirs")
    assert isinstance(loaded_in_minipeft, PeftModelForFeatureExtraction)
    assert (hidden(loaded_in_minipeft, **batch) - expected).abs().max() <= ATOL
    assert "feature-extraction" in (tmp_path / "ours" / "README.md").read_text()
