"""Prefix tuning for encoder-decoders (``TaskType.SEQ_2_SEQ_LM``): T5, BART and their kin.

Two ways to place the prefix, chosen by ``PrefixTuningConfig.prefix_encoder_and_cross_attention``.

**PEFT's way (the default, ``False``).** What PEFT 0.21.2 does (``get_prompt`` and
``PeftModelForSeq2SeqLM`` in ``src/peft/peft_model.py``), checked on tiny T5 and BART models:

1. ``num_layers`` is filled with the model's ``num_hidden_layers``, which for T5 and BART is the
   *encoder's* layer count ``L`` (``_prepare_prompt_learning_config`` in ``src/peft/utils/other.py``);
   ``num_transformer_submodules`` is 2. The table is ``(num_virtual_tokens, 2 * L * token_dim)``:
   ``L`` key/value *slots*, slot ``s`` being row blocks ``2s`` (keys) and ``2s + 1`` (values).
2. ``get_prompt`` views the table as ``2L`` blocks ``[k0, v0, k1, v1, ...]``, concatenates it with
   itself (``4L`` blocks) and splits it in groups of 4: group ``i`` is ``(self-attention keys,
   values, cross-attention keys, values)`` of decoder layer ``i``. Group ``i`` starts at block
   ``4i``, i.e. at slot ``2i mod L``: **decoder layer i's self-attention gets slot 2i mod L**
   (:func:`peft_decoder_layer_slots`).
3. The groups become an ``EncoderDecoderCache``, and then its cross-attention half is replaced by an
   empty ``DynamicCache`` (with ``is_updated`` reset): **the cross-attention gets no prefix**, and
   neither does the encoder (it never sees the cache, and its attention mask is not extended).
   Only ``decoder_attention_mask``, when given, grows by ``num_virtual_tokens`` ones on the left.

So for an even ``L`` (T5-small: 6, BART-base: 6, T5-base: 12) decoder layers ``i`` and ``i + L/2``
share slot ``2i``, and the odd slots, **half of the table, are never used and get no gradient**.
For an odd ``L``, ``2i mod L`` is a permutation: every slot is used once, shuffled. A decoder deeper
than the encoder fails in PEFT (there are only ``L`` groups); minipeft refuses it up front. An
adapter saved by PEFT is laid out this way, so minipeft follows the same mapping to reproduce its
outputs exactly.

**Li & Liang's way (``True``, minipeft only).** Li & Liang 2021 (section 4.2) prefix BART's
encoder and decoder, ``z = [PREFIX; x; PREFIX'; y]``, and their code also gives the decoder's
cross-attention its own prefix. Here every attention layer gets its own slot: the table is
``(num_virtual_tokens, 2 * (L + 2 * L_dec) * token_dim)`` with ``L_dec = num_decoder_layers``, laid
out as ``[encoder layer 0..L-1 self-attention | decoder layer 0..L_dec-1 self-attention | decoder
layer 0..L_dec-1 cross-attention]`` (:func:`prefix_slots`). transformers' T5 and BART encoders drop
any cache they are given, so the encoder's prefix enters through forward pre-hooks on the encoder's
self-attention modules (present only during :meth:`PeftModelForSeq2SeqLM.forward` and
:meth:`~PeftModelForSeq2SeqLM.generate`), which hand each one a cache holding its prefix: the
module appends its keys and values after it, exactly as a decoder does. The cross-attention prefix
is put in the ``EncoderDecoderCache``'s cross-attention half (``is_updated`` False, so each layer
appends the encoder's keys and values after it). The ``attention_mask`` grows by
``num_virtual_tokens`` ones on the left, which serves the encoder's self-attention and the
cross-attention alike.

Explained in: the book's chapter 10, "Encoder-decoder models: where the prefix goes".
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

from .config import PeftType, PrefixTuningConfig, PromptLearningConfig, TaskType, _decoder_layer_count
from .injection import build_prefix_cache, extend_attention_mask, prefix_to_past_key_values
from .peft_model import PeftModel, _refuse_checkpointing


def peft_decoder_layer_slots(num_layers: int, num_decoder_layers: int) -> list[int]:
    """The table slot whose keys and values PEFT 0.21 gives to each decoder layer's self-attention.

    ``[2 * i % num_layers for i in range(num_decoder_layers)]``. Why: PEFT views the table as
    ``2 * num_layers`` blocks ``[k0, v0, k1, v1, ...]``, doubles it to ``4 * num_layers`` blocks and
    cuts groups of 4 (self keys, self values, cross keys, cross values); group ``i`` starts at block
    ``4i``, which is block ``4i mod 2L`` of the table, the keys of slot ``2i mod L``. The cross-attention
    half of each group is then thrown away (see the module docstring).

    Args:
        num_layers: The config's ``num_layers`` (the encoder's layer count, as PEFT fills it).
        num_decoder_layers: The decoder's layer count.

    Returns:
        ``num_decoder_layers`` slot indices, e.g. ``[0, 2, 0, 2]`` for 4 and 4 (slots 1 and 3 unused),
        ``[0, 2, 1]`` for 3 and 3 (a permutation).

    Raises:
        ValueError: the decoder has more layers than ``num_layers`` (PEFT fails with an ``IndexError``).
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
    self-attention; ``cross_attention[i]``: decoder layer ``i``'s cross-attention. Empty lists:
    that kind of attention gets no prefix.
    """

    encoder: list[int]
    decoder: list[int]
    cross_attention: list[int]


def prefix_slots(config: PrefixTuningConfig, num_decoder_layers: int) -> PrefixSlots:
    """The slots of every attention layer, for a filled ``SEQ_2_SEQ_LM`` config.

    ``prefix_encoder_and_cross_attention=False`` (PEFT): the decoder's self-attention only, slot
    ``2i mod num_layers`` (:func:`peft_decoder_layer_slots`). ``True``: encoder layers ``0..L-1``
    read slots ``0..L-1``, decoder self-attention layers slots ``L..L+L_dec-1``, cross-attention
    layers slots ``L+L_dec..L+2*L_dec-1``; every slot is read by exactly one layer.

    Raises:
        ValueError: see :func:`peft_decoder_layer_slots`; a ``num_decoder_layers`` that differs
            from the config's.
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


