"""Input-only prompt tuning for sequence classification (PromptTuningConfig, task_type SEQ_CLS), against PEFT.

The comparison point of P-Tuning v2: the soft prompt goes before the embedded input tokens (not into
every layer) and the same classification head trains. On tiny random BERT and RoBERTa classifiers,
the same prompt and head give PEFT's logits and loss; masks, segments and positions grow as in PEFT;
the adapter files go both ways.
"""

from __future__ import annotations

import copy

import peft
import pytest
import torch
from safetensors import safe_open
from test_sequence_classification import ATOL, HEAD, NUM_LABELS, base_model, batch_for, logits, trained_head
from torch import nn

from minipeft import (
    PeftModel,
    PeftModelForSequenceClassification,
    PromptEmbedding,
    PromptTuningConfig,
    TaskType,
    get_peft_model,
)

NUM_VIRTUAL = 4


@pytest.fixture(params=["bert", "roberta"])
def arch(request: pytest.FixtureRequest) -> str:
    return request.param


def prompt_config(**kwargs) -> PromptTuningConfig:
    return PromptTuningConfig(task_type=TaskType.SEQ_CLS, num_virtual_tokens=NUM_VIRTUAL, **kwargs)


def make_pair(base: nn.Module, arch: str):
    """The same soft prompt and head in minipeft and in PEFT, over two copies of ``base``.

    The prompt is scaled to the size of real embeddings (N(0, 1) would swamp them) and the head is
    moved away from the base model's, so a head that is not used, saved or loaded shows in the logits.
    """
    torch.manual_seed(1)
    ours = get_peft_model(copy.deepcopy(base), prompt_config()).eval()
    theirs = peft.get_peft_model(
        copy.deepcopy(base), peft.PromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=NUM_VIRTUAL)
    ).eval()
    with torch.no_grad():
        ours.prompt_encoder["default"].embedding.weight.mul_(0.3)
        for param in trained_head(ours, arch).parameters():
            param.add_(torch.randn_like(param))
    theirs.prompt_encoder["default"].load_state_dict(ours.prompt_encoder["default"].state_dict())
    trained_head(theirs, arch).load_state_dict(trained_head(ours, arch).state_dict())
    return ours, theirs


def test_get_peft_model_wraps_the_head_and_trains_the_prompt_as_peft(arch):
    base = base_model(arch)
    ours, theirs = make_pair(base, arch)
    assert isinstance(ours, PeftModelForSequenceClassification)
    assert isinstance(ours.prompt_encoder["default"], PromptEmbedding)
    assert ours.active_peft_config.modules_to_save == ["classifier", "score"]
    trainable = {name for name, p in ours.named_parameters() if p.requires_grad}
    assert trainable == {name for name, p in theirs.named_parameters() if p.requires_grad}
    assert "prompt_encoder.default.embedding.weight" in trainable
    assert ours.get_prompt(2).shape == (2, NUM_VIRTUAL, ours.config.hidden_size)


def test_same_logits_and_loss_as_peft(arch):
    base = base_model(arch)
    ours, theirs = make_pair(base, arch)
    batch = batch_for(base)  # BERT's has two segments (token_type_ids), RoBERTa's none
    labels = torch.tensor([0, 2])
    with torch.no_grad():
        a = ours(**batch, labels=labels)
        b = theirs(**batch, labels=labels)
        without_prompt = ours.get_base_model()(**batch).logits  # same head, no prompt
    assert a.logits.shape == (2, NUM_LABELS)
    assert (a.logits - b.logits).abs().max() <= ATOL
    assert abs(a.loss.item() - b.loss.item()) <= ATOL
    assert (a.logits - without_prompt).abs().max() > 1e-2, "the prompt should change the logits"


def test_soft_prompt_reaches_the_model_as_peft_feeds_it(arch):
    """By hand: prompt before the word embeddings, mask ones and segment zeros in front, positions from the start."""
    base = base_model(arch)
    ours, _ = make_pair(base, arch)
    batch = batch_for(base)
    model = ours.get_base_model()
    embeds = torch.cat([ours.get_prompt(2), model.get_input_embeddings()(batch["input_ids"])], dim=1)
    inputs = {
        "inputs_embeds": embeds,
        "attention_mask": torch.cat([torch.ones(2, NUM_VIRTUAL).long(), batch["attention_mask"]], 1),
    }
    if "token_type_ids" in batch:
        inputs["token_type_ids"] = torch.cat([torch.zeros(2, NUM_VIRTUAL).long(), batch["token_type_ids"]], 1)
    with torch.no_grad():
        by_hand = model(**inputs).logits
    assert (logits(ours, **batch) - by_hand).abs().max() <= ATOL


