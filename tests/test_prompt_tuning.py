"""Prompt tuning (input-only soft prompt) of a causal LM: parity with PEFT, parameter count, initialisation from text."""

from __future__ import annotations

import copy

import peft
import torch
from helpers import ATOL, VOCAB, make_pair, padded_batch

from minipeft import PromptTuningConfig, PromptTuningInit, get_peft_model


def prompt_pair(base):
    """The same soft prompt in minipeft and PEFT, of a realistic scale (embeddings * 0.05)."""
    return make_pair(base, PromptTuningConfig, num_virtual_tokens=4, seed=0, scale=0.05)


def test_same_logits_and_tokens_as_peft(tiny_model):
    ours, theirs = prompt_pair(tiny_model)
    input_ids, attention_mask = padded_batch()
    with torch.no_grad():
        a = ours(input_ids=input_ids, attention_mask=attention_mask).logits
        b = theirs(input_ids=input_ids, attention_mask=attention_mask).logits
        assert a.shape == b.shape == (2, 4 + 7, VOCAB)  # the soft prompt's positions are in the output
        assert (a - b).abs().max() <= ATOL
        kwargs = dict(input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=6, do_sample=False)
        assert torch.equal(ours.generate(**kwargs, pad_token_id=0), theirs.generate(**kwargs, pad_token_id=0))


def test_labels_are_padded_for_the_virtual_tokens(tiny_model):
    ours, theirs = prompt_pair(tiny_model)
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
