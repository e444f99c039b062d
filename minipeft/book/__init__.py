"""The book's scaffolding: the embedded models, the complaints data set, training and analysis helpers.

Not part of the method: :mod:`minipeft`'s core never imports this package. The chapters import
these names from ``minipeft`` (which re-exports them) or from ``minipeft.book``.
"""

from .analysis import nearest_tokens, prefix_attention_share
from .complaints import (
    LABELS,
    RAFT_LABEL_NAMES,
    format_prompt,
    label_texts,
    load_complaints,
    load_raft_twitter_complaints,
    quiet_datasets,
)
from .embedded_models import (
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
from .training import (
    TrainingHistory,
    accuracy,
    classification_loss,
    classifier_collator,
    evaluate_loss,
    label_collator,
    label_loss,
    parse_label,
    predict_classes,
    predict_labels,
    predict_labels_by_likelihood,
    tokenize_for_classifier,
    tokenize_prompts,
    train,
    train_classifier,
)

__all__ = [
    "EMBEDDED_ENCODER",
    "EMBEDDED_MODEL",
    "ENCODER_HUB_ID",
    "HUB_MODEL_ID",
    "LABELS",
    "RAFT_LABEL_NAMES",
    "TrainingHistory",
    "accuracy",
    "classification_loss",
    "classifier_collator",
    "convert_embedded_model",
    "default_cache_dir",
    "embedded_encoder_path",
    "embedded_gguf_path",
    "evaluate_loss",
    "format_prompt",
    "label_collator",
    "label_loss",
    "label_texts",
    "load_base_model",
    "load_complaints",
    "load_encoder_classifier",
    "load_raft_twitter_complaints",
    "nearest_tokens",
    "parse_label",
    "predict_classes",
    "predict_labels",
    "predict_labels_by_likelihood",
    "prefix_attention_share",
    "quiet_datasets",
    "tokenize_for_classifier",
    "tokenize_prompts",
    "train",
    "train_classifier",
]
