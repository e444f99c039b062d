"""The key/value shapes a model's cache holds, layer by layer, read from the model itself.

A config's fields (``num_key_value_heads``, ``head_dim``) describe one attention shape for every
layer; modern models break that: Gemma 4's full-attention layers have wider heads than its
sliding ones, multi-head latent attention (DeepSeek-V3) caches keys and values of different widths,
old Falcon's ``multi_query`` keeps one key/value head whatever the config's head count says,
hybrids (Qwen3.5, Jamba, LFM2 ...) keep a recurrent state instead of keys and values in most
layers, and Gemma 3n's last layers reuse an earlier layer's cache. So minipeft asks the model: one
token through the base model into a fresh ``DynamicCache(config=model.config)``, then each cache
layer's ``keys`` and ``values`` give that layer's shape, and a layer without them (linear
attention, SSM, convolution, a layer that reads another layer's cache) gets no prefix.

The prefix table keeps PEFT's layout ``(num_virtual_tokens, 2*num_layers*token_dim)``, one block
per decoder layer, with ``token_dim = max heads * max head width`` over the layers (PEFT's own
provisioning for Gemma 4, ``src/peft/utils/other.py``); each layer reads the first ``heads`` heads
and the first ``head_dim`` entries of its block (:func:`fit_to_layer`). On a uniform model this is
exactly PEFT's layout; the blocks of layers without a key/value cache are never read.

Explained in: book/which_models.md
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from transformers import DynamicCache
from transformers.cache_utils import LinearAttentionCacheLayerMixin

__all__ = ["CacheLayout", "KeyValueShape", "cache_layout", "fit_to_layer", "new_cache", "table_shape"]


class KeyValueShape(NamedTuple):
    """One attention layer's cache: keys ``(batch, num_key_value_heads, seq_len, key_head_dim)``,
    values ``(batch, num_key_value_heads, seq_len, value_head_dim)``.

    Explained in: book/which_models.md
    """

    num_key_value_heads: int
    key_head_dim: int
    value_head_dim: int


LayerShapes = list[KeyValueShape | None]


class CacheLayout(NamedTuple):
    """What a model's cache holds: ``layers``, one :class:`KeyValueShape` per decoder layer (``None``
    for a layer without keys and values), and ``cache_class``, the cache the model builds for itself
    (``DynamicCache``; MiniMax has its own); ``sliding_window``, the shortest window any layer
    keeps (``None``: no sliding-window layer).

    Explained in: book/which_models.md
    """

    layers: LayerShapes
    cache_class: type
    sliding_window: int | None = None  # the shortest window of a sliding-window layer, if any


def new_cache(layout: CacheLayout | None, model_config: Any) -> Any:
    """An empty cache of the model's own class, told each layer's kind by ``model_config``.

    Explained in: book/which_models.md
    """
    cls = DynamicCache if layout is None else layout.cache_class
    if model_config is None:
        return cls()
    try:
        return cls(config=model_config)
    except TypeError:  # a model's own cache class that takes no config (MiniMax's)
        return cls()


@torch.no_grad()
def cache_layout(model: Any) -> CacheLayout | None:
    """The model's :class:`CacheLayout`, read from the cache it fills for one token (on the meta
    device too: shapes without numbers, so real architectures can be measured offline); ``None``
    (use the config's fields, as PEFT) when the model cannot be probed: an encoder-decoder, or one
    whose forward makes no cache or fails on one token while its config describes no recurrent layers.

    Raises:
        ValueError: the model's cache has layers but none holds keys and values (a pure SSM or
            recurrent model such as Mamba): a key/value prefix has nowhere to go; the model returns no
            cache, or fails on one token, and its config describes recurrent layers (RecurrentGemma;
            Bamba and Zamba2 in transformers 5.23): where a prefix would go cannot be read; or its
            layers select keys by an indexer of their own (DeepSeek-V3.2's sparse attention).

    Explained in: book/which_models.md
    """
    config = getattr(model, "config", None)
    if config is None or getattr(config, "is_encoder_decoder", False):
        return None
    try:
        parameter = next(model.parameters())
    except StopIteration:
        return None
    modes = {module: module.training for module in model.modules()}
    model.eval()  # checkpointing layers drop the cache while training
    out, failure = None, None
    try:
        input_ids = torch.zeros(1, 1, dtype=torch.long, device=parameter.device)
        out = model(input_ids=input_ids, use_cache=True)  # the model makes the cache it uses
    except Exception as error:  # noqa: BLE001 (a model we cannot probe keeps PEFT's config-based shapes)
        failure = error
    finally:
        for module, training in modes.items():
            module.training = training
    if failure is not None:
        first_line = (str(failure).splitlines() or [""])[0][:160]
        refusal = _recurrent_layers_described(
            model,
            f"fails a forward pass on one token, without any prefix ({type(failure).__name__}: {first_line})",
            "The base model itself fails with its own cache here; that needs a fix in transformers first.",
        )
        if refusal:
            raise ValueError(refusal) from failure
        return None
    cache = getattr(out, "past_key_values", None) or getattr(out, "cache", None)
    recurrent = next(
        (getattr(out, name) for name in ("cache_params", "state") if getattr(out, name, None) is not None), None
    )
    if cache is None and recurrent is not None:  # Mamba's cache_params, RWKV's state: a recurrent state only
        raise ValueError(_no_keys_and_values(model, type(recurrent).__name__))
    if cache is None:
        refusal = _recurrent_layers_described(
            model,
            "returns no cache from a forward pass with use_cache=True (it keeps its state in its own modules)",
            "Use prompt tuning (PromptTuningConfig), which prepends embeddings instead.",
        )
        if refusal:
            raise ValueError(refusal)
    cache = getattr(cache, "self_attention_cache", cache)  # a BERT-like decoder's EncoderDecoderCache
    layers = getattr(cache, "layers", None)
    if not layers:
        return None
    indexed = [type(layer).__name__ for layer in layers if hasattr(layer, "indexer_keys")]
    if indexed:
        raise ValueError(
            f"{type(model).__name__} ({getattr(config, 'model_type', '?')}) uses sparse attention whose layers "
            f"({indexed[0]}) choose the keys to attend to by an indexer with keys of its own, computed from "
            "each token's hidden state; a prefix has keys and values but no hidden state, so there is no "
            "indexer key to give it. Prefix tuning does not support this model; prompt tuning "
            "(PromptTuningConfig) does."
        )
    shapes: LayerShapes = []
    for layer in layers:
        keys, values = getattr(layer, "keys", None), getattr(layer, "values", None)
        if isinstance(keys, torch.Tensor) and isinstance(values, torch.Tensor) and keys.dim() == 4 and keys.numel():
            shapes.append(KeyValueShape(keys.shape[1], keys.shape[-1], values.shape[-1]))  # keys: (1, H, 1, D_k)
        else:
            shapes.append(None)
    if all(shape is None for shape in shapes):
        if not any(isinstance(layer, LinearAttentionCacheLayerMixin) for layer in layers):
            return None  # the model did not use the cache (an encoder such as BERT): the config decides
        kinds = sorted({type(layer).__name__ for layer in layers})
        raise ValueError(_no_keys_and_values(model, ", ".join(kinds)))
    windows = [layer.sliding_window for layer in layers if isinstance(getattr(layer, "sliding_window", None), int)]
    return CacheLayout(shapes, type(cache), min(windows) if windows else None)


def _recurrent_layers_described(model: Any, why: str, advice: str) -> str | None:
    """The refusal for a model whose cache cannot be probed (it returns none, as RecurrentGemma, which
    keeps its recurrent state in its own modules; or its forward fails) and whose config describes a
    cache with recurrent layers: which layers take keys and values cannot be read, and a
    config-shaped prefix would be handed to layers that hold none. ``None`` where the config
    describes no recurrent layer. ``why``: what the probe found; ``advice``: what to do instead."""
    try:
        layers = getattr(new_cache(None, model.config), "layers", None) or []
    except Exception:  # noqa: BLE001 (a config DynamicCache cannot read: the config decides, as before)
        return None
    kinds = sorted({type(layer).__name__ for layer in layers if isinstance(layer, LinearAttentionCacheLayerMixin)})
    if not kinds:
        return None
    return (
        f"{type(model).__name__} ({getattr(model.config, 'model_type', '?')}) {why}, and the cache its config "
        f"describes has recurrent layers ({', '.join(kinds)}) that hold no keys and values, so minipeft cannot "
        f"tell where a prefix would go. {advice}"
    )


def _no_keys_and_values(model: Any, kinds: str) -> str:
    return (
        f"{type(model).__name__} ({getattr(model.config, 'model_type', '?')}) keeps no keys and values, only a "
        f"recurrent state ({kinds}): prefix tuning has no attention layer to put a prefix in. Use prompt "
        "tuning (PromptTuningConfig), which prepends embeddings instead."
    )


def table_shape(shapes: LayerShapes) -> tuple[int, int]:
    """``(num_attention_heads, head_dim)`` of the table's per-layer blocks: the most heads and the
    widest keys or values any layer has. Explained in: book/which_models.md"""
    present = [shape for shape in shapes if shape is not None]
    heads = max(shape.num_key_value_heads for shape in present)
    head_dim = max(max(shape.key_head_dim, shape.value_head_dim) for shape in present)
    return heads, head_dim


def fit_to_layer(keys: torch.Tensor, values: torch.Tensor, shape: KeyValueShape) -> tuple[torch.Tensor, torch.Tensor]:
    """A table block's ``(batch, heads, P, head_dim)`` keys and values cut to what one layer stores:
    ``(batch, num_key_value_heads, P, key_head_dim)`` and ``(..., value_head_dim)``.

    Explained in: book/which_models.md
    """
    heads = shape.num_key_value_heads
    return keys[:, :heads, :, : shape.key_head_dim], values[:, :heads, :, : shape.value_head_dim]
