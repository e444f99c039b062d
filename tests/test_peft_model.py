"""The wrapper's behaviour: frozen base, parameter counts, inputs, the errors of get_peft_model and forward."""

from __future__ import annotations

import io
from contextlib import redirect_stdout

import pytest
import torch
from helpers import padded_batch, tiny_llama, wrap
from transformers import BloomConfig, BloomForCausalLM

from minipeft import PrefixTuningConfig, get_peft_model


def test_bloomz_560m_figure_from_the_seed_article():
    """bigscience/bloomz-560m's architecture on the meta device (no weights, no download)."""
    config = BloomConfig(vocab_size=250880, hidden_size=1024, n_layer=24, n_head=16)
    with torch.device("meta"):
        model = BloomForCausalLM(config)
    peft_model = wrap(model, num_virtual_tokens=30)
    out = io.StringIO()
    with redirect_stdout(out):
        peft_model.print_trainable_parameters()
    assert out.getvalue() == "trainable params: 1,474,560 || all params: 560,689,152 || trainable%: 0.2630\n"


def test_base_model_is_frozen_and_only_the_prefix_learns(tiny_model):
    peft_model = wrap(tiny_model).train()
    trainable = [name for name, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable == ["prompt_encoder.default.embedding.weight"]
    input_ids, attention_mask = padded_batch()
    loss = peft_model(input_ids=input_ids, attention_mask=attention_mask, labels=input_ids).loss
    loss.backward()
    assert peft_model.prompt_encoder["default"].embedding.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in peft_model.get_base_model().parameters())


def test_prefix_changes_the_output(tiny_model):
    peft_model = wrap(tiny_model)
    input_ids, attention_mask = padded_batch()
    with torch.no_grad():
        with_prefix = peft_model(input_ids=input_ids, attention_mask=attention_mask).logits
        without = tiny_model(input_ids=input_ids, attention_mask=attention_mask).logits
    assert (with_prefix - without).abs().max() > 1e-3


def test_get_peft_model_errors():
    model = tiny_llama()
    with pytest.raises(TypeError, match="PrefixTuningConfig"):
        get_peft_model(model, {"num_virtual_tokens": 4})
    peft_model = wrap(model)
    with pytest.raises(TypeError, match="already a minipeft PeftModel"):
        wrap(peft_model)
    # gradient checkpointing: tests/test_checkpointing.py


def test_user_config_is_not_modified():
    config = PrefixTuningConfig(num_virtual_tokens=4)
    wrap_config = get_peft_model(tiny_llama(), config).active_peft_config
    assert config.num_layers is None and wrap_config.num_layers == 3


def test_forward_needs_inputs():
    with pytest.raises(ValueError, match="input_ids"):
        wrap(tiny_llama())(attention_mask=torch.ones(1, 3))


def test_inputs_embeds_equal_input_ids(tiny_model):
    peft_model = wrap(tiny_model)
    input_ids, attention_mask = padded_batch()
    embeds = tiny_model.get_input_embeddings()(input_ids)
    with torch.no_grad():
        a = peft_model(input_ids=input_ids, attention_mask=attention_mask).logits
        b = peft_model(inputs_embeds=embeds, attention_mask=attention_mask).logits
    assert torch.allclose(a, b, atol=1e-6)


def test_transformers_adapter_api_is_refused_and_peft_methods_are_minipefts(tiny_model):
    model = wrap(tiny_model)
    for name in ("enable_adapters", "disable_adapters", "get_adapter_state_dict"):
        with pytest.raises(AttributeError, match="transformers' own adapter API"):
            getattr(model, name)
    for name in ("push_to_hub", "save_pretrained", "add_adapter", "load_adapter", "set_adapter", "delete_adapter"):
        assert getattr(type(model), name).__module__.startswith("minipeft"), name
    assert model.config is tiny_model.config and model.device == tiny_model.device  # the rest is the base model's


def test_adapters_are_added_set_and_deleted(tiny_model):
    model = wrap(tiny_model)
    model.add_adapter("second", PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=2))
    assert model.active_adapters == ["default"] and set(model.peft_config) == {"default", "second"}
    input_ids, attention_mask = padded_batch()
    with torch.no_grad():
        first = model(input_ids=input_ids, attention_mask=attention_mask).logits
        model.set_adapter("second")
        second = model(input_ids=input_ids, attention_mask=attention_mask).logits
        with model.disable_adapter():
            plain = model(input_ids=input_ids, attention_mask=attention_mask).logits
    assert not torch.allclose(first, second) and not torch.allclose(second, plain)
    assert torch.allclose(plain, tiny_model(input_ids=input_ids, attention_mask=attention_mask).logits)
    with pytest.raises(ValueError, match="already exists"):
        model.add_adapter("second", PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=2))
    with pytest.warns(UserWarning, match="Setting active adapter to default"):
        model.delete_adapter("second")
    assert model.active_adapters == ["default"]
