"""Base-model modules trained in full beside the adapter, e.g. a classifier's head (PEFT's ``modules_to_save``).

Each module of the base model whose name ends with one of ``config.modules_to_save`` is replaced by
a :class:`ModulesToSaveWrapper`, which keeps the original frozen and trains a copy. The copy is
saved under the original's name with PEFT's prefix (``base_model.classifier.weight``, ...), so the
adapter file is PEFT's.

Follows PEFT ``src/peft/utils/other.py`` (``ModulesToSaveWrapper``, ``_set_trainable``) and
``src/peft/utils/save_and_load.py``.

Explained in: book/09_ptuning_v2_for_classification.ipynb
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["ModulesToSaveWrapper"]

#: Prefix of a trained module's tensors in ``adapter_model.safetensors`` (PEFT's ``PeftModel.base_model``).
SAVED_KEY_PREFIX = "base_model."


class ModulesToSaveWrapper(nn.Module):
    """A module trained in full beside the adapters: the frozen original and a trainable copy per adapter.

    PEFT's names, so parameter names and counts line up with PEFT's model: ``original_module``
    (frozen, kept as it was) and ``modules_to_save[adapter_name]`` (a copy per adapter; the active one
    runs and trains). Attributes the wrapper lacks (``weight``, ``out_proj``, ...) are read from the
    module that runs. With ``disabled`` set (``PeftModel.disable_adapter``) the original runs.

    Args:
        module_to_save: The base model's module, e.g. ``classifier``.
        adapter_name: PEFT's adapter name.
        trained: The copy to train, e.g. loaded from an adapter; a fresh deep copy when ``None``.

    Shapes:
        Those of the wrapped module (``classifier``: ``(batch, hidden_size)`` -> ``(batch, num_labels)``).

    Explained in: book/09_ptuning_v2_for_classification.ipynb
    """

    def __init__(self, module_to_save: nn.Module, adapter_name: str = "default", trained: nn.Module | None = None):
        super().__init__()
        self.original_module = module_to_save.requires_grad_(False)
        self.modules_to_save = nn.ModuleDict(
            {adapter_name: trained if trained is not None else copy.deepcopy(module_to_save)}
        )
        self.active_adapter: str | None = adapter_name
        self.disabled = False

    def _running(self) -> nn.Module:
        if self.disabled or self.active_adapter not in self.modules_to_save:
            return self.original_module
        return self.modules_to_save[self.active_adapter]

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Run the active adapter's copy (the original when disabled or when no adapter is active)."""
        return self._running()(*args, **kwargs)

    def update(self, adapter_name: str, trained: nn.Module) -> None:
        """Add ``trained`` as ``adapter_name``'s copy (frozen until its adapter is set active)."""
        self.modules_to_save[adapter_name] = trained.requires_grad_(False)

    def set_adapter(self, adapter_name: str, inference_mode: bool = False) -> None:
        """Run ``adapter_name``'s copy; it alone requires gradients (none with ``inference_mode``)."""
        for name, module in self.modules_to_save.items():
            module.requires_grad_(name == adapter_name and not inference_mode)
        self.active_adapter = adapter_name

    def delete_adapter(self, adapter_name: str, new_active: str | None) -> None:
        """Drop ``adapter_name``'s copy; ``new_active`` runs if it was the active one."""
        if adapter_name in self.modules_to_save:
            del self.modules_to_save[adapter_name]
        if self.active_adapter == adapter_name:
            self.active_adapter = new_active

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name in ("original_module", "modules_to_save", "active_adapter", "disabled"):
                raise
            return getattr(self._running(), name)


def find_modules_to_save(model: nn.Module, module_names: Sequence[str]) -> list[str]:
    """Paths of the modules PEFT's ``_set_trainable`` wraps: names ending with one of ``module_names``.

    A match inside an earlier match is skipped: the outer module is trained whole.
    """
    found: list[str] = []
    for name, _ in model.named_modules():
        if not name or not any(name.endswith(target) for target in module_names):
            continue
        if not any(name.startswith(f"{outer}.") for outer in found):
            found.append(name)
    return found


