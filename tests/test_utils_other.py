"""minipeft.utils.other against PEFT's functions of the same name: the same decisions on the same models."""

from __future__ import annotations

import copy

import peft
import peft.utils.other
import pytest
import torch

from minipeft import PrefixTuningConfig, PromptTuningConfig, TaskType, get_peft_model
from minipeft.utils.other import _get_submodules, fsdp_auto_wrap_policy, prepare_model_for_kbit_training
from tests.helpers import tiny_llama

CONFIGS = {
    "prefix": (PrefixTuningConfig, peft.PrefixTuningConfig),
    "prompt": (PromptTuningConfig, peft.PromptTuningConfig),
}


def _decisions(model: torch.nn.Module, policy) -> dict[str, bool]:
    """Which modules the policy makes FSDP units (asked as FSDP asks: recurse=False, per module)."""
    return {
        name: bool(policy(module=module, recurse=False, nonwrapped_numel=sum(p.numel() for p in module.parameters())))
        for name, module in model.named_modules()
    }


@pytest.mark.parametrize("method", CONFIGS)
def test_fsdp_auto_wrap_policy_wraps_the_modules_peft_wraps(method, monkeypatch):
    monkeypatch.delenv("FSDP_TRANSFORMER_CLS_TO_WRAP", raising=False)
    ours_cls, theirs_cls = CONFIGS[method]
    base = tiny_llama()
    ours = get_peft_model(copy.deepcopy(base), ours_cls(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=4))
    theirs = peft.get_peft_model(copy.deepcopy(base), theirs_cls(task_type="CAUSAL_LM", num_virtual_tokens=4))
    ours_decisions = _decisions(ours, fsdp_auto_wrap_policy(ours))
    theirs_decisions = _decisions(theirs, peft.utils.other.fsdp_auto_wrap_policy(theirs))
    assert ours_decisions == theirs_decisions
    assert ours_decisions["prompt_encoder.default"]  # the adapter is its own unit
    assert ours_decisions["base_model.model.layers.0"]  # a decoder block (_no_split_modules)
    assert not ours_decisions["base_model.model.layers.0.self_attn.q_proj"]  # a frozen leaf is not


def test_fsdp_auto_wrap_policy_names_a_block_class_that_is_not_in_the_model(monkeypatch):
    monkeypatch.setenv("FSDP_TRANSFORMER_CLS_TO_WRAP", "GPT2Block")
    model = get_peft_model(tiny_llama(), PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=4))
    with pytest.raises(TypeError, match="GPT2Block"):
        fsdp_auto_wrap_policy(model)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_prepare_model_for_kbit_training_does_what_peft_does(dtype):
    base = tiny_llama().to(dtype)
    ours = prepare_model_for_kbit_training(copy.deepcopy(base))
    theirs = peft.prepare_model_for_kbit_training(copy.deepcopy(base))
    assert [(n, p.dtype, p.requires_grad) for n, p in ours.named_parameters()] == [
        (n, p.dtype, p.requires_grad) for n, p in theirs.named_parameters()
    ]
    assert all(p.dtype == torch.float32 and not p.requires_grad for p in ours.parameters())
    # not quantized: neither turns gradient checkpointing on
    assert ours.is_gradient_checkpointing == theirs.is_gradient_checkpointing == False  # noqa: E712


def test_get_submodules():
    model = tiny_llama()
    parent, module, name = _get_submodules(model, "model.layers.0.self_attn.q_proj")
    assert parent is model.model.layers[0].self_attn and module is parent.q_proj and name == "q_proj"
