"""Encoder-decoders (TaskType.SEQ_2_SEQ_LM): PEFT's decoder-only prefix, exactly, and Li & Liang's full one.

Tiny T5 and BART models (random weights, built from configs). In PEFT's layout (the default) the
same table gives PEFT's cache, logits, loss, gradients and generated tokens, and adapter files go both
ways; PEFT's layer mapping (decoder layer i reads slot 2i mod num_layers) is checked against PEFT's
own ``get_prompt``. With ``prefix_encoder_and_cross_attention=True`` the encoder and the
cross-attention get prefixes too, every layer its own, and PEFT refuses the adapter. Prompt tuning:
PEFT's table of ``2 * num_virtual_tokens`` rows, of which the encoder's input takes the first half;
PEFT's logits, tokens and files.
"""

from __future__ import annotations

import copy
import json
import warnings

import peft
import pytest
import torch
from helpers import (
    ATOL,
    D_MODEL,
    HEADS,
    SEQ2SEQ_MODELS,
    VOCAB,
    make_pair,
    seq2seq_batch,
    seq2seq_model,
    tiny_gpt2,
)
from safetensors import safe_open
from torch import nn

from minipeft import (
    PeftModel,
    PeftModelForSeq2SeqLM,
    PrefixTuningConfig,
    PromptTuningConfig,
    TaskType,
    get_peft_model,
    peft_decoder_layer_slots,
    prefix_slots,
)

NUM_VIRTUAL = 4


@pytest.fixture(params=sorted(SEQ2SEQ_MODELS))
def arch(request: pytest.FixtureRequest) -> str:
    return request.param


def seq2seq_config(**kwargs) -> PrefixTuningConfig:
    return PrefixTuningConfig(task_type=TaskType.SEQ_2_SEQ_LM, num_virtual_tokens=NUM_VIRTUAL, **kwargs)


def peft_pair(base: nn.Module, prefix_projection: bool = False):
    """The same prefix in minipeft and in PEFT (default, PEFT-compatible layout), over two copies of ``base``."""
    return make_pair(
        base, task_type=TaskType.SEQ_2_SEQ_LM, num_virtual_tokens=NUM_VIRTUAL, prefix_projection=prefix_projection
    )


def full_prefix(base: nn.Module, prefix_projection: bool = False) -> PeftModelForSeq2SeqLM:
    torch.manual_seed(1)
    config = seq2seq_config(prefix_projection=prefix_projection, prefix_encoder_and_cross_attention=True)
    model = get_peft_model(copy.deepcopy(base), config).eval()
    with torch.no_grad():
        for param in model.prompt_encoder.parameters():
            param.mul_(0.5)
    return model


def run(model, **inputs):
    with torch.no_grad():
        return model(**inputs)


def slot_columns(slot: int, token_dim: int = D_MODEL) -> slice:
    """The table columns of one slot: its keys and its values, ``2 * token_dim`` wide."""
    return slice(2 * slot * token_dim, 2 * (slot + 1) * token_dim)