def trained_copies(
    model: nn.Module,
    paths: Sequence[str],
    state: dict[str, torch.Tensor] | None = None,
    source: str | os.PathLike = "the saved state",
    originals: dict[str, nn.Module | None] | None = None,
) -> dict[str, nn.Module]:
    """Copies of ``model``'s modules at ``paths``, filled from ``state`` when given; ``model`` is not modified.

    Args:
        model: The base model (e.g. a ``BertForSequenceClassification``).
        paths: Module paths, from :func:`find_modules_to_save`.
        state: Saved tensors under PEFT's keys, ``"base_model.<module path>.<name>"``
            (``base_model.classifier.weight``: ``(num_labels, hidden_size)``); ``None``: fresh copies.
            Keys it uses are removed from it.
        source: Where ``state`` came from, for error messages (the adapter file).
        originals: For a path already wrapped (another adapter's head), its original module, the one to copy.

    Returns:
        ``{module path: copy}``, e.g. ``{"classifier": Linear(...)}``.

    Raises:
        ValueError: ``state`` lacks a module's tensor, or has one with another shape (a head trained for
            another ``num_labels``).
    """
    originals = originals or {}
    copies = {path: copy.deepcopy(originals.get(path) or model.get_submodule(path)) for path in paths}
    if state is not None:
        _load_copies(copies, state, model, source)
    return copies


def _load_copies(copies: dict[str, nn.Module], state: dict[str, torch.Tensor], model: nn.Module, source: Any) -> None:
    """Fill each copy from ``state`` (PEFT's saved keys), checking names and shapes first; pops what it uses."""
    loaded: dict[str, dict[str, torch.Tensor]] = {}
    for path, module in copies.items():
        prefix = f"{SAVED_KEY_PREFIX}{path}."
        saved = {key.removeprefix(prefix): state.pop(key) for key in sorted(state) if key.startswith(prefix)}
        expected = module.state_dict()
        missing = [prefix + key for key in expected if key not in saved]
        if missing:
            raise ValueError(
                f"{source} has no {', '.join(missing)}: the adapter does not hold the trained {path} of this "
                f"{type(model).__name__} (saved for another head, or without it?)."
            )
        unknown = [prefix + key for key in saved if key not in expected]
        if unknown:
            raise ValueError(f"{source}: {', '.join(unknown)} fit no tensor of this {type(model).__name__}'s {path}.")
        wrong = [
            f"{prefix}{key} has shape {tuple(saved[key].shape)}, the model needs {tuple(value.shape)}"
            for key, value in expected.items()
            if saved[key].shape != value.shape
        ]
        if wrong:
            raise ValueError(
                f"{source}: {'; '.join(wrong)} (this {type(model).__name__}'s {path}: a head trained for "
                "another num_labels or hidden_size?)."
            )
        loaded[path] = {key: tensor.to(expected[key]) for key, tensor in saved.items()}
    with torch.no_grad():
        for path, module in copies.items():
            module.load_state_dict(loaded[path])


def modules_to_save_state(
    model: nn.Module, adapter_name: str, state_dict: dict[str, torch.Tensor] | None = None, prefix: str = ""
) -> dict[str, torch.Tensor]:
    """``adapter_name``'s trained copies under PEFT's saved keys, ``base_model.<module path>.<name>``.

    With ``state_dict`` (a state dict of the wrapper whose base model is ``model``, its keys starting with
    ``prefix``, e.g. ``"base_model."``) the tensors come from it, as ``accelerate`` hands them over.
    """
    state: dict[str, torch.Tensor] = {}
    for path, module in model.named_modules():
        if isinstance(module, ModulesToSaveWrapper) and adapter_name in module.modules_to_save:
            for key, value in module.modules_to_save[adapter_name].state_dict().items():
                if state_dict is not None:
                    value = state_dict[f"{prefix}{path}.modules_to_save.{adapter_name}.{key}"]
                state[f"{SAVED_KEY_PREFIX}{path}.{key}"] = value
    return state


def original_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """``model.state_dict()`` as it was before its modules were wrapped: each wrapper's ``original_module``
    under the module's own name, the trained copies left out (PEFT's ``get_base_model_state_dict``)."""
    wrapped = {path for path, m in model.named_modules() if isinstance(m, ModulesToSaveWrapper)}
    out = {}
    for key, value in model.state_dict().items():
        path = next((p for p in wrapped if key.startswith(f"{p}.")), None)
        if path is None:
            out[key] = value
        elif key.startswith(f"{path}.original_module."):
            out[f"{path}.{key.removeprefix(f'{path}.original_module.')}"] = value
    return out
