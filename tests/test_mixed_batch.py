"""Mixed-adapter batches (``adapter_names``, one adapter per row): every row of a mixed batch gives what it
gives run alone with its adapter (logits within ATOL, identical greedy tokens), on tiny GPT-2, Llama-GQA
and Bloom models and on the embedded SmolLM2; prefixes of different lengths, plain and reparameterised,
soft prompts, ``"__base__"`` rows, left padding; training several adapters at once; the errors."""

from __future__ import annotations

import copy
import inspect

import pytest
import torch
from helpers import ATOL, VOCAB, tiny_bert_classifier, tiny_llama, wrap

from minipeft import (
    PrefixTuningConfig,
    PromptEncoderConfig,
    PromptTuningConfig,
    TaskType,
    get_peft_model,
    position_ids_from_attention_mask,
)
from minipeft.mixed_batch import BASE_ADAPTER, mixed_prefix_cache, plan_mixed_batch

#: adapter name -> (config class, num_virtual_tokens, extra config fields)
PREFIXES = {
    "short": (PrefixTuningConfig, 3, {}),
    "long": (PrefixTuningConfig, 7, {"prefix_projection": True, "encoder_hidden_size": 16}),
    "mid": (PrefixTuningConfig, 5, {}),
}
PROMPTS = {
    "short": (PromptTuningConfig, 2, {}),
    "long": (PromptTuningConfig, 6, {}),
    "mid": (PromptTuningConfig, 4, {}),
}
P_TUNING = {
    "short": (PromptEncoderConfig, 3, {"encoder_hidden_size": 16}),
    "long": (PromptEncoderConfig, 6, {"encoder_hidden_size": 16}),
}
KINDS = {"prefix": PREFIXES, "prompt": PROMPTS, "p_tuning": P_TUNING}
NAMES = ["long", BASE_ADAPTER, "short", "long", "mid"]


def many_adapters(base, adapters, seed=0, scale=0.5, dtype=None):
    """``base`` (copied, to ``dtype``) with every adapter of ``adapters``, random weights times ``scale``, eval mode."""
    torch.manual_seed(seed)
    base = copy.deepcopy(base).to(dtype) if dtype is not None else copy.deepcopy(base)
    model = None
    for name, (config_cls, num_virtual, extra) in adapters.items():
        config = config_cls(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=num_virtual, **extra)
        if model is None:
            model = get_peft_model(base, config, adapter_name=name)
        else:
            model.add_adapter(name, config)
    with torch.no_grad():
        for param in model.prompt_encoder.parameters():
            param.copy_(torch.randn_like(param) * scale)
    return model.eval()


