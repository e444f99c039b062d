"""The cache injection: splitting a prefix into every layer's keys and values, position ids over left
padding, and a prefix computed from text, which equals prepending the text."""

from __future__ import annotations

import copy
import inspect

import pytest
import torch
from helpers import ATOL, padded_batch

from minipeft import (
    PrefixTuningConfig,
    get_peft_model,
    past_key_values_to_prefix,
    position_ids_from_attention_mask,
    prefix_from_text,
    prefix_to_past_key_values,
)


def test_past_key_values_to_prefix_inverts_the_split():
    config = PrefixTuningConfig(num_virtual_tokens=5, num_layers=3, token_dim=32, num_attention_heads=2)
    prefix = torch.randn(2, 5, 2 * 3 * 32)
    assert torch.equal(past_key_values_to_prefix(prefix_to_past_key_values(prefix, config)), prefix)


def test_wrong_prefix_shape_is_reported():
    config = PrefixTuningConfig(num_virtual_tokens=5, num_layers=3, token_dim=32, num_attention_heads=2)
    with pytest.raises(ValueError, match=r"prefix has shape \(1, 5, 100\), expected \(batch, 5, 192\)"):
        prefix_to_past_key_values(torch.zeros(1, 5, 100), config)


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
    assert (batch[0, 3:] - alone[0]).abs().max() <= ATOL


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
