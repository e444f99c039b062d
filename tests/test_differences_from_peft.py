"""Each difference listed on the book's "Differences from PEFT" page, shown against PEFT 0.21.2 itself.

Where PEFT fails (an error, a silently ignored prefix, a loss on the wrong tokens), the test asserts what PEFT
does and what minipeft does instead; the page (book/differences_from_peft.md) says why.
"""

from __future__ import annotations

import copy
import warnings

import peft
import pytest
import torch
from transformers import (
    BertConfig,
    BertForQuestionAnswering,
    BertForTokenClassification,
    DebertaConfig,
    DebertaModel,
    GPT2Config,
    GPT2LMHeadModel,
)

import minipeft

BERT = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
IDS = torch.randint(1, 100, (2, 6), generator=torch.Generator().manual_seed(0))


def gpt2() -> GPT2LMHeadModel:
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=4)).eval()


def both(base, config_name: str, **config):
    """The same adapter in PEFT and in minipeft (minipeft's weights copied into PEFT's)."""
    theirs = peft.get_peft_model(copy.deepcopy(base), getattr(peft, config_name)(**config)).eval()
    ours = minipeft.get_peft_model(copy.deepcopy(base), getattr(minipeft, config_name)(**config)).eval()
    theirs.prompt_encoder["default"].load_state_dict(ours.prompt_encoder["default"].state_dict())
    return theirs, ours


def test_token_classification_soft_prompt_takes_per_token_labels():
    torch.manual_seed(0)
    base = BertForTokenClassification(BertConfig(**BERT, num_labels=3))
    theirs, ours = both(base, "PromptTuningConfig", task_type="TOKEN_CLS", num_virtual_tokens=4)
    labels = torch.randint(0, 3, IDS.shape)
    with pytest.raises(ValueError, match="Expected input batch_size"):  # PEFT: logits have 4 more positions
        theirs(input_ids=IDS, labels=labels)
    out = ours(input_ids=IDS, labels=labels)  # minipeft: the virtual positions are labelled -100
    expected = torch.nn.functional.cross_entropy(out.logits[:, 4:].reshape(-1, 3), labels.reshape(-1))
    assert torch.allclose(out.loss, expected)


def test_question_answering_soft_prompt_shifts_the_answer_span():
    torch.manual_seed(0)
    base = BertForQuestionAnswering(BertConfig(**BERT, num_labels=2))
    theirs, ours = both(base, "PromptTuningConfig", task_type="QUESTION_ANS", num_virtual_tokens=4)
    span = {"start_positions": torch.tensor([1, 2]), "end_positions": torch.tensor([3, 4])}
    with torch.no_grad():
        out, peft_out = ours(input_ids=IDS, **span), theirs(input_ids=IDS, **span)
    ce = torch.nn.functional.cross_entropy
    right = (ce(out.start_logits, span["start_positions"] + 4) + ce(out.end_logits, span["end_positions"] + 4)) / 2
    wrong = (ce(out.start_logits, span["start_positions"]) + ce(out.end_logits, span["end_positions"])) / 2
    assert torch.allclose(out.loss, right) and torch.allclose(peft_out.loss, wrong)  # PEFT scores virtual tokens


def test_causal_prefix_keeps_token_type_ids():
    base = gpt2()
    theirs, ours = both(base, "PrefixTuningConfig", task_type="CAUSAL_LM", num_virtual_tokens=4)
    segments = torch.tensor([[0, 0, 0, 1, 1, 1]] * 2)
    with torch.no_grad(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        peft_logits = theirs(input_ids=IDS, token_type_ids=segments).logits
        assert any("Token type ids are not supported" in str(w.message) for w in caught)  # PEFT drops them
        ours_logits = ours(input_ids=IDS, token_type_ids=segments).logits
        dropped = ours(input_ids=IDS).logits
    assert torch.allclose(peft_logits, dropped, atol=1e-5)  # PEFT's output is that of no token_type_ids
    assert not torch.allclose(ours_logits, dropped, atol=1e-3)  # minipeft's uses them


def test_a_model_that_takes_no_cache_is_refused_not_silently_unprefixed():
    torch.manual_seed(0)
    base = DebertaModel(DebertaConfig(**BERT)).eval()
    with torch.no_grad():
        plain = base(input_ids=IDS).last_hidden_state
        wrapped = peft.get_peft_model(
            copy.deepcopy(base), peft.PrefixTuningConfig(task_type="FEATURE_EXTRACTION", num_virtual_tokens=4)
        )
        assert torch.equal(wrapped(input_ids=IDS).last_hidden_state, plain)  # PEFT: the prefix is ignored
    with pytest.raises(TypeError, match="DebertaModel takes no past_key_values"):
        minipeft.get_peft_model(base, minipeft.PrefixTuningConfig(task_type="FEATURE_EXTRACTION", num_virtual_tokens=4))


def test_a_saved_prefix_loads_trainable(tmp_path):
    base = gpt2()
    peft.get_peft_model(
        copy.deepcopy(base), peft.PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4)
    ).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="Cannot set a prompt learning adapter to trainable"):
        peft.PeftModel.from_pretrained(copy.deepcopy(base), tmp_path, is_trainable=True)
    model = minipeft.PeftModel.from_pretrained(copy.deepcopy(base), tmp_path, is_trainable=True)
    assert model.prompt_encoder["default"].embedding.weight.requires_grad


def test_without_a_task_type_the_model_class_decides():
    base = gpt2()
    with pytest.raises(KeyError):  # PEFT 0.21.2: MODEL_TYPE_TO_PEFT_MODEL_MAPPING[None]
        peft.get_peft_model(copy.deepcopy(base), peft.PrefixTuningConfig(num_virtual_tokens=4))
    model = minipeft.get_peft_model(copy.deepcopy(base), minipeft.PrefixTuningConfig(num_virtual_tokens=4))
    assert isinstance(model, minipeft.PeftModelForCausalLM) and model.active_peft_config.task_type == "CAUSAL_LM"
