"""Saving and loading adapters in PEFT's file format, safely.

An adapter folder, as PEFT 0.21 writes it for prompt-learning methods:

- ``adapter_config.json``: the config with PEFT's keys (:func:`minipeft.config.config_to_json`);
- ``adapter_model.safetensors``: ``prompt_embeddings``, the table the model uses,
  ``(num_virtual_tokens, 2*num_layers*token_dim)`` for a prefix (after the MLP, Li & Liang 2021
  section 4.3), ``(num_virtual_tokens, hidden_size)`` for a soft prompt; a ``SEQ_CLS`` adapter adds
  its trained head under PEFT's keys (``base_model.classifier.weight``, ...);
- ``README.md``: a short model card.

minipeft adds ``prefix_encoder.safetensors`` (ignored by PEFT): a reparameterised prefix's
embedding and MLP, so that ``from_pretrained(..., is_trainable=True)`` continues training them.

Nothing lost: every file is written completely under a temporary name, then renamed into place,
so a failure leaves the earlier adapter as it was. Nothing run: weights are read from safetensors;
a pickled ``adapter_model.bin`` only with ``allow_pickle=True``, through ``torch.load(weights_only=True)``.
Everything is checked before the base model is touched.

Follows PEFT ``src/peft/peft_model.py`` (``save_pretrained``, ``from_pretrained``) and
``src/peft/utils/save_and_load.py``.

Explained in: book/05_saving_and_loading.ipynb
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ._version import __version__
from .config import (
    CONFIG_NAME,
    PeftType,
    PrefixTuningConfig,
    PromptLearningConfig,
    ShapeMismatchError,
    TaskType,
    config_to_json,
    load_config,
)
from .modules_to_save import modules_to_save_state
from .prefix_encoder import PrefixEncoder
from .prompt_tuning import PromptEmbedding

__all__ = []  # internals of PeftModel.save_pretrained / from_pretrained


WEIGHTS_NAME = "adapter_model.safetensors"
PICKLE_WEIGHTS_NAME = "adapter_model.bin"
ENCODER_STATE_NAME = "prefix_encoder.safetensors"
MODEL_CARD_NAME = "README.md"


def write_adapter(peft_model: Any, save_directory: str | os.PathLike) -> None:
    """Save ``peft_model``'s active adapter to ``save_directory`` (``PeftModel.save_pretrained``).

    Every file is written under a temporary name beside its final one, then all are renamed into
    place: a failure leaves the earlier adapter intact.
    """
    config, name = peft_model.active_peft_config, peft_model.active_adapter
    encoder = peft_model.prompt_encoder[name]
    with torch.no_grad():
        table = peft_model.prompt_table()[0].float()  # (P, width)
    head = modules_to_save_state(peft_model.base_model, name)  # a trained head, under PEFT's keys
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in {"prompt_embeddings": table, **head}.items()}
    values = {**config_to_json(config), "inference_mode": True}
    stored = sum(v.numel() for v in tensors.values())
    trainable = sum(p.numel() for p in encoder.parameters()) + stored - table.numel()
    writes = {
        WEIGHTS_NAME: lambda p: save_file(tensors, p, metadata={"format": "pt", "minipeft_version": __version__}),
        CONFIG_NAME: lambda p: p.write_text(json.dumps(values, indent=2) + "\n"),
        MODEL_CARD_NAME: lambda p: p.write_text(model_card(config, trainable, stored)),
    }
    if getattr(encoder, "prefix_projection", False):  # the MLP too, so that training can resume with it
        state = {k: v.detach().to("cpu").contiguous() for k, v in encoder.state_dict().items()}
        writes[ENCODER_STATE_NAME] = lambda p: save_file(state, p, metadata={"format": "pt"})
    folder = Path(save_directory)
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    try:
        for file_name, write in writes.items():
            handle, tmp = tempfile.mkstemp(prefix=f".{file_name}.", suffix=".tmp", dir=folder)
            os.close(handle)
            written.append(Path(tmp))
            write(Path(tmp))
    except BaseException:
        for tmp in written:
            tmp.unlink(missing_ok=True)
        raise
    for tmp, file_name in zip(written, writes):  # every file is complete: rename them into place
        os.replace(tmp, folder / file_name)
    if ENCODER_STATE_NAME not in writes:  # an older save's MLP no longer matches the table
        (folder / ENCODER_STATE_NAME).unlink(missing_ok=True)


def _read_tensors(path: Path, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """A safetensors file, or (``allow_pickle``) a torch pickle read with ``weights_only=True``."""
    if path.suffix == ".bin" and not allow_pickle:
        raise ValueError(
            f"{path} is a pickle, which can run code when loaded; minipeft reads safetensors only. "
            "If you trust the file, pass allow_pickle=True (it is then read with torch.load(weights_only=True)), "
            "or convert it to adapter_model.safetensors."
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True) if path.suffix == ".bin" else load_file(path)
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        kind = "loadable with torch.load(weights_only=True)" if path.suffix == ".bin" else "a readable safetensors file"
        raise ValueError(f"{path} is not {kind} (truncated or corrupt?): {error}") from None


def load_adapter_weights(folder: str | os.PathLike, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """``adapter_model.safetensors``'s tensors by key, plus ``encoder.<name>`` for ``prefix_encoder.safetensors``.

    Raises:
        FileNotFoundError: no weights file.
        ValueError: a corrupt file; no ``prompt_embeddings``; a pickle without ``allow_pickle=True``.
    """
    folder = Path(folder)
    path = next((folder / n for n in (WEIGHTS_NAME, PICKLE_WEIGHTS_NAME) if (folder / n).is_file()), None)
    if path is None:
        raise FileNotFoundError(f"{folder / WEIGHTS_NAME} not found: the adapter folder {folder} has no weights.")
    tensors = _read_tensors(path, allow_pickle)
    if "prompt_embeddings" not in tensors:
        raise ValueError(f"{path} has no 'prompt_embeddings' tensor (it has {sorted(tensors)}).")
    if (folder / ENCODER_STATE_NAME).is_file():
        tensors.update({f"encoder.{k}": v for k, v in _read_tensors(folder / ENCODER_STATE_NAME).items()})
    return tensors


def model_card(config: PromptLearningConfig, trainable: int, stored: int) -> str:
    """A short README.md for an adapter folder (PEFT-style front matter, so the Hub recognises it)."""
    base = config.base_model_name_or_path or ""
    auto_class, pipeline_tag = {
        TaskType.SEQ_CLS: ("AutoModelForSequenceClassification", "text-classification"),
        TaskType.SEQ_2_SEQ_LM: ("AutoModelForSeq2SeqLM", "text2text-generation"),
    }.get(config.task_type, ("AutoModelForCausalLM", "text-generation"))
    minipeft_only = getattr(config, "prefix_encoder_and_cross_attention", False)
    compatibility = (
        "for minipeft only (its prefix also covers the encoder and the cross-attention, "
        "`prefix_encoder_and_cross_attention`, which PEFT does not implement)"
        if minipeft_only
        else "in PEFT's format: loads with minipeft or with PEFT"
    )
    method = "Prompt Tuning" if config.peft_type is PeftType.PROMPT_TUNING else "P-Tuning v2"
    method = "Prefix Tuning" if getattr(config, "prefix_projection", False) else method
    num_labels = ", num_labels=..." if config.task_type is TaskType.SEQ_CLS else ""  # the head's size
    return f"""---
