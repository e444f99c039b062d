"""The training helper and the shipped data set."""

from __future__ import annotations

import collections

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from minipeft import (
    LABELS,
    PrefixTuningConfig,
    PromptTuningConfig,
    accuracy,
    collate,
    get_peft_model,
    label_loss,
    load_complaints,
    parse_label,
    predict_labels,
    predict_labels_by_likelihood,
    train,
)


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


@pytest.fixture(scope="module")
def tokenizer(smollm2):
    return smollm2[1]


def tiny_llama_for(tokenizer):
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return LlamaForCausalLM(config).eval()


def test_collate_pads_left_and_labels_only_the_target(tokenizer):
    examples = [
        {"text": "My bag never arrived, @SkyJetAir", "label": "complaint"},
        {"text": "Hi", "label": "no complaint"},
    ]
    batch = collate(tokenizer, examples)
    assert batch["attention_mask"][1, 0] == 0 and batch["attention_mask"][:, -1].all()  # left padding
    target = tokenizer("no complaint", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert batch["labels"][1][batch["labels"][1] != -100].tolist() == target
    assert int(batch["target_length"]) == len(target)


@pytest.mark.parametrize("config", [PrefixTuningConfig(num_virtual_tokens=4), PromptTuningConfig(num_virtual_tokens=4)])
def test_label_loss_equals_full_logits_loss(tokenizer, config):
    model = get_peft_model(tiny_llama_for(tokenizer), config)
    batch = collate(tokenizer, load_complaints("train")[:4])
    from minipeft import position_ids_from_attention_mask

    full = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        labels=batch["labels"],
        position_ids=position_ids_from_attention_mask(batch["attention_mask"]),
    ).loss
    assert torch.allclose(label_loss(model, batch), full, atol=1e-5)


def test_training_lowers_the_loss_and_only_moves_the_prefix(tokenizer):
    model = get_peft_model(tiny_llama_for(tokenizer), PrefixTuningConfig(num_virtual_tokens=4))
    before = [p.clone() for p in model.get_base_model().parameters()]
    examples = load_complaints("train")[:32]
    history = train(
        model,
        tokenizer,
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


def test_predictions_and_accuracy(tokenizer):
    model = get_peft_model(tiny_llama_for(tokenizer), PrefixTuningConfig(num_virtual_tokens=4))
    examples = load_complaints("test")[:6]
    predictions = predict_labels(model, tokenizer, examples, batch_size=4)
    assert len(predictions) == 6
    assert accuracy(["complaint"] * 6, examples) == sum(e["label"] == "complaint" for e in examples) / 6
    assert parse_label(" no complaint") == "no complaint" and parse_label("Complaint.") == "complaint"
    assert parse_label("banana") == "banana"


def test_likelihood_prediction_picks_the_more_likely_label(tokenizer):
    """A model trained to answer 'no complaint' must be read as predicting it."""
    model = get_peft_model(tiny_llama_for(tokenizer), PrefixTuningConfig(num_virtual_tokens=4))
    examples = [{**e, "label": "no complaint"} for e in load_complaints("train")[:16]]
    train(model, tokenizer, examples, steps=40, learning_rate=5e-2, batch_size=8, progress=False)
    predictions = predict_labels_by_likelihood(model, tokenizer, examples[:8], batch_size=4)
    assert predictions == ["no complaint"] * 8
