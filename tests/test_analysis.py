"""The book's analysis helpers: how much attention goes to the prefix, and the tokens nearest a vector."""

from __future__ import annotations

import torch
from helpers import VOCAB, padded_batch

from minipeft import PrefixTuningConfig, get_peft_model, nearest_tokens, prefix_attention_share


def test_prefix_attention_share_is_a_fraction_per_layer(tiny_model):
    peft_model = get_peft_model(tiny_model, PrefixTuningConfig(num_virtual_tokens=4)).eval()
    input_ids, attention_mask = padded_batch()
    before = tiny_model.config._attn_implementation
    share = prefix_attention_share(peft_model, input_ids, attention_mask)
    assert share.shape == (3,)
    assert ((share > 0) & (share < 1)).all()
    assert tiny_model.config._attn_implementation == before  # restored


def test_nearest_tokens_finds_exact_rows():
    table = torch.randn(VOCAB, 16)
    ids, sims = nearest_tokens(table[[5, 9]] * 3.0, table, k=2)
    assert ids[:, 0].tolist() == [5, 9]
    assert torch.allclose(sims[:, 0], torch.ones(2))