def left_padded(names, seed=0, length=9):
    """One row per name, ``length`` tokens, row ``b`` left-padded by ``b % 4`` (token 0, mask 0)."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, VOCAB, (len(names), length), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    for row in range(len(names)):
        input_ids[row, : row % 4] = 0
        attention_mask[row, : row % 4] = 0
    return input_ids, attention_mask


def takes_positions(model):
    return "position_ids" in inspect.signature(model.get_base_model().forward).parameters


def alone(model, name, **inputs):
    """``model(**inputs)`` with ``name`` the one active adapter (``"__base__"``: the adapters disabled)."""
    with torch.no_grad():
        if name == BASE_ADAPTER:
            with model.disable_adapter():
                return model(**inputs).logits
        model.set_adapter(name)
        return model(**inputs).logits


def num_virtual(model, name):
    return 0 if name == BASE_ADAPTER else model.peft_config[name].num_virtual_tokens


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_row_of_a_mixed_batch_equals_the_row_alone(tiny_model, kind):
    """Unpadded rows alone against the mixed, left-padded batch with positions counted over real tokens."""
    model = many_adapters(tiny_model, KINDS[kind])
    names = [name for name in NAMES if name == BASE_ADAPTER or name in model.peft_config]
    input_ids, attention_mask = left_padded(names)
    inputs = dict(input_ids=input_ids, attention_mask=attention_mask)
    if takes_positions(model):  # Bloom (ALiBi) reads positions from the mask
        inputs["position_ids"] = position_ids_from_attention_mask(attention_mask)
    with torch.no_grad():
        mixed = model(**inputs, adapter_names=names).logits
    soft = kind != "prefix"
    total = max(num_virtual(model, name) for name in names)
    assert mixed.shape == (len(names), (total if soft else 0) + input_ids.shape[1], VOCAB)
    for row, name in enumerate(names):
        pad = row % 4
        single = alone(model, name, input_ids=input_ids[row : row + 1, pad:])
        text = mixed[row, (total if soft else 0) + pad :]
        p_row = num_virtual(model, name) if soft else 0
        assert (text - single[0, p_row:]).abs().max() <= ATOL, (name, row)
        if soft and p_row:  # the virtual tokens' own logits too
            assert (mixed[row, total - p_row : total] - single[0, :p_row]).abs().max() <= ATOL


def test_rows_keep_their_padding_positions_without_position_ids(tiny_model):
    """No position_ids: each row gets what the model counts for it alone, padding included (transformers' way)."""
    model = many_adapters(tiny_model, PREFIXES)
    input_ids, attention_mask = left_padded(NAMES, seed=1)
    with torch.no_grad():
        mixed = model(input_ids=input_ids, attention_mask=attention_mask, adapter_names=NAMES).logits
    for row, name in enumerate(NAMES):
        single = alone(model, name, input_ids=input_ids[row : row + 1], attention_mask=attention_mask[row : row + 1])
        real = attention_mask[row].bool()
        assert (mixed[row, real] - single[0, real]).abs().max() <= ATOL


def test_one_adapter_for_every_row_equals_the_ordinary_call(tiny_model):
    model = many_adapters(tiny_model, PREFIXES)
    input_ids, attention_mask = left_padded(["mid"] * 3)
    model.set_adapter("mid")
    with torch.no_grad():
        ordinary = model(input_ids=input_ids, attention_mask=attention_mask).logits
        mixed = model(input_ids=input_ids, attention_mask=attention_mask, adapter_names=["mid"] * 3).logits
    assert (ordinary - mixed).abs().max() <= 1e-6


def test_base_rows_only_is_the_base_model(tiny_model):
    model = many_adapters(tiny_model, PREFIXES)
    input_ids, attention_mask = left_padded(["x", "y"])
    with torch.no_grad():
        mixed = model(input_ids=input_ids, attention_mask=attention_mask, adapter_names=[BASE_ADAPTER] * 2).logits
        base = tiny_model(input_ids=input_ids, attention_mask=attention_mask).logits
    assert torch.equal(mixed, base)


def until_eos(tokens, eos):
    hits = (tokens == eos).nonzero()
    return tokens[: hits[0].item() + 1] if len(hits) else tokens


@pytest.mark.parametrize("kind", ["prefix", "prompt"])
@pytest.mark.parametrize("num_beams", [1, 3])
def test_mixed_generation_equals_each_row_alone(tiny_model, kind, num_beams):
    model = many_adapters(tiny_model, KINDS[kind], scale=1.0 if kind == "prefix" else 0.3)
    input_ids, attention_mask = left_padded(NAMES, seed=2, length=6)
    kwargs = dict(max_new_tokens=6, do_sample=False, pad_token_id=0, num_beams=num_beams)
    with torch.no_grad():
        mixed = model.generate(input_ids=input_ids, attention_mask=attention_mask, adapter_names=NAMES, **kwargs)
    eos = model.generation_config.eos_token_id
    for row, name in enumerate(NAMES):
        pad = row % 4
        with torch.no_grad():
            if name == BASE_ADAPTER:
                with model.disable_adapter():
                    single = model.generate(input_ids=input_ids[row : row + 1, pad:], **kwargs)
            else:
                model.set_adapter(name)
                single = model.generate(input_ids=input_ids[row : row + 1, pad:], **kwargs)
        new = single[0, input_ids.shape[1] - pad :]
        assert torch.equal(until_eos(mixed[row, input_ids.shape[1] :], eos), until_eos(new, eos)), (row, name)


def test_mixed_generation_without_cache_and_with_return_sequences(tiny_model):
    """use_cache=False rebuilds the block every step; num_return_sequences expands the rows like beams."""
    model = many_adapters(tiny_model, PREFIXES, scale=1.0)
    input_ids, attention_mask = left_padded(NAMES, seed=3, length=5)
    kwargs = dict(input_ids=input_ids, attention_mask=attention_mask, adapter_names=NAMES, max_new_tokens=5)
    kwargs.update(do_sample=False, pad_token_id=0)
    with torch.no_grad():
        cached = model.generate(**kwargs)
        uncached = model.generate(**kwargs, use_cache=False)
        beams = model.generate(**kwargs, num_beams=2, num_return_sequences=2)
    assert torch.equal(cached, uncached)
    assert beams.shape[0] == 2 * len(NAMES)


def test_continuing_a_mixed_batch_from_its_cache_equals_one_pass(tiny_model):
    model = many_adapters(tiny_model, PREFIXES)
    names = ["short", "long", BASE_ADAPTER]
    input_ids = torch.randint(3, VOCAB, (3, 8), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        full = model(input_ids=input_ids, adapter_names=names).logits
        first = model(input_ids=input_ids[:, :5], adapter_names=names, use_cache=True)
        second = model(input_ids=input_ids[:, 5:], past_key_values=first.past_key_values, adapter_names=names).logits
    assert (full[:, 5:] - second).abs().max() <= ATOL


SMOLLM2_ADAPTERS = {
    "five": (PrefixTuningConfig, 5, {}),
    "ten": (PrefixTuningConfig, 10, {"prefix_projection": True, "encoder_hidden_size": 32}),
    "eight": (PrefixTuningConfig, 8, {}),
}
SMOLLM2_ROWS = ["The capital of France is", "Prefix tuning trains", "My order never arrived and", "Hello", "Water is"]
SMOLLM2_NAMES = ["ten", BASE_ADAPTER, "five", "eight", "ten"]


def test_smollm2_mixed_batch_equals_rows_alone_in_float64(smollm2):
    """The embedded model (30 layers, RoPE, 3 key/value heads), three prefixes of 5, 10 and 8 virtual tokens (one
    with the MLP), a plain row, left-padded prompts, against each unpadded row alone. In float64: in float32 a
    batch differs from its rows alone by up to ~1e-4 on SmolLM2 even without any adapter (matmul rounding
    depends on the shapes), which would hide a real error of that size. float64 leaves ~1e-6 (transformers'
    LlamaRMSNorm computes in float32 whatever the dtype); a wrong position or a leaking slot gives > 1e-2."""
    base, tokenizer = smollm2
    model = many_adapters(base, SMOLLM2_ADAPTERS, scale=0.05, dtype=torch.float64)
    batch = tokenizer(SMOLLM2_ROWS, return_tensors="pt", padding=True)
    assert tokenizer.padding_side == "left" and batch["attention_mask"].min() == 0
    positions = position_ids_from_attention_mask(batch["attention_mask"])
    with torch.no_grad():
        mixed = model(**batch, position_ids=positions, adapter_names=SMOLLM2_NAMES).logits
    width = batch["input_ids"].shape[1]
    for row, (text, name) in enumerate(zip(SMOLLM2_ROWS, SMOLLM2_NAMES)):
        single_batch = tokenizer([text], return_tensors="pt")
        length = single_batch["input_ids"].shape[1]
        single = alone(model, name, **single_batch)
        assert (mixed[row, width - length :] - single[0]).abs().max() <= ATOL, name


def test_smollm2_mixed_batch_in_float32_is_the_one_adapter_batch_and_greedy_agrees(smollm2):
    """float32: the longest adapter's rows (whose shapes padding does not change) equal the same batch run with
    that adapter active, and greedy generation gives each row's tokens alone (plain row included). Shorter
    prefixes sit behind masked slots, which change the shapes and so the float32 rounding (by ~4e-5 here)."""
    base, tokenizer = smollm2
    model = many_adapters(base, SMOLLM2_ADAPTERS, scale=0.05)
    batch = tokenizer(SMOLLM2_ROWS, return_tensors="pt", padding=True)
    positions = position_ids_from_attention_mask(batch["attention_mask"])
    kwargs = dict(max_new_tokens=8, do_sample=False)
    with torch.no_grad():
        mixed = model(**batch, position_ids=positions, adapter_names=SMOLLM2_NAMES).logits
        generated = model.generate(**batch, adapter_names=SMOLLM2_NAMES, **kwargs)
    rows = [row for row, name in enumerate(SMOLLM2_NAMES) if name == "ten"]
    shared = alone(model, "ten", **batch, position_ids=positions)
    assert (mixed[rows] - shared[rows]).abs().max() <= 1e-6
    width = batch["input_ids"].shape[1]
    for row, (text, name) in enumerate(zip(SMOLLM2_ROWS, SMOLLM2_NAMES)):
        single_batch = tokenizer([text], return_tensors="pt")
        with torch.no_grad():
            if name == BASE_ADAPTER:
                with model.disable_adapter():
                    tokens = model.generate(**single_batch, **kwargs)
            else:
                model.set_adapter(name)
                tokens = model.generate(**single_batch, **kwargs)
        eos = model.generation_config.eos_token_id
        new = tokens[0, single_batch["input_ids"].shape[1] :]
        assert torch.equal(until_eos(generated[row, width:], eos), until_eos(new, eos)), name


# ---- training several adapters at once ---------------------------------------------------------------


def summed_loss(logits, labels):
    """Cross-entropy summed over tokens (not averaged over the batch), so rows add up independently."""
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100, reduction="sum"
    )


def test_each_rows_gradient_reaches_only_its_adapter(tiny_model):
    model = many_adapters(tiny_model, PREFIXES).train()
    input_ids = torch.randint(3, VOCAB, (3, 6), generator=torch.Generator().manual_seed(5))
    out = model(input_ids=input_ids, adapter_names=["short", "long", BASE_ADAPTER])
    out.logits[0].sum().backward()  # row 0 only: adapter "short"
    grads = {name: [p.grad for p in model.prompt_encoder[name].parameters()] for name in PREFIXES}
    assert all(g is not None and g.abs().sum() > 0 for g in grads["short"])
    assert all(g is None or not g.any() for name in ("long", "mid") for g in grads[name])


@pytest.mark.parametrize("kind", ["prefix", "prompt"])
def test_training_several_adapters_in_mixed_batches_equals_training_each_alone(kind):
    """Three SGD steps on mixed batches give each adapter the weights that three steps on its own rows give."""
    torch.manual_seed(0)
    base = tiny_llama().eval()
    adapters = {name: KINDS[kind][name] for name in ("short", "long")}
    mixed_model = many_adapters(base, adapters).train()
    separate, initial = copy.deepcopy(mixed_model), copy.deepcopy(mixed_model)
    names = ["short", "long", BASE_ADAPTER, "long"]
    generator = torch.Generator().manual_seed(6)
    steps = [torch.randint(3, VOCAB, (len(names), 6), generator=generator) for _ in range(3)]
    optimizer = torch.optim.SGD(mixed_model.prompt_encoder.parameters(), lr=0.1)
    for input_ids in steps:
        optimizer.zero_grad()
        logits = mixed_model(input_ids=input_ids, adapter_names=names).logits
        text = logits[:, logits.shape[1] - input_ids.shape[1] :]
        summed_loss(text, input_ids).backward()
        optimizer.step()
    for name in adapters:
        rows = [row for row, n in enumerate(names) if n == name]
        separate.set_adapter(name)
        optimizer = torch.optim.SGD(separate.prompt_encoder[name].parameters(), lr=0.1)
        for input_ids in steps:
            optimizer.zero_grad()
            logits = separate(input_ids=input_ids[rows]).logits
            summed_loss(logits[:, logits.shape[1] - input_ids.shape[1] :], input_ids[rows]).backward()
            optimizer.step()
        pairs = zip(mixed_model.prompt_encoder[name].parameters(), separate.prompt_encoder[name].parameters())
        for mine, theirs in pairs:
            assert (mine - theirs).abs().max() <= 1e-6
        moved = zip(mixed_model.prompt_encoder[name].parameters(), initial.prompt_encoder[name].parameters())
        assert any((mine - before).abs().max() > 1e-3 for mine, before in moved), f"{name} was not trained"


# ---- memory ---------------------------------------------------------------------------------------------


def test_prefix_memory_matches_the_cache_it_builds(tiny_model):
    model = many_adapters(tiny_model, PREFIXES)
    memory = model.prefix_memory()
    config = model.peft_config["long"]
    slot = config.num_layers * 2 * config.token_dim * 4  # float32
    assert memory.slot_bytes == slot
    assert memory.adapters == {name: (num, num * slot) for name, (_, num, _) in PREFIXES.items()}
    assert memory.per_row == 7 * slot
    names = ["short", "long", BASE_ADAPTER]
    with torch.no_grad():
        cache = mixed_prefix_cache(model, plan_mixed_batch(model, names, 3))
    held = sum(layer.keys.nbytes + layer.values.nbytes for layer in cache.layers)
    assert held == len(names) * memory.per_row
    assert "per row of a mixed batch: " + f"{7 * slot:,d}" in str(memory)


# ---- what is refused --------------------------------------------------------------------------------------


def test_errors_name_the_problem(tiny_model):
    model = many_adapters(tiny_model, PREFIXES)
    input_ids, attention_mask = left_padded(["a", "b"])
    with pytest.raises(ValueError, match="non-existing adapter.*typo"):
        model(input_ids=input_ids, adapter_names=["short", "typo"])
    with pytest.raises(ValueError, match="Length of `adapter_names`.*got 3 and 2"):
        model(input_ids=input_ids, adapter_names=["short", "long", "mid"])
    with pytest.raises(ValueError, match="Length of `adapter_names`.*got 1 and 2"):
        model.generate(input_ids=input_ids, adapter_names=["short"], max_new_tokens=2, pad_token_id=0)
    with pytest.raises(TypeError, match="expected a list of str"):
        model(input_ids=input_ids, adapter_names="short")
    with model.disable_adapter(), pytest.raises(ValueError, match="disable_adapter"):
        model(input_ids=input_ids, adapter_names=["short", "long"])


def test_other_tasks_and_trained_modules_are_refused():
    torch.manual_seed(0)
    classifier = get_peft_model(
        tiny_bert_classifier(), PrefixTuningConfig(task_type=TaskType.SEQ_CLS, num_virtual_tokens=3)
    )
    input_ids = torch.randint(3, VOCAB, (2, 5))
    with pytest.raises(ValueError, match="CAUSAL_LM models only"):
        classifier(input_ids=input_ids, adapter_names=["default", "default"])
    torch.manual_seed(0)
    model = wrap(tiny_llama(), modules_to_save=["lm_head"])
    with pytest.raises(ValueError, match="modules_to_save"):
        model(input_ids=input_ids, adapter_names=["default", BASE_ADAPTER])
