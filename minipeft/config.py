"""Configuration of a prefix: how many virtual tokens, and the shapes they must take.

References:
    - Li & Liang 2021, "Prefix-Tuning: Optimizing Continuous Prompts for Generation", section 4.
    - Liu et al. 2022, "P-Tuning v2", section 3.
    - PEFT: ``src/peft/tuners/prefix_tuning/config.py`` (the field names), ``src/peft/config.py``
      (``PromptLearningConfig``) and ``src/peft/utils/other.py`` (``_prepare_prompt_learning_config``,
      which fills the missing fields from the base model's config; minipeft's
      :meth:`PrefixTuningConfig.fill_from_model_config` does the same, grouped-query attention included).

Explained in: book/01_why_prefix_tuning.ipynb
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import Any


class TaskType(str, enum.Enum):
    """What the base model does. The string values are PEFT's (``peft.TaskType``)."""

    SEQ_CLS = "SEQ_CLS"
    SEQ_2_SEQ_LM = "SEQ_2_SEQ_LM"
    CAUSAL_LM = "CAUSAL_LM"
    TOKEN_CLS = "TOKEN_CLS"
    QUESTION_ANS = "QUESTION_ANS"
    FEATURE_EXTRACTION = "FEATURE_EXTRACTION"


class PeftType(str, enum.Enum):
    """The tuning method. The string values are PEFT's (``peft.PeftType``)."""

    PROMPT_TUNING = "PROMPT_TUNING"
    P_TUNING = "P_TUNING"
    PREFIX_TUNING = "PREFIX_TUNING"


#: Task types that minipeft implements today.
SUPPORTED_TASK_TYPES = (TaskType.CAUSAL_LM,)


