"""Extractive question answering (TaskType.QUESTION_ANS): a prefix and a soft prompt, against PEFT.

Tiny BertForQuestionAnswering and RobertaForQuestionAnswering (random weights, built from configs,
head ``qa_outputs``): the same prefix and head give PEFT's start and end logits and loss; the head is
saved under PEFT's keys and the adapter files go both ways. Two differences from PEFT, both PEFT's:
PEFT never passes ``token_type_ids`` on (minipeft does, as the base model takes them), and with a soft
prompt minipeft moves ``start_positions`` / ``end_positions`` past the virtual tokens (PEFT does not,
so its loss scores other tokens).
"""

from __future__ import annotations

import copy

import peft
import pytest
import torch
from helpers import ATOL, encoder_task_model, make_pair, seq_cls_batch, trained_head
from safetensors.torch import load_file
from torch import nn

from minipeft import (
    ModulesToSaveWrapper,
    PeftModel,
    PeftModelForQuestionAnswering,
    PromptTuningConfig,
    TaskType,
)

NUM_VIRTUAL = 4
SPANS = {"start_positions": torch.tensor([2, 0]), "end_positions": torch.tensor([4, 5])}


@pytest.fixture(params=["bert", "roberta"])
def arch(request: pytest.FixtureRequest) -> str:
    return request.param


def pair(base: nn.Module, method: str = "prefix", prefix_projection: bool = False):
    """The same prefix (or soft prompt) and the same moved ``qa_outputs`` in minipeft and in PEFT."""
    if method == "prompt":
        return make_pair(
            base,
            PromptTuningConfig,
            task_type=TaskType.QUESTION_ANS,
            num_virtual_tokens=NUM_VIRTUAL,
            scale=0.3,
            head="qa_outputs",
        )
    return make_pair(
        base,
        task_type=TaskType.QUESTION_ANS,
        num_virtual_tokens=NUM_VIRTUAL,
        head="qa_outputs",
        prefix_projection=prefix_projection,
    )


def qa_batch(base: nn.Module) -> dict[str, torch.Tensor]:
    """Two rows of 9 tokens, the second right-padded by 3; one segment (PEFT drops ``token_type_ids``)."""
    batch = seq_cls_batch(base)
    batch.pop("token_type_ids", None)
    return batch


def run(model, **inputs):
    with torch.no_grad():
        return model(**inputs)


def span_loss(start_logits: torch.Tensor, end_logits: torch.Tensor, start: torch.Tensor, end: torch.Tensor):
    """transformers' QA loss: the mean of the start and end cross-entropies."""
    return (nn.functional.cross_entropy(start_logits, start) + nn.functional.cross_entropy(end_logits, end)) / 2


def test_wraps_qa_outputs_and_trains_what_peft_trains(arch, capsys):
    base = encoder_task_model("qa", arch)
    ours, theirs = pair(base)
    assert isinstance(ours, PeftModelForQuestionAnswering)
    assert isinstance(ours.get_base_model().qa_outputs, ModulesToSaveWrapper)
    assert ours.active_peft_config.modules_to_save == ["qa_outputs"]
    assert theirs.peft_config["default"].modules_to_save == ["qa_outputs"] * 2  # PEFT appends the name twice
    trainable = {name for name, p in ours.named_parameters() if p.requires_grad}
    assert trainable == {name for name, p in theirs.named_parameters() if p.requires_grad}
    assert trainable == {
        "prompt_encoder.default.embedding.weight",
        "base_model.qa_outputs.modules_to_save.default.weight",
        "base_model.qa_outputs.modules_to_save.default.bias",
    }
    ours.print_trainable_parameters()
    line = capsys.readouterr().out
    theirs.print_trainable_parameters()
    assert line == capsys.readouterr().out


# --- a prefix -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix_projection", [False, True])
def test_prefix_same_start_end_logits_and_loss_as_peft(arch, prefix_projection):
    base = encoder_task_model("qa", arch)
    ours, theirs = pair(base, prefix_projection=prefix_projection)
    batch = qa_batch(base)
    a, b = run(ours, **batch, **SPANS), run(theirs, **batch, **SPANS)
    without = run(ours.get_base_model(), **batch)  # the same head, no prefix
    assert a.start_logits.shape == a.end_logits.shape == (2, 9)
    assert (a.start_logits - b.start_logits).abs().max() <= ATOL
    assert (a.end_logits - b.end_logits).abs().max() <= ATOL
    assert abs(a.loss.item() - b.loss.item()) <= ATOL
    expected = span_loss(a.start_logits, a.end_logits, SPANS["start_positions"], SPANS["end_positions"])
    assert abs(a.loss.item() - expected.item()) <= 1e-6
    assert (a.start_logits - without.start_logits).abs().max() > 1e-2, "the prefix should change the logits"


def test_prefix_training_mode_loss_and_gradients_equal_peft(arch):
    """Training mode, same seed (same dropout masks): PEFT's loss, and its gradients for the prefix and the head."""
    base = encoder_task_model("qa", arch)
    ours, theirs = pair(base)
    batch = qa_batch(base)
    losses = []
    for model in (ours, theirs):
        model.train()
        torch.manual_seed(0)
        loss = model(**batch, **SPANS).loss
        loss.backward()
        losses.append(loss.item())
    assert abs(losses[0] - losses[1]) <= ATOL
    grads = [{n: p.grad for n, p in m.named_parameters() if p.requires_grad} for m in (ours, theirs)]
    assert grads[0].keys() == grads[1].keys()
    for name, grad in grads[0].items():
        assert grad.abs().sum() > 0 and torch.allclose(grad, grads[1][name], atol=1e-6), name


