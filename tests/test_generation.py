"""Generation with a prefix in every mode a user reaches for: each gives what the prefixed model
gives step by step through ``forward``, on tiny models and on the embedded SmolLM2."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import VOCAB, padded_batch

from minipeft import PrefixTuningConfig, PromptTuningConfig, TaskType, get_peft_model


def strong_prefix(base, num_virtual_tokens=5, config_cls=PrefixTuningConfig):
    torch.manual_seed(3)
    model = get_peft_model(
        copy.deepcopy(base), config_cls(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=num_virtual_tokens)
    ).eval()
    if config_cls is PrefixTuningConfig:
        with torch.no_grad():
            for param in model.prompt_encoder.parameters():
                param.mul_(2)
    else:
        with torch.no_grad():
            model.prompt_encoder["default"].embedding.weight.mul_(0.05)
    return model


def new_tokens(out, prompt_length):
    return out[:, prompt_length:]


def until_eos(tokens, eos):
    """The tokens up to and including the first EOS (a finished row is padded in a batch, not alone)."""
    hits = (tokens == eos).nonzero()
    return tokens[: hits[0].item() + 1] if len(hits) else tokens


@pytest.mark.parametrize("config_cls", [PrefixTuningConfig, PromptTuningConfig])
def test_left_padded_batch_equals_each_row_alone(tiny_model, config_cls):
    model = strong_prefix(tiny_model, config_cls=config_cls)
    input_ids, attention_mask = padded_batch()
    kwargs = dict(max_new_tokens=6, do_sample=False, pad_token_id=0)
    with torch.no_grad():
        batched = new_tokens(model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs), 7)
        row0 = new_tokens(model.generate(input_ids=input_ids[:1, 3:], **kwargs), 4)
        row1 = new_tokens(model.generate(input_ids=input_ids[1:], **kwargs), 7)
    eos = model.generation_config.eos_token_id
    assert torch.equal(until_eos(batched[0], eos), until_eos(row0[0], eos))
    assert torch.equal(until_eos(batched[1], eos), until_eos(row1[0], eos))


def test_stops_at_eos(tiny_model):
    model = strong_prefix(tiny_model)
    input_ids = torch.randint(3, VOCAB, (1, 5), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        free = new_tokens(model.generate(input_ids=input_ids, max_new_tokens=6, do_sample=False, pad_token_id=0), 5)
        eos = free[0, 2].item()
        stopped = new_tokens(
            model.generate(input_ids=input_ids, max_new_tokens=6, do_sample=False, pad_token_id=0, eos_token_id=eos), 5
        )
    first_eos = (free[0] == eos).nonzero()[0].item()
    assert stopped.shape[1] == first_eos + 1 and stopped[0, -1].item() == eos


def test_continuing_from_callers_cache_keeps_it(tiny_model):
    """A second turn that passes the first turn's cache equals running the whole conversation fresh."""
    model = strong_prefix(tiny_model)
    turn1 = torch.randint(3, VOCAB, (1, 5), generator=torch.Generator().manual_seed(6))
    kwargs = dict(do_sample=False, pad_token_id=0)
    with torch.no_grad():
        first = model.generate(input_ids=turn1, max_new_tokens=4, return_dict_in_generate=True, **kwargs)
        cache = first.past_key_values
        assert cache.get_seq_length() == 5 + 5 + 4 - 1  # prefix + prompt + new tokens but the last
        turn2 = torch.cat([first.sequences, torch.tensor([[7, 8, 9]])], dim=1)
        continued = model.generate(input_ids=turn2, past_key_values=cache, max_new_tokens=4, **kwargs)
        fresh = model.generate(input_ids=turn2, max_new_tokens=4, **kwargs)
    assert torch.equal(continued, fresh)


def test_gradient_checkpointing_enabled_after_wrapping_is_refused(tiny_model):
    model = strong_prefix(tiny_model).train()
    base = model.get_base_model()
    enable = getattr(base, "activation_checkpointing_enable", None) or base.gradient_checkpointing_enable
    enable()
    input_ids, attention_mask = padded_batch()
    with pytest.raises(ValueError, match=r"gradient \(activation\) checkpointing"):
        model(input_ids=input_ids, attention_mask=attention_mask, labels=input_ids)


def test_smollm2_generation_modes(smollm2):
    model, tokenizer = smollm2
    peft_model = strong_prefix(model, num_virtual_tokens=8)
    with torch.no_grad():  # a milder prefix so the text stays text
        for param in peft_model.prompt_encoder.parameters():
            param.mul_(0.05)
    rows = ["The capital of the United Kingdom is", "Prefix tuning is"]
    batch = tokenizer(rows, return_tensors="pt", padding=True)
    kwargs = dict(max_new_tokens=8, do_sample=False)
    with torch.no_grad():
        cached = peft_model.generate(**batch, **kwargs)
        uncached = peft_model.generate(**batch, use_cache=False, **kwargs)
        alone = peft_model.generate(**tokenizer(rows[1:], return_tensors="pt"), **kwargs)
    assert torch.equal(cached, uncached)
    n_batch, n_alone = batch["input_ids"].shape[1], len(tokenizer(rows[1])["input_ids"])
    assert torch.equal(cached[1, n_batch:], alone[0, n_alone:])