def test_explicit_position_ids_give_what_the_model_counts_itself(arch):
    """BERT counts from 0, RoBERTa from padding_idx + 1: either way, the same logits as without position_ids
    and as PEFT (which drops position_ids for prompt tuning, with a warning)."""
    base = base_model(arch)
    ours, theirs = make_pair(base, arch)
    batch = batch_for(base)
    start = 0 if arch == "bert" else base.config.pad_token_id + 1
    position_ids = (start + torch.arange(batch["input_ids"].shape[1])).expand(2, -1)
    a = logits(ours, **batch, position_ids=position_ids)
    assert (a - logits(ours, **batch)).abs().max() <= ATOL
    with pytest.warns(UserWarning, match="Position ids are not supported"):
        b = logits(theirs, **batch, position_ids=position_ids)
    assert (a - b).abs().max() <= ATOL
    shifted = logits(ours, **batch, position_ids=position_ids + 3)
    assert (a - shifted).abs().max() > 1e-3, "the positions passed in should be used"


def test_inputs_embeds_give_the_same_logits_as_input_ids(arch):
    base = base_model(arch)
    ours, _ = make_pair(base, arch)
    batch = batch_for(base)
    embeds = ours.get_base_model().get_input_embeddings()(batch.pop("input_ids"))
    assert (logits(ours, inputs_embeds=embeds, **batch) - logits(ours, **batch_for(base))).abs().max() <= ATOL


def test_right_padding_does_not_change_a_row():
    base = base_model("bert")
    ours, _ = make_pair(base, "bert")
    batch = batch_for(base)
    alone = {k: v[1:, :6] for k, v in batch.items()}  # row 1 without its 3 padding tokens
    assert (logits(ours, **batch)[1] - logits(ours, **alone)[0]).abs().max() <= ATOL


def test_training_mode_dropout_matches_peft():
    base = base_model("bert")
    ours, theirs = make_pair(base, "bert")
    batch = batch_for(base)
    ours.train(), theirs.train()
    torch.manual_seed(123)
    a = ours(**batch).logits
    torch.manual_seed(123)
    b = theirs(**batch).logits
    assert (a - b).abs().max() <= ATOL


def test_gradients_reach_only_prompt_and_head(arch):
    base = base_model(arch)
    ours = get_peft_model(copy.deepcopy(base), prompt_config()).train()
    ours(**batch_for(base), labels=torch.tensor([1, 0])).loss.backward()
    with_grad = {name for name, p in ours.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    expected = {name for name, p in ours.named_parameters() if p.requires_grad}
    assert with_grad == expected
    assert "prompt_encoder.default.embedding.weight" in with_grad
    assert any(".modules_to_save.default." in name for name in with_grad)


def test_print_trainable_parameters_matches_peft(arch, capsys):
    base = base_model(arch)
    ours, theirs = make_pair(base, arch)
    ours.print_trainable_parameters()
    line = capsys.readouterr().out
    theirs.print_trainable_parameters()
    assert line == capsys.readouterr().out
    head = sum(p.numel() for p in ours.get_base_model().get_submodule(HEAD[arch]).original_module.parameters())
    trainable = NUM_VIRTUAL * base.config.hidden_size + head
    assert line.startswith(f"trainable params: {trainable:,} ||")


def test_minipeft_adapter_loads_in_peft_with_same_logits(arch, tmp_path):
    base = base_model(arch)
    ours, theirs = make_pair(base, arch)
    ours.save_pretrained(tmp_path / "ours")
    theirs.save_pretrained(tmp_path / "theirs")

    def shapes(folder):
        with safe_open(folder / "adapter_model.safetensors", "pt") as f:
            return {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}

    assert shapes(tmp_path / "ours") == shapes(tmp_path / "theirs")
    assert shapes(tmp_path / "ours")["prompt_embeddings"] == (NUM_VIRTUAL, base.config.hidden_size)
    loaded = peft.PeftModel.from_pretrained(copy.deepcopy(base), tmp_path / "ours").eval()
    assert isinstance(loaded, peft.PeftModelForSequenceClassification)
    batch = batch_for(base)
    assert (logits(ours, **batch) - logits(loaded, **batch)).abs().max() <= ATOL


def test_peft_adapter_loads_in_minipeft_with_same_logits(arch, tmp_path):
    base = base_model(arch)
    _, theirs = make_pair(base, arch)
    theirs.save_pretrained(tmp_path)
    ours = PeftModel.from_pretrained(copy.deepcopy(base), tmp_path)
    assert isinstance(ours, PeftModelForSequenceClassification)
    assert isinstance(ours.active_peft_config, PromptTuningConfig)
    batch = batch_for(base)
    assert (logits(ours, **batch) - logits(theirs, **batch)).abs().max() <= ATOL
    assert not ours.training and not any(p.requires_grad for p in ours.parameters())
    trainable = PeftModel.from_pretrained(copy.deepcopy(base), tmp_path, is_trainable=True)
    assert {name for name, p in trainable.named_parameters() if p.requires_grad} == {
        name for name, p in theirs.named_parameters() if p.requires_grad
    }
