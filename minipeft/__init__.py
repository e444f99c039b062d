"""minipeft: Prefix Tuning and P-Tuning v2 from scratch, with Hugging Face PEFT's names and behaviour.

The companion library of the minipeft book. ``__all__`` is the method; the book's scaffolding
(embedded models, data set, training and analysis helpers, :mod:`minipeft.book`) is importable from
here too, for the chapters.

    >>> from minipeft import PrefixTuningConfig, TaskType, get_peft_model, load_base_model
    >>> model, tokenizer = load_base_model()  # SmolLM2-135M-Instruct, offline
    >>> model = get_peft_model(model, PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=30))
    >>> model.print_trainable_parameters()
    trainable params: 345,600 || all params: 134,860,608 || trainable%: 0.2563
"""

from ._version import __version__ as __version__
from .auto import (
    AutoPeftModel,
    AutoPeftModelForCausalLM,
    AutoPeftModelForFeatureExtraction,
    AutoPeftModelForQuestionAnswering,
    AutoPeftModelForSeq2SeqLM,
    AutoPeftModelForSequenceClassification,
    AutoPeftModelForTokenClassification,
    get_peft_config,
)
from .book import *  # noqa: F403  (the book's scaffolding, for the chapters; listed in minipeft.book.__all__)
from .cache_shapes import CacheLayout, KeyValueShape, cache_layout, fit_to_layer, new_cache, table_shape
from .causal_lm import PeftModelForCausalLM
from .checkpointing import checkpointed_layers, prefix_under_checkpointing, read_only_prefix_cache
from .config import (
    PeftConfig,
    PeftType,
    PrefixTuningConfig,
    PromptEncoderConfig,
    PromptEncoderReparameterizationType,
    PromptLearningConfig,
    PromptTuningConfig,
    PromptTuningInit,
    ShapeMismatchError,
    TaskType,
)
from .feature_extraction import PeftModelForFeatureExtraction
from .injection import (
    build_prefix_cache,
    check_left_padding,
    extend_attention_mask,
    past_key_values_to_prefix,
    position_ids_from_attention_mask,
    position_ids_kwargs,
    prefix_from_text,
    prefix_to_past_key_values,
)
from .mixed_batch import BASE_ADAPTER, MixedBatch, PrefixMemory, plan_mixed_batch, prefix_memory
from .modules_to_save import ModulesToSaveWrapper
from .p_tuning import PromptEncoder
from .peft_model import PeftModel, get_peft_model
from .prefix_encoder import PrefixEncoder
from .prompt_tuning import PromptEmbedding
from .question_answering import PeftModelForQuestionAnswering
from .save_load import (
    get_base_model_state_dict,
    get_peft_model_state_dict,
    set_base_model_state_dict,
    set_peft_model_state_dict,
)
from .seq2seq_lm import PeftModelForSeq2SeqLM, PrefixSlots, peft_decoder_layer_slots, prefix_slots
from .sequence_classification import PeftModelForSequenceClassification
from .token_classification import PeftModelForTokenClassification
from .utils import fsdp_auto_wrap_policy, prepare_model_for_kbit_training

__all__ = [
    "AutoPeftModel",
    "AutoPeftModelForCausalLM",
    "AutoPeftModelForFeatureExtraction",
    "AutoPeftModelForQuestionAnswering",
    "AutoPeftModelForSeq2SeqLM",
    "AutoPeftModelForSequenceClassification",
    "AutoPeftModelForTokenClassification",
    "get_peft_config",
    "BASE_ADAPTER",
    "MixedBatch",
    "PrefixMemory",
    "plan_mixed_batch",
    "prefix_memory",
    "checkpointed_layers",
    "prefix_under_checkpointing",
    "CacheLayout",
    "KeyValueShape",
    "cache_layout",
    "fit_to_layer",
    "new_cache",
    "table_shape",
    "read_only_prefix_cache",
    "ModulesToSaveWrapper",
    "PeftModelForFeatureExtraction",
    "PeftModelForQuestionAnswering",
    "PeftModelForTokenClassification",
    "PromptEncoder",
    "PromptEncoderConfig",
    "PromptEncoderReparameterizationType",
    "get_base_model_state_dict",
    "prepare_model_for_kbit_training",
    "fsdp_auto_wrap_policy",
    "get_peft_model_state_dict",
    "set_base_model_state_dict",
    "set_peft_model_state_dict",
    "PeftConfig",
    "PeftModel",
    "PeftModelForCausalLM",
    "PeftModelForSeq2SeqLM",
    "PeftModelForSequenceClassification",
    "PeftType",
    "PrefixEncoder",
    "PrefixSlots",
    "PrefixTuningConfig",
    "PromptEmbedding",
    "PromptLearningConfig",
    "PromptTuningConfig",
    "PromptTuningInit",
    "ShapeMismatchError",
    "TaskType",
    "build_prefix_cache",
    "check_left_padding",
    "extend_attention_mask",
    "get_peft_model",
    "past_key_values_to_prefix",
    "peft_decoder_layer_slots",
    "position_ids_from_attention_mask",
    "position_ids_kwargs",
    "prefix_from_text",
    "prefix_slots",
    "prefix_to_past_key_values",
]
