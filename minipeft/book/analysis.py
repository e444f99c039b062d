"""Looking inside: where virtual tokens sit among real ones, and how much the model attends to a prefix.

Explained in: book/02_virtual_tokens.ipynb (``nearest_tokens``) and
book/04_past_key_values.ipynb (``prefix_attention_share``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from ..injection import position_ids_kwargs


def nearest_tokens(
    vectors: torch.Tensor, word_embeddings: torch.Tensor, k: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """The vocabulary rows closest to each vector by cosine similarity.

    Used to read a soft prompt back as words (Lester et al. 2021, section 7: "interpreting the
    learned prompts" by nearest neighbours).

    Args:
        vectors: ``(num_virtual_tokens, hidden_size)``, e.g. a soft prompt's embedding table.
        word_embeddings: ``(vocab_size, hidden_size)``, the model's input embedding matrix.
        k: How many neighbours per vector.

    Returns:
        ``(token_ids, similarities)``, both ``(num_virtual_tokens, k)``, best first.

    Explained in: book/02_virtual_tokens.ipynb
    """
    a = torch.nn.functional.normalize(vectors.float(), dim=-1)  # (P, H)
    b = torch.nn.functional.normalize(word_embeddings.float(), dim=-1)  # (V, H)
    similarity = a @ b.T  # (P, V)
    values, indices = similarity.topk(k, dim=-1)
    return indices, values


@contextlib.contextmanager
def _eager_attention(model: Any) -> Iterator[None]:
    """Temporarily switch to the "eager" attention, the one that returns attention weights."""
    previous = getattr(model.config, "_attn_implementation", None)
    if previous in (None, "eager") or not hasattr(model, "set_attn_implementation"):
        yield
        return
    model.set_attn_implementation("eager")
    try:
        yield
    finally:
        model.set_attn_implementation(previous)


@torch.no_grad()
def prefix_attention_share(
    peft_model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """How much attention each layer pays to the prefix.

    For every layer, the attention weight that real tokens put on the ``num_virtual_tokens``
    prefix positions (a number between 0 and 1, since each query's weights sum to 1), averaged
    over heads, over the real (unpadded) query positions and over the batch. Positions are counted
    over real tokens (:func:`~minipeft.position_ids_from_attention_mask`), so left padding does not
    shift them. Note that language models give the first position a large share of attention
    whatever it holds ("attention sinks", Xiao et al. 2023); with a prefix, that position is
    virtual token 0.

    Args:
        peft_model: A minipeft prefix-tuning model.
        input_ids: ``(batch, seq_len)``.
        attention_mask: ``(batch, seq_len)`` or ``None`` (no padding).

    Returns:
        ``(num_layers,)`` float tensor.

    Explained in: book/04_past_key_values.ipynb
    """
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    num_virtual = peft_model.active_peft_config.num_virtual_tokens
    positions = position_ids_kwargs(peft_model, attention_mask)  # left padding must not shift positions
    with _eager_attention(peft_model.get_base_model()):
        out = peft_model(input_ids=input_ids, attention_mask=attention_mask, output_attentions=True, **positions)
    shares = []
    query_mask = attention_mask.float()  # (B, T)
    for weights in out.attentions:  # each (B, heads, T, P + T)
        on_prefix = weights[..., :num_virtual].sum(-1).mean(1)  # (B, T): per query, averaged over heads
        shares.append((on_prefix * query_mask).sum() / query_mask.sum())
    return torch.stack(shares)
