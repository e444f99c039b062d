"""Token classification (named-entity tagging) with a deep prefix, ``TaskType.TOKEN_CLS``.

One of the tasks P-Tuning v2 was published on (Liu et al. 2022, section 4.3: CoNLL03, OntoNotes,
CoNLL04): a prefix at every layer of a frozen encoder, and a trained head that labels every token.
A prefix adds no input positions, so the logits are ``(batch, seq_len, num_labels)``, one per real
token; a soft prompt does, and its ``num_virtual_tokens`` positions get label -100 in front.

Follows PEFT ``src/peft/peft_model.py`` (``PeftModelForTokenClassification``).

Explained in: book/09_ptuning_v2_for_classification.ipynb
"""

from __future__ import annotations

from .config import TaskType
from .peft_model import PeftModel

__all__ = ["PeftModelForTokenClassification"]


class PeftModelForTokenClassification(PeftModel, task_type=TaskType.TOKEN_CLS):
    """A prefix (or soft prompt) plus a trained per-token head (``TaskType.TOKEN_CLS``).

    Args:
        model: A transformers ``*ForTokenClassification``; its ``classifier`` (or ``score``) is trained.
        peft_config, adapter_name, ``**kwargs``: Those of :class:`~minipeft.PeftModel`.

    Raises:
        ValueError: no head matches ``modules_to_save``; see :class:`~minipeft.PeftModel`.

    Explained in: book/09_ptuning_v2_for_classification.ipynb
    """

    _DEFAULT_MODULES_TO_SAVE = ("classifier", "score")
    _TOKEN_LABELS = True
    _CHECK_PREFIX_USED = True
