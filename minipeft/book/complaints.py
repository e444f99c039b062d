"""The book's task data: short customer-service posts labelled complaint / no complaint.

``load_complaints()`` reads the data set shipped in this package (see ``DATASHEET.md`` here) with
Hugging Face ``datasets``, as a ``DatasetDict`` (train / validation / test) in the column layout of
RAFT's ``twitter_complaints`` (``"Tweet text"``, ``"ID"``, ``"Label"`` as a ``ClassLabel`` with
RAFT's names), so that preprocessing written for PEFT's prefix-tuning tutorial runs on it unchanged.
``format_prompt`` writes a post in that tutorial's prompt format (``Tweet text : {text} Label : ``).
With a network (Colab), ``load_raft_twitter_complaints`` reads the original RAFT task from the Hub.

``datasets`` is imported inside the functions: ``import minipeft`` does not need it (the book's
extra, ``pip install minipeft[book]``, installs it).

Explained in: book/07_training_a_prefix.ipynb
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from importlib import resources
from typing import Any

#: The two classes a model predicts, in the order of a classifier's head (chapter 9).
LABELS = ("complaint", "no complaint")
#: RAFT twitter_complaints' ``ClassLabel`` names: ``Label`` 0 is RAFT's unlabelled test post.
RAFT_LABEL_NAMES = ("Unlabeled", "complaint", "no complaint")
SPLITS = ("train", "validation", "test")
#: The columns of :func:`load_complaints`: RAFT's three, then the data set's own.
COLUMNS = ("Tweet text", "ID", "Label", "industry", "style", "typos")


@contextlib.contextmanager
def quiet_datasets() -> Iterator[None]:
    """Hide ``datasets``' progress bars (``Map: 100%|...``) inside the block, restoring the setting after.

    Explained in: book/07_training_a_prefix.ipynb
    """
    from datasets.utils import disable_progress_bars, enable_progress_bars, is_progress_bar_enabled

    was_enabled = is_progress_bar_enabled()
    disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled:
            enable_progress_bars()


def load_complaints(split: str | None = None) -> Any:
    """The data set as a ``datasets.DatasetDict`` (train 480, validation 96, test 192), or one split.

    Read offline from the packaged ``complaints.jsonl`` with ``load_dataset("json", ...)``, kept in
    memory. Columns, in RAFT twitter_complaints' layout first: ``"Tweet text"`` (str), ``"ID"``
    (int32, the post's number within its split), ``"Label"`` (``ClassLabel`` with RAFT's names
    :data:`RAFT_LABEL_NAMES`: 1 = complaint, 2 = no complaint), then ``industry`` (str), ``style``
    (str: ``c0``-``c7`` complaint styles, ``n0``-``n11`` not) and ``typos`` (bool). Unlike RAFT,
    whose test posts are unlabelled (``Label`` 0), every post here, test included, has its label.

    Args:
        split: ``None`` for the ``DatasetDict``; ``"train"``, ``"validation"`` or ``"test"`` for
            that ``Dataset`` (as ``load_dataset(..., split=...)``).

    Raises:
        ValueError: ``split`` is not one of the three.
        ImportError: ``datasets`` is not installed (``pip install minipeft[book]``).

    Explained in: book/07_training_a_prefix.ipynb
    """
    if split is not None and split not in SPLITS:
        raise ValueError(f"split={split!r}; choose one of {', '.join(SPLITS)}.")
    from datasets import ClassLabel, DatasetDict, Features, Value, load_dataset

    path = resources.files(__package__).joinpath("complaints.jsonl")
    features = Features(
        {
            "id": Value("string"),  # "train-007": the split, then the ID
            "split": Value("string"),
            "text": Value("string"),
            "label": ClassLabel(names=list(RAFT_LABEL_NAMES)),  # the file's label names become RAFT's indices
            "industry": Value("string"),
            "style": Value("string"),
            "typos": Value("bool"),
        }
    )
    with resources.as_file(path) as file, quiet_datasets():
        rows = load_dataset("json", data_files=str(file), split="train", features=features, keep_in_memory=True)
        rows = rows.rename_columns({"text": "Tweet text", "label": "Label"})
        rows = rows.map(
            lambda ids: {"ID": [int(i.rsplit("-", 1)[1]) for i in ids]},
            input_columns="id",
            batched=True,
            features=Features({**rows.features, "ID": Value("int32")}),
        )
        data = DatasetDict(
            {
                name: rows.filter(lambda s, name=name: s == name, input_columns="split")
                .flatten_indices()
                .select_columns(list(COLUMNS))
                for name in SPLITS
            }
        )
    return data if split is None else data[split]


def format_prompt(text: str) -> str:
    """The prompt ``"Tweet text : {text} Label : "`` of PEFT's prefix-tuning tutorial (it ends with a space).

    Explained in: book/07_training_a_prefix.ipynb
    """
    return f"Tweet text : {text} Label : "


def label_texts(dataset: Any) -> list[str]:
    """Each row's label as text, from the ``ClassLabel`` column ``"Label"`` (``"complaint"``, ...).

    Explained in: book/07_training_a_prefix.ipynb
    """
    return dataset.features["Label"].int2str(list(dataset["Label"]))


def load_raft_twitter_complaints(path: str = "ought/raft") -> Any:
    """RAFT's ``twitter_complaints`` as ``load_dataset(path, "twitter_complaints")`` gives it: a ``DatasetDict``.

    The same columns as :func:`load_complaints` without the data set's own (``"Tweet text"``,
    ``"ID"``, ``"Label"`` with :data:`RAFT_LABEL_NAMES`), so the same preprocessing runs on both.
    Caveat: RAFT gives only 50 labelled posts (its train split); its 3,399 test posts are
    unlabelled (``Label`` 0, ``"Unlabeled"``), and it has no validation split.

    Args:
        path: The Hub id (needs a network) or a local folder in RAFT's layout (a
            ``twitter_complaints`` configuration with train and test splits).

    Raises:
        ImportError: ``datasets`` is not installed.

    Explained in: book/07_training_a_prefix.ipynb
    """
    from datasets import load_dataset

    return load_dataset(path, "twitter_complaints")
