"""The shipped complaints data set: a ``datasets.DatasetDict`` in RAFT twitter_complaints' layout, balanced,
with disjoint splits; PEFT's prefix-tuning tutorial's preprocessing runs on it as written for RAFT; and
``load_raft_twitter_complaints`` reads a copy in RAFT's layout (a local folder here: no Hub in tests)."""

from __future__ import annotations

import collections

import pytest
import torch
from datasets import ClassLabel, Dataset, DatasetDict, Value
from torch.utils.data import DataLoader
from transformers import default_data_collator

from minipeft import (
    LABELS,
    RAFT_LABEL_NAMES,
    label_collator,
    label_texts,
    load_complaints,
    load_raft_twitter_complaints,
    tokenize_prompts,
)

RAFT_COLUMNS = {"Tweet text": Value("string"), "ID": Value("int32"), "Label": ClassLabel(names=list(RAFT_LABEL_NAMES))}


@pytest.fixture(scope="module")
def data():
    return load_complaints()


def test_data_set_is_a_balanced_datasetdict_with_disjoint_splits(data):
    assert isinstance(data, DatasetDict) and list(data) == ["train", "validation", "test"]
    assert {k: v.num_rows for k, v in data.items()} == {"train": 480, "validation": 96, "test": 192}
    for rows in data.values():
        assert collections.Counter(label_texts(rows)) == {label: rows.num_rows // 2 for label in LABELS}
        assert list(rows["ID"]) == list(range(rows.num_rows))  # numbered within the split, as RAFT's
    texts = [set(rows["Tweet text"]) for rows in data.values()]
    assert not (texts[0] & texts[1]) and not (texts[0] & texts[2]) and not (texts[1] & texts[2])
    assert len(set(data["train"]["industry"])) == 14
    assert load_complaints("validation")["Tweet text"] == data["validation"]["Tweet text"]
    with pytest.raises(ValueError, match="split='dev'"):
        load_complaints("dev")


def test_columns_are_rafts_then_our_own(data):
    features = data["train"].features
    assert list(features) == [*RAFT_COLUMNS, "industry", "style", "typos"]
    assert {k: features[k] for k in RAFT_COLUMNS} == RAFT_COLUMNS
    assert features["Label"].names == ["Unlabeled", "complaint", "no complaint"]
    assert features["typos"] == Value("bool") and set(data["test"]["Label"]) == {1, 2}  # our test posts are labelled
    first = data["train"][0]
    assert first["Tweet text"].startswith("Told all my friends about @RideNow") and first["Label"] == 2


def test_peft_tutorial_preprocessing_runs_unchanged(data, smollm2):
    """PEFT's prefix-tuning tutorial (causal LM on RAFT twitter_complaints), step by step as it is written
    for RAFT: label text from the ClassLabel names, the text column into "Tweet text : {text} Label : ",
    tokenized with .map(batched=True), left-padded to 64 tokens, batched by default_data_collator."""
    _, tokenizer = smollm2
    dataset = load_complaints()
    classes = [k.replace("_", " ") for k in dataset["train"].features["Label"].names]
    dataset = dataset.map(lambda x: {"text_label": [classes[label] for label in x["Label"]]}, batched=True)
    text_column, label_column, max_length = "Tweet text", "text_label", 64

    def preprocess_function(examples):
        n = len(examples[text_column])
        inputs = [f"{text_column} : {x} Label : " for x in examples[text_column]]
        targets = [str(x) for x in examples[label_column]]
        model_inputs, labels = tokenizer(inputs), tokenizer(targets, add_special_tokens=False)
        for i in range(n):
            prompt, target = model_inputs["input_ids"][i], labels["input_ids"][i] + [tokenizer.eos_token_id]
            model_inputs["input_ids"][i] = prompt + target
            labels["input_ids"][i] = [-100] * len(prompt) + target
            model_inputs["attention_mask"][i] = [1] * len(model_inputs["input_ids"][i])
        for i in range(n):
            pad = max_length - len(model_inputs["input_ids"][i])
            model_inputs["input_ids"][i] = [tokenizer.pad_token_id] * pad + model_inputs["input_ids"][i]
            model_inputs["attention_mask"][i] = [0] * pad + model_inputs["attention_mask"][i]
            labels["input_ids"][i] = [-100] * pad + labels["input_ids"][i]
            for key in ("input_ids", "attention_mask"):
                model_inputs[key][i] = torch.tensor(model_inputs[key][i][:max_length])
            labels["input_ids"][i] = torch.tensor(labels["input_ids"][i][:max_length])
        model_inputs["labels"] = labels["input_ids"]
        return model_inputs

    processed = dataset.map(preprocess_function, batched=True, num_proc=1, remove_columns=dataset["train"].column_names)
    assert processed["train"].column_names == ["input_ids", "attention_mask", "labels"]
    loader = DataLoader(processed["train"], shuffle=True, collate_fn=default_data_collator, batch_size=8)
    batch = next(iter(loader))
    assert {k: tuple(v.shape) for k, v in batch.items()} == {
        k: (8, 64) for k in ("input_ids", "attention_mask", "labels")
    }
    assert len(loader) == 60 and sum(1 for _ in loader) == 60

    # the same rows as the book's tokenize_prompts + label_collator, once the padding is taken off
    ours = tokenize_prompts(load_complaints("validation"), tokenizer)
    theirs = processed["validation"].with_format("torch")
    for i in range(4):
        mask = theirs[i]["attention_mask"].bool()
        assert theirs[i]["input_ids"][mask].tolist() == ours[i]["input_ids"]
        assert theirs[i]["labels"][mask].tolist() == ours[i]["labels"]
    rows = label_collator(tokenizer)([ours[i] for i in range(4)])
    width = rows["input_ids"].shape[1]
    assert torch.equal(rows["input_ids"], torch.stack([theirs[i]["input_ids"][-width:] for i in range(4)]))
    assert torch.equal(rows["labels"], torch.stack([theirs[i]["labels"][-width:] for i in range(4)]))


def test_raft_loader_reads_a_copy_in_rafts_layout(data, smollm2, tmp_path):
    """A local folder laid out like the Hub's ought/raft (a twitter_complaints configuration, train and
    test parquet files, RAFT's features; test posts unlabelled) loads into the same columns."""
    folder = tmp_path / "raft"
    (folder / "twitter_complaints").mkdir(parents=True)
    features = data["train"].select_columns(list(RAFT_COLUMNS)).features
    train = data["train"].select(range(50)).select_columns(list(RAFT_COLUMNS))
    test = Dataset.from_dict(
        {"Tweet text": data["test"]["Tweet text"][:20], "ID": list(range(50, 70)), "Label": [0] * 20}, features=features
    )
    train.to_parquet(folder / "twitter_complaints" / "train-00000-of-00001.parquet")
    test.to_parquet(folder / "twitter_complaints" / "test-00000-of-00001.parquet")
    (folder / "README.md").write_text(
        "---\nconfigs:\n- config_name: twitter_complaints\n  data_files:\n"
        "  - split: train\n    path: twitter_complaints/train-*\n  - split: test\n    path: twitter_complaints/test-*\n---\n"
    )
    raft = load_raft_twitter_complaints(str(folder))
    assert isinstance(raft, DatasetDict) and list(raft) == ["train", "test"]
    assert raft["train"].features == features and raft["test"].features == features
    assert raft["train"]["Tweet text"] == train["Tweet text"] and label_texts(raft["test"]) == ["Unlabeled"] * 20
    tokenized = tokenize_prompts(raft["train"], smollm2[1])
    assert tokenized.num_rows == 50 and tokenized.column_names == ["input_ids", "attention_mask", "labels"]
