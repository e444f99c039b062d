"""The book's task data: short customer-service posts labelled complaint / no complaint.

``load_complaints(split)`` reads the data set shipped in this package (see ``DATASHEET.md`` here);
``format_prompt`` writes a post in the prompt format of the PEFT prefix-tuning tutorial
(``Tweet text : {text} Label : ``). With a network (Colab), ``load_raft_twitter_complaints`` reads
the original RAFT task from the Hub instead.

Explained in: book/07_training_a_prefix.ipynb
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

LABELS = ("complaint", "no complaint")
SPLITS = ("train", "validation", "test")


def load_complaints(split: str) -> list[dict[str, Any]]:
    """The posts of one split, as dicts with ``text``, ``label``, ``industry``, ``style``, ``typos``, ``id``.

    Raises:
        ValueError: ``split`` is not ``"train"``, ``"validation"`` or ``"test"``.

    Explained in: book/07_training_a_prefix.ipynb
    """
    if split not in SPLITS:
        raise ValueError(f"split={split!r}; choose one of {', '.join(SPLITS)}.")
    text = resources.files(__package__).joinpath("complaints.jsonl").read_text(encoding="utf-8")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [row for row in rows if row["split"] == split]


def format_prompt(text: str) -> str:
    """The prompt ``"Tweet text : {text} Label : "`` of PEFT's prefix-tuning tutorial (it ends with a space).

    Explained in: book/07_training_a_prefix.ipynb
    """
    return f"Tweet text : {text} Label : "


def load_raft_twitter_complaints() -> dict[str, list[dict[str, Any]]]:
    """The real RAFT ``twitter_complaints`` task from the Hub (needs a network and ``pip install datasets``).

    Caveat: RAFT gives only 50 labelled posts (its train split); the 3,399 test posts are unlabelled.
    Labels are mapped to this package's ``LABELS``.

    Raises:
        ImportError: ``datasets`` is not installed.

    Explained in: book/07_training_a_prefix.ipynb
    """
    from datasets import load_dataset

    data = load_dataset("ought/raft", "twitter_complaints")
    names = data["train"].features["Label"].names  # ['Unlabeled', 'complaint', 'no complaint']
    return {split: [{"text": row["Tweet text"], "label": names[row["Label"]]} for row in data[split]] for split in data}
