"""The cache injection: a prefix computed from text equals prepending the text; padding; attention share."""

from __future__ import annotations

import copy
import inspect

import pytest
import torch
from conftest import VOCAB, padded_batch

from minipeft import (
    PrefixTuningConfig,
    get_peft_model,
    nearest_tokens,
    past_key_values_to_prefix,
    position_ids_from_attention_mask,
    prefix_attention_share,
    prefix_from_text,
    prefix_to_past_key_values,
)


def test_past_key_values_to_prefix_inverts_the_split():
    config = PrefixTuningConfig(num_virtual_tokens=5, num_layers=3, token_dim=32, num_attention_heads=2)
    prefix = torch.randn(2, 5, 2 * 3 * 32)
    assert torch.equal(past_key_values_to_prefix(prefix_to_past_key_values(prefix, config)), prefix)


def test_position_ids_skip_left_padding():
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert position_ids_from_attention_mask(mask).tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]]
    assert position_ids_from_attention_mask(mask, past_length=10)[0, 2:].tolist() == [10, 11, 12]


def test_left_padded_row_equals_row_alone(tiny_model):
    """With the mask grown for the prefix and position ids counted over real tokens, padding changes nothing."""
    peft_model = get_peft_model(tiny_model, PrefixTuningConfig(num_virtual_tokens=4)).eval()
    input_ids, attention_mask = padded_batch()
    position_ids = position_ids_from_attention_mask(attention_mask)
    # Bloom takes no position ids: its ALiBi biases are computed from the attention mask
    takes_positions = "position_ids" in inspect.signature(tiny_model.forward).parameters
    kwargs = {"position_ids": position_ids} if takes_positions else {}
    with torch.no_grad():
        batch = peft_model(input_ids=input_ids, attention_mask=attention_mask, **kwargs).logits
        alone_ids = input_ids[:1, 3:]
        alone_kwargs = {"position_ids": position_ids[:1, 3:]} if takes_positions else {}
        alone = peft_model(input_ids=alone_ids, attention_mask=torch.ones_like(alone_ids), **alone_kwargs).logits
    assert (batch[0, 3:] - alone[0]).abs().max() <= 1e-5


def test_prefix_from_text_equals_prepending_the_text(smollm2):
    model, tokenizer = smollm2
    prompt = "Answer in French. Question:"
    table = prefix_from_text(model, tokenizer, prompt)
    num_virtual = table.shape[0]
    peft_model = get_peft_model(copy.deepcopy(model), PrefixTuningConfig(num_virtual_tokens=num_virtual)).eval()
    assert table.shape == (num_virtual, 2 * 30 * 192)
    peft_model.prompt_encoder["default"].load_prompt_embeddings(table)
    prompt_ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    input_ids = tokenizer(" What is the capital of Italy?", add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        prepended = model(input_ids=torch.cat([prompt_ids, input_ids], 1)).logits[:, num_virtual:]
        prefixed = peft_model(input_ids=input_ids).logits
    assert prefixed.shape == prepended.shape
    assert (prefixed - prepended).abs().max() <= 1e-4


def test_load_prompt_embeddings_checks():
    from minipeft import PrefixEncoder

    config = PrefixTuningConfig(num_virtual_tokens=5, num_layers=3, token_dim=32, num_attention_heads=2)
    with pytest.raises(ValueError, match=r"has shape \(4, 192\), the prefix needs \(5, 192\)"):
        PrefixEncoder(config).load_prompt_embeddings(torch.zeros(4, 192))
    projected = PrefixTuningConfig(
        num_virtual_tokens=5, num_layers=3, token_dim=32, num_attention_heads=2, prefix_projection=True
    )
    with pytest.raises(ValueError, match="prefix_projection=True"):
        PrefixEncoder(projected).load_prompt_embeddings(torch.zeros(5, 192))


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
