"""PrefixTuningConfig and PromptTuningConfig: PEFT's field values, filling from model configs, and the errors
for impossible input."""

from __future__ import annotations

import peft
import pytest
from transformers import LlamaConfig, Qwen3Config

from minipeft import PeftType, PrefixTuningConfig, PromptTuningConfig, TaskType


def test_enums_have_peft_string_values():
    for member in TaskType:
        assert peft.TaskType(member.value).value == member.value
    for member in PeftType:
        assert peft.PeftType(member.value).value == member.value


def test_task_type_accepts_string():
    assert PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3).task_type == TaskType.CAUSAL_LM


@pytest.mark.parametrize("value", [0, -5, 2.5, True])
def test_num_virtual_tokens_must_be_positive_int(value):
    with pytest.raises(ValueError, match="num_virtual_tokens"):
        PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=value)


def test_num_virtual_tokens_may_wait_until_the_model_is_known():
    # PEFT's default is None; the length is needed once there is a model to size the adapter for
    config = PrefixTuningConfig(task_type=TaskType.CAUSAL_LM)
    assert config.num_virtual_tokens is None
    with pytest.raises(ValueError, match="num_virtual_tokens is required"):
        config.fill_from_model_config(LlamaConfig(hidden_size=32, num_attention_heads=4, num_hidden_layers=2))


@pytest.mark.parametrize("field", ["token_dim", "num_layers", "num_attention_heads", "encoder_hidden_size"])
def test_shape_fields_must_be_positive(field):
    with pytest.raises(ValueError, match=f"PrefixTuningConfig.{field} must be a positive integer"):
        PrefixTuningConfig(num_virtual_tokens=4, **{field: 0})


def test_every_task_type_is_accepted_and_an_unknown_one_is_named():
    for task_type in [*TaskType, None]:
        assert PrefixTuningConfig(task_type=task_type, num_virtual_tokens=4).task_type == task_type
    with pytest.raises(ValueError, match="Invalid task type: 'TRANSLATION'. Must be one of the following"):
        PrefixTuningConfig(task_type="TRANSLATION", num_virtual_tokens=4)


def test_config_without_layers_or_heads_is_an_error():
    class NoLayers:
        num_attention_heads, hidden_size = 4, 32

    class NoHeads:
        num_hidden_layers, hidden_size = 2, 32

    with pytest.raises(ValueError, match="num_layers"):
        PrefixTuningConfig(num_virtual_tokens=4).fill_from_model_config(NoLayers())
    with pytest.raises(ValueError, match="num_attention_heads"):
        PrefixTuningConfig(num_virtual_tokens=4).fill_from_model_config(NoHeads())


def _peft_filled(model_config, **kwargs):
    from peft.utils.other import _prepare_prompt_learning_config

    return _prepare_prompt_learning_config(peft.PrefixTuningConfig(task_type="CAUSAL_LM", **kwargs), model_config)


@pytest.mark.parametrize(
    "model_config",
    [
        # SmolLM2-135M: grouped-query attention, 3 key/value heads of 64
        LlamaConfig(hidden_size=576, num_attention_heads=9, num_key_value_heads=3, num_hidden_layers=30),
        # multi-head: num_key_value_heads == num_attention_heads
        LlamaConfig(hidden_size=64, num_attention_heads=4, num_hidden_layers=2),
        # Qwen3-0.6B: head_dim 128 although hidden_size / heads = 64
        Qwen3Config(
            hidden_size=1024, num_attention_heads=16, num_key_value_heads=8, head_dim=128, num_hidden_layers=28
        ),
    ],
)
def test_filled_fields_equal_peft(model_config):
    ours = PrefixTuningConfig(num_virtual_tokens=10).fill_from_model_config(model_config)
    theirs = _peft_filled(model_config, num_virtual_tokens=10)
    for field in ("num_layers", "token_dim", "num_attention_heads", "encoder_hidden_size"):
        assert getattr(ours, field) == getattr(theirs, field), field


