"""The wrapper: a frozen transformers model plus a trainable prefix or soft prompt, with PEFT's interface.

``get_peft_model(model, PrefixTuningConfig(...))`` freezes ``model`` and returns a
:class:`PeftModelForCausalLM` whose ``forward`` and ``generate`` inject the prefix as the
model's ``past_key_values`` (see :mod:`minipeft.injection`). With a ``PromptTuningConfig`` the
virtual tokens are prepended to the input embeddings instead (prompt tuning, the comparison point).

Follows PEFT ``src/peft/peft_model.py`` (``PeftModel``, ``PeftModelForCausalLM``: ``get_prompt``,
``forward``, ``generate``, ``prepare_inputs_for_generation``, ``print_trainable_parameters``) and
``src/peft/mapping_func.py`` (``get_peft_model``), restricted to prefix and prompt tuning of decoder-only models;
sequence classification (``TaskType.SEQ_CLS``, P-Tuning v2 on BERT-likes) is in :mod:`minipeft.seq_cls`.

Explained in: book/01_why_prefix_tuning.ipynb (wrapping), book/04_past_key_values.ipynb (injection),
book/05_saving_and_loading.ipynb (saving and loading)
"""

from __future__ import annotations

import dataclasses
import inspect
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import PeftType, PrefixTuningConfig, PromptLearningConfig, ShapeMismatchError, TaskType
from .encoder import PrefixEncoder
from .injection import build_prefix_cache, extend_attention_mask, prefix_to_past_key_values
from .prompt_tuning import PromptEmbedding, PromptTuningConfig


