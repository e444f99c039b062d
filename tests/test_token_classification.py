"""Token classification (TaskType.TOKEN_CLS): P-Tuning v2 (a prefix at every layer) and a soft prompt, against PEFT.

Tiny BertForTokenClassification and RobertaForTokenClassification (random weights, built from configs,
head ``classifier``): the same prefix and head give PEFT's per-token logits and loss; the soft prompt
gives PEFT's logits, which have ``num_virtual_tokens`` more positions, and minipeft pads the labels
with -100 in front of them. The head trains beside the adapter and is saved under PEFT's keys; the
adapter files go both ways.
"""

from __future__ import annotations

import copy

import peft
import pytest
import torch
from helpers import ATOL, NUM_TOKEN_LABELS, encoder_task_model, logits, make_pair, seq_cls_batch, trained_head
from safetensors.torch import load_file
from torch import nn

from minipeft import (
    ModulesToSaveWrapper,
    PeftModel,
    PeftModelForTokenClassification,
    PromptTuningConfig,
    TaskType,
)

NUM_VIRTUAL = 4
ARCHS = ["bert", "roberta"]


@pytest.fixture(params=ARCHS)
def arch(request: pytest.FixtureRequest) -> str:
    return request.param


def pair(base: nn.Module, method: str, prefix_projection: bool = False):
    """The same prefix (or soft prompt) and the same moved ``classifier`` in minipeft and in PEFT."""
    if method == "prompt":  # a prompt of the size of the tiny models' embeddings
        return make_pair(
            base,
            PromptTuningConfig,
            task_type=TaskType.TOKEN_CLS,
            num_virtual_tokens=NUM_VIRTUAL,
            scale=0.3,
            head="classifier",
        )
    return make_pair(
        base,
        task_type=TaskType.TOKEN_CLS,
        num_virtual_tokens=NUM_VIRTUAL,
        head="classifier",
        prefix_projection=prefix_projection,
    )


