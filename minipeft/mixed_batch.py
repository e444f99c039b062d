"""One frozen model, many adapters: a batch whose rows use different prefixes (or soft prompts).

Li & Liang (2021, sections 1 and 7): the base model stays frozen and each task is a prefix, so requests
for different tasks can share one batch. Row ``b`` names its adapter in ``adapter_names[b]`` (PEFT's
argument for LoRA's mixed batches; ``"__base__"``: no adapter). With ``P_b`` the row's
``num_virtual_tokens`` (0 for ``"__base__"``) and ``P = max_b P_b``:

1. each adapter's table ``(P_a, width)`` is computed once, not once per row, and placed right-aligned
   in a ``(B, P, width)`` block: row ``b``'s first ``P - P_b`` slots are zeros;
2. the attention mask gets ``(B, P)`` columns in front: 0 on those slots, 1 on the adapter's;
3. each row's real tokens get the positions they would have with its own adapter alone,
   ``P_b + (position_ids or 0..T-1)``, not ``P + ...`` (learned and rotary positions; ALiBi reads the
   mask and needs nothing).

A prefix block becomes the cache: ``num_layers`` pairs ``(B, num_key_value_heads, P, head_dim)``. A soft
prompt's block goes before the input embeddings: ``(B, P + T, hidden_size)``, logits ``(B, P + T, vocab)``.
Masked slots get attention weight exactly 0, so every row gives what it gives alone with its adapter,
up to the order of float sums.

What is refused (``ValueError``): a task other than ``CAUSAL_LM``; an unknown adapter name (PEFT's message);
``len(adapter_names)`` other than the batch size (PEFT's message); an adapter with ``modules_to_save``
(its trained copy of a base-model module cannot differ from row to row); ``adapter_names`` inside
``disable_adapter()`` (use ``"__base__"`` rows). A prefix and a soft prompt never meet in one batch:
a model holds adapters of one ``peft_type`` only (PEFT's rule).

Explained in: book/11_one_model_many_tasks.ipynb
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import DynamicCache

from .config import PeftType
from .injection import build_prefix_cache, prefix_to_past_key_values

__all__ = ["BASE_ADAPTER", "MixedBatch", "PrefixMemory", "plan_mixed_batch", "prefix_memory"]

#: The adapter name of a row that runs the base model alone (PEFT's spelling for LoRA's mixed batches).
BASE_ADAPTER = "__base__"


@dataclass(frozen=True)
class MixedBatch:
    """Which adapter each row of a batch uses, and how many virtual slots it fills.

    Attributes:
        names: ``adapter_names``, one per row (``"__base__"``: none).
        lengths: ``(batch,)`` long tensor, each row's ``num_virtual_tokens`` (0 for ``"__base__"``).

    Explained in: book/11_one_model_many_tasks.ipynb
    """

    names: tuple[str, ...]
    lengths: torch.Tensor

    @property
    def total(self) -> int:
        """``P``, the longest adapter's ``num_virtual_tokens``: the slots every row gets."""
        return int(self.lengths.max()) if len(self.names) else 0

    def slot_mask(self, device: torch.device | str | None = None) -> torch.Tensor:
        """``(batch, P)`` long: 1 on each row's own (right-aligned) slots, 0 on the padding slots."""
        lengths = self.lengths.to(device)
        slots = torch.arange(self.total, device=lengths.device)  # (P,)
        return (slots >= self.total - lengths[:, None]).long()  # (B, P)

    def repeat(self, batch_size: int) -> MixedBatch:
        """The plan for ``generate``'s expanded batch (each row repeated ``num_beams`` or
        ``num_return_sequences`` times, consecutively, as transformers expands its inputs)."""
        if batch_size == len(self.names):
            return self
        times = batch_size // len(self.names)
        names = tuple(name for name in self.names for _ in range(times))
        return MixedBatch(names, self.lengths.repeat_interleave(times))


