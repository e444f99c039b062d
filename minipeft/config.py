"""Every adapter configuration, with PEFT's field names, and reading ``adapter_config.json``.

References:
    - Li & Liang 2021, "Prefix-Tuning", section 4; Liu et al. 2022, "P-Tuning v2", section 3;
      Lester et al. 2021, "The Power of Scale for Parameter-Efficient Prompt Tuning", section 2.
    - PEFT: ``src/peft/config.py`` (``PromptLearningConfig``, ``PeftConfig.from_pretrained``),
      ``src/peft/tuners/{prefix_tuning,prompt_tuning}/config.py`` and ``src/peft/utils/other.py``
      (``_prepare_prompt_learning_config``, which fills the shape fields from the base model's config).

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

__all__ = [
    "PeftConfig",
    "PeftType",
    "PrefixTuningConfig",
    "PromptLearningConfig",
    "PromptTuningConfig",
    "PromptTuningInit",
    "ShapeMismatchError",
    "TaskType",
]

CONFIG_NAME = "adapter_config.json"
# Keys PEFT 0.21 writes that minipeft has no use for; written as PEFT writes them, so files match.
PEFT_ONLY_KEYS: dict[str, Any] = {"auto_mapping": None, "revision": None}


class TaskType(str, enum.Enum):
    """What the base model does. The string values are PEFT's (``peft.TaskType``).

    Explained in: book/01_why_prefix_tuning.ipynb
    """

    SEQ_CLS = "SEQ_CLS"
    SEQ_2_SEQ_LM = "SEQ_2_SEQ_LM"
    CAUSAL_LM = "CAUSAL_LM"
    TOKEN_CLS = "TOKEN_CLS"
    QUESTION_ANS = "QUESTION_ANS"
    FEATURE_EXTRACTION = "FEATURE_EXTRACTION"


class PeftType(str, enum.Enum):
    """The tuning method. The string values are PEFT's (``peft.PeftType``).

    Explained in: book/01_why_prefix_tuning.ipynb
    """

    PROMPT_TUNING = "PROMPT_TUNING"
    PREFIX_TUNING = "PREFIX_TUNING"


@dataclass
class PromptLearningConfig:
    """Fields shared by the prompt-learning methods (PEFT's ``PromptLearningConfig``, alias ``PeftConfig``).

    Args:
        task_type: What the base model does; each config class implements its ``TASK_TYPES``.
        num_virtual_tokens: Length of the soft prompt or prefix, in virtual tokens.
        token_dim: Width of one virtual token's vector; filled from the base model's config.
        num_layers: Number of transformer layers; filled from the base model's config.
        num_attention_heads: Number of attention heads; filled from the base model's config.
        inference_mode: ``True`` freezes the adapter (it is loaded to be used, not trained).
        num_transformer_submodules: 1, or 2 for ``SEQ_2_SEQ_LM``; filled from ``task_type``.
        base_model_name_or_path: Where the base model came from; informational.
        modules_to_save: ``SEQ_CLS`` only: base-model modules trained in full and saved with the
            adapter (a module matches when its name ends with one of them); PEFT's
            ``["classifier", "score"]`` are added (:class:`~minipeft.PeftModelForSequenceClassification`).

    Raises:
        ValueError: ``num_virtual_tokens`` missing or not a positive integer; a task type that is not
            implemented; a non-positive shape field; ``modules_to_save`` that is not a list of names,
            or given for another task than ``SEQ_CLS``.

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

    #: The method, fixed by each subclass (PEFT writes it to ``adapter_config.json``).
    PEFT_TYPE: ClassVar[PeftType]
    #: The task types this method implements in minipeft.
    TASK_TYPES: ClassVar[tuple[TaskType, ...]] = (TaskType.CAUSAL_LM,)
    _SHAPE_FIELDS: ClassVar[tuple[str, ...]] = ("num_virtual_tokens", "token_dim", "num_layers", "num_attention_heads")
    #: ``peft_type`` value -> config class, filled as the subclasses are defined.
    _CLASSES: ClassVar[dict[str, type[PromptLearningConfig]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "PEFT_TYPE" in vars(cls):
            PromptLearningConfig._CLASSES[cls.PEFT_TYPE.value] = cls

    @property
    def peft_type(self) -> PeftType:
        """The tuning method, e.g. ``PeftType.PREFIX_TUNING``."""
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
        if isinstance(self.modules_to_save, str) or not all(isinstance(m, str) and m for m in self.modules_to_save):
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
        """Fill ``num_layers``, ``num_attention_heads`` and ``token_dim`` (``hidden_size``) from the model.

        Fields already set are checked, not overwritten.

        Args:
            model_config: A transformers ``PretrainedConfig`` (or any object with its attributes).

        Returns:
            ``self``, filled in.

        Raises:
            ValueError: the config lacks a layer count, head count or hidden size;
                :class:`ShapeMismatchError` when a field set by hand disagrees with the model.
        """
        shape = _model_shape(model_config)
        self._set_or_check(
            shape,
            num_layers=shape["num_hidden_layers"],
            num_attention_heads=shape["num_attention_heads"],
            token_dim=shape["hidden_size"],
        )
        return self

    def _set_or_check(self, shape: dict[str, int], **expected: int) -> None:
        mismatches = []
        for field, value in expected.items():
            current = getattr(self, field)
            if current is None:
                setattr(self, field, value)
            elif current != value:
                mismatches.append(f"{field}={current} where the model needs {field}={value}")
        if mismatches:
            raise ShapeMismatchError(type(self).__name__, mismatches, shape)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PromptLearningConfig:
        """Build a config from a dict with PEFT's keys, e.g. a parsed ``adapter_config.json``.

        Keys that minipeft has no field for (PEFT's ``revision``, ``peft_version``, ...) are ignored.

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
        """Read an adapter folder's ``adapter_config.json`` (PEFT's ``PeftConfig.from_pretrained``).

        On ``PeftConfig`` it returns whichever config class the file's ``peft_type`` names; on a
        subclass, that class or an error.

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


#: PEFT's name for the base config class: ``PeftConfig.from_pretrained(folder)`` reads any adapter's config.
PeftConfig = PromptLearningConfig


@dataclass
class PrefixTuningConfig(PromptLearningConfig):
    """A prefix (Prefix Tuning or P-Tuning v2): key/value pairs at every attention layer, PEFT's fields.

    The shape fields (``num_layers``, ``token_dim``, ``num_attention_heads``) are filled from the
    model's config by :func:`minipeft.get_peft_model` when left as ``None``. The table (the
    encoder's output, the saved ``prompt_embeddings``) is ``(num_virtual_tokens,
    2 * num_prefix_layers * token_dim)``.

    Args:
        task_type: ``CAUSAL_LM`` (Li & Liang 2021), ``SEQ_CLS`` (P-Tuning v2's classifier, Liu et al.
            2022 section 3) or ``SEQ_2_SEQ_LM`` (T5, BART; :class:`~minipeft.PeftModelForSeq2SeqLM`).
        num_virtual_tokens: Length of the prefix, in tokens (Li & Liang: "prefix length").
        token_dim: One layer's keys (or values) per virtual token: ``head_dim * num_key_value_heads``
            (SmolLM2-135M: ``64 * 3 = 192``, not its hidden size 576).
        num_layers: Attention layers that receive a prefix (for an encoder-decoder PEFT fills the
            *encoder's* count, although it prefixes only the decoder).
        num_attention_heads: The prefix's head count: the model's ``num_key_value_heads``.
        encoder_hidden_size: Hidden width of the reparameterisation MLP; defaults to ``token_dim``.
        prefix_projection: ``False``: the prefix is a plain table (P-Tuning v2, Liu et al. 2022
            section 3.3). ``True``: an embedding through Linear-Tanh-Linear (Li & Liang 2021 section 4.3).
        inference_mode: ``True`` freezes the prefix and drops the MLP (a fixed table).
        prefix_encoder_and_cross_attention: ``SEQ_2_SEQ_LM`` only, minipeft only: every encoder
            layer, decoder layer and cross-attention gets its own prefix (Li & Liang section 4.2);
            ``num_prefix_layers`` is then ``num_layers + 2 * num_decoder_layers``. PEFT cannot load it.
        num_decoder_layers: The decoder's layer count, filled only with
            ``prefix_encoder_and_cross_attention=True``. Not a PEFT field.
        **other: The fields of :class:`PromptLearningConfig`.

    Raises:
        ValueError: those of :class:`PromptLearningConfig`; ``token_dim`` not divisible by
            ``num_attention_heads``; ``prefix_encoder_and_cross_attention`` for another task than
            ``SEQ_2_SEQ_LM``, or ``num_decoder_layers`` without it.

    Explained in: book/03_prefix_encoder.ipynb
    """

    encoder_hidden_size: int | None = None
    prefix_projection: bool = False
    prefix_encoder_and_cross_attention: bool = False
    num_decoder_layers: int | None = None

    PEFT_TYPE: ClassVar[PeftType] = PeftType.PREFIX_TUNING
    TASK_TYPES: ClassVar[tuple[TaskType, ...]] = (TaskType.CAUSAL_LM, TaskType.SEQ_CLS, TaskType.SEQ_2_SEQ_LM)
    _SHAPE_FIELDS: ClassVar[tuple[str, ...]] = (
        *PromptLearningConfig._SHAPE_FIELDS,
        "encoder_hidden_size",
        "num_decoder_layers",
    )
    #: minipeft's own fields, left out of ``to_dict`` at these values (PEFT-compatible files keep PEFT's keys).
    _MINIPEFT_ONLY_DEFAULTS: ClassVar[dict[str, Any]] = {
        "prefix_encoder_and_cross_attention": False,
        "num_decoder_layers": None,
    }

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
            raise ValueError(
                "PrefixTuningConfig.head_dim needs token_dim and num_attention_heads; call fill_from_model_config first."
            )
        return self.token_dim // self.num_attention_heads

    @property
    def num_prefix_layers(self) -> int:
        """How many attention layers' keys and values the table holds side by side.

        Raises:
            ValueError: ``num_layers`` (or ``num_decoder_layers``) is not filled in yet.
        """
        if self.num_layers is None or (self.prefix_encoder_and_cross_attention and self.num_decoder_layers is None):
            raise ValueError(
                "PrefixTuningConfig.num_prefix_layers needs num_layers (and num_decoder_layers with "
                "prefix_encoder_and_cross_attention=True); call fill_from_model_config first."
            )
        if self.prefix_encoder_and_cross_attention:
            return self.num_layers + 2 * self.num_decoder_layers
        return self.num_layers

    def to_dict(self) -> dict[str, Any]:
        """PEFT's keys, plus minipeft's own fields where they differ from their PEFT-compatible default."""
        out = super().to_dict()
        for field, default in self._MINIPEFT_ONLY_DEFAULTS.items():
            if out[field] == default:
                del out[field]
        return out

    def fill_from_model_config(self, model_config: Any) -> PrefixTuningConfig:
        """Fill ``num_layers``, ``token_dim``, ``num_attention_heads`` and ``encoder_hidden_size``.

        The prefix's keys and values take the shapes of the model's attention: ``num_key_value_heads``
        heads (fewer than the query heads under grouped-query attention) of ``head_dim`` each (the
        config's own ``head_dim`` when it has one, else ``hidden_size // num_attention_heads``).
        Same result as PEFT's ``_prepare_prompt_learning_config``. For an encoder-decoder,
        ``num_layers`` is the encoder's count; ``num_decoder_layers`` is filled with
        ``prefix_encoder_and_cross_attention=True``.

        Returns:
            ``self``, filled in.

        Raises:
            ValueError: the config lacks a layer count, head count or hidden size;
                :class:`ShapeMismatchError` when a field set by hand disagrees with the model.
        """
        shape = _model_shape(model_config)
        expected = {
            "num_layers": shape["num_hidden_layers"],
            "num_attention_heads": shape["num_key_value_heads"],
            "token_dim": shape["head_dim"] * shape["num_key_value_heads"],
        }
        if self.prefix_encoder_and_cross_attention:
            expected["num_decoder_layers"] = decoder_layer_count(model_config)
        self._set_or_check(shape, **expected)
        if self.encoder_hidden_size is None:
            self.encoder_hidden_size = self.token_dim
        return self


class PromptTuningInit(str, enum.Enum):
    """How a soft prompt starts (PEFT's values).

    ``TEXT``: the embeddings of a text's tokens (Lester et al. section 3.2); ``SAMPLE_VOCAB``:
    embeddings of random vocabulary tokens; ``RANDOM``: ``nn.Embedding``'s N(0, 1).

    Explained in: book/02_virtual_tokens.ipynb
    """

    TEXT = "TEXT"
    SAMPLE_VOCAB = "SAMPLE_VOCAB"
    RANDOM = "RANDOM"


@dataclass
class PromptTuningConfig(PromptLearningConfig):
    """A soft prompt (prompt tuning): vectors before the input embeddings only, PEFT's fields.

    ``task_type`` is ``CAUSAL_LM`` or ``SEQ_CLS`` (with a trained head,
    :class:`~minipeft.PeftModelForSequenceClassification`).

    Args:
        prompt_tuning_init: A :class:`PromptTuningInit` (or its string value).
        prompt_tuning_init_text: The text whose token embeddings start the prompt (``TEXT``); its
            tokens are cut or repeated to ``num_virtual_tokens``.
        tokenizer_name_or_path: The tokenizer for ``prompt_tuning_init_text`` (a Hub id or folder).
        tokenizer_kwargs: Extra arguments for ``AutoTokenizer.from_pretrained`` (``TEXT`` only).
        **other: The fields of :class:`PromptLearningConfig`.

    Raises:
        ValueError: ``TEXT`` without a text or a tokenizer; ``tokenizer_kwargs`` without ``TEXT``;
            an unknown ``prompt_tuning_init``; and the errors of :class:`PromptLearningConfig`.

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
        mismatches: One ``"field=adapter value where the model needs field=model value"`` per field.
        model_shape: The model's attention shapes (layers, hidden size, heads, key/value heads, head_dim).

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
    num_layers = _first_attr(model_config, "num_hidden_layers", "num_layers", "n_layer")
    num_heads = _first_attr(model_config, "num_attention_heads", "n_head", "num_heads")
    hidden_size = _first_attr(model_config, "hidden_size", "n_embd", "d_model")
    if num_layers is None:
        raise ValueError("The model's config has no num_hidden_layers (or n_layer); set num_layers in the config.")
    if num_heads is None:
        raise ValueError(
            "The model's config has no num_attention_heads (or n_head); set num_attention_heads in the config."
        )
    if hidden_size is None:
        raise ValueError("The model's config has no hidden_size (or n_embd); set token_dim in the config.")
    return {
        "num_hidden_layers": num_layers,
        "hidden_size": hidden_size,
        "num_attention_heads": num_heads,
        "num_key_value_heads": getattr(model_config, "num_key_value_heads", None) or num_heads,
        "head_dim": getattr(model_config, "head_dim", None) or hidden_size // num_heads,
    }


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
