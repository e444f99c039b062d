"""The wrapper: a frozen transformers model plus a prompt-learning adapter, with PEFT's interface.

:class:`PeftModel` holds what every task shares: the adapter (``prompt_encoder``, ``peft_config``),
the table it produces, and :meth:`PeftModel._inject`, which turns a call's inputs into the base
model's inputs with the virtual tokens in place: a prefix as the cache (:mod:`minipeft.injection`),
a soft prompt before the input embeddings; the attention mask and the positions grow to match.
A task's wrapper (``PeftModelForCausalLM``, ...) registers itself for its ``TaskType`` and holds
only what differs for its task; :func:`get_peft_model` and :meth:`PeftModel.from_pretrained` pick
it from that table, as PEFT's ``MODEL_TYPE_TO_PEFT_MODEL_MAPPING`` does.

Follows PEFT ``src/peft/peft_model.py`` (``PeftModel``: ``get_prompt``, ``print_trainable_parameters``,
``save_pretrained``, ``from_pretrained``) and ``src/peft/mapping_func.py`` (``get_peft_model``).

Explained in: book/01_why_prefix_tuning.ipynb (wrapping), book/04_past_key_values.ipynb (injection)
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from .config import PeftType, PrefixTuningConfig, PromptLearningConfig, PromptTuningConfig, TaskType
from .injection import build_prefix_cache, cache_kwarg, extend_attention_mask, prefix_to_past_key_values
from .prefix_encoder import PrefixEncoder
from .prompt_tuning import PromptEmbedding
from .save_load import WEIGHTS_NAME, read_adapter, write_adapter

__all__ = ["PeftModel", "get_peft_model"]


class PeftModel(nn.Module):
    """A frozen base model with one prompt-learning adapter (named ``"default"``, as in PEFT).

    Args:
        model: The transformers model to adapt; its parameters are frozen.
        peft_config: A filled :class:`~minipeft.PrefixTuningConfig` or :class:`~minipeft.PromptTuningConfig`.
        adapter_name: PEFT's adapter name.
        prompt_encoder, saved_state, source: From ``from_pretrained``: the built adapter, saved
            tensors of base-model modules (a ``SEQ_CLS`` head) and the file they came from.

    Attributes:
        base_model: The wrapped transformers model.
        prompt_encoder: ``nn.ModuleDict`` ``{adapter_name: PrefixEncoder or PromptEmbedding}`` (PEFT's
            parameter names, ``prompt_encoder.default.embedding.weight``); ``peft_config``: ``{adapter_name: config}``.

    Raises:
        ValueError: a prefix on a model with gradient checkpointing enabled (transformers then drops
            the cache, the prefix); saved base-model weights the task does not take.
        TypeError: a prefix on a model that takes no key/value cache.

    Explained in: book/01_why_prefix_tuning.ipynb
    """

    _TASK_CLASSES: ClassVar[dict[TaskType, type[PeftModel]]] = {}  # filled by class X(PeftModel, task_type=...)
    _TOKEN_LABELS: ClassVar[bool] = False  # per-token labels (-100 in front of a soft prompt), not per sequence
    _CONTINUES_FROM_CACHE: ClassVar[bool] = False  # forward may continue from a caller's cache (a causal LM)

    def __init_subclass__(cls, task_type: TaskType | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if task_type is not None:
            PeftModel._TASK_CLASSES[TaskType(task_type)] = cls

    def __init__(
        self,
        model: nn.Module,
        peft_config: PromptLearningConfig,
        adapter_name: str = "default",
        *,
        prompt_encoder: nn.Module | None = None,
        saved_state: dict[str, torch.Tensor] | None = None,
        source: str | os.PathLike = "the saved state",
    ) -> None:
        super().__init__()
        saved_state = None if saved_state is None else dict(saved_state)
        self._prepare(model, peft_config, adapter_name, saved_state, source)  # checks first: model untouched
        if saved_state:
            raise ValueError(
                f"{source} holds base-model weights ({', '.join(sorted(saved_state))}); minipeft loads those for "
                f"task_type='SEQ_CLS' only, not {TaskType(peft_config.task_type).value!r}."
            )
        prefix = peft_config.peft_type is PeftType.PREFIX_TUNING
        key = cache_kwarg(model)
        if prefix:
            _refuse_checkpointing(model)
            if key is None:
                backbone = type(getattr(model, "base_model", model)).__name__
                raise TypeError(
                    f"{type(model).__name__} takes no past_key_values (nor passes them to {backbone}), which prefix "
                    "tuning needs: the prefix is the attention layers' key/value cache."
                )
        self._cache_kwarg = key or "past_key_values"
        self.base_model = model
        self.active_adapter = adapter_name
        self.peft_config = {adapter_name: peft_config}
        for param in model.parameters():
            param.requires_grad_(False)
        if prompt_encoder is None and prefix:
            prompt_encoder = PrefixEncoder(peft_config)
        elif prompt_encoder is None:
            prompt_encoder = PromptEmbedding(peft_config, model.get_input_embeddings())
        device = next(model.parameters()).device
        if device.type != "meta":  # a model on the meta device (counting parameters only) keeps a CPU prefix
            prompt_encoder = prompt_encoder.to(device)
        if peft_config.inference_mode:
            prompt_encoder.requires_grad_(False)
        self.prompt_encoder = nn.ModuleDict({adapter_name: prompt_encoder})
        self._attach(model, peft_config, adapter_name)

    def _prepare(
        self,
        model: nn.Module,
        config: PromptLearningConfig,
        adapter_name: str,
        saved_state: dict[str, torch.Tensor] | None,
        source: str | os.PathLike,
    ) -> None:
        """Hook: check ``model`` and ``config`` and pop from ``saved_state`` (``None``: a new adapter) what
        the task loads, without changing ``model``."""

    def _attach(self, model: nn.Module, config: PromptLearningConfig, adapter_name: str) -> None:
        """Hook: change the (now frozen) base model, e.g. wrap a trained head."""

    @property
    def active_peft_config(self) -> PromptLearningConfig:
        """The config of the active adapter."""
        return self.peft_config[self.active_adapter]

    def get_base_model(self) -> nn.Module:
        """The wrapped transformers model."""
        return self.base_model

    def get_prompt(self, batch_size: int, cache: Any = None) -> Any:
        """The virtual tokens for a batch, as the method injects them: for a prefix a ``DynamicCache``
        (``cache``, filled, when given) of ``num_layers`` pairs ``(batch_size, num_key_value_heads,
        num_virtual_tokens, head_dim)``; for a soft prompt ``(batch_size, num_virtual_tokens, hidden_size)``."""
        config = self.active_peft_config
        prompt = self.prompt_table().expand(batch_size, -1, -1)  # (B, P, width), no copy
        if config.peft_type is not PeftType.PREFIX_TUNING:
            return prompt
        return build_prefix_cache(prefix_to_past_key_values(prompt, config), self.base_model.config, cache=cache)

    def prompt_table(self) -> torch.Tensor:
        """The encoder's output ``(1, num_virtual_tokens, width)`` in the model's dtype (``width``:
        ``2*num_layers*token_dim``, or ``hidden_size`` for a soft prompt). Without gradients it is
        computed once and reused until an encoder parameter changes (its version counter)."""
        encoder = self.prompt_encoder[self.active_adapter]
        params = tuple(encoder.parameters())
        dtype = next(self.base_model.parameters()).dtype
        cacheable = not torch.is_grad_enabled() or not any(p.requires_grad for p in params)
        key = (dtype, *((id(p), p._version, p.device) for p in params))
        cached = self.__dict__.get("_prompt_table_cache")
        if cacheable and cached is not None and cached[0] == key:
            return cached[1]
        indices = torch.arange(self.active_peft_config.num_virtual_tokens, device=params[0].device)
        table = encoder(indices.unsqueeze(0)).to(dtype)  # (1, P, width)
        self.__dict__["_prompt_table_cache"] = (key, table.detach()) if cacheable else None
        return table

    def _inject(
        self,
        input_ids: torch.Tensor | None,
        inputs_embeds: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
        position_ids: torch.Tensor | None,
        labels: torch.Tensor | None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """The base model's keyword arguments with the active adapter's virtual tokens injected.

        A prefix becomes the cache (a caller's cache that already holds it is kept); a soft prompt
        goes before the input embeddings, with :meth:`_soft_prompt_positions`, segment 0 and (per-token
        labels) -100 in front. ``attention_mask`` ``(B, T)`` -> ``(B, P + T)``; ``position_ids`` + ``P``.

        Raises:
            ValueError: neither ``input_ids`` nor ``inputs_embeds``; see :meth:`_begin_forward`.
        """
        config = self.active_peft_config
        num_virtual = config.num_virtual_tokens
        prefix = config.peft_type is PeftType.PREFIX_TUNING
        caller_cache = self._begin_forward(kwargs)
        if input_ids is None and inputs_embeds is None:
            raise ValueError("forward needs input_ids (batch, seq_len) or inputs_embeds (batch, seq_len, hidden_size).")
        batch_size = (input_ids if input_ids is not None else inputs_embeds).shape[0]
        continuing = caller_cache is not None and caller_cache.get_seq_length() > 0
        if attention_mask is not None:
            attention_mask = extend_attention_mask(attention_mask, num_virtual)  # (B, P + T)
        cache = caller_cache
        if prefix or continuing:  # the prefix is (or already is) the cache
            position_ids = None if position_ids is None else position_ids + num_virtual
            cache = caller_cache if continuing else self.get_prompt(batch_size)
        else:  # a soft prompt: the virtual tokens are the first inputs
            if inputs_embeds is None:
                inputs_embeds = self.base_model.get_input_embeddings()(input_ids)  # (B, T, hidden)
            prompt = self.get_prompt(batch_size).to(inputs_embeds.dtype)  # (B, P, hidden)
            inputs_embeds, input_ids = torch.cat([prompt, inputs_embeds], dim=1), None  # (B, P + T, hidden)
            if position_ids is not None:
                virtual = self._soft_prompt_positions(position_ids)  # (B, P)
                position_ids = torch.cat([virtual, position_ids + num_virtual], dim=1)  # (B, P + T)
            if kwargs.get("token_type_ids") is not None:  # the prompt is segment 0 (A)
                segment = kwargs["token_type_ids"].new_zeros(batch_size, num_virtual)
                kwargs["token_type_ids"] = torch.cat([segment, kwargs["token_type_ids"]], dim=1)  # (B, P + T)
            if labels is not None and self._TOKEN_LABELS:
                labels = torch.cat([labels.new_full((batch_size, num_virtual), -100), labels], dim=1)  # (B, P + T)
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "inputs_embeds": inputs_embeds, **kwargs}
        extra = {"labels": labels, "position_ids": position_ids, self._cache_kwarg: cache}
        inputs.update({k: v for k, v in extra.items() if v is not None})
        return inputs

    def _begin_forward(self, kwargs: dict[str, Any]) -> Any:
        """Pop and return a caller's cache from ``kwargs``.

        Raises:
            ValueError: a prefix in training with gradient checkpointing on; a cache where the task takes none.
        """
        if self.training and self.active_peft_config.peft_type is PeftType.PREFIX_TUNING:
            _refuse_checkpointing(self.base_model)
        caller_cache = None
        for key in ("past_key_values", "cache"):
            value = kwargs.pop(key, None)
            if value is not None and not self._CONTINUES_FROM_CACHE:
                raise ValueError(f"{type(self).__name__} builds its own {key} from the prefix; pass no {key}.")
            caller_cache = value if value is not None else caller_cache
        return caller_cache

    def _soft_prompt_positions(self, position_ids: torch.Tensor) -> torch.Tensor:
        """Hook: the soft prompt's positions ``(batch, num_virtual_tokens)``; ``0..P-1`` here."""
        num_virtual = self.active_peft_config.num_virtual_tokens
        return torch.arange(num_virtual, device=position_ids.device).expand(position_ids.shape[0], -1)

    def get_nb_trainable_parameters(self) -> tuple[int, int]:
        """``(trainable parameters, all parameters)``, tied weights counted once (PEFT's count)."""
        trainable, total = 0, 0
        for param in self.parameters():
            total += param.numel()
            trainable += param.numel() if param.requires_grad else 0
        return trainable, total

    def print_trainable_parameters(self) -> None:
        """Print PEFT's line, e.g. ``trainable params: 1,474,560 || all params: 560,689,152 || trainable%: 0.2630``."""
        trainable, total = self.get_nb_trainable_parameters()
        print(
            f"trainable params: {trainable:,d} || all params: {total:,d} || trainable%: {100 * trainable / total:.4f}"
        )

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        """Write the adapter in PEFT's format, atomically (:mod:`minipeft.save_load`): ``prompt_embeddings``
        ``(num_virtual_tokens, width)``, the table the model uses. Explained in: book/05_saving_and_loading.ipynb"""
        write_adapter(self, save_directory)

    @classmethod
    def from_pretrained(
        cls,
        model: nn.Module,
        model_id: str | os.PathLike,
        adapter_name: str = "default",
        is_trainable: bool = False,
        allow_pickle: bool = False,
    ) -> PeftModel:
        """Load an adapter folder (minipeft's or PEFT's) onto ``model``, as the wrapper its ``task_type`` names.

        Args:
            model: The base model the adapter was trained on (its shapes are checked).
            model_id: The adapter folder.
            adapter_name: PEFT's adapter name.
            is_trainable: ``False``: a frozen table, eval mode. ``True``: trainable; a reparameterised
                prefix gets its MLP back, or (a PEFT adapter) continues as a plain table, with a warning.
            allow_pickle: Accept a pickled ``adapter_model.bin`` (read with ``weights_only=True``).

        Raises:
            FileNotFoundError: the folder has no config or no weights.
            ValueError: shapes that do not fit ``model`` (both named), a corrupt file, a ``SEQ_CLS`` head
                that is missing or does not fit. On any error ``model`` is left untouched.

        Explained in: book/05_saving_and_loading.ipynb
        """
        config, encoder, state = read_adapter(model, model_id, is_trainable, allow_pickle)
        wrapper = PeftModel._TASK_CLASSES[config.task_type]
        source = Path(model_id) / WEIGHTS_NAME
        peft_model = wrapper(model, config, adapter_name, prompt_encoder=encoder, saved_state=state, source=source)
        return peft_model if is_trainable else peft_model.eval()

    def __getattr__(self, name: str) -> Any:
        """Forward missing attributes (``config``, ``device``, ``generation_config``, ...) to the base model."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "base_model":
                raise
            return getattr(self.base_model, name)


def _refuse_checkpointing(model: nn.Module) -> None:
    """Raise if gradient (activation) checkpointing is on: transformers then drops the cache, the prefix."""
    if any(getattr(m, "gradient_checkpointing", False) for m in model.modules()):
        raise ValueError(
            "Prefix tuning does not work with gradient (activation) checkpointing: the prefix is passed as "
            "past_key_values, which transformers drops when checkpointing is on. Turn it off: "
            "model.activation_checkpointing_disable() (gradient_checkpointing_disable() in older transformers)."
        )


def get_peft_model(model: nn.Module, peft_config: PromptLearningConfig, adapter_name: str = "default") -> PeftModel:
    """Freeze ``model`` and attach the adapter that ``peft_config`` describes.

    The config is copied and its missing shape fields are filled from ``model.config``. Returns the
    wrapper registered for the config's task type (``PeftModelForCausalLM``, ...), as PEFT's
    ``MODEL_TYPE_TO_PEFT_MODEL_MAPPING``; ``model`` is an ``AutoModelFor...`` of that task.

    Raises:
        TypeError: ``peft_config`` is not a minipeft config, or ``model`` is already wrapped.
        ValueError: the config does not fit the model (see ``fill_from_model_config``).

    Explained in: book/01_why_prefix_tuning.ipynb
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
    return PeftModel._TASK_CLASSES[config.task_type](model, config, adapter_name)
