"""Sequence classification with a deep prefix: P-Tuning v2 as its paper uses it, ``TaskType.SEQ_CLS``.

Liu et al. 2022 (section 3) put trainable prompts at every layer of an encoder (BERT, RoBERTa) and
classify with "a randomly-initialized classification head on top of the tokens" (section 3.3).
Two things train: the prefix and the head (:mod:`minipeft.modules_to_save`); the backbone stays
frozen. The comparison points, a soft prompt before the input (``PromptTuningConfig``,
``PromptEncoderConfig``), use the same head. How the prefix reaches BERT, step by step, is in chapter 9.

Follows PEFT ``src/peft/peft_model.py`` (``PeftModelForSequenceClassification``).

Explained in: book/09_ptuning_v2_for_classification.ipynb
"""

from __future__ import annotations

from typing import Any

import torch

from .config import TaskType
from .peft_model import PeftModel

__all__ = ["PeftModelForSequenceClassification"]


class PeftModelForSequenceClassification(PeftModel, task_type=TaskType.SEQ_CLS):
    """P-Tuning v2 for sequence classification (``TaskType.SEQ_CLS``): a deep prefix plus a trained head.

    ``get_peft_model(model, PrefixTuningConfig(task_type="SEQ_CLS", ...))`` returns one: the base
    model is frozen; the prefix (at every layer) and a copy of the classification head train. PEFT's
    ``["classifier", "score"]`` are added to ``modules_to_save`` (each once; PEFT writes them twice).

    ``forward`` takes what the base model takes (``token_type_ids``; a soft prompt gets segment 0
    in front); ``labels`` ``(batch,)`` give the model's loss; ``logits`` are ``(batch, num_labels)``.

    Args:
        model: A transformers ``*ForSequenceClassification`` (BERT, RoBERTa, ... with ``classifier``;
            decoders with ``score``); its head is replaced by a :class:`~minipeft.ModulesToSaveWrapper`.
        peft_config, adapter_name, ``**kwargs``: Those of :class:`~minipeft.PeftModel`.

    Raises:
        ValueError: no module matches ``modules_to_save``; a saved head that is missing or has other shapes.
        TypeError: a prefix for a model that cannot take a cache.
        RuntimeError: (``forward``) the model dropped the prefix.

    Explained in: book/09_ptuning_v2_for_classification.ipynb
    """

    _DEFAULT_MODULES_TO_SAVE = ("classifier", "score")
    _CHECK_PREFIX_USED = True

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> Any:
        """Classify with the virtual tokens injected; see :meth:`PeftModel.forward <minipeft.PeftModel.forward>`."""
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        return super().forward(input_ids, attention_mask, inputs_embeds, labels, position_ids, **kwargs)