def plan_mixed_batch(model: Any, adapter_names: Any, batch_size: int | None) -> MixedBatch:
    """Check ``adapter_names`` against ``model`` (a :class:`~minipeft.PeftModel`) and the batch; the plan.

    Raises:
        TypeError: ``adapter_names`` is not a list (or tuple) of str.
        ValueError: see the module's docstring.

    Explained in: book/11_one_model_many_tasks.ipynb
    """
    if not model._MIXED_BATCHES:
        raise ValueError(
            f"adapter_names (one adapter per row) is supported for CAUSAL_LM models only (PeftModelForCausalLM), "
            f"not {type(model).__name__}; run one batch per adapter (set_adapter) instead."
        )
    if isinstance(adapter_names, str) or not isinstance(adapter_names, Sequence):
        raise TypeError(f"Got adapter names of type {type(adapter_names)}, expected a list of str.")
    names = tuple(adapter_names)
    if not all(isinstance(name, str) for name in names):
        raise TypeError(f"Got adapter names {list(names)!r}, expected a list of str.")
    if model._adapters_disabled:
        raise ValueError(
            "adapter_names inside disable_adapter(): every row runs the base model; pass no adapter_names."
        )
    unknown = sorted({name for name in names if name != BASE_ADAPTER} - set(model.peft_config))
    if unknown:
        raise ValueError(f"Trying to infer with non-existing adapter(s): {', '.join(unknown)}")
    if batch_size is not None and len(names) != batch_size:
        raise ValueError(
            "Length of `adapter_names` should be the same as the number of inputs, but got "
            f"{len(names)} and {batch_size} respectively."
        )
    for name in dict.fromkeys(names):
        if name != BASE_ADAPTER and model.peft_config[name].modules_to_save:
            raise ValueError(
                f"Adapter {name!r} trains base-model modules ({model.peft_config[name].modules_to_save}), which all "
                "rows of a batch share; a mixed batch takes adapters without modules_to_save only."
            )
    lengths = [0 if name == BASE_ADAPTER else model.peft_config[name].num_virtual_tokens for name in names]
    return MixedBatch(names, torch.tensor(lengths, dtype=torch.long))


def mixed_table(model: Any, plan: MixedBatch) -> torch.Tensor:
    """The per-row virtual tokens, ``(batch, P, width)``: each adapter's table (built once, by
    :meth:`~minipeft.PeftModel.prompt_table`) right-aligned, zeros in front and for ``"__base__"`` rows.
    Gradients reach each adapter from its own rows only."""
    used = [name for name in dict.fromkeys(plan.names) if name != BASE_ADAPTER]
    tables = [model.prompt_table(name)[0] for name in used]  # A x (P_a, width), one per adapter
    total = plan.total
    padded = [torch.nn.functional.pad(table, (0, 0, total - table.shape[0], 0)) for table in tables]  # A x (P, W)
    reference = tables[0]
    padded.append(reference.new_zeros(total, reference.shape[-1]))  # the "__base__" rows' block
    stacked = torch.stack(padded)  # (A + 1, P, width)
    index = [used.index(name) if name != BASE_ADAPTER else len(used) for name in plan.names]
    return stacked[torch.tensor(index, device=stacked.device)]  # (B, P, width)


def mixed_prefix_cache(model: Any, plan: MixedBatch, cache: DynamicCache | None = None) -> DynamicCache:
    """The per-row prefixes as a cache: ``num_layers`` pairs ``(batch, num_key_value_heads, P, head_dim)``."""
    name = next(name for name in plan.names if name != BASE_ADAPTER)
    config = copy.copy(model.peft_config[name])  # every adapter of the model has the same layer shapes
    config.num_virtual_tokens = plan.total
    past_key_values = prefix_to_past_key_values(mixed_table(model, plan), config)
    layout = model.__dict__.get("_cache_layout")
    return build_prefix_cache(past_key_values, model.base_model.config, cache=cache, layout=layout)


def _takes_position_ids(model: Any) -> bool:
    return "position_ids" in inspect.signature(model.base_model.forward).parameters


