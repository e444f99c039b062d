"""Gradient (activation) checkpointing with a prefix: the prefix as a read-only part of the keys and values.

Checkpointing keeps only each layer's input in the forward pass and runs the layer again in the
backward pass to get its activations back. A transformers attention layer *appends* its keys and
values to the cache it is given, so a layer run twice would append them twice; transformers
therefore takes the cache away from checkpointed layers (``GradientCheckpointingLayer`` sets
``past_key_values=None``), and with it the prefix. PEFT refuses a prefix when checkpointing is on
(peft issues #869, #2191: users met tensor-size errors before that).

minipeft makes the prefix's cache read-only while training with checkpointing: each layer's
``update`` returns ``[prefix; new]`` keys and values and stores nothing, so the second run of a layer
sees exactly what the first saw; and it lets the checkpointed layers keep that cache
(transformers' ``_can_checkpoint_with_cache``, meant for layers that only read their cache). The
gradients equal those without checkpointing (``tests/test_checkpointing.py``).

Explained in: book/appendix_accelerate.md
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from transformers.cache_utils import DynamicLayer, LinearAttentionCacheLayerMixin
from transformers.modeling_layers import GradientCheckpointingLayer

__all__ = ["checkpointed_layers", "prefix_under_checkpointing", "read_only_prefix_cache"]


def checkpointed_layers(model: nn.Module) -> list[nn.Module]:
    """The modules of ``model`` with gradient checkpointing turned on (empty when it is off).

    Raises:
        ValueError: checkpointing is on but no layer is a ``GradientCheckpointingLayer`` (a model that
            checkpoints in its own loop, where the prefix could not be kept).

    Explained in: book/appendix_accelerate.md
    """
    flagged = [m for m in model.modules() if getattr(m, "gradient_checkpointing", False) is True]
    layers = [m for m in flagged if isinstance(m, GradientCheckpointingLayer)]
    if flagged and not layers:
        raise ValueError(
            f"Prefix tuning cannot keep its prefix under gradient checkpointing in {type(flagged[0]).__name__}: the model "
            "checkpoints its layers itself and drops the cache. Turn checkpointing off: "
            "model.activation_checkpointing_disable() (gradient_checkpointing_disable() in older transformers)."
        )
    return layers


@functools.cache
def _read_only(layer_class: type) -> type:
    """``layer_class`` (a transformers cache layer) that never writes: ``update`` returns the prefix
    followed by the new keys and values; a linear-attention (or SSM, conv) state is handed back as
    computed and not kept, so every call starts from the zero state, as the first one did."""

    def update(self: Any, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        # (B, H, P, D) + (B, H, T, D) -> (B, H, P + T, D); the stored prefix stays (B, H, P, D)
        return torch.cat([self.keys, key_states], dim=-2), torch.cat([self.values, value_states], dim=-2)

    def update_state(self: Any, states: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return states  # the state this call computed, not stored: has_previous_state stays False

    methods: dict[str, Any] = {}
    if issubclass(layer_class, DynamicLayer):
        methods["update"] = update
    if issubclass(layer_class, LinearAttentionCacheLayerMixin):
        methods |= {"update_conv_state": update_state, "update_recurrent_state": update_state}
    return type(f"ReadOnly{layer_class.__name__}", (layer_class,), methods)


def read_only_prefix_cache(cache: Any) -> Any:
    """Make every layer of a prefix's ``DynamicCache`` read-only, in place: ``update`` returns the prefix
    followed by the new keys and values without storing them; ``get_seq_length()`` stays
    ``num_virtual_tokens``; a hybrid's linear-attention layers keep no state between calls. For a
    training forward pass only (generation needs a cache that grows).

    Returns:
        ``cache``.

    Explained in: book/appendix_accelerate.md
    """
    for layer in cache.layers:
        prefix = isinstance(getattr(layer, "keys", None), torch.Tensor)
        if prefix or isinstance(layer, LinearAttentionCacheLayerMixin):  # not a shared (DummyLayer) layer
            layer.__class__ = _read_only(type(layer))
    return cache


@contextlib.contextmanager
def prefix_under_checkpointing(model: nn.Module, cache: Any) -> Iterator[None]:
    """Within the block, ``model``'s checkpointed layers keep ``cache`` (made read-only) instead of
    dropping it; nothing changes when checkpointing is off or the model is not training.

    Raises:
        ValueError: see :func:`checkpointed_layers`.

    Explained in: book/appendix_accelerate.md
    """
    layers = checkpointed_layers(model) if model.training and cache is not None else []
    withholding = []  # a model-level flag (GPT-2's) that withholds the cache from its checkpointed layers
    if layers:
        read_only_prefix_cache(cache)
        withholding = [m for m in model.modules() if m.__dict__.get("gradient_checkpointing") is True]
        withholding = [m for m in withholding if not isinstance(m, GradientCheckpointingLayer)]
    for layer in layers:
        layer._can_checkpoint_with_cache = True  # an instance attribute over the class's False
    for module in withholding:
        module.gradient_checkpointing = False  # the layers still checkpoint: their own flag is on
    try:
        yield
    finally:
        for layer in layers:
            del layer._can_checkpoint_with_cache
        for module in withholding:
            module.gradient_checkpointing = True