def test_grouped_query_attention_shapes():
    config = LlamaConfig(hidden_size=576, num_attention_heads=9, num_key_value_heads=3, num_hidden_layers=30)
    filled = PrefixTuningConfig(num_virtual_tokens=10).fill_from_model_config(config)
    assert (filled.num_layers, filled.num_attention_heads, filled.head_dim, filled.token_dim) == (30, 3, 64, 192)


def test_explicit_head_dim_is_honoured():
    config = Qwen3Config(hidden_size=1024, num_attention_heads=16, num_key_value_heads=8, head_dim=128)
    filled = PrefixTuningConfig(num_virtual_tokens=10).fill_from_model_config(config)
    assert (filled.head_dim, filled.token_dim) == (128, 1024)


def test_hand_set_field_that_does_not_fit_names_both_values():
    config = LlamaConfig(hidden_size=576, num_attention_heads=9, num_key_value_heads=3, num_hidden_layers=30)
    with pytest.raises(
        ValueError, match=r"does not fit the base model: token_dim=576 where the model needs token_dim=192"
    ):
        PrefixTuningConfig(num_virtual_tokens=10, token_dim=576).fill_from_model_config(config)


def test_to_dict_uses_peft_keys():
    d = PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5, prefix_projection=True).to_dict()
    assert d["peft_type"] == "PREFIX_TUNING" and d["task_type"] == "CAUSAL_LM"
    peft_keys = set(peft.PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5).to_dict())
    assert set(d) == peft_keys
    assert PrefixTuningConfig().task_type is None  # PEFT's default


def test_from_dict_round_trip_and_peft_type_check():
    config = PrefixTuningConfig(num_virtual_tokens=5, prefix_projection=True, token_dim=32)
    assert PrefixTuningConfig.from_dict({**config.to_dict(), "peft_version": "0.21.2", "revision": None}) == config
    with pytest.raises(ValueError, match="needs peft_type='PREFIX_TUNING', got peft_type='LORA'"):
        PrefixTuningConfig.from_dict({"peft_type": "LORA", "num_virtual_tokens": 5})


def test_seq2seq_config_fields_and_errors():
    def seq2seq_config(**kwargs):
        return PrefixTuningConfig(task_type=TaskType.SEQ_2_SEQ_LM, num_virtual_tokens=4, **kwargs)

    config = seq2seq_config()
    assert config.num_transformer_submodules == 2 and "prefix_encoder_and_cross_attention" not in config.to_dict()
    assert PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4).num_transformer_submodules == 1
    with pytest.raises(ValueError, match="num_transformer_submodules must be 2 for task_type='SEQ_2_SEQ_LM'"):
        seq2seq_config(num_transformer_submodules=1)
    with pytest.raises(ValueError, match="prefix_encoder_and_cross_attention=True is for encoder-decoders"):
        PrefixTuningConfig(num_virtual_tokens=4, prefix_encoder_and_cross_attention=True)
    with pytest.raises(ValueError, match="num_decoder_layers=2 is used only with prefix_encoder_and_cross_attention"):
        seq2seq_config(num_decoder_layers=2)
    full = seq2seq_config(prefix_encoder_and_cross_attention=True)
    assert PrefixTuningConfig.from_dict(full.to_dict()) == full
    with pytest.raises(ValueError, match="needs num_layers"):
        full.num_prefix_layers  # noqa: B018


def test_text_initialisation_needs_text_and_tokenizer():
    with pytest.raises(ValueError, match="prompt_tuning_init_text"):
        PromptTuningConfig(num_virtual_tokens=4, prompt_tuning_init="TEXT", tokenizer_name_or_path="x")
    with pytest.raises(ValueError, match="tokenizer_name_or_path"):
        PromptTuningConfig(num_virtual_tokens=4, prompt_tuning_init="TEXT", prompt_tuning_init_text="hi")
    with pytest.raises(ValueError, match="prompt_tuning_init='WORDS' is unknown"):
        PromptTuningConfig(num_virtual_tokens=4, prompt_tuning_init="WORDS")
