"""Saving and loading adapters in PEFT's file format, safely.

An adapter folder, as PEFT 0.21 writes it for prompt-learning methods (the adapter ``"default"`` in
the folder itself, any other in a subfolder named after it):

- ``adapter_config.json``: the config with PEFT's keys;
- ``adapter_model.safetensors`` (``adapter_model.bin`` with ``safe_serialization=False``):
  ``prompt_embeddings``, the table the model uses, ``(num_virtual_tokens, 2*num_layers*token_dim)`` for
  a prefix (after the MLP, Li & Liang 2021 section 4.3), ``(num_virtual_tokens, hidden_size)`` for a soft
  prompt (P-Tuning's: after its encoder); a classifier's trained head under PEFT's keys
  (``base_model.classifier.weight``, ...);
- ``README.md``: a short model card.

minipeft adds one file PEFT ignores: the trainable state of a reparameterised adapter (a prefix's MLP,
``prefix_encoder.safetensors``; P-Tuning's encoder, ``prompt_encoder.safetensors``), so that
``from_pretrained(..., is_trainable=True)`` continues training the same parameters.

Nothing lost: every file is written completely under a temporary name, then renamed into place, so a
failure leaves the earlier adapter as it was; the files get the permissions of any new file (0644
under the usual umask). Nothing run: a pickled ``adapter_model.bin`` is read, as PEFT reads it, with
``torch.load(weights_only=True)``, which accepts tensors only. Everything is checked before the base
model is touched.

Follows PEFT ``src/peft/peft_model.py`` (``save_pretrained``, ``from_pretrained``) and
``src/peft/utils/save_and_load.py`` (``get_peft_model_state_dict``, ``set_peft_model_state_dict``,
``load_peft_weights``).

Explained in: book/05_saving_and_loading.ipynb
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.modules.module import _IncompatibleKeys

from ._version import __version__
from .cache_shapes import CacheLayout, cache_layout
from .config import CONFIG_NAME, PeftType, PromptLearningConfig, ShapeMismatchError, TaskType, load_config
from .hub import file_exists, hub_kwargs, resolve_file
from .modules_to_save import modules_to_save_state, original_state_dict
from .p_tuning import PromptEncoder
from .prefix_encoder import PrefixEncoder
from .prompt_tuning import PromptEmbedding

__all__ = ["get_base_model_state_dict", "get_peft_model_state_dict", "set_base_model_state_dict"]
__all__ += ["set_peft_model_state_dict"]

WEIGHTS_NAME = "adapter_model.safetensors"
PICKLE_WEIGHTS_NAME = "adapter_model.bin"
ENCODER_STATE_NAMES = {
    PeftType.PREFIX_TUNING: "prefix_encoder.safetensors",
    PeftType.P_TUNING: "prompt_encoder.safetensors",
}
MODEL_CARD_NAME = "README.md"
RESUME_NAME = "model.safetensors"  # Trainer's resume file (write_resume_state)
_ENCODERS = {
    PeftType.PREFIX_TUNING: PrefixEncoder,
    PeftType.PROMPT_TUNING: PromptEmbedding,
    PeftType.P_TUNING: PromptEncoder,
}


def build_encoder(config: PromptLearningConfig, model: nn.Module) -> nn.Module:
    """A new adapter module for a filled ``config``: :class:`~minipeft.PrefixEncoder`,
    :class:`~minipeft.PromptEmbedding` (initialised from ``model``'s input embeddings) or :class:`~minipeft.PromptEncoder`."""
    encoder_cls = _ENCODERS[config.peft_type]
    return encoder_cls(config, model.get_input_embeddings()) if encoder_cls is PromptEmbedding else encoder_cls(config)


def _reparameterised(encoder: nn.Module) -> bool:
    """Whether the encoder has parameters beyond its output table (a prefix's MLP, P-Tuning's encoder)."""
    return hasattr(encoder, "transform") or hasattr(encoder, "mlp_head")


def get_peft_model_state_dict(
    model: Any,
    state_dict: dict[str, torch.Tensor] | None = None,
    adapter_name: str = "default",
    unwrap_compiled: bool = False,
    save_embedding_layers: str | bool = "auto",
) -> dict[str, torch.Tensor]:
    """An adapter's tensors as saved (PEFT's function): ``prompt_embeddings`` ``(total, width)`` and a head's
    tensors under ``base_model.<module path>.<name>``, taken from ``state_dict`` when given.

    Explained in: book/05_saving_and_loading.ipynb
    """
    model = getattr(model, "_orig_mod", model) if unwrap_compiled else model
    prefix = "base_model." if state_dict is not None and any(k.startswith("base_model.") for k in state_dict) else ""
    head = modules_to_save_state(model.base_model, adapter_name, state_dict, prefix)
    return {"prompt_embeddings": model.get_prompt_embedding_to_save(adapter_name), **head}


def set_peft_model_state_dict(
    model: Any,
    peft_model_state_dict: dict[str, torch.Tensor],
    adapter_name: str = "default",
    ignore_mismatched_sizes: bool = False,
    low_cpu_mem_usage: bool = False,
) -> _IncompatibleKeys:
    """Load :func:`get_peft_model_state_dict`'s tensors into ``model``'s adapter (PEFT's function).

    A reparameterised adapter (MLP, P-Tuning's encoder) cannot take its output table back, so, as in
    PEFT, the table replaces the embedding only of an encoder without one.

    Returns:
        PEFT's ``(missing_keys, unexpected_keys)``.

    Raises:
        ValueError: ``prompt_embeddings`` of another shape than the adapter's table.

    Explained in: book/05_saving_and_loading.ipynb
    """
    state = dict(peft_model_state_dict)
    encoder = model.prompt_encoder[adapter_name]
    missing, unexpected = [], []
    table = state.pop("prompt_embeddings", None)
    if table is None:
        missing.append("prompt_embeddings")
    elif _reparameterised(encoder):
        unexpected.append("prompt_embeddings")
    else:
        if tuple(table.shape) != tuple(encoder.embedding.weight.shape):
            raise ValueError(
                f"prompt_embeddings has shape {tuple(table.shape)}, adapter {adapter_name!r} needs "
                f"{tuple(encoder.embedding.weight.shape)}."
            )
        with torch.no_grad():
            encoder.embedding.weight.copy_(table.to(encoder.embedding.weight))
    expected = modules_to_save_state(model.base_model, adapter_name)
    for key, value in expected.items():
        if key in state:
            with torch.no_grad():
                value.copy_(state.pop(key).to(value))
        else:
            missing.append(key)
    return _IncompatibleKeys(missing, unexpected + sorted(state))


def get_base_model_state_dict(model: Any) -> dict[str, torch.Tensor]:
    """The base model's state dict as it was before wrapping: heads under their own names (PEFT's function).

    Explained in: book/05_saving_and_loading.ipynb
    """
    return original_state_dict(model.get_base_model())


def set_base_model_state_dict(
    model: Any, state_dict: dict[str, torch.Tensor], strict: bool = True
) -> _IncompatibleKeys:
    """Load a plain base-model state dict (:func:`get_base_model_state_dict`'s keys) into the wrapped model.

    Returns:
        ``(missing_keys, unexpected_keys)`` against the base model's original keys.

    Raises:
        RuntimeError: with ``strict``, keys missing or unexpected.

    Explained in: book/05_saving_and_loading.ipynb
    """
    base = model.get_base_model()
    current = original_state_dict(base)
    missing = [k for k in current if k not in state_dict]
    unexpected = [k for k in state_dict if k not in current]
    if strict and (missing or unexpected):
        raise RuntimeError(f"Error loading the base model's state dict: missing {missing}, unexpected {unexpected}.")
    with torch.no_grad():
        for key, value in state_dict.items():
            if key in current:
                current[key].copy_(value.to(current[key]))
    return _IncompatibleKeys(missing, unexpected)


def write_adapters(
    peft_model: Any,
    save_directory: str | os.PathLike,
    adapter_names: list[str],
    safe_serialization: bool = True,
    is_main_process: bool = True,
    state_dict: dict[str, torch.Tensor] | None = None,
) -> None:
    """Save ``peft_model``'s adapters (``PeftModel.save_pretrained``): ``"default"`` in ``save_directory``,
    others in ``save_directory/<name>``. Each folder's files are renamed into place together.

    Raises:
        ValueError: ``save_directory`` is a file.
    """
    if os.path.isfile(save_directory):
        raise ValueError(f"Provided path ({save_directory}) should be a directory, not a file")
    if not is_main_process:
        return
    for name in adapter_names:
        config, encoder = peft_model.peft_config[name], peft_model.prompt_encoder[name]
        tensors = get_peft_model_state_dict(peft_model, state_dict, name)
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
        table_numel = tensors["prompt_embeddings"].numel()
        stored = sum(v.numel() for v in tensors.values())
        trainable = sum(p.numel() for p in encoder.parameters()) + stored - table_numel
        values = {**config.to_dict(), "inference_mode": True}
        if config.task_type is None:  # PEFT's auto_mapping: how to rebuild the base model
            base = type(peft_model.get_base_model())
            values["auto_mapping"] = {"base_model_class": base.__name__, "parent_library": base.__module__}
        if safe_serialization:
            metadata = {"format": "pt", "minipeft_version": __version__}
            weights = (WEIGHTS_NAME, lambda p, t=tensors, m=metadata: save_file(t, p, metadata=m))
        else:
            weights = (PICKLE_WEIGHTS_NAME, lambda p, t=tensors: torch.save(t, p))
        writes = {
            weights[0]: weights[1],
            CONFIG_NAME: lambda p, v=values: p.write_text(json.dumps(v, indent=2, sort_keys=True) + "\n"),
        }
        if name == "default" or len(adapter_names) == 1:
            writes[MODEL_CARD_NAME] = lambda p, c=config, t=trainable, s=stored: p.write_text(model_card(c, t, s))
        encoder_file = ENCODER_STATE_NAMES.get(config.peft_type)
        if _reparameterised(encoder):  # the MLP too, so that training can resume with it
            state = {k: v.detach().to("cpu").contiguous() for k, v in encoder.state_dict().items()}
            writes[encoder_file] = lambda p, s=state: save_file(s, p, metadata={"format": "pt"})
        folder = Path(save_directory) if name == "default" else Path(save_directory, name)
        _write_files(folder, writes)
        stale = [WEIGHTS_NAME, PICKLE_WEIGHTS_NAME, *ENCODER_STATE_NAMES.values()]
        for file_name in stale:  # an older save's other format or MLP no longer matches the table
            if file_name not in writes:
                (folder / file_name).unlink(missing_ok=True)


def write_resume_state(peft_model: Any, save_directory: str | os.PathLike) -> None:
    """Write ``model.safetensors``: the adapters' tensors (``prompt_encoder.*``, trained head copies) under the
    wrapper's own names, nothing of the base model. ``transformers.Trainer(resume_from_checkpoint=...)`` reloads
    this file into the model (``load_state_dict(strict=False)``); it only looks for PEFT's files on PEFT's class."""
    state = {
        k: v.detach().to("cpu").contiguous()
        for k, v in peft_model.state_dict().items()
        if k.startswith("prompt_encoder.") or ".modules_to_save." in k
    }
    _write_files(Path(save_directory), {RESUME_NAME: lambda p: save_file(state, p, metadata={"format": "pt"})})


def _write_files(folder: Path, writes: dict[str, Any]) -> None:
    """Write each file under a temporary name in ``folder``, then rename them all into place."""
    folder.mkdir(parents=True, exist_ok=True)
    umask = os.umask(0)
    os.umask(umask)
    written: list[Path] = []
    try:
        for file_name, write in writes.items():
            handle, tmp = tempfile.mkstemp(prefix=f".{file_name}.", suffix=".tmp", dir=folder)
            os.close(handle)
            written.append(Path(tmp))
            write(Path(tmp))
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp's files are private (0600): give them a new file's mode
    except BaseException:
        for tmp in written:
            tmp.unlink(missing_ok=True)
        raise
    for tmp, file_name in zip(written, writes):  # every file is complete: rename them into place
        os.replace(tmp, folder / file_name)


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """A safetensors file, or a torch pickle read with ``weights_only=True`` (tensors only: no code runs)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True) if path.suffix == ".bin" else load_file(path)
    except pickle.UnpicklingError as error:
        if "Weights only load failed" not in str(error):  # torch's refusal of anything but tensors
            raise ValueError(f"{path} is not a readable torch pickle (truncated or corrupt?): {error}") from None
        raise ValueError(
            f"{path} holds more than tensors (a pickle that would run code or build objects when loaded), so "
            "torch.load(weights_only=True), which minipeft reads .bin adapters with, refused it. Load only "
            "adapters you trust, and prefer safetensors (save_pretrained's default)."
        ) from None
    except (SafetensorError, OSError, ValueError, RuntimeError, EOFError) as error:
        kind = "loadable with torch.load(weights_only=True)" if path.suffix == ".bin" else "a readable safetensors file"
        raise ValueError(f"{path} is not {kind} (truncated or corrupt?): {error}") from None


def load_adapter_weights(model_id: str | os.PathLike, **kwargs: Any) -> dict[str, torch.Tensor]:
    """An adapter's tensors by key (a folder or a Hub repository), plus ``encoder.<name>`` for the
    reparameterisation's state file when there is one. ``kwargs``: ``subfolder`` and the Hub's arguments.

    Raises:
        FileNotFoundError: no weights file.
        ValueError: a corrupt file (or a pickle holding more than tensors); no ``prompt_embeddings``.
    """
    subfolder, download = kwargs.get("subfolder"), hub_kwargs(kwargs)
    names = [n for n in (WEIGHTS_NAME, PICKLE_WEIGHTS_NAME) if file_exists(model_id, n, subfolder, **download)]
    if not names:
        where = Path(model_id, subfolder) if subfolder else Path(model_id)
        raise FileNotFoundError(f"{where / WEIGHTS_NAME} not found: the adapter folder {where} has no weights.")
    path = resolve_file(model_id, names[0], subfolder, **download)
    tensors = _read_tensors(path)
    if "prompt_embeddings" not in tensors:
        raise ValueError(f"{path} has no 'prompt_embeddings' tensor (it has {sorted(tensors)}).")
    for file_name in ENCODER_STATE_NAMES.values():
        if file_exists(model_id, file_name, subfolder, **download):
            state = _read_tensors(resolve_file(model_id, file_name, subfolder, **download))
            tensors.update({f"encoder.{k}": v for k, v in state.items()})
    return tensors


def model_card(config: PromptLearningConfig, trainable: int, stored: int) -> str:
    """A short README.md for an adapter folder (PEFT-style front matter, so the Hub recognises it)."""
    base = config.base_model_name_or_path or ""
    auto_class, pipeline_tag = {
        TaskType.SEQ_CLS: ("AutoModelForSequenceClassification", "text-classification"),
        TaskType.SEQ_2_SEQ_LM: ("AutoModelForSeq2SeqLM", "text2text-generation"),
        TaskType.TOKEN_CLS: ("AutoModelForTokenClassification", "token-classification"),
        TaskType.QUESTION_ANS: ("AutoModelForQuestionAnswering", "question-answering"),
        TaskType.FEATURE_EXTRACTION: ("AutoModel", "feature-extraction"),
    }.get(config.task_type, ("AutoModelForCausalLM", "text-generation"))
    minipeft_only = getattr(config, "prefix_encoder_and_cross_attention", False)
    compatibility = (
        "for minipeft only (its prefix also covers the encoder and the cross-attention, "
        "`prefix_encoder_and_cross_attention`, which PEFT does not implement)"
        if minipeft_only
        else "in PEFT's format: loads with minipeft or with PEFT"
    )
    method = {PeftType.PROMPT_TUNING: "Prompt Tuning", PeftType.P_TUNING: "P-Tuning"}.get(
        config.peft_type, "P-Tuning v2"
    )
    method = "Prefix Tuning" if getattr(config, "prefix_projection", False) else method
    num_labels = ", num_labels=..." if config.task_type in (TaskType.SEQ_CLS, TaskType.TOKEN_CLS) else ""
    task = TaskType(config.task_type).value if config.task_type else "none"
    front = f"base_model: {base}\n" if base else ""
    return f"""---
{front}library_name: {"minipeft" if minipeft_only else "peft"}
pipeline_tag: {pipeline_tag}
tags:
- minipeft
- {config.peft_type.value.lower().replace("_", "-")}
---

# {method} adapter for {base or auto_class}

- Method: {method} ({config.peft_type.value}), {config.num_virtual_tokens} virtual tokens, task {task}.
- Trainable parameters during training: {trainable:,}; stored here: {stored:,}.
- Written by minipeft {__version__} {compatibility}.

```python
from transformers import {auto_class}
from minipeft import PeftModel{"" if minipeft_only else "          # or: from peft import PeftModel"}

base = {auto_class}.from_pretrained("{base}"{num_labels})
model = PeftModel.from_pretrained(base, "path/to/this/folder")
```
"""


def fill_shapes(
    config: PromptLearningConfig, model: nn.Module, layout: CacheLayout | None = None
) -> CacheLayout | None:
    """Fill (or check) ``config``'s shapes for ``model``: a prefix's from what each layer's cache
    holds (``layout``, else :func:`~minipeft.cache_layout` of ``model``), a soft prompt's from the
    config. Returns the layout used (``None`` for a soft prompt or a model that cannot be probed)."""
    if config.peft_type is not PeftType.PREFIX_TUNING:
        config.fill_from_model_config(model.config)
        return None
    layout = layout if layout is not None else cache_layout(model)
    config.fill_from_model_config(model.config, cache_shapes=None if layout is None else layout.layers)
    return layout


def read_adapter(
    model: nn.Module,
    model_id: str | os.PathLike,
    is_trainable: bool = False,
    config: PromptLearningConfig | None = None,
    layout: CacheLayout | None = None,
    **kwargs: Any,
) -> tuple[PromptLearningConfig, nn.Module, dict[str, torch.Tensor], CacheLayout | None]:
    """Read and check an adapter (folder or Hub repository) for ``model``, without touching ``model``.

    ``layout`` is ``model``'s cache layout when the caller already has it (a wrapper loading another
    adapter); without it a prefix's shapes come from probing ``model`` once (:func:`fill_shapes`).

    Returns:
        ``(config, encoder, head_tensors, layout)``: the filled config (``inference_mode = not
        is_trainable``; ``config`` itself when given), the encoder holding the saved weights, the file's
        tensors of base-model modules by key (a classifier's head: ``base_model.classifier.weight``),
        and the cache layout the shapes came from (``None`` for a soft prompt), for the wrapper to keep.

    Raises:
        FileNotFoundError: no config or no weights.
        ValueError: an unsupported ``peft_type``; corrupt weights; an adapter whose shapes do not
            fit ``model`` (naming both), or whose table has another shape than its config says.
    """
    subfolder, download = kwargs.get("subfolder"), hub_kwargs(kwargs)
    config_path = resolve_file(model_id, CONFIG_NAME, subfolder, **download)
    config = config if config is not None else load_config(config_path.parent)
    config.inference_mode = not is_trainable
    tensors = load_adapter_weights(model_id, **kwargs)
    table = tensors.pop("prompt_embeddings")
    encoder_state = {k.removeprefix("encoder."): v for k, v in tensors.items() if k.startswith("encoder.")}
    tensors = {k: v for k, v in tensors.items() if k.startswith("base_model.")}  # a trained head, if any
    prefix = config.peft_type is PeftType.PREFIX_TUNING
    try:
        layout = fill_shapes(config, model, layout)  # shaped by the model's cache, as get_peft_model shapes it
    except ShapeMismatchError as error:
        raise ValueError(
            f"{config_path} was made for another base model than this {type(model).__name__}: {error.describe()}."
        ) from None
    rows = config.num_virtual_tokens * (1 if prefix else config.num_transformer_submodules or 1)
    width = 2 * config.num_prefix_layers * config.token_dim if prefix else config.token_dim
    if tuple(table.shape) != (rows, width):
        raise ValueError(
            f"{config_path.parent / WEIGHTS_NAME}: prompt_embeddings has shape {tuple(table.shape)}, but the config "
            f"and the base model need ({rows}, {width})."
        )
    reparameterised = is_trainable and (
        config.peft_type is PeftType.P_TUNING or getattr(config, "prefix_projection", 0)
    )
    build = config
    if reparameterised and not encoder_state:
        what = "the projected prefix table but not the MLP" if prefix else "P-Tuning's output table but not the encoder"
        resumes = "as a plain P-Tuning v2 prefix (prefix_projection=False)" if prefix else "itself, without the encoder"
        warnings.warn(
            f"{model_id} holds {what} that produced it (no {ENCODER_STATE_NAMES[config.peft_type]}, e.g. an "
            f"adapter saved by PEFT). Training resumes from the table {resumes}.",
            stacklevel=4,
        )
        if prefix:
            config.prefix_projection = False
        else:
            build = dataclasses.replace(config, inference_mode=True)
        reparameterised = False
    if not prefix and config.peft_type is PeftType.PROMPT_TUNING:  # the table replaces any initialisation
        build = dataclasses.replace(build, prompt_tuning_init="RANDOM", tokenizer_kwargs=None)
    encoder = build_encoder(build, model)
    with torch.no_grad():
        if not reparameterised:
            encoder.embedding.weight.copy_(table.to(encoder.embedding.weight))
            return config, encoder, tensors, layout
        try:
            encoder.load_state_dict(encoder_state)
        except RuntimeError as error:
            raise ValueError(f"{model_id}: the encoder's state does not fit the config: {error}") from None
        recomputed = encoder(torch.arange(rows).unsqueeze(0))[0]
        if not torch.allclose(recomputed, table.to(recomputed), atol=1e-4, rtol=1e-4):
            raise ValueError(f"{model_id}: the encoder's state does not produce the table in {WEIGHTS_NAME}.")
    return config, encoder, tensors, layout
