"""PrefixEncoder: the table (and the reparameterisation MLP) that gives every layer's prefix keys and values."""

from __future__ import annotations

import pytest
import torch
from helpers import wrap

from minipeft import PrefixEncoder, PrefixTuningConfig, prefix_to_past_key_values


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


def test_encoder_needs_filled_config():
    with pytest.raises(ValueError, match="fill_from_model_config"):
        PrefixEncoder(PrefixTuningConfig(num_virtual_tokens=5))


def test_load_prompt_embeddings_checks():
    config = PrefixTuningConfig(num_virtual_tokens=5, num_layers=3, token_dim=32, num_attention_heads=2)
    with pytest.raises(ValueError, match=r"has shape \(4, 192\), the prefix needs \(5, 192\)"):
        PrefixEncoder(config).load_prompt_embeddings(torch.zeros(4, 192))
    projected = PrefixTuningConfig(
        num_virtual_tokens=5, num_layers=3, token_dim=32, num_attention_heads=2, prefix_projection=True
    )
    with pytest.raises(ValueError, match="prefix_projection=True"):
        PrefixEncoder(projected).load_prompt_embeddings(torch.zeros(5, 192))
