"""Prompt tuning (input-only soft prompt): parity with PEFT, initialisation from text, errors."""

from __future__ import annotations

import copy

import peft
import pytest
import torch
from conftest import VOCAB, padded_batch

from minipeft import PromptTuningConfig, PromptTuningInit, TaskType, get_peft_model


def make_pair(base, num_virtual_tokens=4):
    torch.manual_seed(0)
    ours = get_peft_model(
        copy.deepcopy(base), PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=num_virtual_tokens)
    ).eval()
    theirs = peft.get_peft_model(
        copy.deepcopy(base), peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=num_virtual_tokens)
    ).eval()
    with torch.no_grad():  # embeddings of a realistic scale
        ours.prompt_encoder["default"].embedding.weight.mul_(0.05)
    theirs.prompt_encoder["default"].load_state_dict(ours.prompt_encoder["default"].state_dict())
    return ours, theirs


def test_same_logits_and_tokens_as_peft(tiny_model):
    ours, theirs = make_pair(tiny_model)
    input_ids, attention_mask = padded_batch()
    with torch.no_grad():
        a = ours(input_ids=input_ids, attention_mask=attention_mask).logits
        b = theirs(input_ids=input_ids, attention_mask=attention_mask).logits
        assert a.shape == b.shape == (2, 4 + 7, VOCAB)  # the soft prompt's positions are in the output
        assert (a - b).abs().max() <= 1e-5
        kwargs = dict(input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=6, do_sample=False)
        assert torch.equal(ours.generate(**kwargs, pad_token_id=0), theirs.generate(**kwargs, pad_token_id=0))


def test_labels_are_padded_for_the_virtual_tokens(tiny_model):
    ours, theirs = make_pair(tiny_model)
    input_ids, attention_mask = padded_batch()
    labels = input_ids.masked_fill(attention_mask == 0, -100)
    a = ours(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
    b = theirs(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
    assert torch.allclose(a, b, atol=1e-6)
    a.backward()
    assert ours.prompt_encoder["default"].embedding.weight.grad.abs().sum() > 0


def test_parameter_count_is_num_virtual_tokens_times_hidden(tiny_model):
    model = get_peft_model(tiny_model, PromptTuningConfig(num_virtual_tokens=6))
    hidden = tiny_model.get_input_embeddings().embedding_dim
    assert model.get_nb_trainable_parameters()[0] == 6 * hidden


def test_text_initialisation_copies_token_embeddings(smollm2):
    model, tokenizer = smollm2
    text = "Classify the complaint"
    config = PromptTuningConfig(
        num_virtual_tokens=8,
        prompt_tuning_init=PromptTuningInit.TEXT,
        prompt_tuning_init_text=text,
        tokenizer_name_or_path=tokenizer.name_or_path,
    )
    ours = get_peft_model(copy.deepcopy(model), config)
    ids = tokenizer(text)["input_ids"]
    expected_ids = (ids * 8)[:8]  # cut or repeated to num_virtual_tokens, as PEFT does
    expected = model.get_input_embeddings().weight[expected_ids]
    assert torch.equal(ours.prompt_encoder["default"].embedding.weight, expected)
    theirs = peft.get_peft_model(
        copy.deepcopy(model),
        peft.PromptTuningConfig(
            task_type="CAUSAL_LM",
            num_virtual_tokens=8,
            prompt_tuning_init="TEXT",
            prompt_tuning_init_text=text,
            tokenizer_name_or_path=tokenizer.name_or_path,
        ),
    )
    assert torch.equal(theirs.prompt_encoder["default"].embedding.weight, expected)


def test_text_initialisation_needs_text_and_tokenizer():
    with pytest.raises(ValueError, match="prompt_tuning_init_text"):
        PromptTuningConfig(num_virtual_tokens=4, prompt_tuning_init="TEXT", tokenizer_name_or_path="x")
    with pytest.raises(ValueError, match="tokenizer_name_or_path"):
        PromptTuningConfig(num_virtual_tokens=4, prompt_tuning_init="TEXT", prompt_tuning_init_text="hi")
    with pytest.raises(ValueError, match="prompt_tuning_init='WORDS' is unknown"):
        PromptTuningConfig(num_virtual_tokens=4, prompt_tuning_init="WORDS")
