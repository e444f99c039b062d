"""Loading an adapter together with its base model, from the adapter's folder alone (PEFT's ``AutoPeftModel...``).

``AutoPeftModelForCausalLM.from_pretrained("path/or/hub-id")`` reads the adapter's
``adapter_config.json``, loads the base model it names (``base_model_name_or_path`` at ``revision``)
with the matching transformers auto class, and puts the adapter on it.

Follows PEFT ``src/peft/auto.py`` and ``src/peft/mapping.py`` (``get_peft_config``).

Explained in: book/05_saving_and_loading.ipynb
"""

from __future__ import annotations

import importlib
import os
from typing import Any, ClassVar

import transformers
from torch import nn

from .causal_lm import PeftModelForCausalLM
from .config import PromptLearningConfig, TaskType
from .feature_extraction import PeftModelForFeatureExtraction
from .peft_model import PeftModel
from .question_answering import PeftModelForQuestionAnswering
from .seq2seq_lm import PeftModelForSeq2SeqLM
from .sequence_classification import PeftModelForSequenceClassification
from .token_classification import PeftModelForTokenClassification

__all__ = ["AutoPeftModel", "AutoPeftModelForCausalLM", "AutoPeftModelForFeatureExtraction"]
__all__ += ["AutoPeftModelForQuestionAnswering", "AutoPeftModelForSeq2SeqLM", "AutoPeftModelForSequenceClassification"]
__all__ += ["AutoPeftModelForTokenClassification", "get_peft_config"]


def get_peft_config(config_dict: dict[str, Any]) -> PromptLearningConfig:
    """The config ``config_dict["peft_type"]`` names, built from the dict (PEFT's function).

    Raises:
        ValueError: a ``peft_type`` minipeft does not implement.

    Explained in: book/05_saving_and_loading.ipynb
    """
    return PromptLearningConfig.from_peft_type(**config_dict)


class AutoPeftModel:
    """An adapter and its base model from the adapter's folder or Hub id; ``AutoPeftModelFor...`` pick the task.

    ``AutoPeftModel`` itself loads adapters saved without a task type (PEFT's ``auto_mapping`` names
    the base model's class).

    Explained in: book/05_saving_and_loading.ipynb
    """

    _target_class: ClassVar[type | None] = None
    _target_peft_class: ClassVar[type[PeftModel]] = PeftModel

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise OSError(f"{type(self).__name__} is built with {type(self).__name__}.from_pretrained(...).")

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        adapter_name: str = "default",
        is_trainable: bool = False,
        config: PromptLearningConfig | None = None,
        revision: str | None = None,
        **kwargs: Any,
    ) -> PeftModel:
        """Load the base model ``adapter_config.json`` names, then the adapter onto it.

        ``kwargs`` go to both ``from_pretrained`` calls (``dtype``, ``cache_dir``, ``token``, ...).

        Raises:
            ValueError: the adapter's task type belongs to another ``AutoPeftModelFor...`` class;
                the base model's class cannot be told from the config.
        """
        peft_config = PromptLearningConfig.from_pretrained(pretrained_model_name_or_path, revision=revision, **kwargs)
        task_type = peft_config.task_type
        target_class = cls._target_class
        if target_class is None and task_type is not None:
            raise ValueError(
                "Cannot use `AutoPeftModel` with a task type, please use a specific class for your task type. "
                f"(e.g. `AutoPeftModelForCausalLM` for `task_type='CAUSAL_LM'`), got task_type={TaskType(task_type).value!r}."
            )
        if task_type is not None:
            expected = PeftModel._TASK_CLASSES[task_type]
            if cls._target_peft_class is not expected:
                raise ValueError(
                    f"Expected target PEFT class: {expected.__name__}, but you have asked for: "
                    f"{cls._target_peft_class.__name__} make sure that you are loading the correct model for your "
                    "task type."
                )
        elif peft_config.auto_mapping is not None:
            library = importlib.import_module(peft_config.auto_mapping["parent_library"])
            target_class = getattr(library, peft_config.auto_mapping["base_model_class"])
        else:
            raise ValueError(
                "Cannot infer the auto class from the config, please make sure that you are loading the correct "
                "model for your task type."
            )
        base: nn.Module = target_class.from_pretrained(
            peft_config.base_model_name_or_path, revision=peft_config.revision, **kwargs
        )
        return cls._target_peft_class.from_pretrained(
            base,
            pretrained_model_name_or_path,
            adapter_name=adapter_name,
            is_trainable=is_trainable,
            config=config,
            revision=revision,
            **kwargs,
        )


class AutoPeftModelForCausalLM(AutoPeftModel):
    """:class:`AutoPeftModel` for ``CAUSAL_LM`` adapters (``AutoModelForCausalLM``).

    Explained in: book/05_saving_and_loading.ipynb
    """

    _target_class = transformers.AutoModelForCausalLM
    _target_peft_class = PeftModelForCausalLM


class AutoPeftModelForSeq2SeqLM(AutoPeftModel):
    """:class:`AutoPeftModel` for ``SEQ_2_SEQ_LM`` adapters (``AutoModelForSeq2SeqLM``).

    Explained in: book/10_encoder_decoder_models.ipynb
    """

    _target_class = transformers.AutoModelForSeq2SeqLM
    _target_peft_class = PeftModelForSeq2SeqLM


class AutoPeftModelForSequenceClassification(AutoPeftModel):
    """:class:`AutoPeftModel` for ``SEQ_CLS`` adapters (``AutoModelForSequenceClassification``).

    Explained in: book/09_ptuning_v2_for_classification.ipynb
    """

    _target_class = transformers.AutoModelForSequenceClassification
    _target_peft_class = PeftModelForSequenceClassification


class AutoPeftModelForTokenClassification(AutoPeftModel):
    """:class:`AutoPeftModel` for ``TOKEN_CLS`` adapters (``AutoModelForTokenClassification``).

    Explained in: book/09_ptuning_v2_for_classification.ipynb
    """

    _target_class = transformers.AutoModelForTokenClassification
    _target_peft_class = PeftModelForTokenClassification


class AutoPeftModelForQuestionAnswering(AutoPeftModel):
    """:class:`AutoPeftModel` for ``QUESTION_ANS`` adapters (``AutoModelForQuestionAnswering``).

    Explained in: book/09_ptuning_v2_for_classification.ipynb
    """

    _target_class = transformers.AutoModelForQuestionAnswering
    _target_peft_class = PeftModelForQuestionAnswering


class AutoPeftModelForFeatureExtraction(AutoPeftModel):
    """:class:`AutoPeftModel` for ``FEATURE_EXTRACTION`` adapters (``AutoModel``).

    Explained in: book/09_ptuning_v2_for_classification.ipynb
    """

    _target_class = transformers.AutoModel
    _target_peft_class = PeftModelForFeatureExtraction
