"""Sphinx extension for book/api.md: leave out of a class's members what
minipeft did not write.

``PeftModel`` presents itself as a transformers ``PreTrainedModel``
(``Trainer`` and ``accelerate`` check for one), so its class holds every
``PreTrainedModel`` attribute, forwarded to the base model
(``minipeft.peft_model._present_as_pretrained_model``). Those are
transformers' to document, not the API reference's: ``autodoc-skip-member``
skips them.
"""

from __future__ import annotations

from typing import Any


def _skip_presented(
    app: Any, what: str, name: str, obj: Any, skip: bool, options: Any
) -> bool | None:
    from minipeft.peft_model import PRESENTED_AS_PRETRAINED_MODEL

    if what == "class" and name in PRESENTED_AS_PRETRAINED_MODEL:
        return True
    return None  # let autodoc decide


def setup(app: Any) -> dict[str, Any]:
    app.connect("autodoc-skip-member", _skip_presented)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
