"""Shared fixtures: tiny randomly initialised models (built from config objects, no download) and
the embedded SmolLM2-135M-Instruct (loaded once per session)."""

from __future__ import annotations

import os

# No test may reach a model hub (PEFT looks up the base model's config when saving an adapter).
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from transformers import (
    BloomConfig,
    BloomForCausalLM,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
)

VOCAB = 128


def tiny_gpt2() -> GPT2LMHeadModel:
    config = GPT2Config(
        vocab_size=VOCAB,
        n_embd=32,
        n_layer=3,
        n_head=4,
        n_positions=128,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    return GPT2LMHeadModel(config)


def tiny_llama() -> LlamaForCausalLM:
    """Grouped-query attention: 4 query heads share 2 key/value heads."""
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    return LlamaForCausalLM(config)


def tiny_bloom() -> BloomForCausalLM:
    # a larger initializer_range than the default 0.02: otherwise the tiny model ignores its context
    config = BloomConfig(vocab_size=VOCAB, hidden_size=32, n_layer=3, n_head=4, pad_token_id=0, initializer_range=0.2)
    return BloomForCausalLM(config)


TINY_MODELS = {"gpt2": tiny_gpt2, "llama-gqa": tiny_llama, "bloom": tiny_bloom}


@pytest.fixture(params=sorted(TINY_MODELS))
def tiny_model(request: pytest.FixtureRequest) -> torch.nn.Module:
    torch.manual_seed(0)
    return TINY_MODELS[request.param]().eval()


@pytest.fixture(scope="session")
def smollm2():
    """``(model, tokenizer)`` of the embedded SmolLM2-135M-Instruct, shared by the whole session: do not modify."""
    from minipeft import load_base_model

    return load_base_model()


def padded_batch(vocab_size: int = VOCAB, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two rows of 7 tokens; the first is left-padded by 3 (token 0, mask 0)."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, vocab_size, (2, 7), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    input_ids[0, :3] = 0
    attention_mask[0, :3] = 0
    return input_ids, attention_mask