def inject_mixed(
    model: Any,
    plan: MixedBatch,
    input_ids: torch.Tensor | None,
    inputs_embeds: torch.Tensor | None,
    attention_mask: torch.Tensor | None,
    position_ids: torch.Tensor | None,
    labels: torch.Tensor | None,
    caller_cache: Any,
    **kwargs: Any,
) -> dict[str, Any]:
    """The base model's keyword arguments for a mixed batch (the mixed counterpart of ``PeftModel._inject``).

    ``attention_mask`` ``(B, T)`` (ones when ``None``) -> ``(B, P + T)``; positions ``P_b + ...`` per row.
    With a caller's cache (from an earlier call with the same ``adapter_names``), the prefix is already in
    it and ``attention_mask`` covers the earlier real tokens and the new ones.
    """
    source = input_ids if input_ids is not None else inputs_embeds
    batch_size, seq_len = source.shape[:2]
    device = source.device
    total, lengths = plan.total, plan.lengths.to(device)
    past = caller_cache.get_seq_length() if caller_cache is not None else 0
    continuing = past > 0
    if attention_mask is None:
        earlier = past - total if continuing else 0
        attention_mask = torch.ones(batch_size, earlier + seq_len, dtype=torch.long, device=device)
    attention_mask = torch.cat([plan.slot_mask(device).to(attention_mask.dtype), attention_mask], dim=1)  # (B, P+T)
    takes_positions = _takes_position_ids(model)
    if takes_positions and position_ids is None:  # what the model counts for the row alone, less its P_b
        earlier = past - total if continuing else 0
        position_ids = torch.arange(seq_len, device=device).expand(batch_size, -1) + earlier  # (B, T)
    if takes_positions:
        position_ids = position_ids + lengths[:, None]  # (B, T): after the row's own P_b virtual tokens
    cache = caller_cache
    if model.peft_type is PeftType.PREFIX_TUNING and not continuing:
        cache = mixed_prefix_cache(model, plan)
    elif not continuing:  # a soft prompt: the virtual tokens are the first inputs
        if inputs_embeds is None:
            inputs_embeds = model.base_model.get_input_embeddings()(input_ids)  # (B, T, hidden)
        prompt = mixed_table(model, plan).to(inputs_embeds.dtype)  # (B, P, hidden)
        inputs_embeds, input_ids = torch.cat([prompt, inputs_embeds], dim=1), None  # (B, P + T, hidden)
        if takes_positions:
            position_ids = torch.cat([soft_prompt_positions(plan, device), position_ids], dim=1)  # (B, P + T)
        if kwargs.get("token_type_ids") is not None:  # the prompt is segment 0
            segment = kwargs["token_type_ids"].new_zeros(batch_size, total)
            kwargs["token_type_ids"] = torch.cat([segment, kwargs["token_type_ids"]], dim=1)  # (B, P + T)
        if labels is not None:
            labels = torch.cat([labels.new_full((batch_size, total), -100), labels], dim=1)  # (B, P + T)
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "inputs_embeds": inputs_embeds, **kwargs}
    extra = {"labels": labels, "position_ids": position_ids, model._cache_kwarg: cache}
    inputs.update({k: v for k, v in extra.items() if v is not None})
    return inputs


def soft_prompt_positions(plan: MixedBatch, device: torch.device | str | None = None) -> torch.Tensor:
    """``(batch, P)``: a soft prompt's slots take ``0..P_b-1`` on the right, the padding slots 0."""
    lengths = plan.lengths.to(device)
    slots = torch.arange(plan.total, device=lengths.device)  # (P,)
    return (slots - (plan.total - lengths[:, None])).clamp(min=0)  # (B, P)