@dataclass
class PrefixTuningConfig:
    """The configuration of a prefix (Prefix Tuning or P-Tuning v2), with PEFT's field names.

    A prefix is ``num_virtual_tokens`` key/value pairs at every one of ``num_layers`` attention
    layers. The fields that describe the base model (``num_layers``, ``token_dim``,
    ``num_attention_heads``) are filled from the model's config by :func:`minipeft.get_peft_model`
    when left as ``None``.

    Args:
        task_type: What the base model does; only ``TaskType.CAUSAL_LM`` is implemented.
        num_virtual_tokens: Length of the prefix, in tokens (Li & Liang: "prefix length").
        token_dim: Width of one layer's keys (or values) for one virtual token:
            ``head_dim * num_key_value_heads``. For a multi-head model that is ``hidden_size``; for
            grouped-query attention it is smaller (SmolLM2-135M: ``64 * 3 = 192``, not 576).
        num_layers: Number of attention layers that receive a prefix.
        num_attention_heads: Number of heads of the prefix's keys and values, i.e. the model's
            ``num_key_value_heads`` (PEFT stores the key/value head count in this field).
        encoder_hidden_size: Hidden width of the reparameterisation MLP (``prefix_projection=True``);
            defaults to ``token_dim``.
        prefix_projection: ``False``: the prefix is a plain table of parameters (P-Tuning v2,
            Liu et al. 2022 section 3.3). ``True``: an embedding passed through Linear-Tanh-Linear
            (Prefix Tuning's reparameterisation, Li & Liang 2021 section 4.3).
        inference_mode: ``True`` freezes the prefix and drops the MLP (the prefix is a fixed table).
        num_transformer_submodules: 1 for decoder-only models (PEFT uses 2 for encoder-decoders).
        base_model_name_or_path: Where the base model came from; informational.

    Raises:
        ValueError: ``num_virtual_tokens`` missing or not a positive integer; a task type that is not
            implemented; a non-positive shape field; a field that cannot be filled from the model's
            config (see :meth:`fill_from_model_config`).
    """

    task_type: TaskType | str | None = TaskType.CAUSAL_LM
    num_virtual_tokens: int | None = None
    token_dim: int | None = None
    num_layers: int | None = None
    num_attention_heads: int | None = None
    encoder_hidden_size: int | None = None
    prefix_projection: bool = False
    inference_mode: bool = False
    num_transformer_submodules: int | None = None
    base_model_name_or_path: str | None = None
    peft_type: PeftType | str = PeftType.PREFIX_TUNING

    def __post_init__(self) -> None:
        if self.task_type is None:
            raise ValueError("PrefixTuningConfig.task_type is None; use task_type=TaskType.CAUSAL_LM.")
        try:
            self.task_type = TaskType(self.task_type)
        except ValueError:
            known = ", ".join(t.value for t in TaskType)
            raise ValueError(
                f"PrefixTuningConfig.task_type={self.task_type!r} is unknown; expected one of {known}."
            ) from None
        if self.task_type not in SUPPORTED_TASK_TYPES:
            raise ValueError(
                f"PrefixTuningConfig.task_type={self.task_type.value!r} is not supported by minipeft yet; "
                f"supported: {', '.join(t.value for t in SUPPORTED_TASK_TYPES)}."
            )
        if PeftType(self.peft_type) is not PeftType.PREFIX_TUNING:
            raise ValueError(f"PrefixTuningConfig.peft_type must be 'PREFIX_TUNING', got {self.peft_type!r}.")
        self.peft_type = PeftType.PREFIX_TUNING
        if self.num_virtual_tokens is None:
            raise ValueError(
                "PrefixTuningConfig.num_virtual_tokens is required: how many virtual tokens the prefix has, e.g. 30."
            )
        for name in ("num_virtual_tokens", "token_dim", "num_layers", "num_attention_heads", "encoder_hidden_size"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"PrefixTuningConfig.{name} must be a positive integer, got {value!r}.")
        if self.num_transformer_submodules is None:
            self.num_transformer_submodules = 1
        if self.num_transformer_submodules != 1:
            raise ValueError(
                "PrefixTuningConfig.num_transformer_submodules must be 1 for a decoder-only (CAUSAL_LM) model, "
                f"got {self.num_transformer_submodules!r}."
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
        """Width of one key (or value) head: ``token_dim // num_attention_heads``."""
        if self.token_dim is None or self.num_attention_heads is None:
            raise ValueError(
                "PrefixTuningConfig.head_dim needs token_dim and num_attention_heads; call fill_from_model_config first."
            )
        return self.token_dim // self.num_attention_heads

    def fill_from_model_config(self, model_config: Any) -> PrefixTuningConfig:
        """Fill ``num_layers``, ``token_dim``, ``num_attention_heads`` and ``encoder_hidden_size``.

        The prefix's keys and values must have the shapes the model's attention layers use:
        ``num_key_value_heads`` heads (grouped- and multi-query attention have fewer key/value heads
        than query heads) of ``head_dim`` each, where ``head_dim`` is the config's own ``head_dim``
        when it has one (Qwen3: 128 with hidden 1024 and 16 heads) and ``hidden_size //
        num_attention_heads`` otherwise. Same result as PEFT's ``_prepare_prompt_learning_config``.

        Fields already set are checked, not overwritten: a ``token_dim`` or head count that does not
        fit the model raises a ``ValueError`` naming both shapes.

        Args:
            model_config: A transformers ``PretrainedConfig`` (or any object with its attributes).

        Returns:
            ``self``, filled in.

        Raises:
            ValueError: the config has no layer count, no head count or no hidden size, or a field
                set by hand disagrees with the model.
        """
        if hasattr(model_config, "get_text_config"):
            model_config = model_config.get_text_config()
        num_layers = _first_attr(model_config, "num_hidden_layers", "num_layers", "n_layer")
        num_heads = _first_attr(model_config, "num_attention_heads", "n_head", "num_heads")
        hidden_size = _first_attr(model_config, "hidden_size", "n_embd", "d_model")
        if num_layers is None:
            raise ValueError(
                "The model's config has no num_hidden_layers (or n_layer); set PrefixTuningConfig.num_layers."
            )
        if num_heads is None:
            raise ValueError(
                "The model's config has no num_attention_heads (or n_head); set PrefixTuningConfig.num_attention_heads."
            )
        num_key_value_heads = getattr(model_config, "num_key_value_heads", None) or num_heads
        head_dim = getattr(model_config, "head_dim", None)
        if head_dim is None:
            if hidden_size is None:
                raise ValueError("The model's config has no hidden_size (or n_embd); set PrefixTuningConfig.token_dim.")
            head_dim = hidden_size // num_heads
        expected = {
            "num_layers": num_layers,
            "num_attention_heads": num_key_value_heads,
            "token_dim": head_dim * num_key_value_heads,
        }
        for name, value in expected.items():
            current = getattr(self, name)
            if current is None:
                setattr(self, name, value)
            elif current != value:
                raise ValueError(
                    f"PrefixTuningConfig.{name}={current} does not fit the base model, which needs {name}={value} "
                    f"(num_hidden_layers={num_layers}, num_key_value_heads={num_key_value_heads}, head_dim={head_dim}). "
                    f"Leave {name}=None to fill it from the model."
                )
        if self.encoder_hidden_size is None:
            self.encoder_hidden_size = self.token_dim
        return self

    def to_dict(self) -> dict[str, Any]:
        """The config as a JSON-ready dict with PEFT's keys (enums as their string values)."""
        out = dataclasses.asdict(self)
        out["task_type"] = TaskType(self.task_type).value
        out["peft_type"] = PeftType(self.peft_type).value
        return out


def _first_attr(config: Any, *names: str) -> int | None:
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return value
    return None
