"""Prompt tuning: learnable vectors prepended to the input embeddings only.

The simplest place a soft prompt can live (Lester et al. 2021, section 2): ``num_virtual_tokens``
vectors of width ``hidden_size`` before the embedded input tokens; the frozen model processes them
like words. A prefix, in contrast, puts keys and values at *every* layer. The config is
:class:`~minipeft.PromptTuningConfig`; prepending happens in :mod:`minipeft.injection`.

Follows PEFT ``src/peft/tuners/prompt_tuning/model.py`` (``PromptEmbedding``).

Explained in: book/02_virtual_tokens.ipynb
"""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers import AutoTokenizer

from .config import PromptTuningConfig, PromptTuningInit

__all__ = ["PromptEmbedding"]


class PromptEmbedding(nn.Module):
    """The soft prompt: ``num_virtual_tokens`` trainable vectors of width ``token_dim`` (``hidden_size``).

    Args:
        config: A filled :class:`~minipeft.PromptTuningConfig`.
        word_embeddings: The base model's input embedding (``model.get_input_embeddings()``), used
            by the ``TEXT`` and ``SAMPLE_VOCAB`` initialisations.

    Shapes:
        input ``indices``: ``(batch, total)``; output ``(batch, total, token_dim)``, ``total`` being
        ``num_virtual_tokens * num_transformer_submodules`` (an encoder-decoder has a prompt for each side).

    Explained in: book/02_virtual_tokens.ipynb
    """

    def __init__(self, config: PromptTuningConfig, word_embeddings: nn.Embedding) -> None:
        super().__init__()
        total = config.num_virtual_tokens * (config.num_transformer_submodules or 1)
        self.embedding = nn.Embedding(total, config.token_dim)
        if config.inference_mode or config.prompt_tuning_init is PromptTuningInit.RANDOM:
            return
        if config.prompt_tuning_init is PromptTuningInit.SAMPLE_VOCAB:
            token_ids = torch.randint(0, word_embeddings.num_embeddings, (total,))
        else:
            kwargs = dict(config.tokenizer_kwargs or {})
            kwargs.pop("trust_remote_code", None)  # a config file must not run code
            tokenizer = AutoTokenizer.from_pretrained(config.tokenizer_name_or_path, **kwargs)
            ids = tokenizer(config.prompt_tuning_init_text)["input_ids"]  # as PEFT: special tokens included
            ids = (ids * math.ceil(total / len(ids)))[:total]
            token_ids = torch.tensor(ids)
        with torch.no_grad():
            rows = word_embeddings.weight[token_ids.to(word_embeddings.weight.device)]
            self.embedding.weight.copy_(rows.float())

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        """``(batch, num_virtual_tokens)`` -> ``(batch, num_virtual_tokens, token_dim)``."""
        return self.embedding(indices)