def _cache_parameter(module: nn.Module) -> str | None:
    """The name under which an attention module takes a cache (``past_key_values``; ``cache`` in newer transformers)."""
    parameters = inspect.signature(module.forward).parameters
    return next((name for name in ("past_key_values", "cache") if name in parameters), None)


def _encoder_self_attentions(encoder: nn.Module, num_layers: int) -> tuple[tuple[str, str], ...]:
    """``(module path in encoder, cache parameter name)`` of each encoder layer's self-attention, by layer.

    An attention module is recognised as transformers writes them for T5, BART and their kin: a
    ``layer_idx`` attribute and a ``forward`` taking ``key_value_states`` and a cache.

    Raises:
        ValueError: not exactly one such module per encoder layer ``0..num_layers-1``.
    """
    found: dict[int, tuple[str, str]] = {}
    for path, module in encoder.named_modules():
        layer_idx, parameter = getattr(module, "layer_idx", None), None
        if isinstance(layer_idx, int) and "key_value_states" in inspect.signature(module.forward).parameters:
            parameter = _cache_parameter(module)
        if parameter is None:
            continue
        if layer_idx in found:
            raise ValueError(f"{type(encoder).__name__} has two attention modules for layer {layer_idx}.")
        found[layer_idx] = (path, parameter)
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