class PeftModel(nn.Module):
    """A frozen base model with one prompt-learning adapter (named ``"default"``, as in PEFT).

    Attributes:
        base_model: The wrapped transformers model; its parameters are frozen.
        prompt_encoder: ``nn.ModuleDict`` ``{"default": PrefixEncoder or PromptEmbedding}``, PEFT's
            parameter names (``prompt_encoder.default.embedding.weight``).
        peft_config: ``{"default": PrefixTuningConfig or PromptTuningConfig}``.

    Raises:
        ValueError: the base model has gradient checkpointing enabled (the prefix lives in the
            key/value cache, which transformers disables under gradient checkpointing, as PEFT says).
    """

    def __init__(
        self,
        model: nn.Module,
        peft_config: PromptLearningConfig,
        adapter_name: str = "default",
        prompt_encoder: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if peft_config.peft_type is PeftType.PREFIX_TUNING:
            _refuse_checkpointing(model)
        self.base_model = model
        self.active_adapter = adapter_name
        self.peft_config = {adapter_name: peft_config}
        for param in model.parameters():
            param.requires_grad_(False)
        device = next(model.parameters()).device
        if prompt_encoder is not None:  # built by from_pretrained
            encoder = prompt_encoder
        elif peft_config.peft_type is PeftType.PREFIX_TUNING:
            encoder = PrefixEncoder(peft_config)
        else:
            encoder = PromptEmbedding(peft_config, model.get_input_embeddings())
        if device.type != "meta":  # a model on the meta device (counting parameters only) keeps a CPU prefix
            encoder = encoder.to(device)
        if peft_config.inference_mode:
            encoder.requires_grad_(False)
        self.prompt_encoder = nn.ModuleDict({adapter_name: encoder})
        # transformers < 5.24 calls the cache argument `past_key_values`, later versions `cache`.
        forward_params = inspect.signature(model.forward).parameters
        self._cache_kwarg = "cache" if "cache" in forward_params else "past_key_values"

    @property
    def active_peft_config(self) -> PromptLearningConfig:
        """The config of the active adapter."""
        return self.peft_config[self.active_adapter]

    def get_base_model(self) -> nn.Module:
        """The wrapped transformers model."""
        return self.base_model

    def get_prompt(self, batch_size: int, cache: Any = None) -> Any:
        """The virtual tokens for a batch, in the form the method injects them.

        Prefix tuning: a ``transformers.DynamicCache`` of ``num_virtual_tokens`` positions, made of
        ``num_layers`` key/value pairs of shape ``(batch_size, num_key_value_heads,
        num_virtual_tokens, head_dim)`` (the encoder's output, through the MLP when
        ``prefix_projection=True``, cast to the base model's dtype).

        Prompt tuning: the soft prompt ``(batch_size, num_virtual_tokens, hidden_size)``.

        ``cache``: for a prefix, an empty ``DynamicCache`` to fill instead of a new one.
        """
        config = self.active_peft_config
        prompt = self.prompt_table()  # (1, P, 2*L*token_dim) or (1, P, hidden)
        prompt = prompt.expand(batch_size, -1, -1)  # (B, P, ...), no copy
        if config.peft_type is not PeftType.PREFIX_TUNING:
            return prompt
        return build_prefix_cache(prefix_to_past_key_values(prompt, config), self.base_model.config, cache=cache)

    def prompt_table(self) -> torch.Tensor:
        """The encoder's output for all virtual tokens, ``(1, num_virtual_tokens, width)``, in the model's dtype.

        ``width`` is ``2*num_layers*token_dim`` for a prefix, ``hidden_size`` for a soft prompt.
        When no gradient can flow to it (``torch.no_grad()``, or a frozen adapter loaded for
        inference) the table is computed once and reused until a parameter of the encoder changes
        (an optimizer step or ``load_state_dict`` bumps the tensors' version counters), so
        generating or evaluating does not re-run the MLP at every call.
        """
        encoder = self.prompt_encoder[self.active_adapter]
        params = tuple(encoder.parameters())
        dtype = next(self.base_model.parameters()).dtype
        cacheable = not torch.is_grad_enabled() or not any(p.requires_grad for p in params)
        key = (dtype, *((id(p), p._version, p.device) for p in params))
        cached = self.__dict__.get("_prompt_table_cache")
        if cacheable and cached is not None and cached[0] == key:
            return cached[1]
        device = params[0].device
        indices = torch.arange(self.active_peft_config.num_virtual_tokens, device=device).unsqueeze(0)  # (1, P)
        table = encoder(indices).to(dtype)
        self.__dict__["_prompt_table_cache"] = (key, table.detach()) if cacheable else None
        return table

    def get_nb_trainable_parameters(self) -> tuple[int, int]:
        """``(trainable parameters, all parameters)``, tied weights counted once (PEFT's count)."""
        trainable, total = 0, 0
        for param in self.parameters():
            total += param.numel()
            if param.requires_grad:
                trainable += param.numel()
        return trainable, total

    def print_trainable_parameters(self) -> None:
        """Print PEFT's line, e.g. ``trainable params: 1,474,560 || all params: 560,689,152 || trainable%: 0.2630``."""
        trainable, total = self.get_nb_trainable_parameters()
        print(
            f"trainable params: {trainable:,d} || all params: {total:,d} || trainable%: {100 * trainable / total:.4f}"
        )

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        """Write the adapter in PEFT's format: ``adapter_config.json``, ``adapter_model.safetensors``, ``README.md``.

        ``adapter_model.safetensors`` holds ``prompt_embeddings``, the table the model uses
        ``(num_virtual_tokens, 2*num_layers*token_dim)`` (after the MLP when
        ``prefix_projection=True``). A reparameterised prefix also gets ``prefix_encoder.safetensors``
        (its embedding and MLP, which PEFT ignores) so training can resume with the same parameters.
        Each file is written under a temporary name and renamed into place: a failure leaves the
        earlier adapter in ``save_directory`` intact. See ``minipeft/save_load.py``.
        """
        from .save_load import model_card, save_adapter

        config = self.active_peft_config
        encoder = self.prompt_encoder[self.active_adapter]
        with torch.no_grad():
            table = self.prompt_table()[0].float()  # (P, width)
        encoder_state = encoder.state_dict() if getattr(encoder, "prefix_projection", False) else None
        head = self._modules_to_save_state()  # a classifier's trained head, under PEFT's keys
        head_numel = sum(v.numel() for v in head.values())
        trainable = sum(p.numel() for p in encoder.parameters()) + head_numel
        card = model_card(config, trainable, table.numel() + head_numel)
        save_adapter(save_directory, config, table, encoder_state, card, modules_to_save_state=head)

    def _modules_to_save_state(self) -> dict[str, torch.Tensor]:
        """Tensors of base-model modules trained beside the adapter, by saved key; none here (see SEQ_CLS)."""
        return {}

    @classmethod
    def from_pretrained(
        cls,
        model: nn.Module,
        model_id: str | os.PathLike,
        adapter_name: str = "default",
        is_trainable: bool = False,
        allow_pickle: bool = False,
    ) -> PeftModel:
        """Load an adapter folder (written by minipeft or by PEFT) onto ``model``.

        Returns the class the adapter's ``task_type`` names, whichever class this is called on
        (as PEFT does): :class:`PeftModelForCausalLM`,
        :class:`~minipeft.PeftModelForSequenceClassification` (its trained head is loaded too) or
        :class:`~minipeft.PeftModelForSeq2SeqLM`.

        Args:
            model: The base model the adapter was trained on (its shapes are checked).
            model_id: The adapter folder.
            adapter_name: PEFT's adapter name.
            is_trainable: ``False`` (default): inference mode, the prefix is a frozen table
                (no MLP) and the model is put in eval mode. ``True``: the adapter is trainable; a
                reparameterised prefix gets its MLP back from ``prefix_encoder.safetensors``, or,
                when the folder has none (a PEFT adapter), continues as a plain P-Tuning v2 prefix
                initialised to the saved table (with a warning).
            allow_pickle: Accept a pickled ``adapter_model.bin`` (read with ``weights_only=True``).

        Raises:
            FileNotFoundError: the folder has no config or no weights.
            ValueError: an unsupported ``peft_type``; corrupt or truncated weights; an adapter whose
                ``token_dim``, ``num_layers`` or heads do not fit ``model``, or whose table has
                another shape than its config says; a ``SEQ_CLS`` adapter whose head is missing or
                does not fit ``model``'s (another ``num_labels``). On any error ``model`` is left untouched.
        """
        from .save_load import (
            CONFIG_NAME,
            ENCODER_STATE_NAME,
            WEIGHTS_NAME,
            load_adapter_weights,
            load_config,
            warn_resuming_without_mlp,
        )

        folder = Path(model_id)
        config = load_config(folder)
        config.inference_mode = not is_trainable
        tensors = load_adapter_weights(folder, allow_pickle=allow_pickle)
        table = tensors.pop("prompt_embeddings")
        encoder_state = {k.removeprefix("encoder."): v for k, v in tensors.items() if k.startswith("encoder.")}
        head_state = {k: v for k, v in tensors.items() if k.startswith("base_model.")}  # SEQ_CLS: the trained head
        try:
            config.fill_from_model_config(model.config)
        except ShapeMismatchError as error:
            raise ValueError(
                f"{folder / CONFIG_NAME} was made for another base model than this {type(model).__name__}: "
                f"{error.describe()}."
            ) from None
        width = (
            2 * config.num_prefix_layers * config.token_dim
            if isinstance(config, PrefixTuningConfig)
            else config.token_dim
        )
        if tuple(table.shape) != (config.num_virtual_tokens, width):
            raise ValueError(
                f"{folder / WEIGHTS_NAME}: prompt_embeddings has shape {tuple(table.shape)}, but the config and the "
                f"base model need ({config.num_virtual_tokens}, {width})."
            )
        projected = isinstance(config, PrefixTuningConfig) and config.prefix_projection and is_trainable
        if projected and not encoder_state:
            warn_resuming_without_mlp(folder)
            config.prefix_projection = False
            projected = False
        # Build and fill the encoder on its own first: a failure here leaves `model` untouched.
        if isinstance(config, PrefixTuningConfig):
            encoder = PrefixEncoder(config)
        else:  # the saved table replaces any initialisation, so no tokenizer is needed
            build_config = dataclasses.replace(config, prompt_tuning_init="RANDOM", tokenizer_kwargs=None)
            encoder = PromptEmbedding(build_config, model.get_input_embeddings())
        with torch.no_grad():
            if projected:
                try:
                    encoder.load_state_dict(encoder_state)
                except RuntimeError as error:
                    raise ValueError(f"{folder / ENCODER_STATE_NAME} does not fit the config: {error}") from None
                recomputed = encoder(torch.arange(config.num_virtual_tokens).unsqueeze(0))[0]
                if not torch.allclose(recomputed, table.to(recomputed), atol=1e-4, rtol=1e-4):
                    raise ValueError(f"{folder}: {ENCODER_STATE_NAME} does not produce the table in {WEIGHTS_NAME}.")
            else:
                encoder.embedding.weight.copy_(table.to(encoder.embedding.weight))
        extra: dict[str, Any] = {}
        if config.task_type is TaskType.SEQ_CLS:
            from .seq_cls import _trained_copies

            extra["trained_modules"] = _trained_copies(model, config, head_state, source=folder / WEIGHTS_NAME)
        elif head_state:
            raise ValueError(
                f"{folder / WEIGHTS_NAME} holds base-model weights ({', '.join(sorted(head_state))}); minipeft "
                f"loads those for task_type='SEQ_CLS' only, not {config.task_type.value!r}."
            )
        peft_model = _peft_model_class(config)(model, config, adapter_name, prompt_encoder=encoder, **extra)
        if not is_trainable:
            peft_model.eval()
        return peft_model

    def __getattr__(self, name: str) -> Any:
        """Forward missing attributes (``config``, ``device``, ``generation_config``, ...) to the base model."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "base_model":
                raise
            return getattr(self.base_model, name)


class PeftModelForCausalLM(PeftModel):
    """Prefix tuning (or prompt tuning) for a decoder-only language model (``TaskType.CAUSAL_LM``).

    ``forward`` takes what the base model takes. A prefix adds keys and values, not positions to
    the output: ``logits`` are ``(batch, seq_len, vocab_size)`` for ``seq_len`` input tokens, and
    ``labels`` ``(batch, seq_len)`` give the base model's usual shifted cross-entropy loss. A soft
    prompt (prompt tuning) does add positions: as in PEFT, its logits are
    ``(batch, num_virtual_tokens + seq_len, vocab_size)`` and the labels are padded with -100.
    """

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        past_key_values: Any = None,
        **kwargs: Any,
    ) -> Any:
        """Run the base model with the virtual tokens injected.

        Args:
            input_ids: ``(batch, seq_len)`` token ids (or pass ``inputs_embeds``).
            attention_mask: ``(batch, seq_len)``, 1 for real tokens, 0 for padding; the virtual
                tokens' ``num_virtual_tokens`` ones are prepended here.
            inputs_embeds: ``(batch, seq_len, hidden_size)``, instead of ``input_ids``.
            labels: ``(batch, seq_len)``, -100 where no loss is wanted.
            position_ids: ``(batch, seq_len)`` positions counted from 0 for the first real token;
                shifted by ``num_virtual_tokens`` here (as PEFT does for prefixes). For a soft prompt
                the virtual tokens get positions ``0..num_virtual_tokens-1`` in front (PEFT instead
                drops ``position_ids`` for prompt tuning, with a warning). When ``None``, the model
                counts from the cache length, i.e. from ``num_virtual_tokens``.
            past_key_values: A cache returned by an earlier call of this model (it starts with the
                virtual tokens): they are then not injected again, and ``attention_mask`` covers the
                earlier real tokens plus the new ones.
            **kwargs: Passed to the base model (``use_cache``, ``output_attentions``, ...).

        Returns:
            The base model's output (``CausalLMOutputWithPast``).

        Raises:
            ValueError: neither ``input_ids`` nor ``inputs_embeds`` given.
        """
        config = self.active_peft_config
        num_virtual = config.num_virtual_tokens
        if self.training and config.peft_type is PeftType.PREFIX_TUNING:
            _refuse_checkpointing(self.base_model)
        if input_ids is None and inputs_embeds is None:
            raise ValueError("forward needs input_ids (batch, seq_len) or inputs_embeds (batch, seq_len, hidden_size).")
        batch_size = (input_ids if input_ids is not None else inputs_embeds).shape[0]
        continuing = past_key_values is not None and past_key_values.get_seq_length() > 0
        if attention_mask is not None:
            attention_mask = extend_attention_mask(attention_mask, num_virtual)  # (B, P + T)
        if position_ids is not None:
            position_ids = position_ids + num_virtual
        if config.peft_type is PeftType.PREFIX_TUNING or continuing:
            cache = past_key_values if continuing else self.get_prompt(batch_size)
        else:  # prompt tuning: the virtual tokens are the first inputs
            cache = past_key_values
            inputs_embeds, position_ids = self._prepend_soft_prompt(input_ids, inputs_embeds, position_ids)
            input_ids = None
            if labels is not None:
                labels = torch.cat([labels.new_full((batch_size, num_virtual), -100), labels], dim=1)
        if position_ids is not None:
            kwargs["position_ids"] = position_ids
        if cache is not None:
            kwargs[self._cache_kwarg] = cache
        return self.base_model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            inputs_embeds=inputs_embeds,
            labels=labels,
            **kwargs,
        )

    def _prepend_soft_prompt(
        self, input_ids: torch.Tensor | None, inputs_embeds: torch.Tensor | None, position_ids: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Prompt tuning: ``(B, P + T, hidden)`` embeddings with the soft prompt first, and positions
        ``0..P-1`` prepended to ``position_ids`` (already shifted by P) when they are given."""
        if inputs_embeds is None:
            inputs_embeds = self.base_model.get_input_embeddings()(input_ids)  # (B, T, hidden)
        batch_size, num_virtual = inputs_embeds.shape[0], self.active_peft_config.num_virtual_tokens
        inputs_embeds = torch.cat([self.get_prompt(batch_size).to(inputs_embeds.dtype), inputs_embeds], dim=1)
        if position_ids is not None:
            virtual_positions = torch.arange(num_virtual, device=position_ids.device).expand(batch_size, -1)
            position_ids = torch.cat([virtual_positions, position_ids], dim=1)
        return inputs_embeds, position_ids

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        """``base_model.generate`` with the virtual tokens injected at the first step.

        Takes everything ``transformers.GenerationMixin.generate`` takes (``max_new_tokens``,
        ``do_sample``, ``num_beams``, ``use_cache``, ``inputs_embeds``, ...). For batches, pad on the
        left. To continue a conversation, pass the cache a previous call returned
        (``return_dict_in_generate=True`` gives ``past_key_values``) with the whole conversation as
        ``input_ids``: that cache already starts with the prefix, so it is kept, not replaced.

        How: for the duration of the call, the base model's ``prepare_inputs_for_generation`` is
        replaced by :meth:`prepare_inputs_for_generation`, which at the first step fills the (empty)
        cache with the prefix (or prepends the soft prompt to the input embeddings), and at every
        step prepends ``num_virtual_tokens`` ones to the attention mask and shifts the position
        ids. This is PEFT's approach (``PeftModelForCausalLM.generate``).
        """
        base = self.base_model
        self._base_prepare_inputs_for_generation = base.prepare_inputs_for_generation
        base.prepare_inputs_for_generation = self.prepare_inputs_for_generation
        try:
            return base.generate(*args, **kwargs)
        finally:
            del base.prepare_inputs_for_generation  # the class's method is visible again

    def prepare_inputs_for_generation(
        self, *args: Any, inputs_embeds: torch.Tensor | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """The base model's inputs for one generation step, with the virtual tokens added.

        ``inputs_embeds`` is named in the signature because transformers checks for it before it
        lets ``generate`` start from embeddings.

        Raises:
            ValueError: a cache type other than ``DynamicCache`` (e.g. ``cache_implementation="static"``),
                or a 4-D attention mask.
        """
        from transformers import DynamicCache

        config = self.active_peft_config
        num_virtual = config.num_virtual_tokens
        caller_cache = kwargs.get(self._cache_kwarg)
        if (
            kwargs.get("is_first_iteration")
            and kwargs.get("next_sequence_length") is not None
            and caller_cache is not None
            and caller_cache.get_seq_length() > 0
        ):
            # Continuing from a cache the caller passed (a second chat turn): it starts with the prefix,
            # which is not in input_ids, so transformers' count of the tokens still to process is short
            # by num_virtual_tokens.
            kwargs["next_sequence_length"] += num_virtual
        inputs = self._base_prepare_inputs_for_generation(*args, inputs_embeds=inputs_embeds, **kwargs)
        key = self._cache_kwarg
        cache = inputs.get(key)
        if cache is not None and not isinstance(cache, DynamicCache):
            raise ValueError(
                f"minipeft generates with a DynamicCache only, got {type(cache).__name__}; "
                "remove cache_implementation from the generation config."
            )
        if inputs.get("use_cache") is False:
            # Without a cache every step re-reads the whole sequence. The model still appends to a
            # cache it is given and generate hands that back, so start from a fresh prefix each time.
            cache = None
        first_step = cache is None or cache.get_seq_length() == 0
        if inputs.get("position_ids") is not None:
            inputs["position_ids"] = inputs["position_ids"] + num_virtual
        if first_step and config.peft_type is PeftType.PREFIX_TUNING:
            tokens = inputs.get("input_ids")
            batch_size = (tokens if tokens is not None else inputs["inputs_embeds"]).shape[0]
            # fill the cache object that generate holds (if any), so it sees the prefix in its own cache
            inputs[key] = self.get_prompt(batch_size, cache=cache)
        elif first_step:  # prompt tuning: the soft prompt goes before the embedded input tokens
            inputs["inputs_embeds"], inputs["position_ids"] = self._prepend_soft_prompt(
                inputs.get("input_ids"), inputs.get("inputs_embeds"), inputs.get("position_ids")
            )
            inputs["input_ids"] = None
        mask = inputs.get("attention_mask")
        if mask is not None:
            if mask.dim() != 2:
                raise ValueError(f"minipeft generates with a 2-D attention mask (batch, seq_len), got {mask.dim()}-D.")
            inputs["attention_mask"] = extend_attention_mask(mask, num_virtual)
        return inputs


def _refuse_checkpointing(model: nn.Module) -> None:
    """Raise if gradient (activation) checkpointing is on: transformers then drops ``past_key_values``."""
    if any(getattr(m, "gradient_checkpointing", False) for m in model.modules()):
        raise ValueError(
            "Prefix tuning does not work with gradient (activation) checkpointing: the prefix is passed as "
            "past_key_values, which transformers drops when checkpointing is on. Turn it off: "
            "model.activation_checkpointing_disable() (gradient_checkpointing_disable() in older transformers)."
        )


def get_peft_model(model: nn.Module, peft_config: PromptLearningConfig, adapter_name: str = "default") -> PeftModel:
    """Freeze ``model`` and attach the adapter that ``peft_config`` describes.

    The config is copied and its missing shape fields are filled from ``model.config`` (see
    :meth:`PrefixTuningConfig.fill_from_model_config`); ``base_model_name_or_path`` is taken from
    ``model.name_or_path`` when unset.

    Args:
        model: A transformers decoder-only model (``AutoModelForCausalLM``), or for
            ``task_type=SEQ_CLS`` a classifier (``AutoModelForSequenceClassification``, e.g. BERT),
            or for ``task_type=SEQ_2_SEQ_LM`` an encoder-decoder (``AutoModelForSeq2SeqLM``: T5, BART).
        peft_config: A :class:`~minipeft.PrefixTuningConfig` (Prefix Tuning / P-Tuning v2) or a
            :class:`~minipeft.PromptTuningConfig` (input-only soft prompt).
        adapter_name: Name of the adapter; PEFT's default is ``"default"``.

    Returns:
        A :class:`PeftModelForCausalLM`, a :class:`~minipeft.PeftModelForSequenceClassification`
        for ``task_type=SEQ_CLS`` or a :class:`~minipeft.PeftModelForSeq2SeqLM` for
        ``task_type=SEQ_2_SEQ_LM`` (PEFT's ``MODEL_TYPE_TO_PEFT_MODEL_MAPPING``).

    Raises:
        TypeError: ``peft_config`` is not a minipeft config, or ``model`` is already wrapped.
        ValueError: the config does not fit the model (see ``fill_from_model_config``).
    """
    if not isinstance(peft_config, (PrefixTuningConfig, PromptTuningConfig)):
        raise TypeError(
            "get_peft_model expects a minipeft.PrefixTuningConfig or minipeft.PromptTuningConfig, "
            f"got {type(peft_config).__name__}."
        )
    if isinstance(model, PeftModel):
        raise TypeError("This model is already a minipeft PeftModel; wrap the base model (model.get_base_model()).")
    config = dataclasses.replace(peft_config)
    config.fill_from_model_config(model.config)
    if config.base_model_name_or_path is None:
        config.base_model_name_or_path = getattr(model, "name_or_path", None) or None
    return _peft_model_class(config)(model, config, adapter_name)


def _peft_model_class(config: PromptLearningConfig) -> type[PeftModel]:
    """The wrapper for the config's task type (PEFT's ``MODEL_TYPE_TO_PEFT_MODEL_MAPPING``)."""
    if config.task_type is TaskType.SEQ_2_SEQ_LM:
        from .seq2seq import PeftModelForSeq2SeqLM

        return PeftModelForSeq2SeqLM
    if config.task_type is TaskType.SEQ_CLS:
        from .seq_cls import PeftModelForSequenceClassification

        return PeftModelForSequenceClassification
    return PeftModelForCausalLM
