"""Prompt tuning: learnable vectors prepended to the input embeddings only.

The simplest place a soft prompt can live (Lester et al. 2021, "The Power of Scale for
Parameter-Efficient Prompt Tuning", section 2): ``num_virtual_tokens`` vectors of width
``hidden_size`` placed before the embedded input tokens (through ``inputs_embeds``); the frozen model
processes them like words. Compare a prefix, which puts keys and values at *every* layer.

Follows PEFT ``src/peft/tuners/prompt_tuning/{config.py,model.py}`` (``PromptTuningConfig``,
``PromptTuningInit``, ``PromptEmbedding``).

Explained in: book/02_virtual_tokens.ipynb
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from .config import PeftType, PromptLearningConfig, TaskType


class PromptTuningInit(str, enum.Enum):
    """How the soft prompt starts (PEFT's values).

    ``TEXT``: the embeddings of a text's tokens (Lester et al. section 3.2, "class label" and
    vocabulary initialisation); ``SAMPLE_VOCAB``: embeddings of random vocabulary tokens;
    ``RANDOM``: ``nn.Embedding``'s default N(0, 1) (far from real embeddings, which are much smaller).
    """

    TEXT = "TEXT"
    SAMPLE_VOCAB = "SAMPLE_VOCAB"
    RANDOM = "RANDOM"


@dataclass
class PromptTuningConfig(PromptLearningConfig):
    """Configuration of a soft prompt (prompt tuning), PEFT's field names.

    It takes the fields of :class:`~minipeft.PromptLearningConfig` too. ``task_type`` is
    ``CAUSAL_LM`` or ``SEQ_CLS`` (a soft prompt in front of a classifier's input, with a trained head:
    see :class:`~minipeft.PeftModelForSequenceClassification`).

    Args:
        prompt_tuning_init: A :class:`PromptTuningInit` (or its string value).
        prompt_tuning_init_text: The text whose token embeddings start the prompt (``TEXT``); its
            tokens are cut or repeated to ``num_virtual_tokens``.
        tokenizer_name_or_path: The tokenizer for ``prompt_tuning_init_text`` (a Hub id or folder;
            for the embedded model, ``tokenizer.name_or_path``).
        tokenizer_kwargs: Extra arguments for ``AutoTokenizer.from_pretrained`` (``TEXT`` only).

    Raises:
        ValueError: ``TEXT`` without a text or a tokenizer; ``tokenizer_kwargs`` without ``TEXT``;
            an unknown ``prompt_tuning_init``; and the errors of ``PromptLearningConfig``.
    """

    prompt_tuning_init: PromptTuningInit | str = PromptTuningInit.RANDOM
    prompt_tuning_init_text: str | None = None
    tokenizer_name_or_path: str | None = None
    tokenizer_kwargs: dict[str, Any] | None = None

    PEFT_TYPE: ClassVar[PeftType] = PeftType.PROMPT_TUNING
    TASK_TYPES: ClassVar[tuple[TaskType, ...]] = (TaskType.CAUSAL_LM, TaskType.SEQ_CLS)

    def __post_init__(self) -> None:
        super().__post_init__()
        try:
            self.prompt_tuning_init = PromptTuningInit(self.prompt_tuning_init)
        except ValueError:
            known = ", ".join(i.value for i in PromptTuningInit)
            raise ValueError(
                f"PromptTuningConfig.prompt_tuning_init={self.prompt_tuning_init!r} is unknown; expected one of {known}."
            ) from None
        if self.prompt_tuning_init is PromptTuningInit.TEXT:
            if not self.prompt_tuning_init_text:
                raise ValueError("prompt_tuning_init='TEXT' needs prompt_tuning_init_text, the text to start from.")
            if not self.tokenizer_name_or_path:
                raise ValueError(
                    "prompt_tuning_init='TEXT' needs tokenizer_name_or_path (a Hub id or a folder; "
                    "for the embedded model: tokenizer.name_or_path)."
                )
        elif self.tokenizer_kwargs:
            raise ValueError("tokenizer_kwargs is only used with prompt_tuning_init='TEXT'.")

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["prompt_tuning_init"] = PromptTuningInit(self.prompt_tuning_init).value
        return out


class PromptEmbedding(nn.Module):
    """The soft prompt: ``num_virtual_tokens`` trainable vectors of width ``token_dim`` (``hidden_size``).

    Args:
        config: A filled :class:`PromptTuningConfig`.
        word_embeddings: The base model's input embedding (``model.get_input_embeddings()``), used
            by the ``TEXT`` and ``SAMPLE_VOCAB`` initialisations.

    Shapes:
        input ``indices``: ``(batch, num_virtual_tokens)``; output ``(batch, num_virtual_tokens, token_dim)``.
    """

    def __init__(self, config: PromptTuningConfig, word_embeddings: nn.Embedding) -> None:
        super().__init__()
        self.embedding = nn.Embedding(config.num_virtual_tokens, config.token_dim)
        if config.inference_mode or config.prompt_tuning_init is PromptTuningInit.RANDOM:
            return
        if config.prompt_tuning_init is PromptTuningInit.SAMPLE_VOCAB:
            token_ids = torch.randint(0, word_embeddings.num_embeddings, (config.num_virtual_tokens,))
        else:
            from transformers import AutoTokenizer

            kwargs = dict(config.tokenizer_kwargs or {})
            kwargs.pop("trust_remote_code", None)  # a config file must not run code
            tokenizer = AutoTokenizer.from_pretrained(config.tokenizer_name_or_path, **kwargs)
            ids = tokenizer(config.prompt_tuning_init_text)["input_ids"]  # as PEFT: special tokens included
            ids = (ids * math.ceil(config.num_virtual_tokens / len(ids)))[: config.num_virtual_tokens]
            token_ids = torch.tensor(ids)
        with torch.no_grad():
            rows = word_embeddings.weight[token_ids.to(word_embeddings.weight.device)]
            self.embedding.weight.copy_(rows.float())

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        """``(batch, num_virtual_tokens)`` -> ``(batch, num_virtual_tokens, token_dim)``."""
        return self.embedding(indices)
