"""Prefix (or prompt) tuning for a decoder-only language model, ``TaskType.CAUSAL_LM``.

Follows PEFT ``src/peft/peft_model.py`` (``PeftModelForCausalLM``).

Explained in: book/01_why_prefix_tuning.ipynb, book/06_generation_and_cost.ipynb (generate)
"""

from __future__ import annotations

from typing import Any

import torch

from .checkpointing import prefix_under_checkpointing
from .config import PeftType, TaskType
from .generation import GenerationMixin
from .mixed_batch import BASE_ADAPTER, inject_mixed, plan_mixed_batch
from .peft_model import PeftModel

__all__ = ["PeftModelForCausalLM"]


class PeftModelForCausalLM(GenerationMixin, PeftModel, task_type=TaskType.CAUSAL_LM):
    """Prefix tuning (or prompt tuning) for a decoder-only language model (``TaskType.CAUSAL_LM``).

    ``forward`` takes what the base model takes. A prefix adds keys and values, not positions:
    ``logits`` are ``(batch, seq_len, vocab_size)`` and ``labels`` ``(batch, seq_len)`` give the
    usual shifted cross-entropy. A soft prompt adds positions: as in PEFT, its logits are
    ``(batch, num_virtual_tokens + seq_len, vocab_size)`` and the labels are padded with -100.

    Explained in: book/01_why_prefix_tuning.ipynb
    """

    _TOKEN_LABELS = True
    _CONTINUES_FROM_CACHE = True
    _CHECKPOINTING_KEEPS_PREFIX = True  # the prefix is read-only under checkpointing (minipeft.checkpointing)
    _MIXED_BATCHES = True
    _GENERATION_POSITIONS = "position_ids"

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        past_key_values: Any = None,
        adapter_names: list[str] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Run the base model with the virtual tokens injected.

        Args:
            input_ids: ``(batch, seq_len)`` token ids (or pass ``inputs_embeds``).
            attention_mask: ``(batch, seq_len)``, 1 for real tokens, 0 for padding; the virtual
                tokens' ``num_virtual_tokens`` ones are prepended here.
            inputs_embeds: ``(batch, seq_len, hidden_size)``, instead of ``input_ids``.
            labels: ``(batch, seq_len)``, -100 where no loss is wanted.
            position_ids: ``(batch, seq_len)`` counted from 0 for the first real token; shifted by
                ``num_virtual_tokens`` (as PEFT does for prefixes). A soft prompt takes positions
                ``0..num_virtual_tokens-1`` in front (PEFT drops ``position_ids`` there, with a
                warning). When ``None``, the model counts from the cache length.
            past_key_values: A cache returned by an earlier call of this model (it starts with the
                virtual tokens, which are then not injected again); ``attention_mask`` then covers
                the earlier real tokens plus the new ones.
            adapter_names: One adapter name per row (``"__base__"``: none), a mixed batch
                (``minipeft.mixed_batch``, chapter 11): each row gives what it gives alone with its adapter. A soft
                prompt's logits are then ``(batch, P + seq_len, vocab_size)``, ``P`` the longest prompt.
            **kwargs: Passed to the base model (``use_cache``, ``output_attentions``, ...).

        Returns:
            The base model's output (``CausalLMOutputWithPast``).

        Raises:
            ValueError: neither ``input_ids`` nor ``inputs_embeds`` given; ``adapter_names`` that do not fit
                (see :func:`~minipeft.plan_mixed_batch`).
        """
        if past_key_values is not None:
            kwargs["past_key_values"] = past_key_values
        if adapter_names is not None:
            source = input_ids if input_ids is not None else inputs_embeds
            plan = plan_mixed_batch(self, adapter_names, None if source is None else source.shape[0])
            if plan.total == 0:  # "__base__" rows only
                with self.disable_adapter():
                    return self.base_model(
                        **self._inject(input_ids, inputs_embeds, attention_mask, position_ids, labels, **kwargs)
                    )
            caller_cache = self._begin_forward(kwargs, adapter=next(n for n in plan.names if n != BASE_ADAPTER))
            if source is None:
                raise ValueError("forward needs input_ids (batch, seq_len) or inputs_embeds (batch, seq_len, hidden).")
            inputs = inject_mixed(
                self, plan, input_ids, inputs_embeds, attention_mask, position_ids, labels, caller_cache, **kwargs
            )
        else:
            inputs = self._inject(input_ids, inputs_embeds, attention_mask, position_ids, labels, **kwargs)
        prefix = self.active_peft_config.peft_type is PeftType.PREFIX_TUNING and not self._adapters_disabled
        prefix_cache = inputs.get(self._cache_kwarg) if prefix else None
        with prefix_under_checkpointing(self.base_model, prefix_cache):  # a no-op unless checkpointing is on
            return self.base_model(**inputs)

    def _soft_prompt_positions(self, position_ids: torch.Tensor) -> torch.Tensor:
        """A soft prompt takes positions ``0..num_virtual_tokens-1``, the input the ones after."""
        num_virtual = self.active_peft_config.num_virtual_tokens
        return torch.arange(num_virtual, device=position_ids.device).expand(position_ids.shape[0], -1)

    def _first_generation_step(self, inputs: dict[str, Any], cache: Any) -> None:
        """The prefix into the cache ``generate`` holds, or the soft prompt before the input embeddings."""
        if self.active_peft_config.peft_type is PeftType.PREFIX_TUNING:
            tokens = inputs.get("input_ids")
            batch_size = (tokens if tokens is not None else inputs["inputs_embeds"]).shape[0]
            inputs[self._cache_kwarg] = self.get_prompt(batch_size, cache=cache)
            return
        injected = self._inject(inputs.pop("input_ids", None), inputs.pop("inputs_embeds", None), None, None, None)
        inputs["inputs_embeds"] = injected["inputs_embeds"]
        inputs["input_ids"] = None
        if inputs.get("position_ids") is not None:
            virtual = self._soft_prompt_positions(inputs["position_ids"])
            inputs["position_ids"] = torch.cat([virtual, inputs["position_ids"]], dim=1)
