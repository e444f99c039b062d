"""The wrapper's behaviour: frozen base, shapes, loss, parameter counts, generation, errors."""

from __future__ import annotations

import io
from contextlib import redirect_stdout

import pytest
import torch
from conftest import VOCAB, padded_batch, tiny_llama
from transformers import BloomConfig, BloomForCausalLM

from minipeft import PrefixEncoder, PrefixTuningConfig, TaskType, get_peft_model, prefix_to_past_key_values


def wrap(model, **kwargs):
    kwargs.setdefault("num_virtual_tokens", 4)
    return get_peft_model(model, PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, **kwargs))


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


def test_projection_trains_embedding_and_mlp(tiny_model):
    peft_model = wrap(tiny_model, prefix_projection=True, encoder_hidden_size=16)
    names = {name for name, p in peft_model.named_parameters() if p.requires_grad}
    assert names == {
        "prompt_encoder.default.embedding.weight",
        "prompt_encoder.default.transform.0.weight",
        "prompt_encoder.default.transform.0.bias",
        "prompt_encoder.default.transform.2.weight",
        "prompt_encoder.default.transform.2.bias",
    }


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


def test_prefix_changes_the_output(tiny_model):
    peft_model = wrap(tiny_model)
    input_ids, attention_mask = padded_batch()
    with torch.no_grad():
        with_prefix = peft_model(input_ids=input_ids, attention_mask=attention_mask).logits
        without = tiny_model(input_ids=input_ids, attention_mask=attention_mask).logits
    assert (with_prefix - without).abs().max() > 1e-3


def test_encoder_output_shape_and_layout():
    config = PrefixTuningConfig(num_virtual_tokens=5, num_layers=3, token_dim=32, num_attention_heads=2)
    encoder = PrefixEncoder(config)
    prefix = encoder(torch.arange(5).expand(4, -1))
    assert prefix.shape == (4, 5, 2 * 3 * 32)
    past = prefix_to_past_key_values(prefix, config)
    assert len(past) == 3 and all(k.shape == v.shape == (4, 2, 5, 16) for k, v in past)
    # layer 1's values are the 4th block of token_dim columns ([k0, v0, k1, v1, ...]), head 1 its second half
    assert torch.equal(past[1][1][:, 1], prefix[:, :, 3 * 32 + 16 : 4 * 32])


def test_projection_encoder_shapes():
    config = PrefixTuningConfig(
        num_virtual_tokens=5,
        num_layers=3,
        token_dim=32,
        num_attention_heads=2,
        prefix_projection=True,
        encoder_hidden_size=8,
    )
    encoder = PrefixEncoder(config)
    assert encoder.embedding.weight.shape == (5, 32)
    assert encoder(torch.arange(5).unsqueeze(0)).shape == (1, 5, 192)
    inference = PrefixEncoder(PrefixTuningConfig.from_dict({**config.to_dict(), "inference_mode": True}))
    assert not hasattr(inference, "transform") and inference.embedding.weight.shape == (5, 192)


def test_wrong_prefix_shape_is_reported():
    config = PrefixTuningConfig(num_virtual_tokens=5, num_layers=3, token_dim=32, num_attention_heads=2)
    with pytest.raises(ValueError, match=r"prefix has shape \(1, 5, 100\), expected \(batch, 5, 192\)"):
        prefix_to_past_key_values(torch.zeros(1, 5, 100), config)


def test_encoder_needs_filled_config():
    with pytest.raises(ValueError, match="fill_from_model_config"):
        PrefixEncoder(PrefixTuningConfig(num_virtual_tokens=5))


def test_get_peft_model_errors():
    model = tiny_llama()
    with pytest.raises(TypeError, match="PrefixTuningConfig"):
        get_peft_model(model, {"num_virtual_tokens": 4})
    peft_model = wrap(model)
    with pytest.raises(TypeError, match="already a minipeft PeftModel"):
        wrap(peft_model)
    other = tiny_llama()
    enable = getattr(other, "activation_checkpointing_enable", None) or other.gradient_checkpointing_enable
    enable()
    with pytest.raises(ValueError, match=r"gradient \(activation\) checkpointing"):
        wrap(other)


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
    assert torch.allclose(full[:, 5:], second, atol=1e-5)


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
