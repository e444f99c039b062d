"""The wrapper: a frozen transformers model plus a trainable prefix, with PEFT's interface.

``get_peft_model(model, PrefixTuningConfig(...))`` freezes ``model`` and returns a
:class:`PeftModelForCausalLM` whose ``forward`` and ``generate`` inject the prefix as the
model's ``past_key_values`` (see :mod:`minipeft.injection`).

Follows PEFT ``src/peft/peft_model.py`` (``PeftModel``, ``PeftModelForCausalLM``: ``get_prompt``,
``forward``, ``generate``, ``prepare_inputs_for_generation``, ``print_trainable_parameters``) and
``src/peft/mapping_func.py`` (``get_peft_model``), restricted to prefix tuning of decoder-only models.

Explained in: book/01_why_prefix_tuning.ipynb
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import torch
from torch import nn

from .config import PrefixTuningConfig
from .encoder import PrefixEncoder
from .injection import build_prefix_cache, extend_attention_mask, prefix_to_past_key_values


class PeftModel(nn.Module):
    """A frozen base model with one prefix adapter (named ``"default"``, as in PEFT).

    Attributes:
        base_model: The wrapped transformers model; its parameters are frozen.
        prompt_encoder: ``nn.ModuleDict`` ``{"default": PrefixEncoder}``, PEFT's parameter names
            (``prompt_encoder.default.embedding.weight``).
        peft_config: ``{"default": PrefixTuningConfig}``.

    Raises:
        ValueError: the base model has gradient checkpointing enabled (the prefix lives in the
            key/value cache, which transformers disables under gradient checkpointing, as PEFT says).
    """

    def __init__(self, model: nn.Module, peft_config: PrefixTuningConfig, adapter_name: str = "default") -> None:
        super().__init__()
        if any(getattr(m, "gradient_checkpointing", False) for m in model.modules()):
            raise ValueError(
                "Prefix tuning does not work with gradient (activation) checkpointing: the prefix is passed as "
                "past_key_values, which transformers drops when checkpointing is on. Turn it off before "
                "get_peft_model: model.activation_checkpointing_disable() (gradient_checkpointing_disable() "
                "in older transformers)."
            )
        self.base_model = model
        self.active_adapter = adapter_name
        self.peft_config = {adapter_name: peft_config}
        for param in model.parameters():
            param.requires_grad_(False)
        device = next(model.parameters()).device
        encoder = PrefixEncoder(peft_config)
        if device.type != "meta":  # a model on the meta device (counting parameters only) keeps a CPU prefix
            encoder = encoder.to(device)
        if peft_config.inference_mode:
            encoder.requires_grad_(False)
        self.prompt_encoder = nn.ModuleDict({adapter_name: encoder})
        # transformers < 5.24 calls the cache argument `past_key_values`, later versions `cache`.
        forward_params = inspect.signature(model.forward).parameters
        self._cache_kwarg = "cache" if "cache" in forward_params else "past_key_values"

    @property
    def active_peft_config(self) -> PrefixTuningConfig:
        """The config of the active adapter."""
        return self.peft_config[self.active_adapter]

    def get_base_model(self) -> nn.Module:
        """The wrapped transformers model."""
        return self.base_model

    def get_prompt(self, batch_size: int) -> Any:
        """The prefix as a ``transformers.DynamicCache`` of ``num_virtual_tokens`` positions.

        Runs the prefix encoder (through the MLP when ``prefix_projection=True``), casts to the base
        model's dtype and splits into ``num_layers`` key/value pairs of shape
        ``(batch_size, num_key_value_heads, num_virtual_tokens, head_dim)``.
        """
        config = self.active_peft_config
        encoder = self.prompt_encoder[self.active_adapter]
        device = encoder.embedding.weight.device
        prefix_tokens = torch.arange(config.num_virtual_tokens, device=device).unsqueeze(0)  # (1, P)
        prefix = encoder(prefix_tokens)  # (1, P, 2*L*token_dim)
        prefix = prefix.expand(batch_size, -1, -1)  # (B, P, 2*L*token_dim), no copy
        dtype = next(self.base_model.parameters()).dtype
        past_key_values = prefix_to_past_key_values(prefix.to(dtype), config)
        return build_prefix_cache(past_key_values, self.base_model.config)

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

    def __getattr__(self, name: str) -> Any:
        """Forward missing attributes (``config``, ``device``, ``generation_config``, ...) to the base model."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "base_model":
                raise
            return getattr(self.base_model, name)


