"""Every adapter configuration, with PEFT's field names, and reading ``adapter_config.json``.

References: Li & Liang 2021 (section 4), Liu et al. 2022 (section 3), Lester et al. 2021 (section 2);
PEFT ``src/peft/config.py``, ``src/peft/tuners/{prefix_tuning,prompt_tuning}/config.py`` and
``src/peft/utils/other.py`` (``_prepare_prompt_learning_config`` fills the shapes from the model).

Explained in: book/03_prefix_encoder.ipynb (shapes), book/05_saving_and_loading.ipynb (the file)
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

__all__ = ["PeftConfig", "PeftType", "PrefixTuningConfig", "PromptLearningConfig", "PromptTuningConfig"]
__all__ += ["PromptTuningInit", "ShapeMismatchError", "TaskType"]

CONFIG_NAME = "adapter_config.json"
# Keys PEFT 0.21 writes that minipeft has no use for; written as PEFT writes them, so files match.
PEFT_ONLY_KEYS: dict[str, Any] = {"auto_mapping": None, "revision": None}


class TaskType(str, enum.Enum):
    """What the base model does; PEFT's values (``peft.TaskType``). Explained in: book/01_why_prefix_tuning.ipynb"""

    SEQ_CLS = "SEQ_CLS"
    SEQ_2_SEQ_LM = "SEQ_2_SEQ_LM"
    CAUSAL_LM = "CAUSAL_LM"
    TOKEN_CLS = "TOKEN_CLS"
    QUESTION_ANS = "QUESTION_ANS"
    FEATURE_EXTRACTION = "FEATURE_EXTRACTION"


class PeftType(str, enum.Enum):
    """The tuning method; PEFT's values (``peft.PeftType``). Explained in: book/01_why_prefix_tuning.ipynb"""

    PROMPT_TUNING = "PROMPT_TUNING"
    PREFIX_TUNING = "PREFIX_TUNING"