def test_prefix_token_type_ids_reach_bert():
    """minipeft passes the segments on: BERT run by hand with the prefix cache and the segments gives its logits."""
    base = encoder_task_model("qa", "bert")
    ours, theirs = pair(base)
    batch = seq_cls_batch(base)  # two segments
    assert batch["token_type_ids"].any()
    mask = torch.cat([torch.ones(2, NUM_VIRTUAL, dtype=torch.long), batch["attention_mask"]], 1)
    by_hand = run(ours.get_base_model(), **{**batch, "attention_mask": mask}, past_key_values=ours.get_prompt(2))
    a = run(ours, **batch)
    assert (a.start_logits - by_hand.start_logits).abs().max() <= ATOL
    assert (a.end_logits - by_hand.end_logits).abs().max() <= ATOL
    one_segment = run(ours, **qa_batch(base))
    assert (a.start_logits - one_segment.start_logits).abs().max() > 1e-3, "the segments should matter"
    # PEFT's QA forward takes token_type_ids as a named argument and never passes it on: its logits are those of
    # one segment (minipeft's differ from them by up to 6.4 here).
    assert (run(theirs, **batch).start_logits - one_segment.start_logits).abs().max() <= ATOL


# --- a soft prompt ------------------------------------------------------------------------------------


def test_soft_prompt_same_logits_as_peft_and_answer_spans_moved_past_the_prompt(arch):
    base = encoder_task_model("qa", arch)
    ours, theirs = pair(base, "prompt")
    batch = qa_batch(base)
    a, b = run(ours, **batch, **SPANS), run(theirs, **batch, **SPANS)
    assert a.start_logits.shape == (2, NUM_VIRTUAL + 9)  # the virtual tokens' positions come first
    assert (a.start_logits - b.start_logits).abs().max() <= ATOL
    assert (a.end_logits - b.end_logits).abs().max() <= ATOL
    moved = {k: v + NUM_VIRTUAL for k, v in SPANS.items()}  # the answer's tokens are NUM_VIRTUAL positions on
    expected = span_loss(a.start_logits, a.end_logits, moved["start_positions"], moved["end_positions"])
    assert abs(a.loss.item() - expected.item()) <= 1e-6
    # PEFT passes the positions unmoved: its loss scores the tokens NUM_VIRTUAL earlier (virtual ones, here).
    unmoved = span_loss(b.start_logits, b.end_logits, SPANS["start_positions"], SPANS["end_positions"])
    assert abs(b.loss.item() - unmoved.item()) <= 1e-6


def test_soft_prompt_answer_outside_the_input_is_still_ignored():
    """transformers ignores a position past the input (clamped to seq_len, the ignore index); moved, it still is."""
    base = encoder_task_model("qa", "roberta")
    ours, _ = pair(base, "prompt")
    batch = qa_batch(base)
    spans = {"start_positions": torch.tensor([2, 9]), "end_positions": torch.tensor([4, 30])}  # row 1: past the input
    out = run(ours, **batch, **spans)
    expected = span_loss(
        out.start_logits[:1],
        out.end_logits[:1],
        spans["start_positions"][:1] + NUM_VIRTUAL,
        spans["end_positions"][:1] + NUM_VIRTUAL,
    )
    assert abs(out.loss.item() - expected.item()) <= 1e-6


# --- the head: trained and saved under PEFT's keys; files both ways --------------------------------------


@pytest.mark.parametrize("method", ["prefix", "prompt"])
def test_trained_qa_outputs_saved_under_peft_keys_and_files_go_both_ways(arch, method, tmp_path):
    base = encoder_task_model("qa", arch)
    ours, theirs = pair(base, method)
    batch = qa_batch(base)
    original = {k: v.clone() for k, v in base.qa_outputs.state_dict().items()}
    ours.train()
    optimizer = torch.optim.SGD([p for p in ours.parameters() if p.requires_grad], lr=0.1)
    ours(**batch, **SPANS).loss.backward()
    optimizer.step()
    ours.eval()
    head = trained_head(ours, "qa_outputs").state_dict()
    assert all(
        torch.equal(ours.get_base_model().qa_outputs.original_module.state_dict()[k], original[k]) for k in original
    )
    assert all(not torch.equal(head[k], original[k]) for k in original), "the head's copy should have trained"

    theirs.prompt_encoder["default"].load_state_dict(ours.prompt_encoder["default"].state_dict())
    trained_head(theirs, "qa_outputs").load_state_dict(head)
    ours.save_pretrained(tmp_path / "ours")
    theirs.save_pretrained(tmp_path / "theirs")
    mine = load_file(tmp_path / "ours" / "adapter_model.safetensors")
    reference = load_file(tmp_path / "theirs" / "adapter_model.safetensors")
    assert (
        mine.keys()
        == reference.keys()
        == {"prompt_embeddings", "base_model.qa_outputs.weight", "base_model.qa_outputs.bias"}
    )
    for key in mine:
        assert torch.allclose(mine[key], reference[key], atol=1e-6), key
    assert torch.equal(mine["base_model.qa_outputs.weight"], head["weight"])

    expected = run(ours, **batch)
    for loaded in (
        peft.PeftModel.from_pretrained(copy.deepcopy(base), tmp_path / "ours").eval(),
        PeftModel.from_pretrained(copy.deepcopy(base), tmp_path / "theirs"),
    ):
        out = run(loaded, **batch)
        assert (out.start_logits - expected.start_logits).abs().max() <= ATOL
        assert (out.end_logits - expected.end_logits).abs().max() <= ATOL
    assert isinstance(loaded, PeftModelForQuestionAnswering)
    assert "AutoModelForQuestionAnswering" in (tmp_path / "ours" / "README.md").read_text()
