"""Feature extraction: an adapted encoder's hidden states, ``TaskType.FEATURE_EXTRACTION``.

The base model is a bare ``AutoModel`` (no head): the adapter changes what it computes, and the
caller pools the hidden states (a sentence embedding, say). A prefix leaves ``last_hidden_state``
``(batch, seq_len, hidden_size)``; a soft prompt adds its ``num_virtual_tokens`` positions in front.

Follows PEFT ``src/peft/peft_model.py`` (``PeftModelForFeatureExtraction``).

Explained in: book/09_ptuning_v2_for_classification.ipynb
"""

from __future__ import annotations

from .config import TaskType
from .peft_model import PeftModel

__all__ = ["PeftModelForFeatureExtraction"]


class PeftModelForFeatureExtraction(PeftModel, task_type=TaskType.FEATURE_EXTRACTION):
    """A prefix or soft prompt on a bare model whose hidden states are the output (``TaskType.FEATURE_EXTRACTION``).

    Args:
        model: A transformers ``AutoModel`` (BERT, RoBERTa, a decoder's backbone, ...).
        peft_config, adapter_name, ``**kwargs``: Those of :class:`~minipeft.PeftModel`.

    Explained in: book/09_ptuning_v2_for_classification.ipynb
    """

    _CHECK_PREFIX_USED = True
