"""The shipped complaints data set: sizes, balance, disjoint splits."""

from __future__ import annotations

import collections

import pytest

from minipeft import LABELS, load_complaints


def test_data_set_is_balanced_split_and_disjoint():
    splits = {name: load_complaints(name) for name in ("train", "validation", "test")}
    assert {k: len(v) for k, v in splits.items()} == {"train": 480, "validation": 96, "test": 192}
    for rows in splits.values():
        assert collections.Counter(r["label"] for r in rows) == {label: len(rows) // 2 for label in LABELS}
    texts = [set(r["text"] for r in rows) for rows in splits.values()]
    assert not (texts[0] & texts[1]) and not (texts[0] & texts[2]) and not (texts[1] & texts[2])
    assert len({r["industry"] for r in splits["train"]}) == 14
    with pytest.raises(ValueError, match="split='dev'"):
        load_complaints("dev")
