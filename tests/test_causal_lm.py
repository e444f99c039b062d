"""minipeft and PEFT, given the same prefix weights, give the same logits and the same greedy tokens.

The minGPT-style proof that our implementation is the reference's: tiny GPT-2, Llama with
grouped-query attention and Bloom models (random weights, built from configs), and the embedded
SmolLM2-135M-Instruct; with and without the reparameterisation MLP; a left-padded batch, with and
without explicit position ids.
"""

from __future__ import annotations

import copy
import inspect

import peft
import pytest
import torch
from conftest import padded_batch

from minipeft import PrefixTuningConfig, TaskType, get_peft_model, position_ids_from_attention_mask

ATOL = 1e-5


def make_pair(base: torch.nn.Module, num_virtual_tokens: int = 5, prefix_projection: bool = False, seed: int = 1):
    """The same prefix in minipeft and in PEFT, over two copies of ``base``."""
    torch.manual_seed(seed)
    ours = get_peft_model(
        copy.deepcopy(base),
        PrefixTuningConfig(
            task_type=TaskType.CAUSAL_LM, num_virtual_tokens=num_virtual_tokens, prefix_projection=prefix_projection
        ),
    ).eval()
    theirs = peft.get_peft_model(
        copy.deepcopy(base),
        peft.PrefixTuningConfig(
            task_type=peft.TaskType.CAUSAL_LM,
            num_virtual_tokens=num_virtual_tokens,
            prefix_projection=prefix_projection,
        ),
    ).eval()
    with torch.no_grad():  # a prefix of realistic scale: random N(0, 1) rows swamp a tiny model
        for param in ours.prompt_encoder.parameters():
            param.mul_(0.5)
    theirs.prompt_encoder["default"].load_state_dict(ours.prompt_encoder["default"].state_dict())
    return ours, theirs


def max_logit_difference(ours, theirs, **inputs) -> float:
    with torch.no_grad():
        a = ours(**inputs).logits
        b = theirs(**inputs).logits
    assert a.shape == b.shape == (*inputs["input_ids"].shape, a.shape[-1])
    return (a - b).abs().max().item()


@pytest.mark.parametrize("prefix_projection", [False, True])
def test_same_logits_as_peft_on_tiny_models(tiny_model, prefix_projection):
    ours, theirs = make_pair(tiny_model, prefix_projection=prefix_projection)
    input_ids, attention_mask = padded_batch()
    diff = max_logit_difference(ours, theirs, input_ids=input_ids, attention_mask=attention_mask)
    assert diff <= ATOL


def test_same_logits_as_peft_with_position_ids(tiny_model):
    if "position_ids" not in inspect.signature(tiny_model.forward).parameters:
        pytest.skip(f"{type(tiny_model).__name__} takes no position_ids (ALiBi)")
    ours, theirs = make_pair(tiny_model)
    input_ids, attention_mask = padded_batch()
    position_ids = position_ids_from_attention_mask(attention_mask)
    diff = max_logit_difference(
        ours, theirs, input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids
    )
    assert diff <= ATOL


@pytest.mark.parametrize("num_beams", [1, 3])
def test_same_greedy_and_beam_tokens_as_peft_on_tiny_models(tiny_model, num_beams):
    ours, theirs = make_pair(tiny_model)
    input_ids, attention_mask = padded_batch()
    kwargs = dict(
        input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=8, do_sample=False, num_beams=num_beams
    )
    with torch.no_grad():
        a = ours.generate(**kwargs, pad_token_id=0)
        b = theirs.generate(**kwargs, pad_token_id=0)
    assert torch.equal(a, b)


def test_generation_uses_the_prefix(tiny_model):
    """Guard against a silently dropped prefix (what PEFT 0.21.2 does with transformers 5.24)."""
    ours, _ = make_pair(tiny_model)
    input_ids, attention_mask = padded_batch()
    kwargs = dict(input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=8, do_sample=False, pad_token_id=0)
    with torch.no_grad():
        for param in ours.prompt_encoder.parameters():  # a strong prefix, so greedy tokens must change
            param.mul_(20)
        with_prefix = ours.generate(**kwargs)
        without = ours.get_base_model().generate(**kwargs)
        # greedy decoding by hand, full forward each step (no cache reuse)
        ids, mask = input_ids, attention_mask
        for _ in range(8):
            next_token = ours(input_ids=ids, attention_mask=mask).logits[:, -1].argmax(-1, keepdim=True)
            ids, mask = torch.cat([ids, next_token], 1), torch.cat([mask, torch.ones_like(next_token)], 1)
    assert not torch.equal(with_prefix, without)
    # the model's generate gives positions counted over real tokens; a hand loop without position_ids
    # counts padding too, so compare the unpadded row
    assert torch.equal(with_prefix[1], ids[1])


@pytest.mark.parametrize("prefix_projection", [False, True])
def test_same_logits_and_tokens_as_peft_on_smollm2(smollm2, prefix_projection):
    model, tokenizer = smollm2
    ours, theirs = make_pair(model, num_virtual_tokens=10, prefix_projection=prefix_projection)
    batch = tokenizer(
        ["The capital of France is", "Prefix tuning trains a few vectors and"], return_tensors="pt", padding=True
    )
    assert batch["attention_mask"][0].min() == 0, "the batch should be left-padded"
    diff = max_logit_difference(ours, theirs, **batch)
    assert diff <= ATOL
    with torch.no_grad():
        a = ours.generate(**batch, max_new_tokens=6, do_sample=False)
        b = theirs.generate(**batch, max_new_tokens=6, do_sample=False)
    assert torch.equal(a, b)
