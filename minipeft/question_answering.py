"""Extractive question answering with a deep prefix, ``TaskType.QUESTION_ANS``.

P-Tuning v2's other token-level task (Liu et al. 2022, section 4.3: SQuAD 1.1 and 2.0): a prefix at
every layer of a frozen encoder and a trained ``qa_outputs`` head that scores each token as the
answer's start and end. With a soft prompt the tokens move ``num_virtual_tokens`` positions on,
and so do ``start_positions`` and ``end_positions`` (PEFT leaves them, so its loss targets the wrong tokens).

Follows PEFT ``src/peft/peft_model.py`` (``PeftModelForQuestionAnswering``).

Explained in: book/09_ptuning_v2_for_classification.ipynb
"""

from __future__ import annotations

from .config import TaskType
from .peft_model import PeftModel

__all__ = ["PeftModelForQuestionAnswering"]


class PeftModelForQuestionAnswering(PeftModel, task_type=TaskType.QUESTION_ANS):
    """A prefix (or soft prompt) plus a trained ``qa_outputs`` head (``TaskType.QUESTION_ANS``).

    ``forward`` returns the base model's ``start_logits`` and ``end_logits``, ``(batch, seq_len)`` for a
    prefix, and its loss for ``start_positions`` / ``end_positions`` ``(batch,)``.

    Args:
        model: A transformers ``*ForQuestionAnswering``.
        peft_config, adapter_name, ``**kwargs``: Those of :class:`~minipeft.PeftModel`.

    Raises:
        ValueError: the model has no ``qa_outputs``; see :class:`~minipeft.PeftModel`.

    Explained in: book/09_ptuning_v2_for_classification.ipynb
    """

    _DEFAULT_MODULES_TO_SAVE = ("qa_outputs",)
    _CHECK_PREFIX_USED = True