def grad_per_slot(grad: torch.Tensor, token_dim: int = D_MODEL) -> list[bool]:
    return [bool(grad[:, slot_columns(s, token_dim)].abs().sum() > 0) for s in range(grad.shape[1] // (2 * token_dim))]


# --- PEFT's layer mapping ---------------------------------------------------------------------------


def test_peft_decoder_layer_slots():
    assert peft_decoder_layer_slots(2, 2) == [0, 0]
    assert peft_decoder_layer_slots(4, 4) == [0, 2, 0, 2]  # slots 1 and 3 unused
    assert peft_decoder_layer_slots(6, 6) == [0, 2, 4, 0, 2, 4]  # T5-small, BART-base
    assert peft_decoder_layer_slots(3, 3) == [0, 2, 1]  # odd: a permutation
    assert peft_decoder_layer_slots(5, 5) == [0, 2, 4, 1, 3]
    assert peft_decoder_layer_slots(3, 2) == [0, 2]  # a shallower decoder
    with pytest.raises(ValueError, match="num_layers=2 slots .* decoder of 3 layers"):
        peft_decoder_layer_slots(2, 3)


@pytest.mark.parametrize(
    ("arch_name", "layers"), [("t5", 1), ("t5", 2), ("t5", 3), ("t5", 4), ("bart", 4), ("bart", 5)]
)
def test_peft_get_prompt_follows_the_mapping_and_minipeft_builds_the_same_cache(arch_name, layers):
    """Fill slot s with the number s: PEFT's own cache says which slot reaches which decoder layer."""
    ours, theirs = peft_pair(seq2seq_model(arch_name, layers))
    with torch.no_grad():
        table = ours.prompt_encoder["default"].embedding.weight
        for slot in range(layers):
            table[:, slot_columns(slot)] = torch.arange(2 * D_MODEL) + 1000 * slot  # distinct keys and values
    theirs.prompt_encoder["default"].load_state_dict(ours.prompt_encoder["default"].state_dict())
    mine, reference = ours.get_prompt(3), theirs.get_prompt(3)
    slots = [int(layer.keys[0, 0, 0, 0]) // 1000 for layer in reference.self_attention_cache.layers]
    assert slots == peft_decoder_layer_slots(layers, layers)
    assert len(reference.cross_attention_cache.layers) == len(mine.cross_attention_cache.layers) == 0
    assert len(mine.self_attention_cache.layers) == layers
    for a, b in zip(mine.self_attention_cache.layers, reference.self_attention_cache.layers):
        assert a.keys.shape == (3, HEADS, NUM_VIRTUAL, D_MODEL // HEADS)
        assert torch.equal(a.keys, b.keys) and torch.equal(a.values, b.values)
    assert all(not mine.is_updated[layer] for layer in range(layers))


@pytest.mark.parametrize("layers", [2, 3, 4])
def test_only_the_slots_peft_uses_get_a_gradient(arch, layers):
    """Even num_layers: half of PEFT's table never reaches the model; odd: all of it, shuffled."""
    ours, theirs = peft_pair(seq2seq_model(arch, layers))
    batch = seq2seq_batch(ours.get_base_model())
    grads = []
    for model in (ours, theirs):
        model.train()
        torch.manual_seed(0)  # the same dropout masks
        model(**batch).loss.backward()
        grads.append(model.prompt_encoder["default"].embedding.weight.grad)
    used = set(peft_decoder_layer_slots(layers, layers))
    assert grad_per_slot(grads[0]) == [slot in used for slot in range(layers)]
    assert torch.allclose(grads[0], grads[1], atol=1e-6)
    assert len(used) == (layers if layers % 2 else layers // 2)


# --- PEFT's layout: same numbers as PEFT --------------------------------------------------------------


@pytest.mark.parametrize("prefix_projection", [False, True])
def test_same_logits_and_loss_as_peft_on_a_padded_batch(arch, prefix_projection):
    base = seq2seq_model(arch)
    ours, theirs = peft_pair(base, prefix_projection)
    batch = seq2seq_batch(base)
    a, b, without = run(ours, **batch), run(theirs, **batch), run(base, **batch)
    assert a.logits.shape == (2, 5, VOCAB)
    assert (a.logits - b.logits).abs().max() <= ATOL
    assert abs(a.loss.item() - b.loss.item()) <= ATOL
    assert (a.logits - without.logits).abs().max() > 1e-2, "the prefix should change the logits"
    # PEFT's layout leaves the encoder alone: same encoder output as the bare model
    assert torch.equal(a.encoder_last_hidden_state, without.encoder_last_hidden_state)


@pytest.mark.parametrize("num_beams", [1, 3])
@pytest.mark.parametrize("prefix_projection", [False, True])
def test_same_greedy_and_beam_tokens_as_peft(arch, prefix_projection, num_beams):
    base = seq2seq_model(arch)
    ours, theirs = peft_pair(base, prefix_projection)
    batch = seq2seq_batch(base)
    kwargs = dict(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        max_new_tokens=8,
        do_sample=False,
        num_beams=num_beams,
    )
    with torch.no_grad():
        a, b = ours.generate(**kwargs), theirs.generate(**kwargs)
    assert torch.equal(a, b)
    with torch.no_grad():  # a strong prefix must change the tokens (a prefix dropped in generate would not)
        for param in ours.prompt_encoder.parameters():
            param.mul_(20)
        assert not torch.equal(ours.generate(**kwargs), base.generate(**kwargs))


def test_generate_without_cache_gives_peft_tokens(arch):
    """use_cache=False: the prefix is injected afresh at every step, whole target re-read; PEFT's tokens."""
    base = seq2seq_model(arch)
    ours, theirs = peft_pair(base)
    with torch.no_grad():  # a strong prefix, so that one dropped would change the tokens
        for param in ours.prompt_encoder.parameters():
            param.mul_(20)
    theirs.prompt_encoder["default"].load_state_dict(ours.prompt_encoder["default"].state_dict())
    batch = seq2seq_batch(base)
    kwargs = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], max_new_tokens=6)
    with torch.no_grad():
        tokens = ours.generate(**kwargs, do_sample=False, use_cache=False)
        assert torch.equal(tokens, theirs.generate(**kwargs, do_sample=False))
        assert not torch.equal(tokens, base.generate(**kwargs, do_sample=False))


def test_decoder_shallower_than_encoder_matches_peft(arch):
    """3 encoder layers, 2 decoder layers: decoder layers read slots 0 and 2."""
    base = seq2seq_model(arch, layers=3, decoder_layers=2)
    ours, theirs = peft_pair(base)
    assert ours.prefix_slots.decoder == [0, 2]
    batch = seq2seq_batch(base)
    assert (run(ours, **batch).logits - run(theirs, **batch).logits).abs().max() <= ATOL


def test_peft_fails_with_an_index_error_on_a_decoder_deeper_than_its_encoder():
    """What minipeft's refusal below replaces (the claim in chapter 10 and on the differences page)."""
    base = seq2seq_model("t5", layers=2, decoder_layers=3)
    theirs = peft.get_peft_model(
        base, peft.PrefixTuningConfig(task_type="SEQ_2_SEQ_LM", num_virtual_tokens=NUM_VIRTUAL)
    )
    batch = seq2seq_batch(base)
    with pytest.raises(IndexError, match="index"):
        run(theirs, **batch)


def test_decoder_deeper_than_encoder_is_refused_and_model_untouched():
    base = seq2seq_model("t5", layers=2, decoder_layers=3)
    with pytest.raises(ValueError, match="cannot reach a decoder of 3 layers"):
        get_peft_model(base, seq2seq_config())
    assert all(p.requires_grad for p in base.parameters())
    model = get_peft_model(base, seq2seq_config(prefix_encoder_and_cross_attention=True))  # every layer its own
    assert model.prefix_slots.decoder == [2, 3, 4] and model.prefix_slots.cross_attention == [5, 6, 7]


def test_config_and_parameter_counts_equal_peft(arch, capsys):
    base = seq2seq_model(arch)
    ours, theirs = peft_pair(base)
    assert isinstance(ours, PeftModelForSeq2SeqLM)
    mine, reference = ours.active_peft_config, theirs.peft_config["default"]
    for field in (
        "num_layers",
        "token_dim",
        "num_attention_heads",
        "num_transformer_submodules",
        "encoder_hidden_size",
    ):
        assert getattr(mine, field) == getattr(reference, field), field
    assert (mine.num_layers, mine.num_transformer_submodules) == (2, 2)
    assert not mine.prefix_encoder_and_cross_attention and mine.num_decoder_layers is None
    ours.print_trainable_parameters()
    line = capsys.readouterr().out
    theirs.print_trainable_parameters()
    assert line == capsys.readouterr().out
    assert {n for n, p in ours.named_parameters() if p.requires_grad} == {"prompt_encoder.default.embedding.weight"}


# --- PEFT's layout: adapter files both ways --------------------------------------------------------


@pytest.mark.parametrize("prefix_projection", [False, True])
def test_adapter_files_go_both_ways_with_peft(arch, prefix_projection, tmp_path):
    base = seq2seq_model(arch)
    ours, theirs = peft_pair(base, prefix_projection)
    batch = seq2seq_batch(base)
    expected = run(ours, **batch).logits
    ours.save_pretrained(tmp_path / "ours")
    theirs.save_pretrained(tmp_path / "theirs")
    mine = json.loads((tmp_path / "ours" / "adapter_config.json").read_text())
    reference = json.loads((tmp_path / "theirs" / "adapter_config.json").read_text())
    reference.pop("peft_version"), mine.pop("peft_version")  # the writer's PEFT version; minipeft writes 0.21.2's
    assert mine == reference  # num_layers (the encoder's), num_transformer_submodules=2, no minipeft-only key
    assert "AutoModelForSeq2SeqLM" in (tmp_path / "ours" / "README.md").read_text()

    loaded_in_peft = peft.PeftModel.from_pretrained(copy.deepcopy(base), tmp_path / "ours").eval()
    assert isinstance(loaded_in_peft, peft.PeftModelForSeq2SeqLM)
    assert (run(loaded_in_peft, **batch).logits - expected).abs().max() <= ATOL

    loaded_in_minipeft = PeftModel.from_pretrained(copy.deepcopy(base), tmp_path / "theirs")
    assert isinstance(loaded_in_minipeft, PeftModelForSeq2SeqLM)
    assert not loaded_in_minipeft.active_peft_config.prefix_encoder_and_cross_attention
    assert (run(loaded_in_minipeft, **batch).logits - expected).abs().max() <= ATOL
    kwargs = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], max_new_tokens=6)
    with torch.no_grad():
        assert torch.equal(loaded_in_minipeft.generate(**kwargs), theirs.generate(**kwargs))


# --- Li & Liang's prefix: encoder, decoder and cross-attention ----------------------------------------


def test_full_prefix_layout_every_layer_its_own_slot():
    base = seq2seq_model("t5", layers=2, decoder_layers=3)
    model = get_peft_model(base, seq2seq_config(prefix_encoder_and_cross_attention=True))
    config = model.active_peft_config
    assert (config.num_layers, config.num_decoder_layers, config.num_prefix_layers) == (2, 3, 8)
    assert model.prefix_slots == prefix_slots(config, 3) == ([0, 1], [2, 3, 4], [5, 6, 7])
    assert model.prompt_encoder["default"].embedding.weight.shape == (NUM_VIRTUAL, 2 * (2 + 2 * 3) * D_MODEL)
    with torch.no_grad():  # slot s holds the number s: the decoder's cache reads its own slots
        table = model.prompt_encoder["default"].embedding.weight
        for slot in range(8):
            table[:, slot_columns(slot)] = slot
    cache = model.get_prompt(2)
    assert [int(layer.keys[0, 0, 0, 0]) for layer in cache.self_attention_cache.layers] == [2, 3, 4]
    assert [int(layer.values[0, 0, 0, 0]) for layer in cache.cross_attention_cache.layers] == [5, 6, 7]
    assert all(not cache.is_updated[layer] for layer in range(3))


@pytest.mark.parametrize("prefix_projection", [False, True])
def test_full_prefix_every_slot_gets_a_gradient(arch, prefix_projection):
    base = seq2seq_model(arch)
    model = full_prefix(base, prefix_projection).train()
    model(**seq2seq_batch(base)).loss.backward()
    if prefix_projection:  # the MLP's last layer: one output column per table column
        grad = model.prompt_encoder["default"].transform[2].weight.grad.T  # (hidden, width)
        assert model.prompt_encoder["default"].embedding.weight.grad.abs().sum() > 0
    else:
        grad = model.prompt_encoder["default"].embedding.weight.grad  # (P, width)
    assert grad_per_slot(grad) == [True] * (2 + 2 * 2)
    assert {n for n, p in model.named_parameters() if p.requires_grad and p.grad is None} == set()


def test_encoder_output_changes_with_the_full_prefix_only(arch):
    base = seq2seq_model(arch)
    batch = seq2seq_batch(base)
    bare = run(base, **batch).encoder_last_hidden_state
    peft_layout, _ = peft_pair(base)
    assert torch.equal(run(peft_layout, **batch).encoder_last_hidden_state, bare)
    full = full_prefix(base)
    assert (run(full, **batch).encoder_last_hidden_state - bare).abs().max() > 1e-2
    assert run(base, **batch).encoder_last_hidden_state.equal(bare), "the hooks must not outlive the call"


def test_full_prefix_each_part_reaches_its_own_attention(arch):
    """Changing only the encoder's slots changes the encoder; the decoder's and cross-attention's slots
    change the logits but not the encoder."""
    base = seq2seq_model(arch)
    batch = seq2seq_batch(base)
    model = full_prefix(base)
    reference = run(model, **batch)
    for part in ("encoder", "decoder", "cross_attention"):
        changed = copy.deepcopy(model)
        with torch.no_grad():
            table = changed.prompt_encoder["default"].embedding.weight
            for slot in getattr(model.prefix_slots, part):
                table[:, slot_columns(slot)] += 1.0
        out = run(changed, **batch)
        encoder_moved = (out.encoder_last_hidden_state - reference.encoder_last_hidden_state).abs().max() > 1e-3
        assert encoder_moved == (part == "encoder"), part
        assert (out.logits - reference.logits).abs().max() > 1e-3, part


def test_full_prefix_padding_and_generation_are_consistent(arch):
    """The mask columns line up with the prefix: a padded row gives what it gives alone; generating
    with and without a cache, and with beams, works on the prefixed encoder and cross-attention."""
    base = seq2seq_model(arch)
    model = full_prefix(base)
    batch = seq2seq_batch(base)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "decoder_input_ids")}
    row = {"input_ids": batch["input_ids"][1:, :4], "decoder_input_ids": batch["decoder_input_ids"][1:]}
    assert (run(model, **inputs).logits[1] - run(model, **row).logits[0]).abs().max() <= ATOL
    kwargs = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], max_new_tokens=6)
    with torch.no_grad():
        greedy = model.generate(**kwargs, do_sample=False)
        assert torch.equal(greedy, model.generate(**kwargs, do_sample=False, use_cache=False))
        alone = model.generate(input_ids=row["input_ids"], max_new_tokens=6, do_sample=False)
        assert torch.equal(greedy[1, : alone.shape[1]], alone[0])
        assert model.generate(**kwargs, num_beams=3, do_sample=False).shape[0] == 2
        # greedy decoding by hand, a full forward per step: the same tokens (but the last, which BART's
        # forced_eos_token_id sets)
        tokens = greedy[:, :1]
        for _ in range(greedy.shape[1] - 2):
            out = model(
                input_ids=kwargs["input_ids"], attention_mask=kwargs["attention_mask"], decoder_input_ids=tokens
            )
            tokens = torch.cat([tokens, out.logits[:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(tokens, greedy[:, :-1])


@pytest.mark.parametrize("prefix_projection", [False, True])
def test_full_prefix_adapter_round_trips_in_minipeft_and_peft_refuses_it(prefix_projection, tmp_path):
    base = seq2seq_model("t5")
    model = full_prefix(base, prefix_projection)
    batch = seq2seq_batch(base)
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    assert saved["prefix_encoder_and_cross_attention"] is True and saved["num_decoder_layers"] == 2
    assert saved["num_layers"] == 2  # PEFT's meaning kept; the table is wider than PEFT's 2 * num_layers slots
    card = (tmp_path / "README.md").read_text()
    assert "for minipeft only" in card and "from peft" not in card and "library_name: minipeft" in card

    loaded = PeftModel.from_pretrained(copy.deepcopy(base), tmp_path)
    assert loaded.active_peft_config.prefix_encoder_and_cross_attention
    assert (run(loaded, **batch).logits - run(model, **batch).logits).abs().max() <= ATOL
    trainable = PeftModel.from_pretrained(copy.deepcopy(base), tmp_path, is_trainable=True)
    assert trainable.prompt_encoder["default"].prefix_projection == prefix_projection  # the MLP came back

    with warnings.catch_warnings(record=True) as caught, pytest.raises(RuntimeError, match="size mismatch"):
        warnings.simplefilter("always")
        peft.PeftModel.from_pretrained(copy.deepcopy(base), tmp_path)
    assert any("prefix_encoder_and_cross_attention" in str(w.message) for w in caught)


# --- errors -----------------------------------------------------------------------------------------


def test_wrong_models_and_inputs_are_refused():
    torch.manual_seed(0)
    decoder_only = tiny_gpt2(n_layer=2)
    with pytest.raises(ValueError, match="GPT2LMHeadModel is not an encoder-decoder"):
        get_peft_model(decoder_only, seq2seq_config())
    assert all(p.requires_grad for p in decoder_only.parameters())
    base = seq2seq_model("t5")
    ours, _ = peft_pair(base)
    batch = seq2seq_batch(base)
    with pytest.raises(ValueError, match="pass no past_key_values"):
        ours(**batch, past_key_values=ours.get_prompt(2))
    full = full_prefix(base)
    encoder_outputs = base.get_encoder()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    with pytest.raises(ValueError, match="not encoder_outputs"):
        full(encoder_outputs=encoder_outputs, decoder_input_ids=batch["decoder_input_ids"])
    # PEFT's layout takes encoder outputs computed beforehand, as the base model does
    given = run(ours, encoder_outputs=encoder_outputs, attention_mask=batch["attention_mask"], labels=batch["labels"])
    computed = run(ours, **{k: batch[k] for k in ("input_ids", "attention_mask", "labels")})
    assert (given.logits - computed.logits).abs().max() <= ATOL


# --- prompt tuning: a soft prompt before the encoder's input (PEFT's 2 * num_virtual_tokens table) ----------


def prompt_pair(base: nn.Module, scale: float = 0.5):
    """The same soft prompt in minipeft and in PEFT, over two copies of ``base``."""
    return make_pair(
        base, PromptTuningConfig, task_type=TaskType.SEQ_2_SEQ_LM, num_virtual_tokens=NUM_VIRTUAL, scale=scale
    )


def test_prompt_tuning_same_logits_and_loss_as_peft(arch):
    base = seq2seq_model(arch)
    ours, theirs = prompt_pair(base)
    assert isinstance(ours, PeftModelForSeq2SeqLM)
    # PEFT's table: num_transformer_submodules=2 blocks of num_virtual_tokens rows
    assert ours.prompt_encoder["default"].embedding.weight.shape == (2 * NUM_VIRTUAL, D_MODEL)
    assert theirs.prompt_encoder["default"].embedding.weight.shape == (2 * NUM_VIRTUAL, D_MODEL)
    batch = seq2seq_batch(base)
    a, b, without = run(ours, **batch), run(theirs, **batch), run(base, **batch)
    assert a.logits.shape == (2, 5, VOCAB)
    assert a.encoder_last_hidden_state.shape == (2, NUM_VIRTUAL + 7, D_MODEL)  # the prompt is the encoder's input
    assert (a.logits - b.logits).abs().max() <= ATOL
    assert abs(a.loss.item() - b.loss.item()) <= ATOL
    assert (a.logits - without.logits).abs().max() > 1e-2, "the prompt should change the logits"


def test_prompt_tuning_only_the_first_half_of_the_table_reaches_the_model(arch):
    """The encoder's input is [table[:P]; tokens] (by hand, the same logits); rows P.. get no gradient, in both."""
    base = seq2seq_model(arch)
    ours, theirs = prompt_pair(base)
    batch = seq2seq_batch(base)
    table = ours.prompt_encoder["default"].embedding.weight
    embeds = torch.cat([table[:NUM_VIRTUAL].expand(2, -1, -1), base.get_input_embeddings()(batch["input_ids"])], 1)
    mask = torch.cat([torch.ones(2, NUM_VIRTUAL, dtype=torch.long), batch["attention_mask"]], 1)
    by_hand = run(base, **{**batch, "input_ids": None, "inputs_embeds": embeds, "attention_mask": mask})
    assert (run(ours, **batch).logits - by_hand.logits).abs().max() <= ATOL
    grads = []
    for model in (ours, theirs):
        model.train()
        torch.manual_seed(0)  # the same dropout masks
        model(**batch).loss.backward()
        grads.append(model.prompt_encoder["default"].embedding.weight.grad)
    assert torch.allclose(grads[0], grads[1], atol=1e-6)
    assert grads[0][:NUM_VIRTUAL].abs().sum(1).gt(0).all() and grads[0][NUM_VIRTUAL:].eq(0).all()


def test_prompt_tuning_same_greedy_and_beam_tokens_as_peft(arch):
    base = seq2seq_model(arch)
    ours, theirs = prompt_pair(base, scale=1.0)  # strong enough to change the tokens
    batch = seq2seq_batch(base)
    kwargs = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], max_new_tokens=6)
    changed = []
    with torch.no_grad():
        for num_beams in (1, 3):
            tokens = ours.generate(**kwargs, do_sample=False, num_beams=num_beams)
            assert torch.equal(tokens, theirs.generate(**kwargs, do_sample=False, num_beams=num_beams)), num_beams
            changed.append(not torch.equal(tokens, base.generate(**kwargs, do_sample=False, num_beams=num_beams)))
    assert any(changed), "the prompt should change the tokens"


def test_prompt_tuning_adapter_files_go_both_ways(arch, tmp_path):
    base = seq2seq_model(arch)
    ours, theirs = prompt_pair(base)
    ours.save_pretrained(tmp_path / "ours")
    theirs.save_pretrained(tmp_path / "theirs")
    for folder in ("ours", "theirs"):
        with safe_open(tmp_path / folder / "adapter_model.safetensors", "pt") as f:
            assert {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()} == {
                "prompt_embeddings": (2 * NUM_VIRTUAL, D_MODEL)
            }, folder
    mine = json.loads((tmp_path / "ours" / "adapter_config.json").read_text())
    reference = json.loads((tmp_path / "theirs" / "adapter_config.json").read_text())
    mine.pop("peft_version"), reference.pop("peft_version")
    assert mine == reference and mine["num_transformer_submodules"] == 2
    batch = seq2seq_batch(base)
    expected = run(ours, **batch).logits
    loaded_in_peft = peft.PeftModel.from_pretrained(copy.deepcopy(base), tmp_path / "ours").eval()
    assert (run(loaded_in_peft, **batch).logits - expected).abs().max() <= ATOL
    loaded_in_minipeft = PeftModel.from_pretrained(copy.deepcopy(base), tmp_path / "theirs")
    assert isinstance(loaded_in_minipeft.active_peft_config, PromptTuningConfig)
    assert (run(loaded_in_minipeft, **batch).logits - expected).abs().max() <= ATOL
    kwargs = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], max_new_tokens=6)
    with torch.no_grad():
        assert torch.equal(loaded_in_minipeft.generate(**kwargs), loaded_in_peft.generate(**kwargs))
