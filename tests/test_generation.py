"""Generation with a prefix in every mode a user reaches for: each gives what the prefixed model
gives step by step through ``forward``, on tiny models and on the embedded SmolLM2; sampling is
seeded, and the base model is left as it was."""

from __future__ import annotations

import copy

import pytest
import torch
from helpers import VOCAB, make_pair, padded_batch, wrap

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


def test_sampling_is_seeded(tiny_model):
    peft_model = wrap(tiny_model)
    input_ids, attention_mask = padded_batch()
    kwargs = dict(input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=6, do_sample=True, pad_token_id=0)
    torch.manual_seed(7)
    a = peft_model.generate(**kwargs)
    torch.manual_seed(7)
    b = peft_model.generate(**kwargs)
    assert torch.equal(a, b) and a.shape == (2, 13)


def test_generate_restores_base_model(tiny_model):
    peft_model = wrap(tiny_model)
    input_ids, attention_mask = padded_batch()
    peft_model.generate(input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=2, pad_token_id=0)
    assert "prepare_inputs_for_generation" not in vars(tiny_model)


def greedy_by_forward(peft_model, input_ids, steps):
    ids = input_ids
    with torch.no_grad():
        for _ in range(steps):
            next_token = peft_model(input_ids=ids).logits[:, -1].argmax(-1, keepdim=True)
            ids = torch.cat([ids, next_token], 1)
    return ids


def test_generate_without_cache_equals_greedy_forward(tiny_model):
    """use_cache=False re-reads the sequence every step; the prefix must be injected once per step, fresh."""
    peft_model = wrap(tiny_model, num_virtual_tokens=5).eval()
    with torch.no_grad():
        for param in peft_model.prompt_encoder.parameters():
            param.mul_(3)
    input_ids = torch.randint(3, VOCAB, (1, 6), generator=torch.Generator().manual_seed(4))
    expected = greedy_by_forward(peft_model, input_ids, 6)
    kwargs = dict(input_ids=input_ids, max_new_tokens=6, do_sample=False, pad_token_id=0)
    assert torch.equal(peft_model.generate(**kwargs, use_cache=True), expected)
    assert torch.equal(peft_model.generate(**kwargs, use_cache=False), expected)


def test_generate_from_inputs_embeds(tiny_model):
    peft_model = wrap(tiny_model, num_virtual_tokens=5).eval()
    input_ids = torch.randint(3, VOCAB, (1, 6), generator=torch.Generator().manual_seed(4))
    embeds = tiny_model.get_input_embeddings()(input_ids)
    kwargs = dict(max_new_tokens=5, do_sample=False, pad_token_id=0)
    with torch.no_grad():
        from_ids = peft_model.generate(input_ids=input_ids, **kwargs)
        from_embeds = peft_model.generate(inputs_embeds=embeds, **kwargs)
    assert torch.equal(from_embeds, from_ids[:, input_ids.shape[1] :])  # generate returns only new tokens here
