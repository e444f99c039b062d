"""Sequence classification with a deep prefix: P-Tuning v2 as its paper uses it, ``TaskType.SEQ_CLS``.

Liu et al. 2022 (section 3) put trainable prompts at every layer of an encoder (BERT, RoBERTa) and
classify with "a randomly-initialized classification head on top of the tokens" (section 3.3).
Two things train: the prefix and the head (:mod:`minipeft.modules_to_save`); the backbone stays
frozen. The comparison point, a soft prompt before the input (``PromptTuningConfig``), uses the
same head. How the prefix reaches BERT, step by step, is in chapter 9.

Follows PEFT ``src/peft/peft_model.py`` (``PeftModelForSequenceClassification``).

Explained in: book/09_ptuning_v2_for_classification.ipynb
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from .config import PeftType, PromptLearningConfig, TaskType
from .modules_to_save import find_modules_to_save, trained_copies, wrap_modules_to_save
from .peft_model import PeftModel

__all__ = ["PeftModelForSequenceClassification"]

#: The head names PEFT adds to ``modules_to_save`` for ``SEQ_CLS`` (BERT-likes: ``classifier``; decoders: ``score``).
CLASSIFIER_MODULE_NAMES = ("classifier", "score")


class PeftModelForSequenceClassification(PeftModel, task_type=TaskType.SEQ_CLS):
    """P-Tuning v2 for sequence classification (``TaskType.SEQ_CLS``): a deep prefix plus a trained head.

    ``get_peft_model(model, PrefixTuningConfig(task_type="SEQ_CLS", ...))`` returns one: the base
    model is frozen; the prefix (at every layer) and a copy of the classification head train. With
    a ``PromptTuningConfig(task_type="SEQ_CLS", ...)`` a soft prompt goes before the input
    embeddings instead, with the same head.

    Args:
        model: A transformers ``*ForSequenceClassification`` (BERT, RoBERTa, ... with ``classifier``;
            decoders with ``score``); its head is replaced by a :class:`~minipeft.ModulesToSaveWrapper`.
        peft_config: A filled config with ``task_type=SEQ_CLS``; PEFT's ``["classifier", "score"]``
            are added to its ``modules_to_save`` (each name once; PEFT writes them twice).
        **kwargs: Those of :class:`~minipeft.PeftModel`; ``saved_state`` holds a loaded head.

    Attributes:
        cls_layer_name: The base model's child holding the head (PEFT's attribute), e.g. ``"classifier"``.

    Raises:
        ValueError: not a prefix or prompt-tuning config for ``SEQ_CLS``; no module matches
            ``modules_to_save``; a saved head that is missing or has other shapes.
        TypeError: a prefix for a model that cannot take a cache.

    Explained in: book/09_ptuning_v2_for_classification.ipynb
    """

    def _prepare(
        self,
        model: nn.Module,
        config: PromptLearningConfig,
        adapter_name: str,
        saved_state: dict[str, torch.Tensor] | None,
        source: str | os.PathLike,
    ) -> None:
        if config.peft_type not in (PeftType.PREFIX_TUNING, PeftType.PROMPT_TUNING) or (
            config.task_type is not TaskType.SEQ_CLS
        ):
            raise ValueError(
                "PeftModelForSequenceClassification implements prefix and prompt tuning with task_type='SEQ_CLS', got "
                f"peft_type={config.peft_type.value!r}, task_type={TaskType(config.task_type).value!r}."
            )
        names = config.modules_to_save = list(
            dict.fromkeys([*(config.modules_to_save or []), *CLASSIFIER_MODULE_NAMES])
        )
        paths = find_modules_to_save(model, names)
        if not paths:
            children = ", ".join(name for name, _ in model.named_children())
            raise ValueError(
                f"No module of this {type(model).__name__} matches modules_to_save={names} (its modules: {children}). "
                "A SEQ_CLS adapter trains the model's classification head: load the base model with "
                "AutoModelForSequenceClassification, or name its head in modules_to_save."
            )
        self._trained_modules = trained_copies(model, paths, saved_state, source)
        if saved_state is not None:
            saved_state.clear()

    def _attach(self, model: nn.Module, config: PromptLearningConfig, adapter_name: str) -> None:
        wrap_modules_to_save(model, self.__dict__.pop("_trained_modules"), adapter_name, not config.inference_mode)
        names = config.modules_to_save or []
        self.cls_layer_name = next(
            (name for name, _ in model.named_children() if any(target in name for target in names)), None
        )

    def _soft_prompt_positions(self, position_ids: torch.Tensor) -> torch.Tensor:
        """The row's first ``num_virtual_tokens`` positions (RoBERTa's count from ``padding_idx + 1``)."""
        return position_ids[:, :1] + torch.arange(
            self.active_peft_config.num_virtual_tokens, device=position_ids.device
        )

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
        """Classify with the prefix injected as the model's cache (or the soft prompt in front).

        Args:
            input_ids: ``(batch, seq_len)`` token ids (or pass ``inputs_embeds``).
            attention_mask: ``(batch, seq_len)``; becomes ``(batch, num_virtual_tokens + seq_len)``.
            inputs_embeds: ``(batch, seq_len, hidden_size)``, instead of ``input_ids``.
            labels: ``(batch,)`` class indices (``(batch, num_labels)`` floats for multi-label,
                ``(batch,)`` floats for regression): the base model's loss.
            token_type_ids: ``(batch, seq_len)`` segment ids; a soft prompt gets segment 0 in front.
            position_ids: ``(batch, seq_len)``; shifted by ``num_virtual_tokens`` as PEFT does (the
                model counts from the cache length when ``None``, which is the same). A soft prompt
                takes the row's first ``num_virtual_tokens`` positions, the input the ones after.
            **kwargs: Passed to the base model (``output_attentions``, ``output_hidden_states``, ...).

        Returns:
            The base model's ``SequenceClassifierOutput``: ``logits`` ``(batch, num_labels)``, and
            ``loss`` when ``labels`` are given.

        Raises:
            ValueError: neither ``input_ids`` nor ``inputs_embeds``; a ``past_key_values`` passed in.
            RuntimeError: the base model did not use the prefix (it dropped the cache).
        """
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        inputs = self._inject(input_ids, inputs_embeds, attention_mask, position_ids, labels, **kwargs)
        output = self.base_model(**inputs)
        cache = inputs.get(self._cache_kwarg)
        if self.active_peft_config.peft_type is PeftType.PREFIX_TUNING and (
            cache.get_seq_length() == self.active_peft_config.num_virtual_tokens
        ):  # the attention layers append to the cache they use
            raise RuntimeError(
                f"{type(self.base_model).__name__} ignored the prefix: its attention layers never saw the "
                f"{self._cache_kwarg} passed to it."
            )
        return output
