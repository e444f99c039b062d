"""Causal language models (TaskType.CAUSAL_LM): minipeft and PEFT, given the same prefix weights, give the
same logits and the same greedy tokens; the wrapper's logits and loss.

The minGPT-style proof that our implementation is the reference's: tiny GPT-2, Llama with
grouped-query attention and Bloom models (random weights, built from configs), and the embedded
SmolLM2-135M-Instruct; with and without the reparameterisation MLP; a left-padded batch, with and
without explicit position ids.
"""

from __future__ import annotations

import inspect

import pytest
import torch
from helpers import ATOL, VOCAB, make_pair, padded_batch, wrap

from minipeft import position_ids_from_attention_mask


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


@pytest.mark.parametrize("prefix_projection", [False, True])
def test_same_logits_and_tokens_as_peft_on_smollm2(smollm2, prefix_projection):
    model, tokenizer = smollm2
    ours, theirs = make_pair(model, num_virtual_tokens=10, prefix_projection=prefix_projection)
    batch = tokenizer(
        ["The capital of France is", "Prefix tuning trains a few vectors and"], return_tensors="pt", padding=True
    )
    assert batch["attention_mask"][0].min() == 0, "the batch should be left-padded"
    # PEFT runs the reparameterisation MLP on (batch, P) indices, minipeft once on (1, P). Same weights, but
    # MKL may round a matmul of 20 rows differently from one of 10 (it does on AVX-512 AMD CPUs): the
    # tables then differ by ~1e-7, which SmolLM2's 30 layers amplify to ~4e-4 in the logits. Exact parity
    # is required whenever the tables are equal; otherwise the tables must agree to 1e-6 (and the greedy
    # tokens below exactly).
    with torch.no_grad():
        indices = torch.arange(10).expand(batch["input_ids"].shape[0], -1)
        table_gap = (ours.prompt_table()[0] - theirs.prompt_encoder["default"](indices)).abs().max().item()
    assert table_gap <= 1e-6
    diff = max_logit_difference(ours, theirs, **batch)
    assert diff <= (ATOL if table_gap == 0 else 1e-3)
    with torch.no_grad():
        a = ours.generate(**batch, max_new_tokens=6, do_sample=False)
        b = theirs.generate(**batch, max_new_tokens=6, do_sample=False)
    assert torch.equal(a, b)


def test_logits_as_long_as_input_and_loss_is_shifted_cross_entropy(tiny_model):
    peft_model = wrap(tiny_model)
    input_ids, attention_mask = padded_batch()
    labels = input_ids.masked_fill(attention_mask == 0, -100)
    out = peft_model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    assert out.logits.shape == (2, 7, VOCAB)
    expected = torch.nn.functional.cross_entropy(
        out.logits[:, :-1].reshape(-1, VOCAB), labels[:, 1:].reshape(-1), ignore_index=-100
    )
    assert torch.allclose(out.loss, expected, atol=1e-6)


def test_continuing_from_returned_cache_equals_one_pass(tiny_model):
    """A second call that passes the first call's cache sees the prefix once, and the earlier tokens."""
    peft_model = wrap(tiny_model)
    input_ids = torch.randint(3, VOCAB, (1, 8), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        full = peft_model(input_ids=input_ids).logits
        first = peft_model(input_ids=input_ids[:, :5], use_cache=True)
        second = peft_model(
            input_ids=input_ids[:, 5:],
            attention_mask=torch.ones(1, 8, dtype=torch.long),
            past_key_values=first.past_key_values,
        ).logits
    assert torch.allclose(full[:, 5:], second, atol=ATOL)
