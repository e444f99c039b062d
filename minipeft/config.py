"""Every adapter configuration, with PEFT's field names, and reading and writing ``adapter_config.json``.

References: Li & Liang 2021 (section 4), Liu et al. 2022 (section 3), Liu et al. 2021 "GPT Understands, Too"
(P-Tuning), Lester et al. 2021 (section 2); PEFT ``src/peft/config.py``,
``src/peft/tuners/{prefix_tuning,prompt_tuning,p_tuning}/config.py`` and ``src/peft/utils/other.py``
(``_prepare_prompt_learning_config`` fills the shapes from the model).

Explained in: book/03_prefix_encoder.ipynb (shapes), book/05_saving_and_loading.ipynb (the file)
"""

from __future__ import annotations

import dataclasses
import enum
import importlib.metadata
import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from packaging.version import Version

from .cache_shapes import KeyValueShape, table_shape
from .hub import hub_kwargs, resolve_file

__all__ = ["PeftConfig", "PeftType", "PrefixTuningConfig", "PromptLearningConfig", "PromptTuningConfig"]
__all__ += ["PromptEncoderConfig", "PromptEncoderReparameterizationType", "PromptTuningInit", "ShapeMismatchError"]
__all__ += ["TaskType"]

CONFIG_NAME = "adapter_config.json"
# The PEFT release whose adapter_config.json this module writes: recorded as `peft_version`, so that a reader
# (or a future PEFT that gates behaviour on it) sees the format. minipeft's own version is in the weights'
# metadata and the model card. (PEFT's tests patch `peft.config.__version__`, hence the name.)
__version__ = "0.21.2"


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
    P_TUNING = "P_TUNING"
    PREFIX_TUNING = "PREFIX_TUNING"


