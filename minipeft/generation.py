"""Generating with virtual tokens: the base model's ``generate``, with the prefix injected at the first step.

For the duration of the call the base model's ``prepare_inputs_for_generation`` is replaced: at the
first step (the cache is empty) a task's hook puts the prefix into the cache ``generate`` created
(or the soft prompt before the input embeddings); at every step the attention mask grows by
``num_virtual_tokens`` ones. PEFT's approach (``PeftModelForCausalLM.generate``, ``src/peft/peft_model.py``).

Explained in: book/06_generation_and_cost.ipynb
"""

from __future__ import annotations

import contextlib
from typing import Any, ClassVar

import torch
from transformers import DynamicCache, EncoderDecoderCache

from .config import PeftType
from .injection import check_left_padding, extend_attention_mask
from .mixed_batch import generation_step, plan_mixed_batch

__all__ = []  # internals of generate


class GenerationMixin:
    """``generate`` for a :class:`~minipeft.PeftModel` whose task generates (causal LM, seq2seq LM).

    Hooks for the task: :meth:`_generation_context` (around the whole call) and
    :meth:`_first_generation_step` (fills the first step's inputs); at every step the mask
    :meth:`_generation_mask` names grows by ``num_virtual_tokens`` and the positions named
    ``_GENERATION_POSITIONS`` (if any) shift by it.

    Explained in: book/06_generation_and_cost.ipynb
    """

    _GENERATION_POSITIONS: ClassVar[str | None] = None

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        """``base_model.generate`` (all its arguments) with the virtual tokens injected at the first step.

        Pad batches on the left. To continue a conversation, pass the cache a previous call returned
        with the whole conversation as ``input_ids``: it starts with the prefix, so it is kept.
        ``adapter_names``: one adapter per row (``"__base__"``: none), a mixed batch
        (:mod:`minipeft.mixed_batch`); each row generates what it generates alone with its adapter.

        Raises:
            ValueError: a cache other than ``DynamicCache`` (e.g. ``cache_implementation="static"``),
                or a mask that is not 2-D; ``adapter_names`` that do not fit (see
                :func:`~minipeft.plan_mixed_batch`).
        """
        base = self.base_model
        adapter_names = kwargs.pop("adapter_names", None)
        plan = None
        if adapter_names is not None:
            given = [kwargs.get(key) for key in ("input_ids", "inputs", "inputs_embeds")] + list(args[:1])
            source = next((tensor for tensor in given if tensor is not None), None)
            plan = plan_mixed_batch(self, adapter_names, 1 if source is None else source.shape[0])
            if plan.total == 0:  # "__base__" rows only
                return base.generate(*args, **kwargs)
        if self._adapters_disabled:
            return base.generate(*args, **kwargs)
        if self.active_peft_config.peft_type is PeftType.PREFIX_TUNING:
            num_virtual = self.active_peft_config.num_virtual_tokens if plan is None else plan.total
            check_left_padding(
                base,
                self.__dict__.get("_cache_layout"),
                kwargs.get("attention_mask"),
                num_virtual,
                _new_tokens(base, kwargs),
            )
        self.base_model_prepare_inputs_for_generation = base.prepare_inputs_for_generation
        base.prepare_inputs_for_generation = self.prepare_inputs_for_generation
        self.__dict__["_mixed_batch"] = plan
        try:
            with self._generation_context(args, kwargs):
                return base.generate(*args, **kwargs)
        finally:
            del base.prepare_inputs_for_generation  # the class's method is visible again
            self.__dict__["_mixed_batch"] = None

    def _generation_context(self, args: tuple, kwargs: dict[str, Any]) -> contextlib.AbstractContextManager:
        """Hook: a context around the whole ``generate`` call; may change ``kwargs``."""
        return contextlib.nullcontext()

    def _generation_mask(self) -> str | None:
        """Hook: the mask that grows by ``num_virtual_tokens`` at every step (``None``: none)."""
        return "attention_mask"

    def _first_generation_step(self, inputs: dict[str, Any], cache: Any) -> None:
        """Hook: put the virtual tokens into the first step's ``inputs`` (``cache``: the empty cache or ``None``)."""
        raise NotImplementedError

    def prepare_inputs_for_generation(
        self, *args: Any, inputs_embeds: torch.Tensor | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """The base model's inputs for one generation step, with the virtual tokens added (``inputs_embeds``
        is named because transformers looks for it before it lets ``generate`` start from embeddings)."""
        plan = self.__dict__.get("_mixed_batch")
        num_virtual = self.active_peft_config.num_virtual_tokens if plan is None else plan.total
        caller_cache = kwargs.get(self._cache_kwarg)
        if kwargs.get("is_first_iteration") and kwargs.get("next_sequence_length") is not None:
            if caller_cache is not None and caller_cache.get_seq_length() > 0:
                # a caller's cache starts with the prefix, which is not in input_ids: transformers'
                # count of the tokens still to process is short by num_virtual_tokens
                kwargs["next_sequence_length"] += num_virtual
        inputs = self.base_model_prepare_inputs_for_generation(*args, inputs_embeds=inputs_embeds, **kwargs)
        cache = inputs.get(self._cache_kwarg)
        if cache is not None and not _is_dynamic(cache):
            raise ValueError(
                f"minipeft generates with a DynamicCache (an EncoderDecoderCache of DynamicCaches for an "
                f"encoder-decoder) only, got {type(cache).__name__}; remove cache_implementation from the "
                "generation config."
            )
        if inputs.get("use_cache") is False:
            # Without a cache every step re-reads the whole sequence. The model still appends to a
            # cache it is given and generate hands that back, so start from a fresh prefix each time.
            cache = None
        if plan is not None:
            generation_step(self, plan, inputs, cache, first=cache is None or cache.get_seq_length() == 0)
            return inputs
        positions = inputs.get(self._GENERATION_POSITIONS) if self._GENERATION_POSITIONS else None
        if positions is not None:
            inputs[self._GENERATION_POSITIONS] = positions + num_virtual
        if cache is None or cache.get_seq_length() == 0:
            self._first_generation_step(inputs, cache)
        key = self._generation_mask()
        mask = inputs.get(key) if key else None
        if mask is not None:
            if mask.dim() != 2:
                raise ValueError(f"minipeft generates with a 2-D {key} (batch, seq_len), got {mask.dim()}-D.")
            inputs[key] = extend_attention_mask(mask, num_virtual)  # (B, P + T)
        return inputs


def _new_tokens(base: Any, kwargs: dict[str, Any]) -> int:
    """How many tokens ``generate`` may add: ``max_new_tokens``, else ``max_length`` less the input."""
    config = kwargs.get("generation_config") or getattr(base, "generation_config", None)
    new = kwargs.get("max_new_tokens", getattr(config, "max_new_tokens", None))
    if new is not None:
        return int(new)
    mask = kwargs.get("attention_mask")
    length = kwargs.get("max_length", getattr(config, "max_length", None))
    return max(int(length) - (mask.shape[1] if mask is not None else 0), 0) if length is not None else 0


def _is_dynamic(cache: Any) -> bool:
    """A ``DynamicCache``, or an ``EncoderDecoderCache`` of two: the caches a prefix can be put into."""
    if isinstance(cache, EncoderDecoderCache):
        return isinstance(cache.self_attention_cache, DynamicCache) and isinstance(
            cache.cross_attention_cache, DynamicCache
        )
    return isinstance(cache, DynamicCache)