class PeftModelForCausalLM(PeftModel):
    """Prefix tuning for a decoder-only language model (``TaskType.CAUSAL_LM``).

    ``forward`` takes what the base model takes. The prefix adds keys and values, not positions to
    the output: ``logits`` are ``(batch, seq_len, vocab_size)`` for ``seq_len`` input tokens, and
    ``labels`` ``(batch, seq_len)`` give the base model's usual shifted cross-entropy loss.
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
        """Run the base model with the prefix in its key/value cache.

        Args:
            input_ids: ``(batch, seq_len)`` token ids (or pass ``inputs_embeds``).
            attention_mask: ``(batch, seq_len)``, 1 for real tokens, 0 for padding; the prefix's
                ``num_virtual_tokens`` ones are prepended here.
            inputs_embeds: ``(batch, seq_len, hidden_size)``, instead of ``input_ids``.
            labels: ``(batch, seq_len)``, -100 where no loss is wanted.
            position_ids: ``(batch, seq_len)`` positions counted from 0 for the first real token;
                shifted by ``num_virtual_tokens`` here (as PEFT does). When ``None``, the model
                counts from the cache length, i.e. from ``num_virtual_tokens``.
            past_key_values: A cache returned by an earlier call of this model (it starts with the
                prefix): the prefix is then not injected again, and ``attention_mask`` covers the
                earlier real tokens plus the new ones.
            **kwargs: Passed to the base model (``use_cache``, ``output_attentions``, ...).

        Returns:
            The base model's output (``CausalLMOutputWithPast``).

        Raises:
            ValueError: neither ``input_ids`` nor ``inputs_embeds`` given.
        """
        config = self.active_peft_config
        if input_ids is None and inputs_embeds is None:
            raise ValueError("forward needs input_ids (batch, seq_len) or inputs_embeds (batch, seq_len, hidden_size).")
        batch_size = (input_ids if input_ids is not None else inputs_embeds).shape[0]
        continuing = past_key_values is not None and past_key_values.get_seq_length() > 0
        cache = past_key_values if continuing else self.get_prompt(batch_size)
        if attention_mask is not None:
            attention_mask = extend_attention_mask(attention_mask, config.num_virtual_tokens)  # (B, P + T)
        if position_ids is not None:
            position_ids = position_ids + config.num_virtual_tokens
            kwargs["position_ids"] = position_ids
        kwargs[self._cache_kwarg] = cache
        return self.base_model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            inputs_embeds=inputs_embeds,
            labels=labels,
            **kwargs,
        )

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        """``base_model.generate`` with the prefix injected at the first step.

        Takes everything ``transformers.GenerationMixin.generate`` takes (``max_new_tokens``,
        ``do_sample``, ``num_beams``, ...). For batches, pad on the left.

        How: for the duration of the call, the base model's ``prepare_inputs_for_generation`` is
        replaced by :meth:`prepare_inputs_for_generation`, which fills the (empty) cache with the
        prefix at the first step and prepends ``num_virtual_tokens`` ones to the attention mask and
        shifts the position ids at every step. This is PEFT's approach
        (``PeftModelForCausalLM.generate``).
        """
        base = self.base_model
        self._base_prepare_inputs_for_generation = base.prepare_inputs_for_generation
        base.prepare_inputs_for_generation = self.prepare_inputs_for_generation
        try:
            return base.generate(*args, **kwargs)
        finally:
            del base.prepare_inputs_for_generation  # the class's method is visible again

    def prepare_inputs_for_generation(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The base model's inputs for one generation step, with the prefix added.

        Raises:
            ValueError: a cache type other than ``DynamicCache`` (e.g. ``cache_implementation="static"``),
                or a 4-D attention mask.
        """
        from transformers import DynamicCache

        config = self.active_peft_config
        inputs = self._base_prepare_inputs_for_generation(*args, **kwargs)
        key = self._cache_kwarg
        cache = inputs.get(key)
        if cache is not None and not isinstance(cache, DynamicCache):
            raise ValueError(
                f"minipeft generates with a DynamicCache only, got {type(cache).__name__}; "
                "remove cache_implementation from the generation config."
            )
        if cache is None or cache.get_seq_length() == 0:  # first step, or no cache at all (use_cache=False)
            tokens = inputs.get("input_ids")
            batch_size = (tokens if tokens is not None else inputs["inputs_embeds"]).shape[0]
            prefix = self.get_prompt(batch_size)
            if cache is None:
                cache = prefix
            else:  # fill the cache object that generate holds, so it sees the prefix in its own cache
                for layer_idx, layer in enumerate(prefix.layers):
                    cache.update(layer.keys, layer.values, layer_idx)
            inputs[key] = cache
        mask = inputs.get("attention_mask")
        if mask is not None:
            if mask.dim() != 2:
                raise ValueError(f"minipeft generates with a 2-D attention mask (batch, seq_len), got {mask.dim()}-D.")
            inputs["attention_mask"] = extend_attention_mask(mask, config.num_virtual_tokens)
        if inputs.get("position_ids") is not None:
            inputs["position_ids"] = inputs["position_ids"] + config.num_virtual_tokens
        return inputs


def get_peft_model(model: nn.Module, peft_config: PrefixTuningConfig, adapter_name: str = "default") -> PeftModel:
    """Freeze ``model`` and attach a prefix described by ``peft_config``.

    The config is copied and its missing shape fields are filled from ``model.config`` (see
    :meth:`PrefixTuningConfig.fill_from_model_config`); ``base_model_name_or_path`` is taken from
    ``model.name_or_path`` when unset.

    Args:
        model: A transformers decoder-only model (``AutoModelForCausalLM``).
        peft_config: A :class:`~minipeft.PrefixTuningConfig`.
        adapter_name: Name of the adapter; PEFT's default is ``"default"``.

    Returns:
        A :class:`PeftModelForCausalLM`.

    Raises:
        TypeError: ``peft_config`` is not a ``PrefixTuningConfig``, or ``model`` is already wrapped.
        ValueError: the config does not fit the model (see ``fill_from_model_config``).
    """
    if not isinstance(peft_config, PrefixTuningConfig):
        raise TypeError(f"get_peft_model expects a minipeft.PrefixTuningConfig, got {type(peft_config).__name__}.")
    if isinstance(model, PeftModel):
        raise TypeError("This model is already a minipeft PeftModel; wrap the base model (model.get_base_model()).")
    config = dataclasses.replace(peft_config)
    config.fill_from_model_config(model.config)
    if config.base_model_name_or_path is None:
        config.base_model_name_or_path = getattr(model, "name_or_path", None) or None
    return PeftModelForCausalLM(model, config, adapter_name)  # the config admits CAUSAL_LM only, so far
