"""minipeft: Prefix Tuning and P-Tuning v2 from scratch, with Hugging Face PEFT's names and behaviour.

The companion library of the minipeft book: each chapter imports its machinery from here.

    >>> from minipeft import PrefixTuningConfig, TaskType, get_peft_model, load_base_model
    >>> model, tokenizer = load_base_model()  # SmolLM2-135M-Instruct, offline
    >>> model = get_peft_model(model, PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=30))
    >>> model.print_trainable_parameters()
    trainable params: 345,600 || all params: 134,860,608 || trainable%: 0.2563
"""

from .analysis import nearest_tokens, prefix_attention_share
from .config import PeftConfig, PeftType, PrefixTuningConfig, PromptLearningConfig, ShapeMismatchError, TaskType
from .data import LABELS, format_prompt, load_complaints, load_raft_twitter_complaints
from .encoder import PrefixEncoder
from .injection import (
    build_prefix_cache,
    extend_attention_mask,
    past_key_values_to_prefix,
    position_ids_from_attention_mask,
    position_ids_kwargs,
    prefix_from_text,
    prefix_to_past_key_values,
)
from .models import (
    EMBEDDED_ENCODER,
    EMBEDDED_MODEL,
    ENCODER_HUB_ID,
    HUB_MODEL_ID,
    convert_embedded_model,
    default_cache_dir,
    embedded_encoder_path,
    embedded_gguf_path,
    load_base_model,
    load_encoder_classifier,
)
from .peft_model import PeftModel, PeftModelForCausalLM, get_peft_model
from .prompt_tuning import PromptEmbedding, PromptTuningConfig, PromptTuningInit
from .seq2seq import PeftModelForSeq2SeqLM, PrefixSlots, peft_decoder_layer_slots, prefix_slots
from .seq_cls import ModulesToSaveWrapper, PeftModelForSequenceClassification
from .training import (
    TrainingHistory,
    accuracy,
    classification_loss,
    classifier_batch,
    collate,
    evaluate_loss,
    label_loss,
    parse_label,
    predict_classes,
    predict_labels,
    predict_labels_by_likelihood,
    train,
    train_classifier,
)

__version__ = "0.1.0"

__all__ = [
    "EMBEDDED_ENCODER",
    "EMBEDDED_MODEL",
    "ENCODER_HUB_ID",
    "LABELS",
    "HUB_MODEL_ID",
    "ModulesToSaveWrapper",
    "PeftConfig",
    "PeftModel",
    "PeftModelForCausalLM",
    "PeftModelForSeq2SeqLM",
    "PrefixSlots",
    "peft_decoder_layer_slots",
    "prefix_slots",
    "PeftModelForSequenceClassification",
    "PeftType",
    "PrefixEncoder",
    "PrefixTuningConfig",
    "PromptEmbedding",
    "PromptLearningConfig",
    "PromptTuningConfig",
    "PromptTuningInit",
    "ShapeMismatchError",
    "TaskType",
    "TrainingHistory",
    "accuracy",
    "classification_loss",
    "classifier_batch",
    "collate",
    "evaluate_loss",
    "format_prompt",
    "label_loss",
    "load_complaints",
    "load_raft_twitter_complaints",
    "parse_label",
    "predict_labels",
    "predict_classes",
    "predict_labels_by_likelihood",
    "train",
    "train_classifier",
    "build_prefix_cache",
    "convert_embedded_model",
    "default_cache_dir",
    "embedded_encoder_path",
    "embedded_gguf_path",
    "extend_attention_mask",
    "get_peft_model",
    "load_base_model",
    "load_encoder_classifier",
    "nearest_tokens",
    "past_key_values_to_prefix",
    "position_ids_from_attention_mask",
    "position_ids_kwargs",
    "prefix_attention_share",
    "prefix_from_text",
    "prefix_to_past_key_values",
]
