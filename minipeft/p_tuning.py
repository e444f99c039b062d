"""P-Tuning (v1): a soft prompt produced by a small network, trained instead of the vectors themselves.

Liu et al. 2021 ("GPT Understands, Too", section 3.2) found that optimising the virtual tokens'
embeddings directly gets stuck, and produce them with a prompt encoder instead: the trainable
embedding of each virtual token passes through a bidirectional LSTM and an MLP (PEFT also offers a
plain MLP, its default). Only the encoder's output matters after training: it is saved as
``prompt_embeddings`` and loaded, for inference, as a fixed table. Like prompt tuning, the result
goes before the input embeddings (:mod:`minipeft.injection`); P-Tuning v2 (a prefix at every layer)
is the other branch of the family.

Follows PEFT ``src/peft/tuners/p_tuning/model.py`` (``PromptEncoder``; same module names, so state
dicts line up).

Explained in: book/02_virtual_tokens.ipynb
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from .config import PromptEncoderConfig, PromptEncoderReparameterizationType

__all__ = ["PromptEncoder"]


class PromptEncoder(nn.Module):
    """P-Tuning's prompt encoder: ``embedding`` -> (``lstm_head``) -> ``mlp_head``, PEFT's layers.

    ``MLP``: ``Linear(token_dim, h) -> ReLU -> Linear(h, h) -> ReLU -> Linear(h, token_dim)``;
    ``LSTM``: a bidirectional LSTM of ``encoder_num_layers`` layers (hidden ``h``), then
    ``Linear(2h, 2h) -> ReLU -> Linear(2h, token_dim)``; ``h`` is ``encoder_hidden_size``. With
    ``inference_mode=True`` only the embedding exists, holding the encoder's output.

    Args:
        config: A filled :class:`~minipeft.PromptEncoderConfig`.

    Shapes:
        input ``indices``: ``(batch, total)``; output ``(batch, total, token_dim)``, ``total`` being
        ``num_virtual_tokens * num_transformer_submodules``.

    Explained in: book/02_virtual_tokens.ipynb
    """

    def __init__(self, config: PromptEncoderConfig) -> None:
        super().__init__()
        total = config.num_virtual_tokens * (config.num_transformer_submodules or 1)
        self.token_dim, hidden = config.token_dim, config.encoder_hidden_size
        self.encoder_type = PromptEncoderReparameterizationType(config.encoder_reparameterization_type)
        self.embedding = nn.Embedding(total, self.token_dim)
        self.inference_mode = config.inference_mode
        if self.inference_mode:
            return
        if self.encoder_type is PromptEncoderReparameterizationType.LSTM:
            self.lstm_head = nn.LSTM(
                input_size=self.token_dim,
                hidden_size=hidden,
                num_layers=config.encoder_num_layers,
                dropout=config.encoder_dropout,
                bidirectional=True,
                batch_first=True,
            )
            self.mlp_head = nn.Sequential(
                nn.Linear(2 * hidden, 2 * hidden), nn.ReLU(), nn.Linear(2 * hidden, self.token_dim)
            )
            return
        if config.encoder_num_layers != 2:  # PEFT's warning: the MLP has a fixed depth
            warnings.warn(
                f"for {self.encoder_type.value}, the argument `encoder_num_layers` is ignored. "
                "Exactly 2 MLP layers are used.",
                stacklevel=2,
            )
        self.mlp_head = nn.Sequential(
            nn.Linear(self.token_dim, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, self.token_dim),
        )

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        """``(batch, total)`` -> ``(batch, total, token_dim)``: the virtual tokens' embeddings."""
        embeds = self.embedding(indices)  # (B, T, token_dim)
        if self.inference_mode:
            return embeds
        if self.encoder_type is PromptEncoderReparameterizationType.LSTM:
            embeds = self.lstm_head(embeds)[0]  # (B, T, 2 * hidden): both directions
        return self.mlp_head(embeds)  # (B, T, token_dim)