def generation_step(model: Any, plan: MixedBatch, inputs: dict[str, Any], cache: Any, first: bool) -> None:
    """One ``generate`` step's inputs for a mixed batch (the mixed counterpart of the hooks in
    :mod:`minipeft.generation`): positions ``+ P_b``, the per-row block at the first step, the mask's
    ``(B, P)`` slot columns in front."""
    tokens = inputs.get("input_ids")
    source = tokens if tokens is not None else inputs["inputs_embeds"]
    plan = plan.repeat(source.shape[0])
    device = source.device
    positions = inputs.get("position_ids")
    if positions is not None:
        inputs["position_ids"] = positions + plan.lengths.to(device)[:, None]  # (B, T)
    if first and model.peft_type is PeftType.PREFIX_TUNING:
        inputs[model._cache_kwarg] = mixed_prefix_cache(model, plan, cache=cache)
    elif first:
        embeds = inputs.pop("inputs_embeds", None)
        if embeds is None:
            embeds = model.base_model.get_input_embeddings()(inputs["input_ids"])  # (B, T, hidden)
        prompt = mixed_table(model, plan).to(embeds.dtype)  # (B, P, hidden)
        inputs["inputs_embeds"], inputs["input_ids"] = torch.cat([prompt, embeds], dim=1), None  # (B, P + T, hidden)
        if inputs.get("position_ids") is not None:
            virtual = soft_prompt_positions(plan, device)  # (B, P)
            inputs["position_ids"] = torch.cat([virtual, inputs["position_ids"]], dim=1)  # (B, P + T)
    mask = inputs.get("attention_mask")
    if mask is not None:
        if mask.dim() != 2:
            raise ValueError(f"minipeft generates with a 2-D attention_mask (batch, seq_len), got {mask.dim()}-D.")
        inputs["attention_mask"] = torch.cat([plan.slot_mask(device).to(mask.dtype), mask], dim=1)  # (B, P + T)


@dataclass(frozen=True)
class PrefixMemory:
    """What the virtual tokens cost in memory, in bytes (the base model's dtype).

    Attributes:
        slot_bytes: One virtual token at every layer: ``num_layers x 2 x num_key_value_heads x head_dim x
            dtype size`` (keys and values in the cache).
        adapters: ``{name: (num_virtual_tokens, bytes)}``: each adapter's keys and values (a prefix's
            table, built once per adapter; a soft prompt's become keys and values in the cache).
        per_row: What one row of a mixed batch of these adapters holds in the cache: ``P`` (the
            longest) slots.
        table_bytes: ``{name: bytes}`` of the table each adapter stores (a soft prompt's is
            ``num_virtual_tokens x hidden_size``).

    Explained in: book/11_one_model_many_tasks.ipynb
    """

    slot_bytes: int
    adapters: dict[str, tuple[int, int]]
    per_row: int
    table_bytes: dict[str, int]

    def __str__(self) -> str:
        parts = ", ".join(f"{name} {slots} x {self.slot_bytes:,d}" for name, (slots, _) in self.adapters.items())
        total = sum(size for _, size in self.adapters.values())
        return (
            f"prefix bytes per adapter: {total:,d} in all ({parts}) || per row of a mixed batch: {self.per_row:,d} "
            f"|| per virtual token: {self.slot_bytes:,d}"
        )


def prefix_memory(model: Any, adapter_names: Sequence[str] | None = None) -> PrefixMemory:
    """:class:`PrefixMemory` of ``model``'s adapters (all, or ``adapter_names``), from the base model's shapes.

    Raises:
        ValueError: an unknown adapter name.

    Explained in: book/11_one_model_many_tasks.ipynb
    """
    names = list(model.peft_config) if adapter_names is None else list(adapter_names)
    unknown = [name for name in names if name not in model.peft_config]
    if unknown:
        raise ValueError(f"No adapter named {', '.join(unknown)}; the model's adapters: {list(model.peft_config)}.")
    base = model.base_model
    config = base.config
    layers = config.num_hidden_layers
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    dtype_size = next(base.parameters()).element_size()
    slot_bytes = layers * 2 * heads * head_dim * dtype_size
    adapters, table_bytes = {}, {}
    for name in names:
        cfg = model.peft_config[name]
        slots = cfg.num_virtual_tokens
        adapters[name] = (slots, slots * slot_bytes)
        table_bytes[name] = model.prompt_table(name).detach()[0].numel() * dtype_size
    per_row = max((slots for slots, _ in adapters.values()), default=0) * slot_bytes
    return PrefixMemory(slot_bytes, adapters, per_row, table_bytes)
