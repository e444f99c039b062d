"""The wrapper: a frozen transformers model plus prompt-learning adapters, with PEFT's interface.

:class:`PeftModel` holds what every task shares: the adapters (``prompt_encoder``, ``peft_config``,
the active one), the table the active adapter produces, and :meth:`PeftModel._inject`, which turns
a call's inputs into the base model's inputs with the virtual tokens in place: a prefix as the cache
(:mod:`minipeft.injection`), a soft prompt before the input embeddings; the attention mask and the
positions grow to match. A task's wrapper (``PeftModelForCausalLM``, ...) registers itself for its
``TaskType`` and holds only what differs for its task; :func:`get_peft_model` and
:meth:`PeftModel.from_pretrained` pick it from that table, as PEFT's ``MODEL_TYPE_TO_PEFT_MODEL_MAPPING``.

Follows PEFT ``src/peft/peft_model.py`` (``PeftModel``: ``add_adapter``, ``set_adapter``, ``load_adapter``,
``delete_adapter``, ``disable_adapter``, ``get_prompt``, ``save_pretrained``, ``from_pretrained``) and
``src/peft/mapping_func.py`` (``get_peft_model``).

Explained in: book/01_why_prefix_tuning.ipynb (wrapping), book/04_past_key_values.ipynb (injection)
"""

from __future__ import annotations

import contextlib
import copy
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn.modules.module import _IncompatibleKeys
from transformers import PreTrainedModel

from .cache_shapes import CacheLayout
from .config import PeftType, PromptLearningConfig, TaskType
from .hub import push_folder_to_hub
from .injection import (
    build_prefix_cache,
    cache_kwarg,
    check_left_padding,
    extend_attention_mask,
    prefix_to_past_key_values,
)
from .mixed_batch import PrefixMemory, plan_mixed_batch, prefix_memory
from .modules_to_save import ModulesToSaveWrapper, find_modules_to_save, trained_copies
from .save_load import WEIGHTS_NAME, build_encoder, fill_shapes, read_adapter, write_adapters, write_resume_state

__all__ = ["PeftModel", "get_peft_model"]

# transformers' own adapter API (PeftAdapterMixin), which __getattr__ would otherwise hand out: on a minipeft
# model it would act on the base model behind the adapter's back
_BASE_MODEL_ADAPTER_METHODS = {
    "enable_adapters",
    "disable_adapters",
    "get_adapter_state_dict",
    "load_adapter_state_dict",
    "set_adapter_state_dict",
    "merge_and_unload",
    "unload",
}