class PeftModelForSeq2SeqLM(PeftModel):
    """Prefix tuning for an encoder-decoder language model (``TaskType.SEQ_2_SEQ_LM``): T5, BART, ...

    ``get_peft_model(model, PrefixTuningConfig(task_type="SEQ_2_SEQ_LM", ...))`` returns one. By
    default it is PEFT's ``PeftModelForSeq2SeqLM`` for a prefix: the decoder's self-attention gets a
    prefix, decoder layer ``i`` from table slot ``2i mod num_layers`` (PEFT's layout, see the module
    docstring); the encoder and the cross-attention get none. Logits, generated tokens and adapter
    files are PEFT's. With ``prefix_encoder_and_cross_attention=True`` every encoder layer, every
    decoder layer and every cross-attention gets its own prefix (Li & Liang 2021, section 4.2);
    such an adapter loads in minipeft only.

    Args:
        model: A transformers encoder-decoder (``AutoModelForSeq2SeqLM``: ``T5ForConditionalGeneration``,
            ``BartForConditionalGeneration``, ...); frozen.
        peft_config: A filled :class:`~minipeft.PrefixTuningConfig` with ``task_type=SEQ_2_SEQ_LM``.
        adapter_name: PEFT's adapter name.
        prompt_encoder: A prefix encoder built by ``from_pretrained``.

    Attributes:
        num_decoder_layers: The decoder's layer count, from the model's config.
        prefix_slots: A ``minipeft.seq2seq.PrefixSlots``: which table slot each attention layer reads.

    Raises:
        ValueError: not a prefix config for ``SEQ_2_SEQ_LM``; not an encoder-decoder; in PEFT's
            layout, a decoder deeper than the encoder; a decoder with another head count than the
            prefix; with ``prefix_encoder_and_cross_attention=True``, an encoder whose self-attention
            modules cannot take a cache. The model is left untouched.
    """

    def __init__(
        self,
        model: nn.Module,
        peft_config: PromptLearningConfig,
        adapter_name: str = "default",
        prompt_encoder: nn.Module | None = None,
    ) -> None:
        if peft_config.peft_type is not PeftType.PREFIX_TUNING or peft_config.task_type is not TaskType.SEQ_2_SEQ_LM:
            raise ValueError(
                "PeftModelForSeq2SeqLM implements prefix tuning with task_type='SEQ_2_SEQ_LM', got "
                f"peft_type={peft_config.peft_type.value!r}, task_type={TaskType(peft_config.task_type).value!r}."
            )
        # everything that can fail runs before the base model is frozen
        model_config = model.config
        if not getattr(model_config, "is_encoder_decoder", False):
            raise ValueError(
                f"{type(model).__name__} is not an encoder-decoder (config.is_encoder_decoder is not True); "
                "task_type='SEQ_2_SEQ_LM' needs one such as T5ForConditionalGeneration or BartForConditionalGeneration."
            )
        decoder_heads = getattr(model_config, "decoder_attention_heads", None)
        if decoder_heads is not None and decoder_heads != peft_config.num_attention_heads:
            raise ValueError(
                f"The decoder has {decoder_heads} attention heads and the encoder {peft_config.num_attention_heads}; "
                "the prefix (sized by the encoder, as PEFT does) would not fit the decoder's attention."
            )
        decoder_layers = _decoder_layer_count(model_config)
        slots = prefix_slots(peft_config, decoder_layers)
        encoder_attentions: tuple[tuple[str, str], ...] = ()
        if peft_config.prefix_encoder_and_cross_attention:
            encoder_attentions = _encoder_self_attentions(model.get_encoder(), peft_config.num_layers)
        super().__init__(model, peft_config, adapter_name, prompt_encoder=prompt_encoder)
        self.num_decoder_layers = decoder_layers
        self.prefix_slots = slots
        self._encoder_attentions = encoder_attentions

    def get_prompt(self, batch_size: int, cache: Any = None) -> EncoderDecoderCache:
        """The decoder's prefix as an ``EncoderDecoderCache`` (what PEFT's ``get_prompt`` returns).

        Its self-attention half holds, for each decoder layer, ``num_virtual_tokens`` keys and
        values ``(batch_size, num_attention_heads, num_virtual_tokens, head_dim)`` from the layer's
        slot; its cross-attention half is empty (PEFT's layout) or holds each decoder layer's
        cross-attention prefix (``prefix_encoder_and_cross_attention=True``), with ``is_updated``
        False so the model appends the encoder's keys and values after it. The encoder's prefix is
        not in it (see :meth:`forward`).

        Args:
            batch_size: Rows of the decoder's batch (times ``num_beams`` when generating).
            cache: An empty ``EncoderDecoderCache`` of ``DynamicCache`` s to fill (the one ``generate``
                created); a new one when ``None``.
        """
        return self._decoder_cache(self.prompt_table(), batch_size, cache)

    def _decoder_cache(self, table: torch.Tensor, batch_size: int, cache: Any = None) -> EncoderDecoderCache:
        """``table`` ``(1, P, 2*num_prefix_layers*token_dim)`` -> the decoder's cache (see :meth:`get_prompt`)."""
        if cache is None:
            cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        elif not (
            isinstance(cache, EncoderDecoderCache)
            and isinstance(cache.self_attention_cache, DynamicCache)
            and isinstance(cache.cross_attention_cache, DynamicCache)
        ):
            raise ValueError(
                f"minipeft generates with an EncoderDecoderCache of DynamicCaches only, got {cache!r}; "
                "remove cache_implementation from the generation config."
            )
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
        ``DynamicCache`` of every encoder layer's prefix for the batch it sees, and each module gets
        it as its cache: it appends its own keys and values after the prefix. No-op in PEFT's layout.

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

        def inject(parameter: str, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
            if "cache" not in state:
                hidden_states = args[0] if args else kwargs["hidden_states"]  # (B, T, d_model)
                prompt = table if table is not None else self.prompt_table()
                pairs = prefix_to_past_key_values(
                    prompt.expand(hidden_states.shape[0], -1, -1), self.active_peft_config
                )
                state["cache"] = build_prefix_cache([pairs[slot] for slot in self.prefix_slots.encoder])
            kwargs[parameter] = state["cache"]
            return args, kwargs

        handles = [encoder.register_forward_pre_hook(start_pass, with_kwargs=True)]
        try:
            for path, parameter in self._encoder_attentions:
                hook = functools.partial(inject, parameter)
                handles.append(encoder.get_submodule(path).register_forward_pre_hook(hook, with_kwargs=True))
            yield
        finally:
            for handle in handles:
                handle.remove()

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
            attention_mask: ``(batch, src_len)``, 1 for real tokens, 0 for padding. PEFT's layout
                passes it unchanged; with ``prefix_encoder_and_cross_attention=True`` it becomes
                ``(batch, num_virtual_tokens + src_len)`` (all ones when ``None``), for the encoder's
                self-attention and the cross-attention.
            decoder_input_ids: ``(batch, tgt_len)``; when ``None`` the model shifts ``labels`` right.
            decoder_attention_mask: ``(batch, tgt_len)``; becomes ``(batch, num_virtual_tokens + tgt_len)``
                with the prefix's ones in front, as PEFT does.
            decoder_inputs_embeds: ``(batch, tgt_len, d_model)``, instead of ``decoder_input_ids``.
            labels: ``(batch, tgt_len)``, -100 where no loss is wanted: the model's cross-entropy.
            **kwargs: Passed to the base model (``use_cache``, ``output_attentions``,
                ``encoder_outputs`` in PEFT's layout, ...).

        Returns:
            The base model's ``Seq2SeqLMOutput``: ``logits`` ``(batch, tgt_len, vocab_size)``; the
            prefix adds keys and values, not positions (the decoder's positions start after it).

        Raises:
            ValueError: no ``input_ids``, ``inputs_embeds`` or ``encoder_outputs``; a cache passed
                in (the prefix is the cache); ``encoder_outputs`` with
                ``prefix_encoder_and_cross_attention=True`` (they would lack the encoder's prefix).
        """
        config = self.active_peft_config
        num_virtual = config.num_virtual_tokens
        if self.training:
            _refuse_checkpointing(self.base_model)
        for key in ("past_key_values", "cache"):
            if kwargs.pop(key, None) is not None:
                raise ValueError(f"A seq2seq prefix model's {key} is its prefix; pass no {key}.")
        batch_size = _batch_size(input_ids, inputs_embeds, kwargs.get("encoder_outputs"))
        if decoder_attention_mask is not None:
            decoder_attention_mask = extend_attention_mask(decoder_attention_mask, num_virtual)  # (B, P + T_dec)
        if config.prefix_encoder_and_cross_attention:
            if kwargs.get("encoder_outputs") is not None:
                raise ValueError(
                    "With prefix_encoder_and_cross_attention=True the encoder runs with its prefix here; pass "
                    "input_ids (or inputs_embeds), not encoder_outputs."
                )
            if attention_mask is None:
                source = input_ids if input_ids is not None else inputs_embeds
                attention_mask = torch.ones(source.shape[:2], dtype=torch.long, device=source.device)
            attention_mask = extend_attention_mask(attention_mask, num_virtual)  # (B, P + T_src)
        table = self.prompt_table()  # once: the encoder's and the decoder's prefixes come from it
        kwargs[self._cache_kwarg] = self._decoder_cache(table, batch_size)
        with self._encoder_prefix(table):
            return self.base_model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                inputs_embeds=inputs_embeds,
                decoder_input_ids=decoder_input_ids,
                decoder_attention_mask=decoder_attention_mask,
                decoder_inputs_embeds=decoder_inputs_embeds,
                labels=labels,
                **kwargs,
            )

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        """``base_model.generate`` with the prefix injected (PEFT's ``PeftModelForSeq2SeqLM.generate``).

        Takes everything ``transformers.GenerationMixin.generate`` takes (``input_ids``,
        ``attention_mask``, ``max_new_tokens``, ``num_beams``, ``do_sample``, ...). For the whole
        call the base model's ``prepare_inputs_for_generation`` is replaced by
        :meth:`prepare_inputs_for_generation`, which puts the decoder's prefix in the (empty) cache
        at the first step. With ``prefix_encoder_and_cross_attention=True`` the encoder also runs
        with its prefix, and ``attention_mask`` (all ones when not given) grows by
        ``num_virtual_tokens`` ones on the left.

        Raises:
            ValueError: ``encoder_outputs`` with ``prefix_encoder_and_cross_attention=True``; a cache
                other than an ``EncoderDecoderCache`` of ``DynamicCache`` s.
        """
        config = self.active_peft_config
        if config.prefix_encoder_and_cross_attention:
            if kwargs.get("encoder_outputs") is not None:
                raise ValueError(
                    "With prefix_encoder_and_cross_attention=True the encoder runs with its prefix in generate; "
                    "pass input_ids, not encoder_outputs."
                )
            given = [args[0]] if args else [kwargs.get(key) for key in ("input_ids", "inputs", "inputs_embeds")]
            source = next((tensor for tensor in given if tensor is not None), None)
            mask = kwargs.get("attention_mask")
            if mask is None and source is not None:
                mask = torch.ones(source.shape[:2], dtype=torch.long, device=source.device)
            if mask is not None:
                kwargs["attention_mask"] = extend_attention_mask(mask, config.num_virtual_tokens)
        base = self.base_model
        self._base_prepare_inputs_for_generation = base.prepare_inputs_for_generation
        base.prepare_inputs_for_generation = self.prepare_inputs_for_generation
        try:
            with self._encoder_prefix():
                return base.generate(*args, **kwargs)
        finally:
            del base.prepare_inputs_for_generation  # the class's method is visible again

    def prepare_inputs_for_generation(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The base model's inputs for one generation step, with the decoder's prefix at the first.

        The first step (the cache is empty) gets :meth:`get_prompt` for the decoder batch (times
        ``num_beams``), filled into the cache ``generate`` created; later steps find the prefix in
        the cache. A 2-D ``decoder_attention_mask`` grows by ``num_virtual_tokens`` ones on the left.

        Raises:
            ValueError: an unsupported cache type, or a decoder attention mask that is not 2-D.
        """
        inputs = self._base_prepare_inputs_for_generation(*args, **kwargs)
        key = self._cache_kwarg
        cache = inputs.get(key)
        if inputs.get("use_cache") is False:
            # Without a cache every step re-reads the whole target. The model still appends to a cache
            # it is given and generate hands that back, so start from a fresh prefix each time.
            cache = None
        if cache is None or cache.get_seq_length() == 0:
            tokens = inputs.get("decoder_input_ids")
            batch_size = (tokens if tokens is not None else inputs["decoder_inputs_embeds"]).shape[0]
            inputs[key] = self.get_prompt(batch_size, cache=cache)
        mask = inputs.get("decoder_attention_mask")
        if mask is not None:
            if mask.dim() != 2:
                raise ValueError(
                    f"minipeft generates with a 2-D decoder_attention_mask (batch, tgt_len), got {mask.dim()}-D."
                )
            inputs["decoder_attention_mask"] = extend_attention_mask(mask, self.active_peft_config.num_virtual_tokens)
        return inputs
