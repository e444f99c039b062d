"""PEFT's utility functions that training scripts call: preparing a base model, FSDP's wrap policy.

Follows PEFT ``src/peft/utils/other.py`` (``prepare_model_for_kbit_training``, ``fsdp_auto_wrap_policy``,
``_get_submodules``), at the same path, so that ``from peft.utils.other import ...`` switches too.

Explained in: book/07_training_a_prefix.ipynb
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..p_tuning import PromptEncoder
from ..prefix_encoder import PrefixEncoder
from ..prompt_tuning import PromptEmbedding

__all__ = ["fsdp_auto_wrap_policy", "prepare_model_for_kbit_training"]


def prepare_model_for_kbit_training(
    model: nn.Module,
    use_gradient_checkpointing: bool = True,
    gradient_checkpointing_kwargs: dict[str, Any] | None = None,
    auto_clear_cache: bool = True,
) -> nn.Module:
    """Prepare a (quantized) transformers model for training an adapter, as PEFT's function does.

    Every parameter is frozen; float16 and bfloat16 parameters of a model that is not quantized are
    cast to float32; a quantized model (``is_loaded_in_8bit`` / ``is_loaded_in_4bit``, GPTQ, AQLM, EETQ,
    HQQ, torchao) gets input embeddings that require gradients and, with ``use_gradient_checkpointing``,
    gradient checkpointing (which a prefix then refuses, as in PEFT; a soft prompt trains with it).

    Returns:
        ``model``, changed in place.

    Explained in: book/07_training_a_prefix.ipynb
    """
    method = getattr(model, "quantization_method", None)
    quantized = method in ("gptq", "aqlm", "eetq", "hqq", "torchao") or getattr(model, "hqq_quantized", False)
    loaded_in_kbit = getattr(model, "is_loaded_in_8bit", False) or getattr(model, "is_loaded_in_4bit", False)
    for param in model.parameters():
        param.requires_grad_(False)
    if not quantized:
        for param in model.parameters():
            if param.dtype in (torch.float16, torch.bfloat16) and type(param).__name__ != "Params4bit":
                param.data = param.data.to(torch.float32)
        if auto_clear_cache and torch.cuda.is_available():
            torch.cuda.empty_cache()
    if (loaded_in_kbit or quantized) and use_gradient_checkpointing:
        kwargs = gradient_checkpointing_kwargs or {}
        if kwargs.get("use_reentrant", True) and hasattr(model, "enable_input_require_grads"):
            model.enable_input_require_grads()
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    return model


def _get_submodules(model: nn.Module, key: str) -> tuple[nn.Module, nn.Module, str]:
    """``(parent, module, name)`` of the module at dotted path ``key`` (PEFT's helper)."""
    parent_key, _, name = key.rpartition(".")
    return model.get_submodule(parent_key), model.get_submodule(key), name


def fsdp_auto_wrap_policy(model: nn.Module) -> Callable[..., bool]:
    """FSDP's ``auto_wrap_policy`` for a minipeft model (PEFT's function): each adapter encoder, each
    trainable leaf module, and each transformer block the model says must not be split
    (``_no_split_modules``, or the names in ``$FSDP_TRANSFORMER_CLS_TO_WRAP``) is its own FSDP unit.

    Raises:
        TypeError: a block class named there is not in the model.

    Explained in: book/appendix_accelerate.md
    """
    from torch.distributed.fsdp.wrap import lambda_auto_wrap_policy, transformer_auto_wrap_policy

    names = os.environ.get("FSDP_TRANSFORMER_CLS_TO_WRAP") or ",".join(getattr(model, "_no_split_modules", None) or [])
    by_name = {type(module).__name__: type(module) for module in model.modules()}
    blocks: set[type[nn.Module]] = {PrefixEncoder, PromptEncoder, PromptEmbedding}
    for name in filter(None, names.split(",")):
        if name not in by_name:
            raise TypeError(f"Could not find the transformer layer class {name} to wrap in the model.")
        blocks.add(by_name[name])

    def trainable_leaf(module: nn.Module) -> bool:
        weight = getattr(module, "weight", None)
        return not list(module.children()) and weight is not None and weight.requires_grad

    leaf_policy = functools.partial(lambda_auto_wrap_policy, lambda_fn=trainable_leaf)
    block_policy = functools.partial(transformer_auto_wrap_policy, transformer_layer_cls=blocks)

    def policy(module: nn.Module, recurse: bool, nonwrapped_numel: int) -> bool:
        return any(
            p(module=module, recurse=recurse, nonwrapped_numel=nonwrapped_numel) for p in (leaf_policy, block_policy)
        )

    return policy