class PeftModel(PreTrainedModel):
    """A frozen base model with prompt-learning adapters; one active at a time (``"default"`` first, as in PEFT).

    To transformers it is a ``PreTrainedModel`` whose model API (``config``, ``device``,
    ``gradient_checkpointing_enable``, ...) is its base model's, so ``Trainer`` saves it through
    :meth:`save_pretrained` (an adapter folder, not the base model's weights); PEFT's own ``PeftModel``
    is recognised by ``Trainer`` by name instead.

    Args:
        model: The transformers model to adapt; its parameters are frozen.
        peft_config: The first adapter's config (:class:`~minipeft.PrefixTuningConfig`,
            :class:`~minipeft.PromptTuningConfig` or :class:`~minipeft.PromptEncoderConfig`).
        adapter_name: Its name.
        autocast_adapter_dtype, low_cpu_mem_usage: PEFT's arguments; the adapters stay in float32.
        prompt_encoder, saved_state, source, cache_layout: From ``from_pretrained``: the built
            adapter, saved tensors of base-model modules (a classifier's head), the file they came
            from, and the model's cache layout that shaped the adapter (so the model is probed once).

    Attributes:
        prompt_encoder: ``nn.ModuleDict`` ``{adapter_name: encoder}`` (PEFT's parameter names,
            ``prompt_encoder.default.embedding.weight``); ``peft_config``: ``{adapter_name: config}``.
        active_adapter: The adapter that ``forward`` and ``generate`` use (``[]`` once all are deleted).

    Raises:
        ValueError: a prefix on a model with gradient checkpointing enabled; a config whose task
            type has another wrapper; saved base-model weights the task does not take.
        TypeError: a prefix on a model that takes no key/value cache.

    Explained in: book/01_why_prefix_tuning.ipynb
    """

    _TASK_CLASSES: ClassVar[dict[TaskType, type]] = {}  # filled by class X(PeftModel, task_type=...)
    _TASK_TYPE: ClassVar[TaskType | None] = None
    _TOKEN_LABELS: ClassVar[bool] = False  # per-token labels (-100 in front of a soft prompt), not per sequence
    _CONTINUES_FROM_CACHE: ClassVar[bool] = False  # forward may continue from a caller's cache (a causal LM)
    _CHECKPOINTING_KEEPS_PREFIX: ClassVar[bool] = False  # trains a prefix under gradient checkpointing (a causal LM)
    _DEFAULT_MODULES_TO_SAVE: ClassVar[tuple[str, ...]] = ()  # a task's head, trained beside the adapter
    _CHECK_PREFIX_USED: ClassVar[bool] = False  # an encoder task: raise if the model dropped the prefix
    _MIXED_BATCHES: ClassVar[bool] = False  # forward and generate take adapter_names, one adapter per row

    def __init_subclass__(cls, task_type: TaskType | None = None, **kwargs: Any) -> None:
        super(PreTrainedModel, cls).__init_subclass__(**kwargs)  # not transformers' config_class bookkeeping
        if task_type is not None:
            cls._TASK_TYPE = TaskType(task_type)
            PeftModel._TASK_CLASSES[cls._TASK_TYPE] = cls

    def __init__(
        self,
        model: nn.Module,
        peft_config: PromptLearningConfig,
        adapter_name: str = "default",
        autocast_adapter_dtype: bool = True,
        low_cpu_mem_usage: bool = False,
        *,
        prompt_encoder: nn.Module | None = None,
        saved_state: dict[str, torch.Tensor] | None = None,
        source: str | os.PathLike = "the saved state",
        cache_layout: CacheLayout | None = None,
    ) -> None:
        nn.Module.__init__(self)  # not PreTrainedModel's: the model's config and state stay the base model's
        if isinstance(model, PeftModel):
            raise TypeError("This model is already a minipeft PeftModel; wrap the base model (model.get_base_model()).")
        self.base_model = model
        self.word_embeddings = model.get_input_embeddings()  # PEFT's attribute: a second name for the same module
        self.peft_config: dict[str, PromptLearningConfig] = {}
        self.prompt_encoder = nn.ModuleDict()
        self.active_adapter: str | list = adapter_name
        self._adapters_disabled = False
        if cache_layout is not None:  # from_pretrained has probed the model already
            self.__dict__["_cache_layout"] = cache_layout
        self._add(adapter_name, peft_config, prompt_encoder, saved_state, source)
        for param in model.parameters():
            param.requires_grad_(False)
        for wrapper in self._head_wrappers():  # the frozen base model's trained heads stay trainable
            wrapper.set_adapter(adapter_name, inference_mode=peft_config.inference_mode)
        self.base_model_prepare_inputs_for_generation = getattr(model, "prepare_inputs_for_generation", None)

    @property
    def base_model(self) -> nn.Module:
        """The wrapped transformers model (a submodule; PreTrainedModel's own ``base_model`` is not used)."""
        return self._modules["base_model"]

    @property
    def _keys_to_ignore_on_save(self) -> set[str]:
        """The base model's keys (``base_model.*``), which an adapter folder leaves out: transformers' Trainer
        then takes their absence from a resumed checkpoint as expected, not as missing weights."""
        prefixed = {f"base_model.{key}" for key in self.base_model.state_dict()}
        prefixed |= {f"word_embeddings.{key}" for key in self.word_embeddings.state_dict()}
        return {key for key in prefixed if ".modules_to_save." not in key}

    # ---- adapters -------------------------------------------------------------------------------------

    def _add(
        self,
        adapter_name: str,
        config: PromptLearningConfig,
        encoder: nn.Module | None,
        saved_state: dict[str, torch.Tensor] | None,
        source: str | os.PathLike,
    ) -> None:
        """Check everything, then add the adapter; on any error nothing (model included) has changed."""
        if not isinstance(config, PromptLearningConfig):
            raise TypeError(
                "minipeft expects a minipeft.PrefixTuningConfig, PromptTuningConfig or PromptEncoderConfig, "
                f"got {type(config).__name__}."
            )
        if adapter_name in self.peft_config:
            raise ValueError(f"Adapter with name '{adapter_name}' already exists.")
        if self.peft_config and config.peft_type is not self.peft_type:
            raise ValueError(
                f"Cannot combine adapters with different peft types. Found {self.peft_type} and {config.peft_type}."
            )
        if self._TASK_TYPE is not None and config.task_type != self._TASK_TYPE:
            raise ValueError(
                f"{type(self).__name__} takes adapters with task_type={getattr(self._TASK_TYPE, 'value', None)!r}, "
                f"got {TaskType(config.task_type).value!r}; load it into a model wrapped for that task."
            )
        model = self.base_model
        prefix = config.peft_type is PeftType.PREFIX_TUNING
        layout = fill_shapes(config, model, self.__dict__.get("_cache_layout"))  # the model is asked once
        if prefix:
            self.__dict__["_cache_layout"] = layout
        if config.base_model_name_or_path is None:
            config.base_model_name_or_path = getattr(model, "name_or_path", None) or None
        key = cache_kwarg(model)
        if prefix and not self._CHECKPOINTING_KEEPS_PREFIX:
            _refuse_checkpointing(model)
            if key is None:
                backbone = type(getattr(model, "base_model", model)).__name__
                raise TypeError(
                    f"{type(model).__name__} takes no past_key_values (nor passes them to {backbone}), which prefix "
                    "tuning needs: the prefix is the attention layers' key/value cache."
                )
        self._cache_kwarg = key or "past_key_values"
        pending = None if saved_state is None else dict(saved_state)
        self._prepare(model, config, adapter_name)  # the task's checks: model untouched
        heads = self._heads(model, config, pending, source)
        if pending:
            raise ValueError(
                f"{source} holds {', '.join(sorted(pending))}, which no module of this {type(model).__name__} in "
                "modules_to_save takes."
            )
        encoder = build_encoder(config, model) if encoder is None else encoder
        device = next(model.parameters()).device
        if device.type != "meta":  # a model on the meta device (counting parameters only) keeps a CPU prefix
            encoder = encoder.to(device)
        encoder.requires_grad_(not config.inference_mode)
        # everything checked and built: change the model
        self.peft_config[adapter_name] = config
        self.prompt_encoder[adapter_name] = encoder
        for path, trained in heads.items():
            parent_path, _, child = path.rpartition(".")
            parent = model.get_submodule(parent_path)
            module = getattr(parent, child)
            if isinstance(module, ModulesToSaveWrapper):
                module.update(adapter_name, trained)
            else:
                setattr(parent, child, ModulesToSaveWrapper(module, adapter_name, trained))
            trained.requires_grad_(not config.inference_mode)

    def _prepare(self, model: nn.Module, config: PromptLearningConfig, adapter_name: str) -> None:
        """Hook: the task's checks of ``model`` and ``config`` (raise before anything changes)."""

    def _heads(
        self,
        model: nn.Module,
        config: PromptLearningConfig,
        saved_state: dict[str, torch.Tensor] | None,
        source: str | os.PathLike,
    ) -> dict[str, nn.Module]:
        """Copies of the modules in ``modules_to_save`` (plus the task's head), from ``saved_state`` when loading.

        Raises:
            ValueError: the task's head is not in the model; see :func:`~minipeft.modules_to_save.trained_copies`.
        """
        names = list(dict.fromkeys([*(config.modules_to_save or []), *self._DEFAULT_MODULES_TO_SAVE]))
        config.modules_to_save = names or None
        paths = find_modules_to_save(model, names)
        if self._DEFAULT_MODULES_TO_SAVE and not paths:
            children = ", ".join(name for name, _ in model.named_children())
            raise ValueError(
                f"No module of this {type(model).__name__} matches modules_to_save={names} (its modules: {children}). "
                f"A {self._TASK_TYPE.value} adapter trains the model's head: load the base model with the task's "
                "AutoModelFor... class, or name its head in modules_to_save."
            )
        wrapped = [path for path in paths if isinstance(model.get_submodule(path), ModulesToSaveWrapper)]
        if wrapped and not self.peft_config:
            raise ValueError(
                f"{type(model).__name__}.{wrapped[0]} is already wrapped by another minipeft model (PEFT modifies the "
                "base model in place, and so does minipeft for the head); wrap a fresh base model."
            )
        originals = {path: getattr(model.get_submodule(path), "original_module", None) for path in paths}
        return trained_copies(model, paths, saved_state, source, originals)

    def add_adapter(
        self,
        adapter_name: str,
        peft_config: PromptLearningConfig,
        low_cpu_mem_usage: bool = False,
        autocast_adapter_dtype: bool = True,
    ) -> None:
        """Add a new, untrained adapter (PEFT's ``add_adapter``); it is not made active (see :meth:`set_adapter`).

        Raises:
            ValueError: the name is taken; another ``peft_type`` than the model's adapters; a config
                that does not fit the model.

        Explained in: book/05_saving_and_loading.ipynb
        """
        self._add(adapter_name, peft_config, None, None, "the saved state")

    def set_adapter(self, adapter_name: str, inference_mode: bool = False) -> None:
        """Make ``adapter_name`` the active adapter (its head copies too); ``inference_mode`` freezes them.

        Raises:
            ValueError: no adapter of that name (PEFT's message).
        """
        if not isinstance(adapter_name, str) or adapter_name not in self.peft_config:
            raise ValueError(f"Adapter {adapter_name} not found.")
        self.active_adapter = adapter_name
        for wrapper in self._head_wrappers():
            wrapper.set_adapter(adapter_name, inference_mode=inference_mode)

    def delete_adapter(self, adapter_name: str) -> None:
        """Remove an adapter and its head copies; when it was active, the first remaining one becomes active.

        Raises:
            ValueError: no adapter of that name (PEFT's message).
        """
        if adapter_name not in self.peft_config:
            raise ValueError(f"Adapter {adapter_name} does not exist")
        del self.peft_config[adapter_name]
        del self.prompt_encoder[adapter_name]
        remaining = list(self.peft_config)
        for wrapper in self._head_wrappers():
            wrapper.delete_adapter(adapter_name, remaining[0] if remaining else None)
        if self.active_adapter == adapter_name:
            if remaining:
                warnings.warn(
                    f"Adapter {adapter_name} was active which is now deleted. Setting active adapter to {remaining[0]}.",
                    stacklevel=2,
                )
            self.active_adapter = remaining[0] if remaining else []

    @property
    def active_adapters(self) -> list[str]:
        """``[active_adapter]`` (``[]`` when every adapter was deleted), PEFT's list form."""
        return [self.active_adapter] if isinstance(self.active_adapter, str) else list(self.active_adapter)

    @property
    def active_peft_config(self) -> PromptLearningConfig:
        """The config of the active adapter."""
        return self.peft_config[self.active_adapter]

    @property
    def peft_type(self) -> PeftType:
        """The method of the model's adapters (they all share one, as in PEFT)."""
        return next(iter(self.peft_config.values())).peft_type

    @property
    def modules_to_save(self) -> set[str] | None:
        """The names in every adapter's ``modules_to_save``, or ``None`` (PEFT's property)."""
        names = {name for config in self.peft_config.values() for name in (config.modules_to_save or [])}
        return names or None

    @property
    def cls_layer_name(self) -> str | None:
        """The base model's child holding a trained head (PEFT's attribute), e.g. ``"classifier"``."""
        names = self.modules_to_save or set()
        return next((child for child, _ in self.base_model.named_children() if any(n in child for n in names)), None)

    def _head_wrappers(self) -> list[ModulesToSaveWrapper]:
        return [m for m in self.base_model.modules() if isinstance(m, ModulesToSaveWrapper)]

    @contextlib.contextmanager
    def disable_adapter(self) -> Iterator[None]:
        """Within the block, ``forward`` and ``generate`` run the base model alone (its original heads too).

        Explained in: book/05_saving_and_loading.ipynb
        """
        was_disabled = self._adapters_disabled
        wrappers = self._head_wrappers()
        states = [wrapper.disabled for wrapper in wrappers]
        self._adapters_disabled = True
        for wrapper in wrappers:
            wrapper.disabled = True
        try:
            yield
        finally:
            self._adapters_disabled = was_disabled
            for wrapper, state in zip(wrappers, states):
                wrapper.disabled = state

    # ---- the virtual tokens ---------------------------------------------------------------------------

    def get_base_model(self) -> nn.Module:
        """The wrapped transformers model."""
        return self.base_model

    def get_prompt(self, batch_size: int, task_ids: torch.Tensor | None = None, cache: Any = None) -> Any:
        """The virtual tokens for a batch, as the method injects them: for a prefix a ``DynamicCache``
        (``cache``, filled, when given) of ``num_layers`` pairs ``(batch_size, num_key_value_heads,
        num_virtual_tokens, head_dim)``; for a soft prompt ``(batch_size, total, hidden_size)``."""
        config = self.active_peft_config
        prompt = self.prompt_table().expand(batch_size, -1, -1)  # (B, P, width), no copy
        if config.peft_type is not PeftType.PREFIX_TUNING:
            return prompt
        pairs = prefix_to_past_key_values(prompt, config)
        return build_prefix_cache(pairs, self.base_model.config, cache=cache, layout=self.__dict__.get("_cache_layout"))

    def prompt_table(self, adapter_name: str | None = None) -> torch.Tensor:
        """The encoder's output ``(1, total, width)`` in the model's dtype (``width``: ``2*num_layers*token_dim``,
        or ``hidden_size`` for a soft prompt; ``total``: ``num_virtual_tokens``, times 2 for an encoder-decoder's
        soft prompt). Without gradients it is computed once and reused until an encoder parameter changes."""
        name = self.active_adapter if adapter_name is None else adapter_name
        config, encoder = self.peft_config[name], self.prompt_encoder[name]
        params = tuple(encoder.parameters())
        dtype = next(self.base_model.parameters()).dtype
        cacheable = not torch.is_grad_enabled() or not any(p.requires_grad for p in params)
        key = (dtype, *((id(p), p._version, p.device) for p in params))
        tables = self.__dict__.setdefault("_prompt_table_cache", {})  # {adapter_name: (key, table)}
        cached = tables.get(name)
        if cacheable and cached is not None and cached[0] == key:
            return cached[1]
        total = config.num_virtual_tokens
        if config.peft_type is not PeftType.PREFIX_TUNING:
            total *= config.num_transformer_submodules or 1
        indices = torch.arange(total, device=params[0].device)
        table = encoder(indices.unsqueeze(0)).to(dtype)  # (1, P, width)
        if cacheable:
            tables[name] = (key, table.detach())
        else:
            tables.pop(name, None)
        return table

    def prefix_memory(self, adapter_names: Sequence[str] | None = None) -> PrefixMemory:
        """Bytes of each adapter's keys and values and of one row of a mixed batch in the cache;
        ``print(model.prefix_memory())`` gives one line, as :meth:`print_trainable_parameters`.

        Explained in: book/11_one_model_many_tasks.ipynb
        """
        with torch.no_grad():
            return prefix_memory(self, adapter_names)

    def get_prompt_embedding_to_save(self, adapter_name: str) -> torch.Tensor:
        """The table to save for ``adapter_name``: ``(total, width)``, float32, on the CPU (PEFT's method)."""
        with torch.no_grad():
            return self.prompt_table(adapter_name)[0].detach().to("cpu", torch.float32)

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
        goes before the input embeddings, with :meth:`_soft_prompt_positions`, segment 0, -100 labels
        (per-token labels) in front and answer spans shifted by ``P`` (question answering).
        ``attention_mask`` ``(B, T)`` -> ``(B, P + T)``; ``position_ids`` + ``P``. With the adapters
        disabled, the inputs go to the base model unchanged.

        Raises:
            ValueError: neither ``input_ids`` nor ``inputs_embeds``; see :meth:`_begin_forward`.
        """
        self._refuse_mixed(kwargs)
        if self._adapters_disabled:
            inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "inputs_embeds": inputs_embeds}
            inputs.update({"labels": labels, "position_ids": position_ids, **kwargs})
            return {k: v for k, v in inputs.items() if v is not None or k in ("input_ids", "inputs_embeds")}
        config = self.active_peft_config
        num_virtual = config.num_virtual_tokens
        prefix = config.peft_type is PeftType.PREFIX_TUNING
        caller_cache = self._begin_forward(kwargs)
        if input_ids is None and inputs_embeds is None:
            raise ValueError("forward needs input_ids (batch, seq_len) or inputs_embeds (batch, seq_len, hidden_size).")
        batch_size = (input_ids if input_ids is not None else inputs_embeds).shape[0]
        continuing = caller_cache is not None and caller_cache.get_seq_length() > 0
        if prefix and not continuing:
            check_left_padding(self.base_model, self.__dict__.get("_cache_layout"), attention_mask, num_virtual)
        if attention_mask is not None:
            attention_mask = extend_attention_mask(attention_mask, num_virtual)  # (B, P + T)
        cache = caller_cache
        if prefix or continuing:  # the prefix is (or already is) the cache
            position_ids = None if position_ids is None else position_ids + num_virtual
            cache = caller_cache if continuing else self.get_prompt(batch_size)
        else:  # a soft prompt: the virtual tokens are the first inputs
            if inputs_embeds is None:
                inputs_embeds = self.base_model.get_input_embeddings()(input_ids)  # (B, T, hidden)
            prompt = self.get_prompt(batch_size)[:, :num_virtual].to(inputs_embeds.dtype)  # (B, P, hidden)
            inputs_embeds, input_ids = torch.cat([prompt, inputs_embeds], dim=1), None  # (B, P + T, hidden)
            if position_ids is not None:
                virtual = self._soft_prompt_positions(position_ids)  # (B, P)
                position_ids = torch.cat([virtual, position_ids + num_virtual], dim=1)  # (B, P + T)
            if kwargs.get("token_type_ids") is not None:  # the prompt is segment 0 (A)
                segment = kwargs["token_type_ids"].new_zeros(batch_size, num_virtual)
                kwargs["token_type_ids"] = torch.cat([segment, kwargs["token_type_ids"]], dim=1)  # (B, P + T)
            if labels is not None and self._TOKEN_LABELS:
                labels = torch.cat([labels.new_full((batch_size, num_virtual), -100), labels], dim=1)  # (B, P + T)
            for key in ("start_positions", "end_positions"):  # answer spans index tokens, now P further on
                if kwargs.get(key) is not None:
                    kwargs[key] = kwargs[key] + num_virtual
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "inputs_embeds": inputs_embeds, **kwargs}
        extra = {"labels": labels, "position_ids": position_ids, self._cache_kwarg: cache}
        inputs.update({k: v for k, v in extra.items() if v is not None})
        return inputs

    def _refuse_mixed(self, kwargs: dict[str, Any]) -> None:
        """Raise if ``adapter_names`` reached a path that runs one adapter (:mod:`minipeft.mixed_batch`)."""
        adapter_names = kwargs.pop("adapter_names", None)
        if adapter_names is not None:
            plan_mixed_batch(self, adapter_names, None)  # raises: the task's or the names' error
            raise ValueError("adapter_names reached a forward pass that runs the active adapter only.")

    def _begin_forward(self, kwargs: dict[str, Any], adapter: str | None = None) -> Any:
        """Pop and return a caller's cache from ``kwargs`` (``adapter``: the adapter checked, the active one by default).

        Raises:
            ValueError: a prefix in training with gradient checkpointing on (except where the task keeps it:
                :mod:`minipeft.checkpointing`); a cache where the task takes none.
        """
        config = self.active_peft_config if adapter is None else self.peft_config[adapter]
        if self.training and config.peft_type is PeftType.PREFIX_TUNING and not self._CHECKPOINTING_KEEPS_PREFIX:
            _refuse_checkpointing(self.base_model)
        caller_cache = None
        for key in ("past_key_values", "cache"):
            value = kwargs.pop(key, None)
            if value is not None and not self._CONTINUES_FROM_CACHE:
                raise ValueError(f"{type(self).__name__} builds its own {key} from the prefix; pass no {key}.")
            caller_cache = value if value is not None else caller_cache
        return caller_cache

    def _soft_prompt_positions(self, position_ids: torch.Tensor) -> torch.Tensor:
        """Hook: the soft prompt's positions ``(batch, num_virtual_tokens)``: the row's first position onward."""
        num_virtual = self.active_peft_config.num_virtual_tokens
        return position_ids[:, :1] + torch.arange(num_virtual, device=position_ids.device)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> Any:
        """Run the base model with the active adapter's virtual tokens injected (``_inject``).

        ``input_ids`` ``(batch, seq_len)`` or ``inputs_embeds`` ``(batch, seq_len, hidden_size)``;
        ``attention_mask`` and ``position_ids`` ``(batch, seq_len)``; other arguments go to the base model.
        """
        inputs = self._inject(input_ids, inputs_embeds, attention_mask, position_ids, labels, **kwargs)
        output = self.base_model(**inputs)
        cache = inputs.get(self._cache_kwarg)
        if self._CHECK_PREFIX_USED and cache is not None and not self._adapters_disabled:
            if cache.get_seq_length() == self.active_peft_config.num_virtual_tokens:  # layers append to the cache
                raise RuntimeError(
                    f"{type(self.base_model).__name__} ignored the prefix: its attention layers never saw the "
                    f"{self._cache_kwarg} passed to it."
                )
        return output

    # ---- parameters, training ---------------------------------------------------------------------------

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

    def set_requires_grad(self, adapter_names: str | Sequence[str], requires_grad: bool = True) -> None:
        """PEFT's method, which prompt learning does not support (as in PEFT).

        Raises:
            TypeError: always; freeze or unfreeze ``prompt_encoder[name]`` directly.
        """
        raise TypeError(
            "Setting `requires_grad` is not supported for prompt learning methods like "
            f"{self.peft_type.value}; use model.prompt_encoder[name].requires_grad_(...)."
        )

    def prepare_model_for_gradient_checkpointing(self, model: nn.Module) -> nn.Module:
        """Make the input embeddings' output require gradients (PEFT's method), so that checkpointed
        layers of a frozen model still pass gradients back to a soft prompt."""
        if hasattr(model, "enable_input_require_grads"):
            model.enable_input_require_grads()
        return model

    def supports_lora_conversion(self, adapter_name: str = "default") -> bool:
        """``False``: a prompt-learning adapter has no LoRA equivalent (PEFT's answer)."""
        return False

    # ---- saving and loading ---------------------------------------------------------------------------

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        safe_serialization: bool = True,
        selected_adapters: list[str] | None = None,
        save_embedding_layers: str | bool = "auto",
        is_main_process: bool = True,
        path_initial_model_for_weight_conversion: str | None = None,
        **kwargs: Any,
    ) -> None:
        """Write the adapters in PEFT's format, atomically (``minipeft.save_load.write_adapters``).

        ``"default"`` goes to ``save_directory``, any other adapter to ``save_directory/<name>``.

        Args:
            save_directory: The folder (created if missing).
            safe_serialization: ``True``: ``adapter_model.safetensors``; ``False``: ``adapter_model.bin``.
            selected_adapters: The adapters to save (all by default).
            save_embedding_layers: PEFT's argument; a prompt-learning adapter has none to save.
            is_main_process: Only the main process writes (``accelerate``, ``Trainer``).
            path_initial_model_for_weight_conversion: PEFT's LoRA-only argument; must be ``None``.
            **kwargs: ``state_dict`` (a state dict of this model, e.g. ``accelerator.get_state_dict``,
                whose head tensors are saved instead of the model's). Passed (as ``Trainer`` and
                ``accelerate`` pass it), it also gets ``model.safetensors``, the adapters' tensors under this
                model's own names, which ``Trainer(resume_from_checkpoint=...)`` reloads.

        Raises:
            ValueError: ``save_directory`` is a file; an unknown adapter in ``selected_adapters``;
                ``path_initial_model_for_weight_conversion`` given.

        Explained in: book/05_saving_and_loading.ipynb
        """
        if path_initial_model_for_weight_conversion is not None:
            raise ValueError("path_initial_model_for_weight_conversion converts LoRA variants; it has no meaning here.")
        names = list(self.peft_config) if selected_adapters is None else list(selected_adapters)
        unknown = [name for name in names if name not in self.peft_config]
        if unknown:
            raise ValueError(
                "You passed an invalid `selected_adapters` arguments, current supported adapter names are "
                f"{list(self.peft_config)} - got {selected_adapters}."
            )
        write_adapters(self, save_directory, names, safe_serialization, is_main_process, kwargs.get("state_dict"))
        if "state_dict" in kwargs and is_main_process:  # a Trainer checkpoint (or accelerate's save)
            write_resume_state(self, save_directory)

    def push_to_hub(self, repo_id: str, *args: Any, **kwargs: Any) -> Any:
        """Upload the adapter folder :meth:`save_pretrained` writes (nothing of the base model) to ``repo_id``.

        Takes ``commit_message``, ``private``, ``token``, ``revision``, ``create_pr``, and ``save_pretrained``'s
        ``safe_serialization`` / ``selected_adapters``. Returns ``huggingface_hub``'s ``CommitInfo``.

        Explained in: book/05_saving_and_loading.ipynb
        """
        save_kwargs = {k: kwargs.pop(k) for k in ("safe_serialization", "selected_adapters") if k in kwargs}
        return push_folder_to_hub(lambda folder: self.save_pretrained(folder, **save_kwargs), repo_id, *args, **kwargs)

    @classmethod
    def from_pretrained(
        cls,
        model: nn.Module,
        model_id: str | os.PathLike,
        adapter_name: str = "default",
        is_trainable: bool = False,
        config: PromptLearningConfig | None = None,
        autocast_adapter_dtype: bool = True,
        ephemeral_gpu_offload: bool = False,
        low_cpu_mem_usage: bool = False,
        key_mapping: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> PeftModel:
        """Load an adapter (a folder or a Hub repository, minipeft's or PEFT's) onto ``model``, wrapped for its task.

        Args:
            model: The base model the adapter was trained on (its shapes are checked).
            model_id: The adapter folder or Hub repository id.
            adapter_name: The name to give it.
            is_trainable: ``False``: a frozen table, eval mode. ``True``: trainable (PEFT refuses this for
                prompt learning); a reparameterised prefix gets its MLP back, or (a PEFT adapter) continues as
                a plain table, with a warning.
            config: A config to use instead of the folder's ``adapter_config.json`` (it is used as is).
            **kwargs: ``subfolder``, ``revision``, ``cache_dir``, ``token`` (the Hub), ``torch_device``,
                ``device_map`` (a single device).

        Raises:
            FileNotFoundError: no config or no weights there.
            ValueError: shapes that do not fit ``model`` (both named), a corrupt file, a head that is
                missing or does not fit, a config that is not a minipeft config. On any error ``model``
                is left untouched.

        Explained in: book/05_saving_and_loading.ipynb
        """
        if config is not None and not isinstance(config, PromptLearningConfig):
            raise ValueError(f"The input config must be a PeftConfig, got {config.__class__}")
        config, encoder, state, layout = read_adapter(model, model_id, is_trainable, config=config, **kwargs)
        if config.task_type is None:
            config.task_type = infer_task_type(model)
        wrapper = PeftModel._TASK_CLASSES.get(config.task_type, cls)
        source = Path(model_id) / WEIGHTS_NAME
        peft_model = wrapper(
            model, config, adapter_name, prompt_encoder=encoder, saved_state=state, source=source, cache_layout=layout
        )
        device = _device_of(kwargs)
        if device is not None:
            peft_model.to(device)
        return peft_model if is_trainable else peft_model.eval()

    def load_adapter(
        self,
        model_id: str | os.PathLike,
        adapter_name: str,
        is_trainable: bool = False,
        torch_device: str | None = None,
        autocast_adapter_dtype: bool = True,
        ephemeral_gpu_offload: bool = False,
        low_cpu_mem_usage: bool = False,
        key_mapping: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> _IncompatibleKeys:
        """Load a saved adapter as ``adapter_name`` (not made active); into an existing adapter of that name,
        its weights are replaced (``Trainer``'s resume). Returns PEFT's ``(missing_keys, unexpected_keys)``, empty.

        Raises:
            see :meth:`from_pretrained`; loading into an existing adapter of another shape.

        Explained in: book/05_saving_and_loading.ipynb
        """
        config, encoder, state, _ = read_adapter(
            self.base_model, model_id, is_trainable, layout=self.__dict__.get("_cache_layout"), **kwargs
        )
        if adapter_name in self.peft_config:
            self._replace_weights(adapter_name, config, encoder, state, Path(model_id) / WEIGHTS_NAME)
        else:
            self._add(adapter_name, config, encoder, state, Path(model_id) / WEIGHTS_NAME)
        if not is_trainable:
            self.eval()
        device = torch_device or _device_of(kwargs)
        if device is not None:
            self.prompt_encoder[adapter_name].to(device)
        return _IncompatibleKeys([], [])

    def _replace_weights(
        self,
        adapter_name: str,
        config: PromptLearningConfig,
        encoder: nn.Module,
        state: dict[str, torch.Tensor],
        source: Path,
    ) -> None:
        current = self.prompt_encoder[adapter_name]
        mine, theirs = current.state_dict(), encoder.state_dict()
        if {k: v.shape for k, v in mine.items()} != {k: v.shape for k, v in theirs.items()}:
            shapes = {k: tuple(v.shape) for k, v in theirs.items()}
            raise ValueError(f"{source} does not fit adapter {adapter_name!r}: it holds {shapes}.")
        heads = self._heads(self.base_model, self.peft_config[adapter_name], dict(state), source)
        with torch.no_grad():
            current.load_state_dict(theirs)
            for wrapper_path, trained in heads.items():
                wrapper = self.base_model.get_submodule(wrapper_path)
                wrapper.modules_to_save[adapter_name].load_state_dict(trained.state_dict())

    def __getattr__(self, name: str) -> Any:
        """Forward missing attributes (``config``, ``device``, ``generation_config``, ...) to the base model.

        Raises:
            AttributeError: transformers' own adapter methods (``enable_adapters``, ...), which would act
                on the base model behind the adapter's back.
        """
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name in ("base_model", "peft_config", "prompt_encoder") or "base_model" not in self._modules:
                raise
            if name in _BASE_MODEL_ADAPTER_METHODS:
                _Refused(name).__get__(self, type(self))
            return getattr(self._modules["base_model"], name)


class _FromBaseModel:
    """A class attribute of ``PreTrainedModel`` that a :class:`PeftModel` reads from its base model instead."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, instance: Any, owner: type) -> Any:
        if instance is None:
            return getattr(PreTrainedModel, self.name)
        return getattr(instance.base_model, self.name)


class _Refused:
    """transformers' own adapter API on a :class:`PeftModel`: it would act on the base model behind the adapters."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, instance: Any, owner: type) -> Any:
        raise AttributeError(
            f"'{owner.__name__}' has no attribute '{self.name}': it is transformers' own adapter API, which would act "
            "on the base model behind minipeft's adapters (minipeft's are add_adapter, set_adapter, load_adapter, "
            "delete_adapter, disable_adapter)."
        )


PRESENTED_AS_PRETRAINED_MODEL: set[str] = set()  # the names set below (the API reference leaves them out)


def _present_as_pretrained_model(cls: type[PeftModel]) -> None:
    """Every attribute of ``PreTrainedModel`` and its mixins that ``cls`` does not define becomes its base
    model's; where ``PreTrainedModel`` overrides ``nn.Module`` (``to``, ``train``, ...), ``nn.Module``'s is kept."""
    for klass in PreTrainedModel.__mro__:
        if klass in (nn.Module, object):
            continue
        for name in klass.__dict__:
            if name in cls.__dict__ or (name.startswith("__") and name.endswith("__")):
                continue
            PRESENTED_AS_PRETRAINED_MODEL.add(name)
            if name in nn.Module.__dict__:
                setattr(cls, name, nn.Module.__dict__[name])
            elif name in _BASE_MODEL_ADAPTER_METHODS:
                setattr(cls, name, _Refused(name))
            else:
                setattr(cls, name, _FromBaseModel(name))


_present_as_pretrained_model(PeftModel)


def infer_task_type(model: nn.Module) -> TaskType | None:
    """The task a transformers model's class does, by its name: ``...ForCausalLM`` (and ``GPT2LMHeadModel``)
    -> ``CAUSAL_LM``, ``...ForSequenceClassification`` -> ``SEQ_CLS``, ``...ForTokenClassification`` ->
    ``TOKEN_CLS``, ``...ForQuestionAnswering`` -> ``QUESTION_ANS``, an encoder-decoder with a language-model
    head -> ``SEQ_2_SEQ_LM``; ``None`` otherwise (a bare model: :class:`PeftModel` injects generically)."""
    name = type(model).__name__
    encoder_decoder = getattr(getattr(model, "config", None), "is_encoder_decoder", False)
    for suffix, task in (
        ("ForSequenceClassification", TaskType.SEQ_CLS),
        ("ForTokenClassification", TaskType.TOKEN_CLS),
        ("ForQuestionAnswering", TaskType.QUESTION_ANS),
    ):
        if name.endswith(suffix):
            return task
    if name.endswith(("ForCausalLM", "LMHeadModel", "ForConditionalGeneration", "ForSeq2SeqLM")):
        return TaskType.SEQ_2_SEQ_LM if encoder_decoder else TaskType.CAUSAL_LM
    return None


def _device_of(kwargs: dict[str, Any]) -> torch.device | None:
    """The device of ``torch_device`` or a single-device ``device_map`` (``{"": "cpu"}``, ``"cpu"``)."""
    device = kwargs.get("torch_device")
    device_map = kwargs.get("device_map")
    if device is None and isinstance(device_map, dict) and len(set(device_map.values())) == 1:
        device = next(iter(device_map.values()))
    elif device is None and isinstance(device_map, (str, torch.device)) and device_map not in ("auto", "balanced"):
        device = device_map
    return None if device is None else torch.device(device)


def _refuse_checkpointing(model: nn.Module) -> None:
    """Raise if gradient (activation) checkpointing is on: transformers then drops the cache, the prefix."""
    if any(getattr(m, "gradient_checkpointing", False) for m in model.modules()):
        raise ValueError(
            "Prefix tuning does not work with gradient checkpointing: the prefix is passed as past_key_values, "
            "which transformers drops when gradient (activation) checkpointing is on. Turn it off: "
            "model.activation_checkpointing_disable() (gradient_checkpointing_disable() in older transformers)."
        )


def get_peft_model(
    model: nn.Module,
    peft_config: PromptLearningConfig,
    adapter_name: str = "default",
    mixed: bool = False,
    autocast_adapter_dtype: bool = True,
    revision: str | None = None,
    low_cpu_mem_usage: bool = False,
) -> PeftModel:
    """Freeze ``model`` and attach the adapter that ``peft_config`` describes.

    The config is copied and its missing shape fields are filled from ``model.config``. Returns the
    wrapper registered for the config's task type (``PeftModelForCausalLM``, ...), as PEFT's
    ``MODEL_TYPE_TO_PEFT_MODEL_MAPPING``; ``model`` is an ``AutoModelFor...`` of that task. Without a
    task type it is read from the model's class (``infer_task_type``; PEFT would wrap the model in a
    ``PeftModel`` that silently ignores the virtual tokens).

    Raises:
        TypeError: ``peft_config`` is not a minipeft config, or ``model`` is already wrapped.
        ValueError: ``mixed=True`` (PEFT's mixed LoRA models); the config does not fit the model.

    Explained in: book/01_why_prefix_tuning.ipynb
    """
    if not isinstance(peft_config, PromptLearningConfig):
        raise TypeError(
            "get_peft_model expects a minipeft.PrefixTuningConfig, PromptTuningConfig or PromptEncoderConfig, "
            f"got {type(peft_config).__name__}."
        )
    if mixed:
        raise ValueError("mixed=True builds PEFT's PeftMixedModel of LoRA-like adapters; prompt learning has none.")
    config = copy.deepcopy(peft_config)  # the caller's config stays as it was
    if config.task_type is None:
        config.task_type = infer_task_type(model)
    if revision is not None:
        config.revision = revision
    if config.base_model_name_or_path is None:
        config.base_model_name_or_path = getattr(model, "name_or_path", None) or None
    wrapper = PeftModel._TASK_CLASSES.get(config.task_type, PeftModel)
    return wrapper(model, config, adapter_name, autocast_adapter_dtype, low_cpu_mem_usage)