def tag_labels(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """One tag per token, -100 on the padding."""
    labels = torch.randint(0, NUM_TOKEN_LABELS, batch["input_ids"].shape, generator=torch.Generator().manual_seed(2))
    return labels.masked_fill(batch["attention_mask"] == 0, -100)


def test_wraps_the_head_and_trains_what_peft_trains(arch, capsys):
    base = encoder_task_model("token", arch)
    ours, theirs = pair(base, "prefix")
    assert isinstance(ours, PeftModelForTokenClassification)
    assert isinstance(ours.get_base_model().classifier, ModulesToSaveWrapper)
    assert ours.active_peft_config.modules_to_save == ["classifier", "score"]
    trainable = {name for name, p in ours.named_parameters() if p.requires_grad}
    assert trainable == {name for name, p in theirs.named_parameters() if p.requires_grad}
    assert trainable == {
        "prompt_encoder.default.embedding.weight",
        "base_model.classifier.modules_to_save.default.weight",
        "base_model.classifier.modules_to_save.default.bias",
    }
    ours.print_trainable_parameters()
    line = capsys.readouterr().out
    theirs.print_trainable_parameters()
    assert line == capsys.readouterr().out


# --- a prefix -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix_projection", [False, True])
def test_prefix_same_logits_and_loss_as_peft(arch, prefix_projection):
    base = encoder_task_model("token", arch)
    ours, theirs = pair(base, "prefix", prefix_projection)
    batch = seq_cls_batch(base)  # BERT's has two segments
    labels = tag_labels(batch)
    with torch.no_grad():
        a, b = ours(**batch, labels=labels), theirs(**batch, labels=labels)
        without = ours.get_base_model()(**batch).logits  # the same head, no prefix
    assert a.logits.shape == (2, 9, NUM_TOKEN_LABELS)  # a prefix adds no positions
    assert (a.logits - b.logits).abs().max() <= ATOL
    assert abs(a.loss.item() - b.loss.item()) <= ATOL
    expected = nn.functional.cross_entropy(a.logits.reshape(-1, NUM_TOKEN_LABELS), labels.reshape(-1))
    assert abs(a.loss.item() - expected.item()) <= 1e-6
    assert (a.logits - without).abs().max() > 1e-2, "the prefix should change the logits"


def test_prefix_training_mode_loss_and_gradients_equal_peft(arch):
    """Training mode, same seed (same dropout masks): PEFT's loss, and its gradients for the prefix and the head."""
    base = encoder_task_model("token", arch)
    ours, theirs = pair(base, "prefix")
    batch = seq_cls_batch(base)
    labels = tag_labels(batch)
    losses = []
    for model in (ours, theirs):
        model.train()
        torch.manual_seed(0)
        loss = model(**batch, labels=labels).loss
        loss.backward()
        losses.append(loss.item())
    assert abs(losses[0] - losses[1]) <= ATOL
    grads = [{n: p.grad for n, p in m.named_parameters() if p.requires_grad} for m in (ours, theirs)]
    assert grads[0].keys() == grads[1].keys()
    for name, grad in grads[0].items():
        assert grad.abs().sum() > 0 and torch.allclose(grad, grads[1][name], atol=1e-6), name


def test_prefix_padding_does_not_change_a_row():
    base = encoder_task_model("token", "bert")
    ours, _ = pair(base, "prefix")
    batch = seq_cls_batch(base)
    alone = {k: v[1:, :6] for k, v in batch.items()}  # row 1 without its 3 padding tokens
    assert (logits(ours, **batch)[1, :6] - logits(ours, **alone)[0]).abs().max() <= ATOL


# --- a soft prompt ------------------------------------------------------------------------------------


def test_soft_prompt_same_logits_as_peft_and_labels_padded_in_front(arch):
    base = encoder_task_model("token", arch)
    ours, theirs = pair(base, "prompt")
    batch = seq_cls_batch(base)
    labels = tag_labels(batch)
    with torch.no_grad():
        a = ours(**batch, labels=labels)
        b = theirs(**batch)
    assert a.logits.shape == (2, NUM_VIRTUAL + 9, NUM_TOKEN_LABELS)  # the virtual tokens' positions come first
    assert (a.logits - b.logits).abs().max() <= ATOL
    # PEFT passes the labels unpadded; its loss fails: "Expected input batch_size (26) to match target batch_size (18)"
    real = a.logits[:, NUM_VIRTUAL:].reshape(-1, NUM_TOKEN_LABELS)
    assert abs(a.loss.item() - nn.functional.cross_entropy(real, labels.reshape(-1)).item()) <= 1e-6


def test_soft_prompt_loss_trains_the_prompt_and_head():
    base = encoder_task_model("token", "roberta")
    ours, _ = pair(base, "prompt")
    ours.train()
    batch = seq_cls_batch(base)
    ours(**batch, labels=tag_labels(batch)).loss.backward()
    with_grad = {name for name, p in ours.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert with_grad == {name for name, p in ours.named_parameters() if p.requires_grad}


# --- the head: trained and saved under PEFT's keys; files both ways --------------------------------------


@pytest.mark.parametrize("method", ["prefix", "prompt"])
def test_trained_head_is_saved_under_peft_keys_and_files_go_both_ways(arch, method, tmp_path):
    base = encoder_task_model("token", arch)
    ours, theirs = pair(base, method)
    batch = seq_cls_batch(base)
    original = {k: v.clone() for k, v in base.classifier.state_dict().items()}
    ours.train()
    optimizer = torch.optim.SGD([p for p in ours.parameters() if p.requires_grad], lr=0.1)
    ours(**batch, labels=tag_labels(batch)).loss.backward()  # a soft prompt: minipeft's labels padded in front
    optimizer.step()
    ours.eval()
    head = trained_head(ours, "classifier").state_dict()
    wrapper = ours.get_base_model().classifier
    assert all(torch.equal(wrapper.original_module.state_dict()[k], original[k]) for k in original)
    assert all(not torch.equal(head[k], original[k]) for k in original), "the head's copy should have trained"

    theirs.prompt_encoder["default"].load_state_dict(ours.prompt_encoder["default"].state_dict())
    trained_head(theirs, "classifier").load_state_dict(head)
    ours.save_pretrained(tmp_path / "ours")
    theirs.save_pretrained(tmp_path / "theirs")
    mine = load_file(tmp_path / "ours" / "adapter_model.safetensors")
    reference = load_file(tmp_path / "theirs" / "adapter_model.safetensors")
    assert (
        mine.keys()
        == reference.keys()
        == {"prompt_embeddings", "base_model.classifier.weight", "base_model.classifier.bias"}
    )
    for key in mine:
        assert torch.allclose(mine[key], reference[key], atol=1e-6), key
    assert torch.equal(mine["base_model.classifier.weight"], head["weight"])

    expected = logits(ours, **batch)
    loaded_in_peft = peft.PeftModel.from_pretrained(copy.deepcopy(base), tmp_path / "ours").eval()
    assert isinstance(loaded_in_peft, peft.PeftModelForTokenClassification)
    assert (logits(loaded_in_peft, **batch) - expected).abs().max() <= ATOL
    loaded_in_minipeft = PeftModel.from_pretrained(copy.deepcopy(base), tmp_path / "theirs")
    assert isinstance(loaded_in_minipeft, PeftModelForTokenClassification)
    assert (logits(loaded_in_minipeft, **batch) - expected).abs().max() <= ATOL
    assert "AutoModelForTokenClassification" in (tmp_path / "ours" / "README.md").read_text()
