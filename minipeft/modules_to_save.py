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
    """A module trained in full beside the adapter: the frozen original and a trainable copy.

    PEFT's names, so parameter names and counts line up with PEFT's model: ``original_module``
    (frozen, kept as it was) and ``modules_to_save[adapter_name]`` (a copy; the one that runs and
    trains). Attributes the wrapper lacks (``weight``, ``out_proj``, ...) are read from the copy.

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
        self.active_adapter = adapter_name

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Run the active adapter's copy."""
        return self.modules_to_save[self.active_adapter](*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name in ("original_module", "modules_to_save", "active_adapter"):
                raise
            return getattr(self.modules_to_save[self.active_adapter], name)


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
) -> dict[str, nn.Module]:
    """Copies of ``model``'s modules at ``paths``, filled from ``state`` when given; ``model`` is not modified.

    Args:
        model: The base model (e.g. a ``BertForSequenceClassification``).
        paths: Module paths, from :func:`find_modules_to_save`.
        state: Saved tensors under PEFT's keys, ``"base_model.<module path>.<name>"``
            (``base_model.classifier.weight``: ``(num_labels, hidden_size)``); ``None``: fresh copies.
        source: Where ``state`` came from, for error messages (the adapter file).

    Returns:
        ``{module path: copy}``, e.g. ``{"classifier": Linear(...)}``.

    Raises:
        ValueError: a module already wrapped; ``state`` lacks a module's tensor, has one with another
            shape (a head trained for another ``num_labels``), or has tensors no module takes.
    """
    copies: dict[str, nn.Module] = {}
    for path in paths:
        module = model.get_submodule(path)
        if isinstance(module, ModulesToSaveWrapper):
            raise ValueError(
                f"{type(model).__name__}.{path} is already wrapped by another minipeft model (PEFT modifies the "
                "base model in place, and so does minipeft for the head); wrap a fresh base model."
            )
        copies[path] = copy.deepcopy(module)
    if state is not None:
        _load_copies(copies, dict(state), model, source)
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
    if state:
        raise ValueError(
            f"{source} holds {', '.join(sorted(state))}, which no module of this {type(model).__name__} in "
            "modules_to_save takes."
        )
    with torch.no_grad():
        for path, module in copies.items():
            module.load_state_dict(loaded[path])


def wrap_modules_to_save(model: nn.Module, copies: dict[str, nn.Module], adapter_name: str, trainable: bool) -> None:
    """Replace each module at a path of ``copies`` by a :class:`ModulesToSaveWrapper` that runs the copy."""
    for path, trained in copies.items():
        parent_path, _, child = path.rpartition(".")
        parent = model.get_submodule(parent_path)
        setattr(parent, child, ModulesToSaveWrapper(getattr(parent, child), adapter_name, trained))
        trained.requires_grad_(trainable)


def modules_to_save_state(model: nn.Module, adapter_name: str) -> dict[str, torch.Tensor]:
    """The trained copies' tensors under PEFT's saved keys, ``base_model.<module path>.<name>``."""
    state: dict[str, torch.Tensor] = {}
    for path, module in model.named_modules():
        if isinstance(module, ModulesToSaveWrapper):
            trained = module.modules_to_save[adapter_name]
            state.update({f"{SAVED_KEY_PREFIX}{path}.{key}": v for key, v in trained.state_dict().items()})
    return state
