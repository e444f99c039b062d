"""Prefix tuning for encoder-decoders (``TaskType.SEQ_2_SEQ_LM``): T5, BART and their kin.

Two ways to place the prefix, chosen by ``PrefixTuningConfig.prefix_encoder_and_cross_attention``:

- ``False`` (default): PEFT 0.21's layout. The table has ``num_layers`` key/value slots (the
  *encoder's* layer count); decoder layer ``i``'s self-attention reads slot ``2i mod num_layers``
  (:func:`peft_decoder_layer_slots`); the encoder and the cross-attention get no prefix. Adapters,
  logits and generated tokens are PEFT's.
- ``True`` (minipeft only): Li & Liang 2021, section 4.2. Every encoder layer, decoder layer and
  cross-attention reads its own slot (:func:`prefix_slots`). transformers' encoders drop a cache
  they are given, so the encoder's prefix enters through forward pre-hooks on its self-attention
  modules, active only during :meth:`PeftModelForSeq2SeqLM.forward` and ``generate``.

Chapter 10 shows, step by step, how PEFT arrives at its mapping and what it costs.

Follows PEFT ``src/peft/peft_model.py`` (``PeftModelForSeq2SeqLM``, ``get_prompt``).

Explained in: book/10_encoder_decoder_models.ipynb
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Iterator
from typing import Any, NamedTuple

import torch
from torch import nn
from transformers import DynamicCache, EncoderDecoderCache

from .config import PeftType, PrefixTuningConfig, PromptLearningConfig, TaskType, decoder_layer_count
from .generation import GenerationMixin
from .injection import build_prefix_cache, cache_kwarg, extend_attention_mask, prefix_to_past_key_values
from .peft_model import PeftModel

__all__ = ["PeftModelForSeq2SeqLM", "PrefixSlots", "peft_decoder_layer_slots", "prefix_slots"]


def peft_decoder_layer_slots(num_layers: int, num_decoder_layers: int) -> list[int]:
    """The table slot whose keys and values PEFT 0.21 gives to each decoder layer's self-attention.

    ``[2 * i % num_layers for i in range(num_decoder_layers)]``: PEFT views the table as
    ``2 * num_layers`` blocks ``[k0, v0, k1, v1, ...]``, doubles it and cuts groups of 4 (self keys,
    self values, cross keys, cross values); group ``i`` starts at block ``4i mod 2L``, the keys of
    slot ``2i mod L``. The cross-attention half of each group is then discarded.

    Returns:
        ``num_decoder_layers`` slot indices, e.g. ``[0, 2, 0, 2]`` for 4 and 4 (slots 1 and 3 unused),
        ``[0, 2, 1]`` for 3 and 3 (a permutation).

    Raises:
        ValueError: the decoder has more layers than ``num_layers`` (PEFT fails with an ``IndexError``).

    Explained in: book/10_encoder_decoder_models.ipynb
    """
    if num_decoder_layers > num_layers:
        raise ValueError(
            f"PEFT's seq2seq prefix has num_layers={num_layers} slots (the encoder's layer count) and cannot "
            f"reach a decoder of {num_decoder_layers} layers (PEFT itself fails with an IndexError). Use "
            "prefix_encoder_and_cross_attention=True, which gives every decoder layer its own slot."
        )
    return [2 * layer % num_layers for layer in range(num_decoder_layers)]


class PrefixSlots(NamedTuple):
    """Which table slot (a ``(keys, values)`` pair of ``token_dim`` blocks) each attention layer reads.

    ``encoder[j]``: encoder layer ``j``'s self-attention; ``decoder[i]``: decoder layer ``i``'s
    self-attention; ``cross_attention[i]``: decoder layer ``i``'s cross-attention. An empty list:
    that kind of attention gets no prefix.

    Explained in: book/10_encoder_decoder_models.ipynb
    """

    encoder: list[int]
    decoder: list[int]
    cross_attention: list[int]


def prefix_slots(config: PrefixTuningConfig, num_decoder_layers: int) -> PrefixSlots:
    """The slots of every attention layer, for a filled ``SEQ_2_SEQ_LM`` config.

    PEFT's layout: the decoder's self-attention only, :func:`peft_decoder_layer_slots`. With
    ``prefix_encoder_and_cross_attention=True``: encoder layers read slots ``0..L-1``, decoder
    self-attention ``L..L+L_dec-1``, cross-attention ``L+L_dec..L+2*L_dec-1``.

    Raises:
        ValueError: see :func:`peft_decoder_layer_slots`; a ``num_decoder_layers`` that differs
            from the config's.

    Explained in: book/10_encoder_decoder_models.ipynb
    """
    num_layers = config.num_layers
    if not config.prefix_encoder_and_cross_attention:
        return PrefixSlots([], peft_decoder_layer_slots(num_layers, num_decoder_layers), [])
    if config.num_decoder_layers != num_decoder_layers:
        raise ValueError(
            f"The config's num_decoder_layers={config.num_decoder_layers} differs from the model's {num_decoder_layers}."
        )
    decoder_start, cross_start = num_layers, num_layers + num_decoder_layers
    return PrefixSlots(
        encoder=list(range(num_layers)),
        decoder=list(range(decoder_start, decoder_start + num_decoder_layers)),
        cross_attention=list(range(cross_start, cross_start + num_decoder_layers)),
    )


def _encoder_self_attentions(encoder: nn.Module, num_layers: int) -> tuple[tuple[str, str], ...]:
    """``(module path in encoder, cache keyword)`` of each encoder layer's self-attention, by layer.

    An attention module as transformers writes them for T5 and BART: a ``layer_idx`` attribute and
    a ``forward`` taking ``key_value_states`` and a cache.

    Raises:
        ValueError: not exactly one such module per encoder layer ``0..num_layers-1``.
    """
    found: dict[int, tuple[str, str]] = {}
    for path, module in encoder.named_modules():
        layer_idx = getattr(module, "layer_idx", None)
        if not isinstance(layer_idx, int) or "key_value_states" not in inspect.signature(module.forward).parameters:
            continue
        key = cache_kwarg(module)
        if key is None:
            continue
        if layer_idx in found:
            raise ValueError(f"{type(encoder).__name__} has two attention modules for layer {layer_idx}.")
        found[layer_idx] = (path, key)
    if sorted(found) != list(range(num_layers)):
        raise ValueError(
            f"prefix_encoder_and_cross_attention=True needs one self-attention module per encoder layer that takes "
            f"a key/value cache (as T5's and BART's do); {type(encoder).__name__} has them for layers "
            f"{sorted(found)}, not 0..{num_layers - 1}."
        )
    return tuple(found[layer] for layer in range(num_layers))


def _batch_size(*tensors: Any) -> int:
    """The batch size of the first tensor given (``input_ids``, ``inputs_embeds``, encoder outputs)."""
    for tensor in tensors:
        if isinstance(tensor, torch.Tensor):
            return tensor.shape[0]
        if tensor is not None:  # a transformers ModelOutput or tuple: its first tensor
            return tensor[0].shape[0]
    raise ValueError(
        "forward needs input_ids (batch, seq_len), inputs_embeds (batch, seq_len, hidden_size) or encoder_outputs."
    )


class PeftModelForSeq2SeqLM(GenerationMixin, PeftModel, task_type=TaskType.SEQ_2_SEQ_LM):
    """Prefix tuning for an encoder-decoder language model (``TaskType.SEQ_2_SEQ_LM``): T5, BART, ...

    By default PEFT's ``PeftModelForSeq2SeqLM``: decoder layer ``i``'s self-attention reads table
    slot ``2i mod num_layers``; the encoder and the cross-attention get no prefix. With
    ``prefix_encoder_and_cross_attention=True`` every attention layer gets its own prefix (Li &
    Liang 2021, section 4.2); such an adapter loads in minipeft only.

    Args:
        model: A transformers encoder-decoder (``AutoModelForSeq2SeqLM``: T5, BART, ...); frozen.
        peft_config: A filled :class:`~minipeft.PrefixTuningConfig` with ``task_type=SEQ_2_SEQ_LM``.
        **kwargs: Those of :class:`~minipeft.PeftModel`.

    Attributes:
        num_decoder_layers: The decoder's layer count, from the model's config (``prefix_slots``, a
            property, says which table slot each attention layer reads).

    Raises:
        ValueError: not a prefix config for ``SEQ_2_SEQ_LM``; not an encoder-decoder; in PEFT's
            layout, a decoder deeper than the encoder; a decoder with another head count than the
            prefix; an encoder whose self-attention cannot take a cache (with
            ``prefix_encoder_and_cross_attention=True``). The model is left untouched.

    Explained in: book/10_encoder_decoder_models.ipynb
    """

    def _prepare(self, model: nn.Module, config: PromptLearningConfig, adapter_name: str) -> None:
        if not getattr(model.config, "is_encoder_decoder", False):
            raise ValueError(
                f"{type(model).__name__} is not an encoder-decoder (config.is_encoder_decoder is not True); "
                "task_type='SEQ_2_SEQ_LM' needs one such as T5ForConditionalGeneration or BartForConditionalGeneration."
            )
        self.num_decoder_layers = decoder_layer_count(model.config)
        if config.peft_type is not PeftType.PREFIX_TUNING:
            return
        decoder_heads = getattr(model.config, "decoder_attention_heads", None)
        if decoder_heads is not None and decoder_heads != config.num_attention_heads:
            raise ValueError(
                f"The decoder has {decoder_heads} attention heads and the encoder {config.num_attention_heads}; "
                "the prefix (sized by the encoder, as PEFT does) would not fit the decoder's attention."
            )
        prefix_slots(config, self.num_decoder_layers)  # raises for a decoder PEFT's layout cannot reach
        if config.prefix_encoder_and_cross_attention:
            _encoder_self_attentions(model.get_encoder(), config.num_layers)

    @property
    def prefix_slots(self) -> PrefixSlots:
        """Which table slot each attention layer reads, for the active adapter (:func:`prefix_slots`)."""
        return prefix_slots(self.active_peft_config, self.num_decoder_layers)

    @property
    def _encoder_attentions(self) -> tuple[tuple[str, str], ...]:
        config = self.active_peft_config
        if not getattr(config, "prefix_encoder_and_cross_attention", False):
            return ()
        return _encoder_self_attentions(self.base_model.get_encoder(), config.num_layers)

    def get_prompt(self, batch_size: int, task_ids: torch.Tensor | None = None, cache: Any = None) -> Any:
        """The decoder's prefix as an ``EncoderDecoderCache`` (what PEFT's ``get_prompt`` returns).

        Its self-attention half holds each decoder layer's slot, ``(batch_size, num_attention_heads,
        num_virtual_tokens, head_dim)`` keys and values; its cross-attention half is empty (PEFT's
        layout) or holds each cross-attention's prefix, with ``is_updated`` False so the model
        appends the encoder's keys and values after it.

        A soft prompt: ``(batch_size, 2 * num_virtual_tokens, hidden_size)``, PEFT's layout, of which
        the encoder's input takes the first ``num_virtual_tokens`` (PEFT never uses the rest).

        Args:
            batch_size: Rows of the decoder's batch (times ``num_beams`` when generating).
            cache: An empty ``EncoderDecoderCache`` of ``DynamicCache`` s to fill; new when ``None``.
        """
        if self.active_peft_config.peft_type is not PeftType.PREFIX_TUNING:
            return self.prompt_table().expand(batch_size, -1, -1)
        return self._decoder_cache(self.prompt_table(), batch_size, cache)

    def _decoder_cache(self, table: torch.Tensor, batch_size: int, cache: Any = None) -> EncoderDecoderCache:
        """``table`` ``(1, P, 2*num_prefix_layers*token_dim)`` -> the decoder's cache (see :meth:`get_prompt`)."""
        if cache is None:
            cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        pairs = prefix_to_past_key_values(table.expand(batch_size, -1, -1), self.active_peft_config)
        build_prefix_cache([pairs[slot] for slot in self.prefix_slots.decoder], cache=cache.self_attention_cache)
        build_prefix_cache(
            [pairs[slot] for slot in self.prefix_slots.cross_attention], cache=cache.cross_attention_cache
        )
        for layer in range(self.num_decoder_layers):  # the encoder's keys and values are still to come
            cache.is_updated[layer] = False
        return cache

    @contextlib.contextmanager
    def _encoder_prefix(self, table: torch.Tensor | None = None) -> Iterator[None]:
        """While open, every encoder pass gives each encoder layer's self-attention its prefix.

        A pre-hook on the encoder starts a pass; the first self-attention module to run builds a
        ``DynamicCache`` of every encoder layer's prefix for its batch, and each module gets it as its
        cache, appending its own keys and values after the prefix. No-op in PEFT's layout.

        Args:
            table: The encoder's output ``(1, P, width)``; ``None``: :meth:`prompt_table` when needed.
        """
        if not self._encoder_attentions:
            yield
            return
        encoder = self.base_model.get_encoder()
        state: dict[str, DynamicCache] = {}

        def start_pass(module: nn.Module, args: tuple, kwargs: dict) -> None:
            state.clear()

        def inject(key: str, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
            if "cache" not in state:
                hidden_states = args[0] if args else kwargs["hidden_states"]  # (B, T, d_model)
                prompt = table if table is not None else self.prompt_table()
                pairs = prefix_to_past_key_values(
                    prompt.expand(hidden_states.shape[0], -1, -1), self.active_peft_config
                )
                state["cache"] = build_prefix_cache([pairs[slot] for slot in self.prefix_slots.encoder])
            kwargs[key] = state["cache"]
            return args, kwargs

        handles = [encoder.register_forward_pre_hook(start_pass, with_kwargs=True)]
        try:
            for path, key in self._encoder_attentions:
                hook = functools.partial(inject, key)
                handles.append(encoder.get_submodule(path).register_forward_pre_hook(hook, with_kwargs=True))
            yield
        finally:
            for handle in handles:
                handle.remove()

    def _encoder_attention_mask(
        self, attention_mask: torch.Tensor | None, source: torch.Tensor | None, encoder_outputs: Any
    ) -> torch.Tensor | None:
        """With an encoder prefix, ``(B, T_src)`` -> ``(B, P + T_src)`` (all ones when ``None``); else unchanged.

        Raises:
            ValueError: ``encoder_outputs`` given with an encoder prefix (they would lack it).
        """
        if not self.active_peft_config.prefix_encoder_and_cross_attention:
            return attention_mask
        if encoder_outputs is not None:
            raise ValueError(
                "With prefix_encoder_and_cross_attention=True the encoder runs with its prefix here; pass "
                "input_ids (or inputs_embeds), not encoder_outputs."
            )
        if attention_mask is None and source is not None:
            attention_mask = torch.ones(source.shape[:2], dtype=torch.long, device=source.device)
        if attention_mask is None:
            return None
        return extend_attention_mask(attention_mask, self.active_peft_config.num_virtual_tokens)  # (B, P + T_src)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> Any:
        """Run the encoder-decoder with the prefix injected (PEFT's ``PeftModelForSeq2SeqLM.forward``).

        Args:
            input_ids: ``(batch, src_len)`` encoder token ids (or ``inputs_embeds``
                ``(batch, src_len, d_model)``).
            attention_mask: ``(batch, src_len)``; unchanged in PEFT's layout, ``(batch,
                num_virtual_tokens + src_len)`` with an encoder prefix (all ones when ``None``).
            decoder_input_ids: ``(batch, tgt_len)``; when ``None`` the model shifts ``labels`` right.
            decoder_attention_mask: ``(batch, tgt_len)``; becomes ``(batch, num_virtual_tokens + tgt_len)``.
            decoder_inputs_embeds: ``(batch, tgt_len, d_model)``, instead of ``decoder_input_ids``.
            labels: ``(batch, tgt_len)``, -100 where no loss is wanted.
            **kwargs: Passed to the base model (``use_cache``, ``encoder_outputs`` in PEFT's layout, ...).

        Returns:
            The base model's ``Seq2SeqLMOutput``: ``logits`` ``(batch, tgt_len, vocab_size)``.

        Raises:
            ValueError: no ``input_ids``, ``inputs_embeds`` or ``encoder_outputs``; a cache passed in;
                ``encoder_outputs`` with ``prefix_encoder_and_cross_attention=True``.
        """
        self._refuse_mixed(kwargs)
        decoder = {
            "decoder_input_ids": decoder_input_ids,
            "decoder_inputs_embeds": decoder_inputs_embeds,
            "labels": labels,
        }
        if self._adapters_disabled:
            return self.base_model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                inputs_embeds=inputs_embeds,
                decoder_attention_mask=decoder_attention_mask,
                **decoder,
                **kwargs,
            )
        self._begin_forward(kwargs)
        config = self.active_peft_config
        num_virtual = config.num_virtual_tokens
        batch_size = _batch_size(input_ids, inputs_embeds, kwargs.get("encoder_outputs"))
        if config.peft_type is not PeftType.PREFIX_TUNING:  # a soft prompt before the encoder's input
            if inputs_embeds is None:
                inputs_embeds = self.base_model.get_input_embeddings()(input_ids)  # (B, T_src, d_model)
            prompt = self.get_prompt(batch_size)[:, :num_virtual].to(inputs_embeds.dtype)  # (B, P, d_model)
            if attention_mask is not None:
                attention_mask = extend_attention_mask(attention_mask, num_virtual)  # (B, P + T_src)
            return self.base_model(
                inputs_embeds=torch.cat([prompt, inputs_embeds], dim=1),  # (B, P + T_src, d_model)
                attention_mask=attention_mask,
                decoder_attention_mask=decoder_attention_mask,
                **decoder,
                **kwargs,
            )
        if decoder_attention_mask is not None:
            decoder_attention_mask = extend_attention_mask(decoder_attention_mask, num_virtual)  # (B, P + T_dec)
        source = input_ids if input_ids is not None else inputs_embeds
        attention_mask = self._encoder_attention_mask(attention_mask, source, kwargs.get("encoder_outputs"))
        table = self.prompt_table()  # once: the encoder's and the decoder's prefixes come from it
        kwargs[self._cache_kwarg] = self._decoder_cache(table, batch_size)
        with self._encoder_prefix(table):
            return self.base_model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                inputs_embeds=inputs_embeds,
                decoder_attention_mask=decoder_attention_mask,
                **decoder,
                **kwargs,
            )

    def _generation_context(self, args: tuple, kwargs: dict[str, Any]) -> contextlib.AbstractContextManager:
        """A soft prompt: the encoder's input becomes ``[prompt; tokens]`` embeddings (PEFT's ``generate``).
        An encoder prefix: the encoder's mask grows, and the encoder runs with its prefix."""
        config = self.active_peft_config
        if config.peft_type is not PeftType.PREFIX_TUNING:
            input_ids = kwargs.pop("input_ids", None)
            if input_ids is None:
                raise ValueError("input_ids must be provided for generation with a soft prompt (PEFT's rule).")
            embeds = self.base_model.get_input_embeddings()(input_ids)  # (B, T_src, d_model)
            prompt = self.get_prompt(embeds.shape[0])[:, : config.num_virtual_tokens].to(embeds.dtype)
            kwargs["inputs_embeds"] = torch.cat([prompt, embeds], dim=1)  # (B, P + T_src, d_model)
            if kwargs.get("attention_mask") is not None:
                kwargs["attention_mask"] = extend_attention_mask(kwargs["attention_mask"], config.num_virtual_tokens)
            return contextlib.nullcontext()
        given = [kwargs.get(key) for key in ("input_ids", "inputs", "inputs_embeds")]
        source = next((tensor for tensor in given if tensor is not None), None)
        mask = self._encoder_attention_mask(kwargs.get("attention_mask"), source, kwargs.get("encoder_outputs"))
        if mask is not None:
            kwargs["attention_mask"] = mask
        return self._encoder_prefix()

    def generate(self, **kwargs: Any) -> Any:
        """``base_model.generate`` with the virtual tokens injected (keyword arguments only, as PEFT's).

        A prefix goes into the decoder's cache at the first step (and the encoder's, with
        ``prefix_encoder_and_cross_attention=True``); a soft prompt goes before the encoder's input.

        Raises:
            ValueError: a soft prompt without ``input_ids``; ``encoder_outputs`` with an encoder prefix;
                a cache other than an ``EncoderDecoderCache`` of ``DynamicCache`` s.
        """
        return super().generate(**kwargs)

    def _generation_mask(self) -> str | None:
        return "decoder_attention_mask" if self.active_peft_config.peft_type is PeftType.PREFIX_TUNING else None

    def _first_generation_step(self, inputs: dict[str, Any], cache: Any) -> None:
        """The decoder's prefix, for the decoder batch (times ``num_beams``), into ``generate``'s cache."""
        if self.active_peft_config.peft_type is not PeftType.PREFIX_TUNING:
            return
        tokens = inputs.get("decoder_input_ids")
        batch_size = (tokens if tokens is not None else inputs["decoder_inputs_embeds"]).shape[0]
        inputs[self._cache_kwarg] = self.get_prompt(batch_size, cache=cache)
