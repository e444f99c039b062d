"""minipeft.cache_shapes: a prefix shaped by what each layer's cache holds, read from the model.

The architectures whose config fields mislead: multi-query Falcon, Gemma 4 (wider full-attention
heads), hybrids with linear-attention layers (Qwen3.5), pure state-space models (Mamba) and sparse
attention with an indexer (DeepSeek-V3.2). The sweep over every type is scripts/architecture_sweep.py.
"""

from __future__ import annotations

import copy

import peft
import pytest
import torch
from helpers import ATOL
from transformers import AutoConfig, AutoModelForCausalLM, DynamicCache
from transformers.cache_utils import LinearAttentionCacheLayerMixin
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

import minipeft
from minipeft import PrefixTuningConfig, get_peft_model
from minipeft.cache_shapes import KeyValueShape, cache_layout, new_cache

TINY = {"hidden_size": 64, "num_attention_heads": 4, "intermediate_size": 128, "vocab_size": 1000}


def tiny(model_type: str, **fields: object) -> torch.nn.Module:
    if model_type not in CONFIG_MAPPING:
        pytest.skip(f"this transformers has no {model_type}")
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **TINY, **fields)).eval()


def wrap(model: torch.nn.Module, library: object = minipeft) -> torch.nn.Module:
    config = library.PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4)
    return library.get_peft_model(copy.deepcopy(model), config).eval()


def padded_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    long, short = (
        torch.randint(3, 1000, (1, 6), generator=generator),
        torch.randint(3, 1000, (1, 3), generator=generator),
    )
    batch = torch.cat([long, torch.cat([torch.zeros(1, 3, dtype=torch.long), short], dim=1)])
    mask = torch.tensor([[1] * 6, [0] * 3 + [1] * 3])
    return batch, mask, short


@torch.no_grad()
def assert_text_oracle(model: torch.nn.Module, wrapped: torch.nn.Module) -> None:
    """A prefix made of a 4-token prompt's own keys and values gives the logits of prompt + continuation."""
    generator = torch.Generator().manual_seed(1)
    prompt, continuation = torch.randint(3, 1000, (1, 4), generator=generator), torch.randint(3, 1000, (1, 5))
    full = model(input_ids=torch.cat([prompt, continuation], dim=1)).logits[:, 4:]
    table = minipeft.past_key_values_to_prefix(model(input_ids=prompt, use_cache=True).past_key_values)[0]
    wrapped.prompt_encoder["default"].embedding.weight.copy_(table)
    torch.testing.assert_close(wrapped(input_ids=continuation).logits, full, rtol=0, atol=ATOL)


@torch.no_grad()
def assert_padded_row_equals_row_alone(wrapped: torch.nn.Module) -> None:
    batch, mask, short = padded_batch()
    positions = minipeft.position_ids_from_attention_mask(mask)  # as generate computes them; the row alone: 0, 1, 2
    together = wrapped(input_ids=batch, attention_mask=mask, position_ids=positions).logits[1:, 3:]
    alone = wrapped(input_ids=short, attention_mask=torch.ones_like(short)).logits
    torch.testing.assert_close(together, alone, rtol=0, atol=ATOL)
    generated = wrapped.generate(input_ids=batch, attention_mask=mask, max_new_tokens=3, do_sample=False)
    generated_alone = wrapped.generate(input_ids=short, attention_mask=torch.ones_like(short), max_new_tokens=3)
    assert torch.equal(generated[1:, -3:], generated_alone[:, -3:])


def test_multi_query_falcon_gets_the_one_key_value_head_its_cache_holds():
    # the config's num_kv_heads says 4; multi_query=True keeps one key/value head (PEFT sizes it by 4 and fails)
    model = tiny("falcon", num_hidden_layers=2, multi_query=True, new_decoder_architecture=False)
    assert model.config.num_kv_heads == 4
    assert cache_layout(model).layers == [KeyValueShape(1, 16, 16)] * 2
    wrapped = wrap(model)
    assert (wrapped.peft_config["default"].num_attention_heads, wrapped.peft_config["default"].token_dim) == (1, 16)
    assert_text_oracle(model, wrapped)
    assert_padded_row_equals_row_alone(wrapped)
    with pytest.raises(RuntimeError, match="[Ss]ize"):
        wrap(model, peft)(input_ids=padded_batch()[0])


