"""PEFT's utility functions that users of prompt learning call (``peft.utils`` and the top-level names).

Follows PEFT ``src/peft/utils/other.py`` (``prepare_model_for_kbit_training``, ``_get_submodules``).

Explained in: book/07_training_a_prefix.ipynb
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["prepare_model_for_kbit_training"]


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
