"""From the prefix encoder's output to the key/value cache that a transformers model attends to.

A prefix is, at every attention layer, ``num_virtual_tokens`` keys and values that the real tokens
attend to as if they came earlier (Li & Liang 2021, section 4.2). transformers' place for "keys
and values that came earlier" is the cache, so injecting a prefix is:

1. reshape the table ``(batch, num_virtual_tokens, 2*num_layers*token_dim)`` into per-layer keys
   and values ``(batch, num_key_value_heads, num_virtual_tokens, head_dim)``;
2. put them into a ``transformers.DynamicCache`` and pass it under the model's cache keyword;
3. grow the attention mask by ``num_virtual_tokens`` ones on the left;
4. start the real tokens' positions after the prefix.

The table's last axis is laid out as PEFT's ``get_prompt`` (``src/peft/peft_model.py``) reads it:
``[layer0 keys, layer0 values, layer1 keys, ...]``, each ``token_dim`` wide.

Explained in: book/04_past_key_values.ipynb
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from transformers import DynamicCache

from .cache_shapes import CacheLayout, fit_to_layer, new_cache
from .config import PrefixTuningConfig

__all__ = ["build_prefix_cache", "extend_attention_mask", "past_key_values_to_prefix", "prefix_from_text"]
__all__ += ["position_ids_from_attention_mask", "position_ids_kwargs", "prefix_to_past_key_values"]
__all__ += ["check_left_padding"]

# Models that take no position_ids but place tokens by the attention mask (ALiBi from the mask's running count):
# a left-padded row keeps its distances to the prefix
POSITIONS_FROM_MASK = {"bloom"}

KeyValues = tuple[tuple[torch.Tensor, torch.Tensor], ...]


def prefix_to_past_key_values(prefix: torch.Tensor, config: PrefixTuningConfig) -> KeyValues:
    """Split the encoder's output ``(batch, num_virtual_tokens, 2*num_layers*token_dim)`` into every
    layer's keys and values: ``num_layers`` pairs of ``(batch, num_key_value_heads, num_virtual_tokens,
    head_dim)``, the layout of a transformers cache layer.

    Raises:
        ValueError: ``prefix`` does not have the shape the (filled) config describes.

    Explained in: book/04_past_key_values.ipynb
    """
    batch, num_virtual_tokens, width = prefix.shape
    num_layers = config.num_prefix_layers  # num_layers, or more for an encoder-decoder prefixed everywhere
    expected = 2 * num_layers * config.token_dim
    if num_virtual_tokens != config.num_virtual_tokens or width != expected:
        raise ValueError(
            f"prefix has shape {tuple(prefix.shape)}, expected (batch, {config.num_virtual_tokens}, {expected}) "
            f"= (batch, num_virtual_tokens, 2*num_layers*token_dim) with num_layers={num_layers}, "
            f"token_dim={config.token_dim}."
        )
    kv = prefix.view(batch, num_virtual_tokens, 2 * num_layers, config.num_attention_heads, config.head_dim)
    # (B, P, 2L, H_kv, D): axis 2 runs over [k0, v0, k1, v1, ...]
    kv = kv.permute(2, 0, 3, 1, 4)  # (2L, B, H_kv, P, D): one attention layer's keys or values per entry
    # unbind, not indexing: its backward stacks the 2L gradients once, where 2L separate index
    # operations would each allocate a zero tensor of the full size (measured 4x slower, benchmarks/)
    tensors = kv.unbind(0)  # 2L x (B, H_kv, P, D)
    return tuple((tensors[2 * layer], tensors[2 * layer + 1]) for layer in range(num_layers))


def build_prefix_cache(
    past_key_values: KeyValues,
    model_config: Any = None,
    cache: DynamicCache | None = None,
    layout: CacheLayout | None = None,
) -> DynamicCache:
    """Put per-layer prefix keys and values (:func:`prefix_to_past_key_values`) into a ``DynamicCache``.

    ``model_config`` tells a new cache each layer's kind (full or sliding-window attention, linear
    attention, shared); ``cache``: an empty cache to fill (the one ``generate`` created);
    ``layout`` (:func:`minipeft.cache_layout`): the model's cache class and what each layer
    stores, so that a layer takes the heads and widths it has (:func:`minipeft.fit_to_layer`) and
    a layer without keys and values is left alone. The result's ``get_seq_length()`` is
    ``num_virtual_tokens``; the model appends the real tokens after it; gradients reach the prefix.

    Explained in: book/04_past_key_values.ipynb
    """
    if cache is None:
        cache = new_cache(layout, model_config)
    for layer_idx, (keys, values) in enumerate(past_key_values):
        if layout is not None:
            shape = layout.layers[layer_idx]
            if shape is None:  # linear attention, SSM, or another layer's cache: no prefix
                continue
            keys, values = fit_to_layer(keys, values, shape)
        cache.update(keys, values, layer_idx)
    return cache


def extend_attention_mask(attention_mask: torch.Tensor, num_virtual_tokens: int) -> torch.Tensor:
    """``(batch, seq_len)`` -> ``(batch, num_virtual_tokens + seq_len)``: ones in front, so every real
    token may attend to the whole prefix. Explained in: book/04_past_key_values.ipynb"""
    ones = attention_mask.new_ones(attention_mask.shape[0], num_virtual_tokens)
    return torch.cat([ones, attention_mask], dim=1)


def position_ids_kwargs(model: Any, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """``{"position_ids": ...}`` counted over real tokens, or ``{}`` for a model that takes none.

    For calling ``model`` (transformers or minipeft, possibly inside ``DistributedDataParallel``) on
    a left-padded batch; Bloom (ALiBi) takes no ``position_ids``: its biases follow the mask.

    Explained in: book/04_past_key_values.ipynb
    """
    while isinstance(getattr(model, "module", None), torch.nn.Module):  # DistributedDataParallel and the like
        model = model.module
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if "position_ids" in inspect.signature(base.forward).parameters:
        return {"position_ids": position_ids_from_attention_mask(attention_mask)}
    return {}


def check_left_padding(
    model: Any,
    layout: CacheLayout | None,
    attention_mask: torch.Tensor | None,
    num_virtual_tokens: int,
    new_tokens: int = 0,
) -> None:
    """Refuse a left-padded batch that the model cannot keep equal to its rows alone with a prefix.

    A prefix sits in the cache before the input, so the padding of a left-padded row lies between
    the prefix and the row's text. Positions passed as ``position_ids`` skip it; two kinds of model
    count it anyway: one whose ``forward`` takes no ``position_ids`` (RoFormer, MPT: each token is
    placed by its cache slot) and one with sliding-window layers (Mistral, Gemma 2/3: the window is
    counted in cache slots) once ``num_virtual_tokens`` + the input + ``new_tokens`` outgrow it.
    ``model``: the base model; ``layout``: its :func:`minipeft.cache_layout` (``None``, an encoder or
    encoder-decoder: not checked); ``attention_mask`` ``(batch, seq_len)`` over the real tokens.

    Raises:
        ValueError: such a model and an ``attention_mask`` with padding before some row's text.

    Explained in: book/which_models.md
    """
    if layout is None or attention_mask is None or num_virtual_tokens == 0 or attention_mask.dim() != 2:
        return  # no layout: an encoder or encoder-decoder, whose prefix is not in a decoder's cache slots
    mask = attention_mask.long()
    text_after = mask.flip(-1).cummax(-1).values.flip(-1)  # 1 wherever a real token comes at or after
    if not bool(((mask == 0) & (text_after == 1)).any()):  # no padding before text: nothing moves
        return
    model_type = getattr(getattr(model, "config", None), "model_type", type(model).__name__)
    takes_positions = "position_ids" in inspect.signature(model.forward).parameters
    fix = (
        "Pad on the right to train or score (tokenizer.padding_side = 'right'); generate from unpadded rows "
        "(one at a time, or rows of one length)."
    )
    if not takes_positions and model_type not in POSITIONS_FROM_MASK:
        raise ValueError(
            f"{type(model).__name__} ({model_type}) takes no position_ids: it places each token by its cache "
            "slot, so the padding between the prefix and a left-padded row's text moves that text away from the "
            f"prefix, and the row would not give what it gives alone. {fix}"
        )
    window = None if layout is None else layout.sliding_window
    length = num_virtual_tokens + mask.shape[1] + new_tokens
    if window is not None and length > window:
        raise ValueError(
            f"{type(model).__name__} ({model_type}) has sliding-window layers of {window} tokens, counted in cache "
            f"slots: with {num_virtual_tokens} virtual tokens, {mask.shape[1]} input and {new_tokens} new tokens "
            f"({length} > {window}), the padding of a left-padded row pushes the prefix out of the window sooner "
            f"than for the row alone. {fix}"
        )


def position_ids_from_attention_mask(attention_mask: torch.Tensor, past_length: int = 0) -> torch.Tensor:
    """Positions that skip padding, ``(batch, seq_len)``: each row's first real token gets ``past_length``.

    Left-padded ``[pad, pad, a, b]`` gives ``a`` and ``b`` the positions of the unpadded ``[a, b]``
    (as transformers' ``_prepare_position_ids_for_generation``); padding gets ``past_length``.
    ``attention_mask`` covers the real tokens only (no prefix columns).

    Explained in: book/04_past_key_values.ipynb
    """
    mask = attention_mask.long()
    positions = mask.cumsum(-1) - 1  # 0, 1, 2, ... over real tokens; -1 before the first
    return positions.clamp(min=0) + past_length


def past_key_values_to_prefix(past_key_values: Any) -> torch.Tensor:
    """The inverse of :func:`prefix_to_past_key_values`: a ``Cache`` (or ``(keys, values)`` pairs of
    ``(batch, num_key_value_heads, seq_len, head_dim)``) -> ``(batch, seq_len, 2*num_layers*token_dim)``,
    PEFT's ``prompt_embeddings`` layout. Layers of different shapes are zero-padded to the most heads
    and the widest head (the layout of :func:`minipeft.cache_layout`); a layer without keys and
    values (linear attention, a shared layer) gets a zero block. Explained in: book/04_past_key_values.ipynb"""
    past_key_values = getattr(past_key_values, "self_attention_cache", past_key_values)  # a BERT-like decoder's
    layers = getattr(past_key_values, "layers", None)
    if layers is not None:
        pairs = [(getattr(layer, "keys", None), getattr(layer, "values", None)) for layer in layers]
    else:
        pairs = list(past_key_values)
    present = [pair for pair in pairs if isinstance(pair[0], torch.Tensor) and pair[0].numel()]
    if not present:
        raise ValueError("past_key_values_to_prefix: the cache holds no keys and values.")
    batch, _, seq_len, _ = present[0][0].shape
    heads = max(keys.shape[1] for keys, _ in present)
    head_dim = max(max(keys.shape[-1], values.shape[-1]) for keys, values in present)
    reference = present[0][0]
    blocks = []
    for keys, values in pairs:
        for tensor in (keys, values):
            block = reference.new_zeros(batch, heads, seq_len, head_dim)  # (B, H_max, T, D_max)
            if isinstance(tensor, torch.Tensor) and tensor.numel():
                block[:, : tensor.shape[1], :, : tensor.shape[-1]] = tensor
            blocks.append(block)
    kv = torch.stack(blocks)  # (2L, B, H, T, D)
    two_layers = kv.shape[0]
    kv = kv.permute(1, 3, 0, 2, 4)  # (B, T, 2L, H, D)
    return kv.reshape(batch, seq_len, two_layers * heads * head_dim)  # (B, T, 2*L*token_dim)


@torch.no_grad()
def prefix_from_text(model: Any, tokenizer: Any, text: str) -> torch.Tensor:
    """The keys and values ``model`` computes for ``text`` (no special tokens), as a prefix table
    ``(num_tokens, 2*num_layers*token_dim)`` for :meth:`PrefixEncoder.load_prompt_embeddings`.

    Injected, they make the model behave as if the text were prepended to its input; Li & Liang's
    initialisation "with activations of real words" (2021, section 7.4). ``model``: a causal LM or a
    minipeft ``PeftModel`` (its base model is used).

    Raises:
        ValueError: ``text`` has no tokens.

    Explained in: book/04_past_key_values.ipynb
    """
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    input_ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    if input_ids.shape[1] == 0:
        raise ValueError("prefix_from_text needs a text with at least one token.")
    device = next(model.parameters()).device
    out = model(input_ids=input_ids.to(device), use_cache=True)
    cache = out.past_key_values if hasattr(out, "past_key_values") else out.cache
    return past_key_values_to_prefix(cache)[0].float()  # (P, 2*L*token_dim)


def cache_kwarg(model: Any) -> str | None:
    """The keyword under which ``model`` takes a key/value cache, or ``None`` if it takes none.

    ``past_key_values`` (``cache`` from transformers 5.24). A model whose ``forward`` only passes
    ``**kwargs`` on to its backbone (``BertForSequenceClassification``) is read through the backbone
    (``model.base_model``).
    """
    outer = inspect.signature(model.forward).parameters
    forwards_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in outer.values())
    backbone = getattr(model, "base_model", model)
    inner = inspect.signature(backbone.forward).parameters if forwards_kwargs and backbone is not model else {}
    return next((key for key in ("cache", "past_key_values") if key in outer or key in inner), None)