def test_gemma4_layers_take_their_own_head_width_and_stay_interchangeable_with_peft(tmp_path):
    model = tiny("gemma4_text", num_hidden_layers=4, num_key_value_heads=2, head_dim=16)
    layers = cache_layout(model).layers
    assert len({shape for shape in layers}) == 2, layers  # sliding layers and wider full-attention layers
    ours, theirs = wrap(model), wrap(model, peft)
    assert (
        ours.prompt_encoder["default"].embedding.weight.shape == theirs.prompt_encoder["default"].embedding.weight.shape
    )
    batch, mask, _ = padded_batch()
    with torch.no_grad():
        theirs.prompt_encoder["default"].embedding.weight.normal_(generator=torch.Generator().manual_seed(2))
    theirs.save_pretrained(tmp_path / "peft")
    loaded = minipeft.PeftModel.from_pretrained(copy.deepcopy(model), tmp_path / "peft").eval()
    with torch.no_grad():
        expected = theirs(input_ids=batch, attention_mask=mask).logits
        torch.testing.assert_close(loaded(input_ids=batch, attention_mask=mask).logits, expected, rtol=0, atol=0)
    loaded.save_pretrained(tmp_path / "minipeft")
    back = peft.PeftModel.from_pretrained(copy.deepcopy(model), tmp_path / "minipeft").eval()
    with torch.no_grad():
        torch.testing.assert_close(back(input_ids=batch, attention_mask=mask).logits, expected, rtol=0, atol=0)
    assert_text_oracle(model, wrap(model))
    assert_padded_row_equals_row_alone(ours)


def test_a_hybrid_puts_its_prefix_in_the_attention_layers_only():
    model = tiny("qwen3_5_text", num_hidden_layers=4, num_key_value_heads=2, head_dim=16)
    layers = cache_layout(model).layers
    assert [shape is None for shape in layers] == [True, True, True, False]  # 3 linear-attention layers, 1 attention
    wrapped = wrap(model)
    cache = wrapped.get_prompt(batch_size=2)
    assert [getattr(layer, "keys", None) is not None for layer in cache.layers] == [False, False, False, True]
    assert cache.layers[3].keys.shape == (2, 2, 4, 16)  # (B, H_kv, P, D)
    assert_padded_row_equals_row_alone(wrapped)


def test_a_model_without_keys_and_values_is_refused_by_name():
    model = tiny("mamba", num_hidden_layers=2, state_size=8)
    with pytest.raises(ValueError, match=r"MambaForCausalLM \(mamba\) keeps no keys and values.*PromptTuningConfig"):
        get_peft_model(model, PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4))
    rwkv = tiny("rwkv", num_hidden_layers=2, attention_hidden_size=64)
    with pytest.raises(ValueError, match=r"RwkvForCausalLM \(rwkv\) keeps no keys and values, only a recurrent"):
        get_peft_model(rwkv, PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4))


def skip_unless_recurrent_layers_described(model: torch.nn.Module) -> None:
    """Skip where this transformers' ``DynamicCache(config=...)`` gives the model no recurrent layer (5.16)."""
    if not any(isinstance(layer, LinearAttentionCacheLayerMixin) for layer in new_cache(None, model.config).layers):
        pytest.skip(f"this transformers' cache for {model.config.model_type} describes no recurrent layer")


def test_a_model_that_returns_no_cache_but_has_recurrent_layers_is_refused_by_name():
    """RecurrentGemma keeps its recurrent state in its modules and returns no cache, so its layout cannot
    be read; the cache its config describes has recurrent layers, where a prefix cannot go."""
    model = tiny(
        "recurrent_gemma", num_hidden_layers=3, num_key_value_heads=1, head_dim=16, lru_width=64,
        attention_window_size=16,
    )  # fmt: skip
    with torch.no_grad():
        if getattr(model(input_ids=torch.zeros(1, 1, dtype=torch.long), use_cache=True), "past_key_values", None):
            pytest.skip("this transformers' RecurrentGemma returns a cache: its layout can be read")
    skip_unless_recurrent_layers_described(model)
    with pytest.raises(ValueError, match=r"RecurrentGemmaForCausalLM \(recurrent_gemma\) returns no cache.*"
                       r"LinearAttentionLayer.*PromptTuningConfig"):  # fmt: skip
        get_peft_model(model, PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4))
    assert all(p.requires_grad for p in model.parameters())  # refused before anything was frozen


