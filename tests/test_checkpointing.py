"""Gradient checkpointing with a prefix (minipeft.checkpointing): the same loss and gradients as without it."""

from __future__ import annotations

import copy

import pytest
import torch
from helpers import padded_batch, tiny_bert_classifier, tiny_llama, wrap
from transformers import DynamicCache

from minipeft import PrefixTuningConfig, TaskType, get_peft_model
from minipeft.checkpointing import read_only_prefix_cache


def _enable(model: torch.nn.Module) -> None:
    (getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable)()


def _train_step(peft_model, input_ids, attention_mask) -> tuple[float, list[torch.Tensor], int]:
    """One forward and backward: the loss, the prefix encoder's gradients, how often layer 0's attention ran."""
    runs = []
    attention = next(m for m in peft_model.get_base_model().modules() if type(m).__name__.endswith("Attention"))
    hook = attention.register_forward_pre_hook(lambda *_: runs.append(1))
    peft_model.train()
    labels = input_ids.masked_fill(attention_mask == 0, -100)
    loss = peft_model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
    loss.backward()
    hook.remove()
    return loss.item(), [p.grad for p in peft_model.prompt_encoder.parameters()], len(runs)


@pytest.mark.parametrize("prefix_projection", [False, True])
def test_checkpointing_gives_the_gradients_of_training_without_it(tiny_model, prefix_projection):
    input_ids, attention_mask = padded_batch()
    results = []
    for checkpointing in (False, True):
        base = copy.deepcopy(tiny_model)
        if checkpointing:
            _enable(base)
        torch.manual_seed(1)  # the same prefix both times
        model = get_peft_model(
            base,
            PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=5, prefix_projection=prefix_projection),
        )
        results.append(_train_step(model, input_ids, attention_mask))
    (loss, grads, runs), (ckpt_loss, ckpt_grads, ckpt_runs) = results
    assert (runs, ckpt_runs) == (1, 2)  # checkpointing really ran the layer again in the backward pass
    assert ckpt_loss == pytest.approx(loss, abs=1e-6)
    for grad, ckpt_grad in zip(grads, ckpt_grads, strict=True):
        assert grad.abs().max() > 0
        torch.testing.assert_close(ckpt_grad, grad, atol=1e-6, rtol=0)


def test_checkpointing_on_the_embedded_model(smollm2):
    model, tokenizer = smollm2
    batch = tokenizer(["Name a large animal.", "The capital of Italy is"], return_tensors="pt", padding=True)
    results = []
    for checkpointing in (False, True):
        base = copy.deepcopy(model)
        if checkpointing:
            _enable(base)
        torch.manual_seed(1)
        peft_model = get_peft_model(base, PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=4))
        results.append(_train_step(peft_model, batch["input_ids"], batch["attention_mask"]))
    (loss, grads, _), (ckpt_loss, ckpt_grads, ckpt_runs) = results
    assert ckpt_runs == 2
    assert ckpt_loss == pytest.approx(loss, abs=1e-5)
    torch.testing.assert_close(ckpt_grads[0], grads[0], atol=1e-6, rtol=0)


def test_the_cache_is_read_only_and_the_model_keeps_its_flags():
    model = wrap(tiny_llama(), num_virtual_tokens=3)
    _enable(model.get_base_model())
    input_ids, attention_mask = padded_batch()
    model.train()(input_ids=input_ids, attention_mask=attention_mask, labels=input_ids).loss.backward()
    layers = model.get_base_model().model.layers
    assert all(not layer._can_checkpoint_with_cache for layer in layers)  # the class's False again
    cache = read_only_prefix_cache(model.get_prompt(2))
    batch, heads, _, head_dim = cache.layers[0].keys.shape
    new = torch.zeros(batch, heads, 4, head_dim)  # 4 new positions
    keys, values = cache.layers[0].update(new, new, {})
    assert keys.shape[-2] == values.shape[-2] == 3 + 4  # returned [prefix; new] ...
    assert cache.get_seq_length() == 3  # ... and stored nothing
    assert isinstance(cache, DynamicCache)


def test_other_tasks_still_refuse_a_prefix_under_checkpointing():
    base = tiny_bert_classifier()
    _enable(base)
    with pytest.raises(ValueError, match=r"gradient \(activation\) checkpointing"):
        get_peft_model(base, PrefixTuningConfig(task_type=TaskType.SEQ_CLS, num_virtual_tokens=4))