@dataclass
class PromptLearningConfig:
    """Fields shared by the prompt-learning methods (PEFT's ``PromptLearningConfig``, alias ``PeftConfig``).

    Args:
        task_type: What the base model does; each config class implements its ``TASK_TYPES``.
        num_virtual_tokens: Length of the soft prompt or prefix.
        token_dim, num_layers, num_attention_heads: Shapes; filled from the base model's config.
        inference_mode: ``True`` freezes the adapter (loaded to be used, not trained).
        num_transformer_submodules: 1, or 2 for ``SEQ_2_SEQ_LM``; filled from ``task_type``.
        base_model_name_or_path: Where the base model came from; informational.
        modules_to_save: ``SEQ_CLS`` only: base-model modules trained and saved with the adapter
            (names they end with); PEFT's ``["classifier", "score"]`` are added.

    Raises:
        ValueError: ``num_virtual_tokens`` missing; a task type not implemented; a non-positive shape
            field; ``modules_to_save`` that is not a list of names, or not for ``SEQ_CLS``.

    Explained in: book/03_prefix_encoder.ipynb
    """

    task_type: TaskType | str | None = TaskType.CAUSAL_LM
    num_virtual_tokens: int | None = None
    token_dim: int | None = None
    num_layers: int | None = None
    num_attention_heads: int | None = None
    inference_mode: bool = False
    num_transformer_submodules: int | None = None
    base_model_name_or_path: str | None = None
    modules_to_save: list[str] | None = None

    PEFT_TYPE: ClassVar[PeftType]  # the method, fixed by each subclass
    TASK_TYPES: ClassVar[tuple[TaskType, ...]] = (TaskType.CAUSAL_LM,)
    _SHAPE_FIELDS: ClassVar[tuple[str, ...]] = ("num_virtual_tokens", "token_dim", "num_layers", "num_attention_heads")
    _CLASSES: ClassVar[dict[str, type[PromptLearningConfig]]] = {}  # peft_type -> class, filled by subclasses

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "PEFT_TYPE" in vars(cls):
            PromptLearningConfig._CLASSES[cls.PEFT_TYPE.value] = cls

    @property
    def peft_type(self) -> PeftType:
        """The tuning method (``PEFT_TYPE``)."""
        return self.PEFT_TYPE

    def __post_init__(self) -> None:
        name = type(self).__name__
        if self.task_type is None:
            raise ValueError(f"{name}.task_type is None; use task_type=TaskType.CAUSAL_LM.")
        try:
            self.task_type = TaskType(self.task_type)
        except ValueError:
            known = ", ".join(t.value for t in TaskType)
            raise ValueError(f"{name}.task_type={self.task_type!r} is unknown; expected one of {known}.") from None
        if self.task_type not in self.TASK_TYPES:
            raise ValueError(
                f"{name}.task_type={self.task_type.value!r} is not supported by minipeft yet; "
                f"supported: {', '.join(t.value for t in self.TASK_TYPES)}."
            )
        self._check_modules_to_save()
        if self.num_virtual_tokens is None:
            raise ValueError(f"{name}.num_virtual_tokens is required: how many virtual tokens, e.g. 30.")
        for field in self._SHAPE_FIELDS:
            value = getattr(self, field)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise ValueError(f"{name}.{field} must be a positive integer, got {value!r}.")
        submodules = 2 if self.task_type is TaskType.SEQ_2_SEQ_LM else 1  # PEFT's _setup_prompt_encoder
        if self.num_transformer_submodules is None:
            self.num_transformer_submodules = submodules
        if self.num_transformer_submodules != submodules:
            kind = "an encoder-decoder" if submodules == 2 else "a decoder-only or encoder-only model"
            raise ValueError(
                f"{name}.num_transformer_submodules must be {submodules} for task_type={self.task_type.value!r} "
                f"({kind}), got {self.num_transformer_submodules!r}."
            )

    def _check_modules_to_save(self) -> None:
        name = type(self).__name__
        if self.modules_to_save is None:
            return
        elif isinstance(self.modules_to_save, str) or not all(isinstance(m, str) and m for m in self.modules_to_save):
            raise ValueError(
                f"{name}.modules_to_save must be a list of module names such as ['classifier'], "
                f"got {self.modules_to_save!r}."
            )
        self.modules_to_save = list(self.modules_to_save)
        if self.task_type is not TaskType.SEQ_CLS:
            raise ValueError(
                f"{name}.modules_to_save={self.modules_to_save!r}: minipeft trains extra modules for "
                f"task_type='SEQ_CLS' only (its classification head), not for {self.task_type.value!r}."
            )

    def fill_from_model_config(self, model_config: Any) -> PromptLearningConfig:
        """Fill (or check, when set) ``num_layers``, ``num_attention_heads``, ``token_dim`` from a
        transformers config; returns ``self``.

        Raises:
            ValueError: the config lacks a layer count, head count or hidden size;
                :class:`ShapeMismatchError` when a field set by hand disagrees with the model.
        """
        shape = _model_shape(model_config)
        heads, width = shape["num_attention_heads"], shape["hidden_size"]
        self._set_or_check(shape, num_layers=shape["num_hidden_layers"], num_attention_heads=heads, token_dim=width)
        return self

    def _set_or_check(self, shape: dict[str, int], **expected: int) -> None:
        mismatches = []
        for field, value in expected.items():
            if getattr(self, field) is None:
                setattr(self, field, value)
            elif getattr(self, field) != value:
                mismatches.append(f"{field}={getattr(self, field)} where the model needs {field}={value}")
        if mismatches:
            raise ShapeMismatchError(type(self).__name__, mismatches, shape)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PromptLearningConfig:
        """A config from a dict with PEFT's keys (``adapter_config.json``); unknown keys are ignored.

        Raises:
            ValueError: ``values["peft_type"]`` names another method than this class's.
        """
        peft_type = values.get("peft_type", cls.PEFT_TYPE.value)
        if str(getattr(peft_type, "value", peft_type)) != cls.PEFT_TYPE.value:
            raise ValueError(f"{cls.__name__} needs peft_type={cls.PEFT_TYPE.value!r}, got peft_type={peft_type!r}.")
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike) -> PromptLearningConfig:
        """Read an adapter folder's ``adapter_config.json``: the class its ``peft_type`` names (PEFT's).

        Raises:
            FileNotFoundError: no ``adapter_config.json`` in the folder.
            ValueError: the file's ``peft_type`` is unsupported, or not this class's.
        """
        config = load_config(pretrained_model_name_or_path)
        if not isinstance(config, cls):
            raise ValueError(
                f"{pretrained_model_name_or_path} holds a {type(config).__name__} ({config.peft_type.value}), "
                f"not a {cls.__name__}."
            )
        return config

    def to_dict(self) -> dict[str, Any]:
        """The config as a JSON-ready dict with PEFT's keys (enums as their string values)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["task_type"] = TaskType(self.task_type).value
        out["peft_type"] = self.peft_type.value
        return out


PeftConfig = PromptLearningConfig  # PEFT's name: PeftConfig.from_pretrained(folder) reads any adapter's config


@dataclass
class PrefixTuningConfig(PromptLearningConfig):
    """A prefix (Prefix Tuning or P-Tuning v2): key/value pairs at every attention layer, PEFT's fields.

    The table (encoder output, saved ``prompt_embeddings``) is ``(num_virtual_tokens,
    2 * num_prefix_layers * token_dim)``; shape fields left ``None`` are filled by ``get_peft_model``.

    Args:
        task_type: ``CAUSAL_LM`` (Li & Liang 2021), ``SEQ_CLS`` (Liu et al. 2022 section 3) or
            ``SEQ_2_SEQ_LM`` (T5, BART).
        num_virtual_tokens: The prefix length (Li & Liang: "prefix length").
        token_dim: One layer's keys (or values) per virtual token, ``head_dim * num_key_value_heads``
            (SmolLM2-135M: ``64 * 3 = 192``, not its hidden size 576).
        num_layers: Attention layers with a prefix (encoder-decoder: the *encoder's* count, as PEFT).
        num_attention_heads: The prefix's head count: the model's ``num_key_value_heads``.
        encoder_hidden_size: Hidden width of the reparameterisation MLP; defaults to ``token_dim``.
        prefix_projection: ``False``: a plain table (P-Tuning v2, Liu et al. section 3.3); ``True``:
            an embedding through Linear-Tanh-Linear (Li & Liang section 4.3).
        prefix_encoder_and_cross_attention: ``SEQ_2_SEQ_LM``, minipeft only: every encoder layer,
            decoder layer and cross-attention gets a prefix (Li & Liang section 4.2).
        num_decoder_layers: The decoder's layer count, filled with ``prefix_encoder_and_cross_attention``.
        **other: The fields of :class:`PromptLearningConfig`.

    Raises:
        ValueError: those of :class:`PromptLearningConfig`; ``token_dim`` not divisible by ``num_attention_heads``;
            ``prefix_encoder_and_cross_attention`` not for ``SEQ_2_SEQ_LM``; ``num_decoder_layers`` without it.

    Explained in: book/03_prefix_encoder.ipynb
    """

    encoder_hidden_size: int | None = None
    prefix_projection: bool = False
    prefix_encoder_and_cross_attention: bool = False
    num_decoder_layers: int | None = None

    PEFT_TYPE: ClassVar[PeftType] = PeftType.PREFIX_TUNING
    TASK_TYPES: ClassVar[tuple[TaskType, ...]] = (TaskType.CAUSAL_LM, TaskType.SEQ_CLS, TaskType.SEQ_2_SEQ_LM)
    _SHAPE_FIELDS = (*PromptLearningConfig._SHAPE_FIELDS, "encoder_hidden_size", "num_decoder_layers")
    # minipeft's own fields, left out of to_dict at these values (PEFT-compatible files keep PEFT's keys)
    _MINIPEFT_ONLY_DEFAULTS: ClassVar[dict[str, Any]] = {"prefix_encoder_and_cross_attention": False}
    _MINIPEFT_ONLY_DEFAULTS["num_decoder_layers"] = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.prefix_encoder_and_cross_attention, bool):
            raise ValueError(
                "PrefixTuningConfig.prefix_encoder_and_cross_attention must be True or False, "
                f"got {self.prefix_encoder_and_cross_attention!r}."
            )
        if self.prefix_encoder_and_cross_attention and self.task_type is not TaskType.SEQ_2_SEQ_LM:
            raise ValueError(
                "PrefixTuningConfig.prefix_encoder_and_cross_attention=True is for encoder-decoders "
                f"(task_type='SEQ_2_SEQ_LM'), not task_type={self.task_type.value!r}."
            )
        if self.num_decoder_layers is not None and not self.prefix_encoder_and_cross_attention:
            raise ValueError(
                f"PrefixTuningConfig.num_decoder_layers={self.num_decoder_layers} is used only with "
                "prefix_encoder_and_cross_attention=True (PEFT's seq2seq prefix is sized by num_layers alone)."
            )
        if self.token_dim is not None and self.num_attention_heads is not None:
            if self.token_dim % self.num_attention_heads:
                raise ValueError(
                    f"PrefixTuningConfig.token_dim={self.token_dim} is not divisible by "
                    f"num_attention_heads={self.num_attention_heads}; token_dim must be head_dim * num_attention_heads."
                )
        if self.encoder_hidden_size is None and self.token_dim is not None:
            self.encoder_hidden_size = self.token_dim

    @property
    def head_dim(self) -> int:
        """The width of one key or value head, ``token_dim // num_attention_heads``."""
        if self.token_dim is None or self.num_attention_heads is None:
            raise ValueError("PrefixTuningConfig.head_dim needs token_dim and num_attention_heads; fill them first.")
        return self.token_dim // self.num_attention_heads

    @property
    def num_prefix_layers(self) -> int:
        """Attention layers whose keys and values the table holds: ``num_layers`` (+ ``2 * num_decoder_layers``
        with ``prefix_encoder_and_cross_attention``). Raises ``ValueError`` before they are filled."""
        if self.num_layers is None or (self.prefix_encoder_and_cross_attention and self.num_decoder_layers is None):
            raise ValueError(
                "PrefixTuningConfig.num_prefix_layers needs num_layers (and num_decoder_layers with "
                "prefix_encoder_and_cross_attention=True); call fill_from_model_config first."
            )
        return self.num_layers + 2 * (self.num_decoder_layers if self.prefix_encoder_and_cross_attention else 0)

    def to_dict(self) -> dict[str, Any]:
        """PEFT's keys, plus minipeft's own fields where they differ from their PEFT-compatible default."""
        out = super().to_dict()
        for field, default in self._MINIPEFT_ONLY_DEFAULTS.items():
            if out[field] == default:
                del out[field]
        return out

    def fill_from_model_config(self, model_config: Any) -> PrefixTuningConfig:
        """Fill (or check) the shapes from a transformers config, as PEFT's ``_prepare_prompt_learning_config``.

        The keys and values take the model's attention shapes: ``num_key_value_heads`` heads (fewer
        than the query heads under grouped-query attention) of ``head_dim`` (the config's own, else
        ``hidden_size // num_attention_heads``). Returns ``self``.

        Raises:
            ValueError: the config lacks a layer count, head count or hidden size;
                :class:`ShapeMismatchError` when a field set by hand disagrees with the model.
        """
        shape = _model_shape(model_config)
        heads, layers = shape["num_key_value_heads"], shape["num_hidden_layers"]
        expected = {"num_layers": layers, "num_attention_heads": heads, "token_dim": shape["head_dim"] * heads}
        if self.prefix_encoder_and_cross_attention:
            expected["num_decoder_layers"] = decoder_layer_count(model_config)
        self._set_or_check(shape, **expected)
        if self.encoder_hidden_size is None:
            self.encoder_hidden_size = self.token_dim
        return self


class PromptTuningInit(str, enum.Enum):
    """How a soft prompt starts (PEFT's values): ``TEXT``, a text's token embeddings (Lester et al.
    section 3.2); ``SAMPLE_VOCAB``, random vocabulary rows; ``RANDOM``, N(0, 1).

    Explained in: book/02_virtual_tokens.ipynb
    """

    TEXT = "TEXT"
    SAMPLE_VOCAB = "SAMPLE_VOCAB"
    RANDOM = "RANDOM"


@dataclass
class PromptTuningConfig(PromptLearningConfig):
    """A soft prompt (prompt tuning, ``CAUSAL_LM`` or ``SEQ_CLS``): vectors before the input, PEFT's fields.

    Args:
        prompt_tuning_init: A :class:`PromptTuningInit` (or its string value).
        prompt_tuning_init_text: ``TEXT``: the text whose tokens (cut or repeated) start the prompt.
        tokenizer_name_or_path: ``TEXT``: the tokenizer for it (a Hub id or folder).
        tokenizer_kwargs: ``TEXT``: extra arguments for ``AutoTokenizer.from_pretrained``.
        **other: The fields of :class:`PromptLearningConfig`.

    Raises:
        ValueError: those of :class:`PromptLearningConfig`; an unknown ``prompt_tuning_init``; ``TEXT``
            without a text or a tokenizer; ``tokenizer_kwargs`` without ``TEXT``.

    Explained in: book/02_virtual_tokens.ipynb
    """

    prompt_tuning_init: PromptTuningInit | str = PromptTuningInit.RANDOM
    prompt_tuning_init_text: str | None = None
    tokenizer_name_or_path: str | None = None
    tokenizer_kwargs: dict[str, Any] | None = None

    PEFT_TYPE: ClassVar[PeftType] = PeftType.PROMPT_TUNING
    TASK_TYPES: ClassVar[tuple[TaskType, ...]] = (TaskType.CAUSAL_LM, TaskType.SEQ_CLS)

    def __post_init__(self) -> None:
        super().__post_init__()
        try:
            self.prompt_tuning_init = PromptTuningInit(self.prompt_tuning_init)
        except ValueError:
            known = ", ".join(i.value for i in PromptTuningInit)
            raise ValueError(
                f"PromptTuningConfig.prompt_tuning_init={self.prompt_tuning_init!r} is unknown; expected one of {known}."
            ) from None
        if self.prompt_tuning_init is PromptTuningInit.TEXT:
            if not self.prompt_tuning_init_text:
                raise ValueError("prompt_tuning_init='TEXT' needs prompt_tuning_init_text, the text to start from.")
            if not self.tokenizer_name_or_path:
                raise ValueError(
                    "prompt_tuning_init='TEXT' needs tokenizer_name_or_path (a Hub id or a folder; "
                    "for the embedded model: tokenizer.name_or_path)."
                )
        elif self.tokenizer_kwargs:
            raise ValueError("tokenizer_kwargs is only used with prompt_tuning_init='TEXT'.")

    def to_dict(self) -> dict[str, Any]:
        """PEFT's keys, ``prompt_tuning_init`` as its string value."""
        out = super().to_dict()
        out["prompt_tuning_init"] = PromptTuningInit(self.prompt_tuning_init).value
        return out


class ShapeMismatchError(ValueError):
    """A config's shape fields disagree with the base model's config.

    Attributes:
        mismatches: ``"field=adapter value where the model needs field=model value"``, per field.
        model_shape: The model's layers, hidden size, heads, key/value heads, head_dim.

    Explained in: book/05_saving_and_loading.ipynb
    """

    def __init__(self, config_name: str, mismatches: list[str], model_shape: dict[str, int]) -> None:
        self.mismatches = mismatches
        self.model_shape = model_shape
        super().__init__(
            f"{config_name} does not fit the base model: {self.describe()}. "
            "Leave those fields as None to fill them from the model."
        )

    def describe(self) -> str:
        """The mismatches and the model's shapes, in one sentence."""
        shape = ", ".join(f"{k}={v}" for k, v in self.model_shape.items())
        return f"{'; '.join(self.mismatches)} (the model has {shape})"


def config_to_json(config: PromptLearningConfig) -> dict[str, Any]:
    """``adapter_config.json``'s content: the config's fields plus PEFT's bookkeeping keys, sorted."""
    values = {**PEFT_ONLY_KEYS, **config.to_dict()}
    if isinstance(config, PrefixTuningConfig):
        values.setdefault("init_weights", None)
    return dict(sorted(values.items()))


def load_config(folder: str | os.PathLike) -> PromptLearningConfig:
    """Read ``folder/adapter_config.json`` into the config class its ``peft_type`` names.

    Raises:
        FileNotFoundError: no ``adapter_config.json`` in ``folder``.
        ValueError: the file is not valid JSON, or its ``peft_type`` is not one minipeft implements.
    """
    path = Path(folder) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {folder} an adapter folder written by save_pretrained?")
    try:
        values = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None
    classes = PromptLearningConfig._CLASSES
    peft_type = values.get("peft_type")
    if peft_type not in classes:
        raise ValueError(f"{path} has peft_type={peft_type!r}; minipeft loads {', '.join(classes)} adapters only.")
    return classes[peft_type].from_dict(values)


def _model_shape(model_config: Any) -> dict[str, int]:
    """The attention shapes of a transformers config, under transformers' standard names."""
    if hasattr(model_config, "get_text_config"):
        model_config = model_config.get_text_config()
    shape = {}
    for name, aliases, field in (
        ("num_hidden_layers", ("num_layers", "n_layer"), "num_layers"),
        ("num_attention_heads", ("n_head", "num_heads"), "num_attention_heads"),
        ("hidden_size", ("n_embd", "d_model"), "token_dim"),
    ):
        shape[name] = _first_attr(model_config, name, *aliases)
        if shape[name] is None:
            raise ValueError(f"The model's config has no {name} (or {aliases[-1]}); set {field} in the config.")
    heads = shape["num_attention_heads"]
    shape["num_key_value_heads"] = getattr(model_config, "num_key_value_heads", None) or heads
    shape["head_dim"] = getattr(model_config, "head_dim", None) or shape["hidden_size"] // heads
    return shape


def decoder_layer_count(model_config: Any) -> int:
    """The decoder's layer count of an encoder-decoder config (T5 ``num_decoder_layers``, BART
    ``decoder_layers``); the model's layer count when the config names no separate decoder depth."""
    count = _first_attr(model_config, "num_decoder_layers", "decoder_layers")
    return count if count is not None else _model_shape(model_config)["num_hidden_layers"]


def _first_attr(config: Any, *names: str) -> int | None:
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return value
    return None