def test_a_hybrid_that_fails_on_one_token_is_refused_by_name_and_a_plain_model_is_not():
    model = tiny("bamba", num_hidden_layers=2, num_key_value_heads=2, mamba_d_state=8, mamba_n_heads=4)
    try:
        with torch.no_grad():
            model(input_ids=torch.zeros(1, 1, dtype=torch.long), use_cache=True)
    except Exception:  # noqa: BLE001 (transformers 5.23's Bamba fails with its own cache: the case refused)
        pass
    else:
        pytest.skip("this transformers' Bamba runs one token with its own cache: its layout can be read")
    skip_unless_recurrent_layers_described(model)
    with pytest.raises(ValueError, match=r"BambaForCausalLM \(bamba\) fails a forward pass on one token, without "
                       r"any prefix \(ValueError: .*LinearAttentionLayer.*fix in transformers") as refusal:  # fmt: skip
        cache_layout(model)
    assert refusal.value.__cause__ is not None  # the model's own error is kept as the cause
    plain = tiny("llama", num_hidden_layers=2, num_key_value_heads=2)

    def fails(*args, **kwargs):
        raise RuntimeError("no forward today")

    plain.forward = fails
    assert cache_layout(plain) is None  # no recurrent layer described: the config's shapes, as PEFT


def test_sparse_attention_with_an_indexer_is_refused_by_name():
    model = tiny(
        "deepseek_v32", num_hidden_layers=2, num_key_value_heads=4, head_dim=8, q_lora_rank=32, kv_lora_rank=16,
        qk_rope_head_dim=8, qk_nope_head_dim=8, v_head_dim=16, n_routed_experts=4, num_experts_per_tok=2,
        n_group=1, topk_group=1, moe_intermediate_size=32, first_k_dense_replace=1,
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"\(deepseek_v32\) uses sparse attention.*indexer"):
        get_peft_model(model, PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4))


def test_the_probe_leaves_every_module_in_the_mode_it_was_in():
    model = tiny("llama", num_hidden_layers=2, num_key_value_heads=2)
    model.train()
    model.model.layers[0].eval()
    before = {name: module.training for name, module in model.named_modules()}
    cache_layout(model)
    assert {name: module.training for name, module in model.named_modules()} == before


def test_a_cache_built_without_a_layout_is_a_plain_dynamic_cache():
    pairs = [(torch.zeros(1, 2, 4, 8), torch.zeros(1, 2, 4, 8))] * 2
    cache = minipeft.build_prefix_cache(pairs)
    assert isinstance(cache, DynamicCache) and cache.get_seq_length() == 4


@pytest.mark.parametrize(
    ("model_type", "fields", "message"),
    [
        ("roformer", {"is_decoder": True}, r"RoFormerForCausalLM \(roformer\) takes no position_ids"),
        ("mpt", {}, r"MptForCausalLM \(mpt\) takes no position_ids"),
        ("mistral", {"sliding_window": 5, "num_key_value_heads": 2}, r"sliding-window layers of 5 tokens.*10 > 5"),
    ],
)
def test_left_padding_that_would_move_the_text_away_from_the_prefix_is_refused(model_type, fields, message):
    model = tiny(model_type, num_hidden_layers=2, **fields)
    wrapped = wrap(model)
    batch, mask, short = padded_batch()
    with pytest.raises(ValueError, match=message):
        wrapped(input_ids=batch, attention_mask=mask)
    with pytest.raises(ValueError, match=message.replace("10 > 5", "14 > 5")):
        wrapped.generate(input_ids=batch, attention_mask=mask, max_new_tokens=4)
    # right padding and unpadded rows keep the prefix where it is: accepted, and equal to the row alone
    right = torch.cat([short, torch.zeros(1, 3, dtype=torch.long)], dim=1)
    right_mask = torch.tensor([[1, 1, 1, 0, 0, 0]])
    with torch.no_grad():
        padded = wrapped(input_ids=right, attention_mask=right_mask).logits[:, :3]
        torch.testing.assert_close(padded, wrapped(input_ids=short).logits, rtol=0, atol=ATOL)
    wrapped.generate(input_ids=short, attention_mask=torch.ones_like(short), max_new_tokens=1)


