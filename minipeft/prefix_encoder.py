"""The prefix encoder: the trainable parameters of Prefix Tuning and P-Tuning v2.

Two ways to produce the prefix, a tensor ``(batch, num_virtual_tokens, 2*num_layers*token_dim)``
that holds every layer's keys and values:

- P-Tuning v2 (PEFT's name for the MLP-free variant; Liu et al. 2022, section 3.3): the prefix
  *is* the parameter, one embedding row of width ``2*num_layers*token_dim`` per virtual token.
- Prefix Tuning (Li & Liang 2021, section 4.3, equation 5): an embedding of width ``token_dim``
  through ``Linear(token_dim, encoder_hidden_size) -> Tanh -> Linear(encoder_hidden_size,
  2*num_layers*token_dim)``; after training only the output is needed (``inference_mode=True``).

Follows PEFT ``src/peft/tuners/prefix_tuning/model.py`` (same module names: ``embedding``,
``transform``), so state dicts line up.

Explained in: book/03_prefix_encoder.ipynb
"""

from __future__ import annotations

import torch
from torch import nn

from .config import PrefixTuningConfig

__all__ = ["PrefixEncoder"]


class PrefixEncoder(nn.Module):
    """Maps virtual-token indices to every layer's prefix keys and values.

    Args:
        config: A filled :class:`~minipeft.PrefixTuningConfig` (``num_layers`` and ``token_dim`` set).

    Shapes:
        input ``prefix``: ``(batch, num_virtual_tokens)`` integer indices ``0..num_virtual_tokens-1``.
        output: ``(batch, num_virtual_tokens, 2*num_layers*token_dim)``.

    Raises:
        ValueError: ``num_layers`` or ``token_dim`` is not filled in yet.

    Explained in: book/03_prefix_encoder.ipynb
    """

    def __init__(self, config: PrefixTuningConfig) -> None:
        super().__init__()
        if config.num_layers is None or config.token_dim is None:
            raise ValueError(
                "PrefixEncoder needs num_layers and token_dim; call config.fill_from_model_config(model.config) "
                "or use get_peft_model, which does it."
            )
        self.prefix_projection = config.prefix_projection and not config.inference_mode
        # every layer's keys and values, side by side (num_prefix_layers is num_layers, except for an
        # encoder-decoder prefixed everywhere: see PrefixTuningConfig.prefix_encoder_and_cross_attention)
        out_dim = 2 * config.num_prefix_layers * config.token_dim
        if self.prefix_projection:
            # Prefix Tuning: P'_theta (num_virtual_tokens, token_dim) -> MLP -> P_theta (eq. 5)
            self.embedding = nn.Embedding(config.num_virtual_tokens, config.token_dim)
            self.transform = nn.Sequential(
                nn.Linear(config.token_dim, config.encoder_hidden_size),
                nn.Tanh(),
                nn.Linear(config.encoder_hidden_size, out_dim),
            )
            if config.init_weights == "zero":  # PEFT 0.19: the prefix starts at zero
                nn.init.zeros_(self.transform[-1].weight)
                nn.init.zeros_(self.transform[-1].bias)
        else:
            # P-Tuning v2 (and an adapter loaded for inference): the table is the prefix itself
            self.embedding = nn.Embedding(config.num_virtual_tokens, out_dim)
            if config.init_weights == "zero":
                nn.init.zeros_(self.embedding.weight)

    def forward(self, prefix: torch.Tensor) -> torch.Tensor:
        """``prefix`` ``(batch, num_virtual_tokens)`` -> ``(batch, num_virtual_tokens, 2*num_layers*token_dim)``."""
        if self.prefix_projection:
            return self.transform(self.embedding(prefix))  # (B, P, token_dim) -> (B, P, 2*L*token_dim)
        return self.embedding(prefix)  # (B, P, 2*L*token_dim)

    def load_prompt_embeddings(self, prompt_embeddings: torch.Tensor) -> None:
        """Set the prefix table, e.g. to :func:`minipeft.prefix_from_text` or a saved adapter's table.

        PEFT's ``PrefixEncoder.load_prompt_embeddings``: only without the MLP (its input cannot be
        recovered from its output); in inference mode there is no MLP.

        Args:
            prompt_embeddings: ``(num_virtual_tokens, 2*num_layers*token_dim)``.

        Raises:
            ValueError: the encoder has the reparameterisation MLP, or the shapes differ.
        """
        if self.prefix_projection:
            raise ValueError(
                "Cannot load a prefix table into an encoder with prefix_projection=True; "
                "use prefix_projection=False (P-Tuning v2) or inference_mode=True."
            )
        if tuple(prompt_embeddings.shape) != tuple(self.embedding.weight.shape):
            raise ValueError(
                f"prompt_embeddings has shape {tuple(prompt_embeddings.shape)}, the prefix needs "
                f"{tuple(self.embedding.weight.shape)} = (num_virtual_tokens, 2*num_layers*token_dim)."
            )
        with torch.no_grad():
            self.embedding.weight.copy_(prompt_embeddings.to(self.embedding.weight))