base_model: {base}
library_name: {"minipeft" if minipeft_only else "peft"}
pipeline_tag: {pipeline_tag}
tags:
- minipeft
- {config.peft_type.value.lower().replace("_", "-")}
---

# {method} adapter for {base or auto_class}

- Method: {method} ({config.peft_type.value}), {config.num_virtual_tokens} virtual tokens, task {config.task_type.value}.
- Trainable parameters during training: {trainable:,}; stored here: {stored:,}.
- Written by minipeft {__version__} {compatibility}.

```python
from transformers import {auto_class}
from minipeft import PeftModel{"" if minipeft_only else "          # or: from peft import PeftModel"}

base = {auto_class}.from_pretrained("{base}"{num_labels})
model = PeftModel.from_pretrained(base, "path/to/this/folder")
```
"""


def read_adapter(
    model: nn.Module, model_id: str | os.PathLike, is_trainable: bool = False, allow_pickle: bool = False
) -> tuple[PromptLearningConfig, nn.Module, dict[str, torch.Tensor]]:
    """Read and check an adapter folder for ``model``, without touching ``model`` (``PeftModel.from_pretrained``).

    Returns:
        ``(config, encoder, other_tensors)``: the filled config (``inference_mode = not
        is_trainable``), the prefix encoder or soft prompt holding the saved weights, and the
        file's tensors of base-model modules by key (a ``SEQ_CLS`` head: ``base_model.classifier.weight``).

    Raises:
        FileNotFoundError: no config or no weights.
        ValueError: an unsupported ``peft_type``; corrupt weights; an adapter whose shapes do not
            fit ``model`` (naming both), or whose table has another shape than its config says.
    """
    folder = Path(model_id)
    config = load_config(folder)
    config.inference_mode = not is_trainable
    tensors = load_adapter_weights(folder, allow_pickle=allow_pickle)
    table = tensors.pop("prompt_embeddings")
    encoder_state = {k.removeprefix("encoder."): v for k, v in tensors.items() if k.startswith("encoder.")}
    tensors = {k: v for k, v in tensors.items() if k.startswith("base_model.")}  # a trained head, if any
    try:
        config.fill_from_model_config(model.config)
    except ShapeMismatchError as error:
        raise ValueError(
            f"{folder / CONFIG_NAME} was made for another base model than this {type(model).__name__}: "
            f"{error.describe()}."
        ) from None
    prefix = isinstance(config, PrefixTuningConfig)
    width = 2 * config.num_prefix_layers * config.token_dim if prefix else config.token_dim
    if tuple(table.shape) != (config.num_virtual_tokens, width):
        raise ValueError(
            f"{folder / WEIGHTS_NAME}: prompt_embeddings has shape {tuple(table.shape)}, but the config and the "
            f"base model need ({config.num_virtual_tokens}, {width})."
        )
    projected = prefix and config.prefix_projection and is_trainable
    if projected and not encoder_state:
        warnings.warn(
            f"{folder} holds the projected prefix table but not the MLP that produced it (no {ENCODER_STATE_NAME}, "
            "e.g. an adapter saved by PEFT). Training resumes from the table as a plain P-Tuning v2 prefix "
            "(prefix_projection=False).",
            stacklevel=3,
        )
        config.prefix_projection = projected = False
    if prefix:
        encoder = PrefixEncoder(config)
    else:  # the saved table replaces any initialisation, so no tokenizer is needed
        build_config = dataclasses.replace(config, prompt_tuning_init="RANDOM", tokenizer_kwargs=None)
        encoder = PromptEmbedding(build_config, model.get_input_embeddings())
    with torch.no_grad():
        if not projected:
            encoder.embedding.weight.copy_(table.to(encoder.embedding.weight))
            return config, encoder, tensors
        try:
            encoder.load_state_dict(encoder_state)
        except RuntimeError as error:
            raise ValueError(f"{folder / ENCODER_STATE_NAME} does not fit the config: {error}") from None
        recomputed = encoder(torch.arange(config.num_virtual_tokens).unsqueeze(0))[0]
        if not torch.allclose(recomputed, table.to(recomputed), atol=1e-4, rtol=1e-4):
            raise ValueError(f"{folder}: {ENCODER_STATE_NAME} does not produce the table in {WEIGHTS_NAME}.")
    return config, encoder, tensors