def test_a_sliding_window_longer_than_everything_and_bloom_alibi_keep_left_padding():
    for model_type, fields in (("mistral", {"sliding_window": 64, "num_key_value_heads": 2}), ("bloom", {})):
        assert_padded_row_equals_row_alone(wrap(tiny(model_type, num_hidden_layers=2, **fields)))


@pytest.mark.parametrize(
    ("model_type", "fields"),
    [("gemma4_text", {"num_key_value_heads": 2, "head_dim": 16}), ("qwen3_5_text", {"num_key_value_heads": 2})],
)
def test_checkpointing_gives_the_same_gradients_on_per_layer_and_hybrid_models(model_type, fields):
    model = tiny(model_type, num_hidden_layers=4, **fields)
    batch, mask, _ = padded_batch()
    labels = batch.masked_fill(mask == 0, -100)
    results = []
    for checkpointing in (False, True):
        base = copy.deepcopy(model)
        if checkpointing:
            base.gradient_checkpointing_enable()
        torch.manual_seed(1)
        wrapped = get_peft_model(base, PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4)).train()
        positions = minipeft.position_ids_from_attention_mask(mask)
        loss = wrapped(input_ids=batch, attention_mask=mask, position_ids=positions, labels=labels).loss
        loss.backward()
        results.append((loss.item(), wrapped.prompt_encoder["default"].embedding.weight.grad))
    (loss, grad), (checkpointed_loss, checkpointed_grad) = results
    assert grad.abs().max() > 0
    assert checkpointed_loss == pytest.approx(loss, abs=1e-6)
    torch.testing.assert_close(checkpointed_grad, grad, rtol=0, atol=1e-6)


def test_where_peft_skips_gemma4_layers_minipeft_prefixes_every_layer():
    # attention_k_eq_v with one global key/value head: full-attention layers 1 x 32, sliding ones 2 x 16.
    # PEFT provisions 1 x 32 (the widest head's layer) and skips the sliding layers, with a warning.
    model = tiny(
        "gemma4_text", num_hidden_layers=4, num_key_value_heads=2, head_dim=16,
        attention_k_eq_v=True, num_global_key_value_heads=1, global_head_dim=32,
    )  # fmt: skip
    assert cache_layout(model).layers == [KeyValueShape(2, 16, 16)] * 3 + [KeyValueShape(1, 32, 32)]
    with pytest.warns(UserWarning, match=r"skipped \[0, 1, 2\]"):
        theirs = wrap(model, peft).get_prompt(batch_size=1)
    assert [layer.keys is not None and layer.keys.numel() > 0 for layer in theirs.layers] == [False] * 3 + [True]
    ours = wrap(model).get_prompt(batch_size=1)
    assert [tuple(layer.keys.shape) for layer in ours.layers] == [(1, 2, 4, 16)] * 3 + [(1, 1, 4, 32)]
    assert_text_oracle(model, wrap(model))


def test_peft_reads_minipefts_adapters_right_or_refuses_them_by_size(tmp_path):
    # multi-query Falcon: the saved config says token_dim=16, num_attention_heads=1, which PEFT then uses as is
    falcon = tiny("falcon", num_hidden_layers=2, multi_query=True, new_decoder_architecture=False)
    ours = wrap(falcon)
    with torch.no_grad():
        ours.prompt_encoder["default"].embedding.weight.normal_(generator=torch.Generator().manual_seed(3))
    ours.save_pretrained(tmp_path / "falcon")
    theirs = peft.PeftModel.from_pretrained(copy.deepcopy(falcon), tmp_path / "falcon").eval()
    batch = padded_batch()[2]
    with torch.no_grad():
        torch.testing.assert_close(theirs(input_ids=batch).logits, ours(input_ids=batch).logits, rtol=0, atol=0)
    # MiMo-V2-Flash: layers with 2 and with 4 key/value heads; PEFT's table would be another size
    mimo = tiny("mimo_v2_flash", num_hidden_layers=4, num_key_value_heads=2, head_dim=16)
    assert len(set(cache_layout(mimo).layers)) == 2
    wrap(mimo).save_pretrained(tmp_path / "mimo")
    with pytest.raises(RuntimeError, match=r"size mismatch"):
        peft.PeftModel.from_pretrained(copy.deepcopy(mimo), tmp_path / "mimo")