@dataclass
class PromptLearningConfig:
    """Fields shared by the prompt-learning methods (PEFT's ``PromptLearningConfig``, alias ``PeftConfig``).

    Args:
        task_type: What the base model does (a :class:`TaskType` or its value); ``None`` is accepted
            here, but :func:`~minipeft.get_peft_model` needs one.
        peft_type: Set by each subclass (PEFT writes it to ``adapter_config.json``).
        auto_mapping, revision: PEFT's bookkeeping keys, kept as read.
        peft_version: The PEFT format version of the file (filled in).
        base_model_name_or_path: Where the base model came from; informational.
        inference_mode: ``True`` freezes the adapter (loaded to be used, not trained).
        num_virtual_tokens: Length of the soft prompt or prefix (needed by ``get_peft_model``).
        token_dim, num_layers, num_attention_heads: Shapes; filled from the base model's config.
        num_transformer_submodules: 1, or 2 for ``SEQ_2_SEQ_LM``; filled from ``task_type``.
        modules_to_save: Base-model modules trained in full and saved with the adapter (names they end
            with); the classification tasks add their heads (PEFT's names).

    Raises:
        ValueError: an unknown task type (PEFT's message); a non-positive shape field.

    Explained in: book/03_prefix_encoder.ipynb
    """

    task_type: TaskType | str | None = None
    peft_type: PeftType | str | None = None
    auto_mapping: dict | None = None
    peft_version: str | None = None
    base_model_name_or_path: str | None = None
    revision: str | None = None
    inference_mode: bool = False
    num_virtual_tokens: int | None = None
    token_dim: int | None = None
    num_transformer_submodules: int | None = None
    num_attention_heads: int | None = None
    num_layers: int | None = None
    modules_to_save: list[str] | None = None

    PEFT_TYPE: ClassVar[PeftType]  # the method, fixed by each subclass
    _SHAPE_FIELDS: ClassVar[tuple[str, ...]] = ("num_virtual_tokens", "token_dim", "num_layers", "num_attention_heads")
    _CLASSES: ClassVar[dict[str, type[PromptLearningConfig]]] = {}  # peft_type -> class, filled by subclasses

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "PEFT_TYPE" in vars(cls):
            PromptLearningConfig._CLASSES[cls.PEFT_TYPE.value] = cls

    def __post_init__(self) -> None:
        name = type(self).__name__
        if self.task_type is not None:
            if self.task_type not in list(TaskType):  # PEFT's check and message
                known = ", ".join(TaskType)
                raise ValueError(
                    f"Invalid task type: '{self.task_type}'. Must be one of the following task types: {known}."
                )
        if hasattr(type(self), "PEFT_TYPE"):
            self.peft_type = self.PEFT_TYPE
        if self.peft_version is None:
            self.peft_version = _get_peft_version()
        for field in self._SHAPE_FIELDS:
            value = getattr(self, field)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise ValueError(f"{name}.{field} must be a positive integer, got {value!r}.")
        if self.modules_to_save is not None:
            if isinstance(self.modules_to_save, str) or not all(isinstance(m, str) and m for m in self.modules_to_save):
                raise ValueError(
                    f"{name}.modules_to_save must be a list of module names such as ['classifier'], "
                    f"got {self.modules_to_save!r}."
                )
            self.modules_to_save = list(self.modules_to_save)
        expected = self._expected_submodules()
        if self.num_transformer_submodules is None:
            self.num_transformer_submodules = expected
        if self.num_transformer_submodules is not None and expected and self.num_transformer_submodules != expected:
            kind = "an encoder-decoder" if expected == 2 else "a decoder-only or encoder-only model"
            raise ValueError(
                f"{name}.num_transformer_submodules must be {expected} for task_type={TaskType(self.task_type).value!r} "
                f"({kind}), got {self.num_transformer_submodules!r}."
            )

    def _expected_submodules(self) -> int | None:
        if self.task_type is None:
            return None
        return 2 if self.task_type == TaskType.SEQ_2_SEQ_LM else 1  # PEFT's _setup_prompt_encoder

    @property
    def is_prompt_learning(self) -> bool:
        """``True``: every minipeft method is a prompt-learning method (PEFT's property)."""
        return True

    @property
    def is_adaption_prompt(self) -> bool:
        """``False`` (PEFT's property; LLaMA-Adapter is not a minipeft method)."""
        return False

    def fill_from_model_config(self, model_config: Any) -> PromptLearningConfig:
        """Fill (or check, when set) ``num_layers``, ``num_attention_heads``, ``token_dim`` (the hidden size)
        and ``num_transformer_submodules`` from a transformers config; returns ``self``.

        Raises:
            ValueError: no ``num_virtual_tokens``; the config lacks a layer count, head count or hidden
                size; :class:`ShapeMismatchError` when a field set by hand disagrees with the model.
        """
        shape = _model_shape(model_config)
        heads, width = shape["num_attention_heads"], shape["hidden_size"]
        self._set_or_check(shape, num_layers=shape["num_hidden_layers"], num_attention_heads=heads, token_dim=width)
        return self

    def _set_or_check(self, shape: dict[str, int], **expected: int) -> None:
        if self.num_virtual_tokens is None:
            raise ValueError(f"{type(self).__name__}.num_virtual_tokens is required: how many virtual tokens, e.g. 30.")
        if self.num_transformer_submodules is None:
            self.num_transformer_submodules = self._expected_submodules() or 1
        mismatches = []
        for field, value in expected.items():
            if getattr(self, field) is None:
                setattr(self, field, value)
            elif getattr(self, field) != value:
                mismatches.append(f"{field}={getattr(self, field)} where the model needs {field}={value}")
        if mismatches:
            raise ShapeMismatchError(type(self).__name__, mismatches, shape)

    def to_dict(self) -> dict[str, Any]:
        """The config as a JSON-ready dict with PEFT's keys (enums as their string values)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for key, value in out.items():
            if isinstance(value, enum.Enum):
                out[key] = value.value
            elif isinstance(value, (set, tuple)):
                out[key] = list(value)
        return out

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> None:
        """Write ``adapter_config.json`` (sorted keys, as PEFT) into ``save_directory``.

        Raises:
            AssertionError: ``save_directory`` is a file (PEFT's error type).
        """
        if os.path.isfile(save_directory):
            raise AssertionError(f"Provided path ({save_directory}) should be a directory, not a file")
        os.makedirs(save_directory, exist_ok=True)
        values = self.to_dict()
        if kwargs.get("auto_mapping_dict") is not None:
            values["auto_mapping"] = kwargs["auto_mapping_dict"]
        Path(save_directory, CONFIG_NAME).write_text(json.dumps(values, indent=2, sort_keys=True))

    @classmethod
    def from_json_file(cls, path_json_file: str | os.PathLike, **kwargs: Any) -> dict[str, Any]:
        """The dict in an ``adapter_config.json`` (a ``runtime_config`` key, which PEFT never writes, dropped).

        Raises:
            ValueError: not valid JSON.
        """
        try:
            values = json.loads(Path(path_json_file).read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{path_json_file} is not valid JSON: {error}") from None
        values.pop("runtime_config", None)
        return values

    @classmethod
    def from_peft_type(cls, **kwargs: Any) -> PromptLearningConfig:
        """The config class ``kwargs["peft_type"]`` names (this class without one), built from ``kwargs``;
        keys no field takes are dropped with a warning (a file from a newer PEFT).

        Raises:
            ValueError: a ``peft_type`` minipeft does not implement.
        """
        config_cls = cls
        if "peft_type" in kwargs:
            peft_type = getattr(kwargs["peft_type"], "value", kwargs["peft_type"])
            if peft_type not in PromptLearningConfig._CLASSES:
                known = ", ".join(PromptLearningConfig._CLASSES)
                raise ValueError(f"peft_type={peft_type!r} is not a method minipeft implements ({known}).")
            config_cls = PromptLearningConfig._CLASSES[peft_type]
        names = {f.name for f in dataclasses.fields(config_cls)}
        unknown = sorted(set(kwargs) - names)
        if unknown:
            warnings.warn(
                f"Unexpected keyword arguments {unknown} for class {config_cls.__name__}, these are ignored. "
                "This probably means that you're loading a configuration file that was saved using a newer version "
                "of PEFT.",
                stacklevel=3,
            )
        return config_cls(**{k: v for k, v in kwargs.items() if k in names})

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PromptLearningConfig:
        """A config from a dict with PEFT's keys; unknown keys are ignored.

        Raises:
            ValueError: ``values["peft_type"]`` names another method than this class's.
        """
        peft_type = values.get("peft_type") or getattr(cls, "PEFT_TYPE", None)
        peft_type = getattr(peft_type, "value", peft_type)
        if hasattr(cls, "PEFT_TYPE") and peft_type != cls.PEFT_TYPE.value:
            raise ValueError(f"{cls.__name__} needs peft_type={cls.PEFT_TYPE.value!r}, got peft_type={peft_type!r}.")
        config_cls = PromptLearningConfig._CLASSES.get(peft_type, cls)
        names = {f.name for f in dataclasses.fields(config_cls)}
        return config_cls(**{k: v for k, v in values.items() if k in names})

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | os.PathLike, subfolder: str | None = None, **kwargs: Any
    ) -> PromptLearningConfig:
        """Read ``adapter_config.json`` from a folder or a Hub repository (PEFT's ``PeftConfig.from_pretrained``).

        Returns the class the file's ``peft_type`` names (on a subclass: that class or an error).
        ``kwargs``: ``revision``, ``cache_dir``, ``token``, ... for ``huggingface_hub.hf_hub_download``.

        Raises:
            FileNotFoundError: no ``adapter_config.json`` there.
            ValueError: an unsupported ``peft_type``, or not this class's.
        """
        path = resolve_file(pretrained_model_name_or_path, CONFIG_NAME, subfolder=subfolder, **hub_kwargs(kwargs))
        config = load_config(path.parent, cls)
        if not isinstance(config, cls):
            raise ValueError(
                f"{pretrained_model_name_or_path} holds a {type(config).__name__} ({config.peft_type.value}), "
                f"not a {cls.__name__}."
            )
        return config


PeftConfig = PromptLearningConfig  # PEFT's name: PeftConfig.from_pretrained(folder) reads any adapter's config


@dataclass
class PrefixTuningConfig(PromptLearningConfig):
    """A prefix (Prefix Tuning or P-Tuning v2): key/value pairs at every attention layer, PEFT's fields.

    The table (encoder output, saved ``prompt_embeddings``) is ``(num_virtual_tokens,
    2 * num_prefix_layers * token_dim)``; shape fields left ``None`` are filled by ``get_peft_model``.

    Args:
        task_type: ``CAUSAL_LM`` (Li & Liang 2021), ``SEQ_CLS``, ``TOKEN_CLS``, ``QUESTION_ANS``
            (Liu et al. 2022 section 3), ``FEATURE_EXTRACTION`` or ``SEQ_2_SEQ_LM`` (T5, BART).
        num_virtual_tokens: The prefix length (Li & Liang: "prefix length").
        token_dim: One layer's keys (or values) per virtual token, ``head_dim * num_key_value_heads``
            (SmolLM2-135M: ``64 * 3 = 192``, not its hidden size 576).
        num_layers: Attention layers with a prefix (encoder-decoder: the *encoder's* count, as PEFT).
        num_attention_heads: The prefix's head count: the model's ``num_key_value_heads``.
        init_weights: ``None``: random N(0, 1) rows; ``"zero"``: the table (or the MLP's last layer)
            starts at zero (PEFT 0.19). A zero prefix still changes the output: see chapter 4.
        encoder_hidden_size: Hidden width of the reparameterisation MLP; defaults to ``token_dim``.
        prefix_projection: ``False``: a plain table (P-Tuning v2, Liu et al. section 3.3); ``True``:
            an embedding through Linear-Tanh-Linear (Li & Liang section 4.3).
        prefix_encoder_and_cross_attention: ``SEQ_2_SEQ_LM``, minipeft only: every encoder layer,
            decoder layer and cross-attention gets a prefix (Li & Liang section 4.2).
        num_decoder_layers: The decoder's layer count, filled with ``prefix_encoder_and_cross_attention``.
        **other: The fields of :class:`PromptLearningConfig`.

    Raises:
        ValueError: those of :class:`PromptLearningConfig`; ``token_dim`` not divisible by ``num_attention_heads``;
            ``init_weights`` other than ``None``/``"zero"``; ``prefix_encoder_and_cross_attention`` not for
            ``SEQ_2_SEQ_LM``; ``num_decoder_layers`` without it.

    Explained in: book/03_prefix_encoder.ipynb
    """

    init_weights: Literal["zero"] | None = None
    encoder_hidden_size: int | None = None
    prefix_projection: bool = False
    prefix_encoder_and_cross_attention: bool = False
    num_decoder_layers: int | None = None

    PEFT_TYPE: ClassVar[PeftType] = PeftType.PREFIX_TUNING
    _SHAPE_FIELDS = (*PromptLearningConfig._SHAPE_FIELDS, "encoder_hidden_size", "num_decoder_layers")
    # minipeft's own fields, left out of to_dict at these values (PEFT-compatible files keep PEFT's keys)
    _MINIPEFT_ONLY_DEFAULTS: ClassVar[dict[str, Any]] = {"prefix_encoder_and_cross_attention": False}
    _MINIPEFT_ONLY_DEFAULTS["num_decoder_layers"] = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.init_weights not in (None, "zero"):
            raise ValueError(f"PrefixTuningConfig.init_weights must be None or 'zero', got {self.init_weights!r}.")
        if not isinstance(self.prefix_encoder_and_cross_attention, bool):
            raise ValueError(
                "PrefixTuningConfig.prefix_encoder_and_cross_attention must be True or False, "
                f"got {self.prefix_encoder_and_cross_attention!r}."
            )
        if self.prefix_encoder_and_cross_attention and self.task_type != TaskType.SEQ_2_SEQ_LM:
            task = getattr(self.task_type, "value", self.task_type)
            raise ValueError(
                "PrefixTuningConfig.prefix_encoder_and_cross_attention=True is for encoder-decoders "
                f"(task_type='SEQ_2_SEQ_LM'), not task_type={task!r}."
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
        """The number of attention layers whose keys and values the table holds, ``num_layers`` (plus
        ``2 * num_decoder_layers`` with ``prefix_encoder_and_cross_attention``); ``ValueError`` before they are filled."""
        if self.num_layers is None or (self.prefix_encoder_and_cross_attention and self.num_decoder_layers is None):
            raise ValueError(
                "PrefixTuningConfig.num_prefix_layers needs num_layers (and num_decoder_layers with "
                "prefix_encoder_and_cross_attention=True); call fill_from_model_config first."
            )
        return self.num_layers + 2 * (self.num_decoder_layers if self.prefix_encoder_and_cross_attention else 0)

    def __repr__(self) -> str:
        """The dataclass repr, without minipeft's own fields at their PEFT-compatible defaults (as PEFT's repr)."""
        shown = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.repr}
        for field, default in self._MINIPEFT_ONLY_DEFAULTS.items():
            if shown[field] == default:
                del shown[field]
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in shown.items())})"

    def to_dict(self) -> dict[str, Any]:
        """PEFT's keys, plus minipeft's own fields where they differ from their PEFT-compatible default."""
        out = super().to_dict()
        for field, default in self._MINIPEFT_ONLY_DEFAULTS.items():
            if out[field] == default:
                del out[field]
        return out

    def fill_from_model_config(
        self, model_config: Any, cache_shapes: Sequence[KeyValueShape | None] | None = None
    ) -> PrefixTuningConfig:
        """Fill (or check) the shapes from a transformers config, as PEFT's ``_prepare_prompt_learning_config``.

        The keys and values take the model's attention shapes: ``num_key_value_heads`` heads (fewer
        than the query heads under grouped-query attention) of ``head_dim`` (the config's own, else
        ``hidden_size // num_attention_heads``). ``cache_shapes`` (:func:`minipeft.cache_layout`,
        what the model's cache really holds, layer by layer) overrides the config's fields: one block
        per layer, ``num_attention_heads`` the most key/value heads of any layer and ``token_dim``
        that times the widest keys or values. Returns ``self``.

        Raises:
            ValueError: see :meth:`PromptLearningConfig.fill_from_model_config`.
        """
        if cache_shapes is not None:
            heads, head_dim = table_shape(list(cache_shapes))
            layers = len(cache_shapes)
            try:  # the config's fields, for describing a mismatch; the cache's where they differ
                shape = _model_shape(model_config)
            except ValueError:
                shape = {}
            shape.update(num_hidden_layers=layers, num_key_value_heads=heads, head_dim=head_dim)
        else:
            shape = _model_shape(model_config)
            heads, layers, head_dim = shape["num_key_value_heads"], shape["num_hidden_layers"], shape["head_dim"]
        expected = {"num_layers": layers, "num_attention_heads": heads, "token_dim": head_dim * heads}
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
    """A soft prompt (prompt tuning): vectors before the input embeddings, PEFT's fields.

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


class PromptEncoderReparameterizationType(str, enum.Enum):
    """P-Tuning's encoder: an ``MLP`` or a bidirectional ``LSTM`` then an MLP (PEFT's values).

    Explained in: book/02_virtual_tokens.ipynb
    """

    MLP = "MLP"
    LSTM = "LSTM"


@dataclass
class PromptEncoderConfig(PromptLearningConfig):
    """P-Tuning (Liu et al. 2021, "GPT Understands, Too"): a soft prompt produced by a small network, PEFT's fields.

    Args:
        encoder_reparameterization_type: ``MLP`` (three linear layers) or ``LSTM`` (a bidirectional
            LSTM of ``encoder_num_layers`` layers, then two linear layers), as PEFT builds them.
        encoder_hidden_size: The encoder's hidden width; defaults to ``token_dim`` (PEFT needs it set).
        encoder_num_layers: The LSTM's layer count (ignored, with PEFT's warning, for the MLP).
        encoder_dropout: The LSTM's dropout between layers.
        **other: The fields of :class:`PromptLearningConfig`.

    Raises:
        ValueError: those of :class:`PromptLearningConfig`; an unknown ``encoder_reparameterization_type``.

    Explained in: book/02_virtual_tokens.ipynb
    """

    encoder_reparameterization_type: PromptEncoderReparameterizationType | str = PromptEncoderReparameterizationType.MLP
    encoder_hidden_size: int | None = None
    encoder_num_layers: int = 2
    encoder_dropout: float = 0.0

    PEFT_TYPE: ClassVar[PeftType] = PeftType.P_TUNING

    def __post_init__(self) -> None:
        super().__post_init__()
        try:
            self.encoder_reparameterization_type = PromptEncoderReparameterizationType(
                self.encoder_reparameterization_type
            )
        except ValueError:
            raise ValueError(
                f"PromptEncoderConfig.encoder_reparameterization_type={self.encoder_reparameterization_type!r} is "
                "unknown; use 'MLP' (recommended) or 'LSTM'."
            ) from None

    def fill_from_model_config(self, model_config: Any) -> PromptEncoderConfig:
        """Fill the shapes (see :meth:`PromptLearningConfig.fill_from_model_config`) and ``encoder_hidden_size``."""
        super().fill_from_model_config(model_config)
        if self.encoder_hidden_size is None:
            self.encoder_hidden_size = self.token_dim
        return self


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


def load_config(folder: str | os.PathLike, cls: type[PromptLearningConfig] | None = None) -> PromptLearningConfig:
    """Read ``folder/adapter_config.json`` into the config class its ``peft_type`` names; keys no field
    takes (a newer PEFT's) are dropped with a warning, as PEFT does.

    Raises:
        FileNotFoundError: no ``adapter_config.json`` in ``folder``.
        TypeError: the file has no ``peft_type`` (not an adapter config; PEFT's error).
        ValueError: the file is not valid JSON, or its ``peft_type`` is not one minipeft implements.
    """
    cls = cls or PromptLearningConfig
    path = Path(folder) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {folder} an adapter folder written by save_pretrained?")
    values = PromptLearningConfig.from_json_file(path)
    if "peft_type" not in values:
        raise TypeError(
            f"The {cls.__name__} config that is trying to be loaded is missing required keys: {{'peft_type'}}."
        )
    classes = PromptLearningConfig._CLASSES
    if values["peft_type"] not in classes:
        raise ValueError(
            f"{path} has peft_type={values['peft_type']!r}; minipeft loads {', '.join(classes)} adapters only."
        )
    return PromptLearningConfig.from_peft_type(**values)


def _is_dev_version(version: str) -> bool:
    return Version(version).dev is not None


def _get_commit_hash(pkg_name: str) -> str | None:
    """The git commit a package was installed from (its ``direct_url.json``), if any."""
    try:
        dist = importlib.metadata.distribution(pkg_name)
    except importlib.metadata.PackageNotFoundError:
        return None
    for path in dist.files or []:
        if path.name == "direct_url.json":
            vcs_info = json.loads(dist.locate_file(path).read_text()).get("vcs_info") or {}
            if "commit_id" in vcs_info:
                return vcs_info["commit_id"]
    return None


def _get_peft_version() -> str:
    """``__version__``, with ``@<commit>`` (or ``@UNKNOWN``) for a development version, as PEFT records it."""
    if not _is_dev_version(__version__):
        return __version__
    try:
        commit = _get_commit_hash("peft") or "UNKNOWN"
    except Exception:
        warnings.warn(
            "A dev version of PEFT is used but there was an error while trying to determine the commit hash.",
            stacklevel=3,
        )
        commit = "UNKNOWN"
    return f"{__version__}@{commit}"


def _model_shape(model_config: Any) -> dict[str, int]:
    """The attention shapes of a transformers config, under transformers' standard names."""
    if hasattr(model_config, "get_text_config"):
        model_config = model_config.get_text_config()
    shape = {}
    for name, aliases, field in (
        ("num_hidden_layers", ("num_layers", "n_layer"), "num_layers"),
        ("num_attention_heads", ("n_head", "num_heads", "encoder_attention_heads"), "num_attention_heads"),
        ("hidden_size", ("n_embd", "d_model"), "token_dim"),
    ):
        shape[name] = _first_attr(model_config, name, *aliases)
        if shape[name] is None:
            raise ValueError(f"The model's config has no {name} (or {aliases[-1]}); set {field} in the config.")
    heads = shape["num_attention_heads"]
    shape["num_key_value_heads"] = _first_attr(model_config, "num_key_value_heads") or heads
    shape["head_dim"] = _first_attr(model_config, "head_dim") or shape["hidden_size"] // heads
    return shape


def decoder_layer_count(model_config: Any) -> int:
    """The decoder's layer count of an encoder-decoder config (T5 ``num_decoder_layers``, BART
    ``decoder_layers``); the model's layer count when the config names no separate decoder depth."""
    count = _first_attr(model_config, "num_decoder_layers", "decoder_layers")
    return count if count is not None else _model_shape(model_config)["num_hidden_layers"]


def _first_attr(config: Any, *names: str) -> int | None:
    for name in names:
        try:
            value = getattr(config, name, None)
        except RuntimeError:  # transformers' AmbiguousGlobalPerLayerAttributeError: it varies by layer (Gemma 4)
            value = None
        if value is not None:
            return value
    return None
