"""Saving and loading adapters in PEFT's file format, safely.

An adapter folder, as PEFT 0.21 writes it for prompt-learning methods:

- ``adapter_config.json``: the config, PEFT's keys (``peft_type``, ``task_type``,
  ``num_virtual_tokens``, ``token_dim``, ``num_layers``, ``num_attention_heads``, ...);
- ``adapter_model.safetensors``: one tensor, ``prompt_embeddings``. For a prefix it is the table the
  model uses, ``(num_virtual_tokens, 2*num_layers*token_dim)``, *after* the MLP when
  ``prefix_projection=True`` (the MLP is discarded, Li & Liang 2021 section 4.3); for a soft prompt,
  ``(num_virtual_tokens, hidden_size)``. The safetensors metadata records ``minipeft_version``
  (``adapter_config.json`` keeps PEFT's keys only, so that PEFT loads it without warnings).
  A ``SEQ_CLS`` adapter also holds its trained classification head under PEFT's names: the
  ``state_dict`` of each module in ``modules_to_save`` under ``base_model.<module path>.``, e.g.
  ``base_model.classifier.weight`` (BERT) or ``base_model.classifier.out_proj.weight`` (RoBERTa);
- ``README.md``: a short model card.

minipeft adds one file that PEFT ignores: ``prefix_encoder.safetensors``, the trainable state of a
reparameterised prefix (embedding and MLP), written only when ``prefix_projection=True`` and the
model is not in inference mode, so that ``from_pretrained(..., is_trainable=True)`` continues
training the same parameters. Without it (an adapter saved by PEFT), training resumes from the
saved table as a plain P-Tuning v2 prefix (a warning says so).

Nothing lost, no one let in: every file is first written completely under a temporary name in the
target folder, then renamed into place (``os.replace``); a failure while writing leaves the earlier
adapter as it was. Loading reads safetensors only; a pickled ``adapter_model.bin`` is refused unless
``allow_pickle=True``, and then read with ``torch.load(weights_only=True)``. Everything is checked
before the base model is touched.

Follows PEFT ``src/peft/peft_model.py`` (``save_pretrained``, ``from_pretrained``), ``src/peft/config.py``
(``PeftConfig.from_pretrained``) and ``src/peft/utils/save_and_load.py``.

Explained in: book/05_saving_and_loading.ipynb
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .config import PeftType, PrefixTuningConfig, PromptLearningConfig, TaskType
from .prompt_tuning import PromptTuningConfig

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
PICKLE_WEIGHTS_NAME = "adapter_model.bin"
ENCODER_STATE_NAME = "prefix_encoder.safetensors"
MODEL_CARD_NAME = "README.md"

CONFIG_CLASSES: dict[str, type[PromptLearningConfig]] = {
    PeftType.PREFIX_TUNING.value: PrefixTuningConfig,
    PeftType.PROMPT_TUNING.value: PromptTuningConfig,
}
# Keys PEFT 0.21 writes that minipeft has no use for; written as PEFT writes them, so files match.
PEFT_ONLY_KEYS: dict[str, Any] = {"auto_mapping": None, "revision": None}


def config_to_json(config: PromptLearningConfig) -> dict[str, Any]:
    """``adapter_config.json``'s content: the config's fields plus PEFT's bookkeeping keys, sorted."""
    values = {**PEFT_ONLY_KEYS, **config.to_dict()}
    if isinstance(config, PrefixTuningConfig):
        values.setdefault("init_weights", None)
    return dict(sorted(values.items()))


def load_config(folder: str | os.PathLike) -> PromptLearningConfig:
    """Read ``folder/adapter_config.json`` into the config class its ``peft_type`` names.

    Raises:
        FileNotFoundError: no ``adapter_config.json`` in ``folder``.
        ValueError: the file is not valid JSON, or its ``peft_type`` is not one minipeft implements.
    """
    path = Path(folder) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {folder} an adapter folder written by save_pretrained?")
    try:
        values = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None
    peft_type = values.get("peft_type")
    if peft_type not in CONFIG_CLASSES:
        raise ValueError(
            f"{path} has peft_type={peft_type!r}; minipeft loads {', '.join(CONFIG_CLASSES)} adapters only."
        )
    return CONFIG_CLASSES[peft_type].from_dict(values)


def _write_atomically(path: Path, write: Any) -> Path:
    """Write to a temporary file beside ``path`` with ``write(tmp_path)``; return the temporary path.

    The caller renames it into place once every file of the adapter is written.
    """
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        write(Path(tmp))
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def save_adapter(
    save_directory: str | os.PathLike,
    config: PromptLearningConfig,
    prompt_embeddings: torch.Tensor,
    encoder_state: dict[str, torch.Tensor] | None,
    model_card: str,
    modules_to_save_state: dict[str, torch.Tensor] | None = None,
) -> None:
    """Write an adapter folder (see the module docstring); the earlier content survives a failure.

    Args:
        save_directory: The folder; created if missing.
        config: The adapter's config (written with ``inference_mode=True``, as PEFT does).
        prompt_embeddings: ``(num_virtual_tokens, width)``, the table the model uses.
        encoder_state: The trainable state of a reparameterised prefix, or ``None``.
        model_card: The README's text.
        modules_to_save_state: Tensors stored beside ``prompt_embeddings`` under their own keys
            (PEFT's ``base_model.<module path>.<name>``, e.g. a classification head), in their dtype.
    """
    folder = Path(save_directory)
    folder.mkdir(parents=True, exist_ok=True)
    from . import __version__

    values = config_to_json(config)
    values["inference_mode"] = True
    tensors = {"prompt_embeddings": prompt_embeddings.detach().to("cpu", torch.float32).contiguous()}
    tensors.update({k: v.detach().to("cpu").contiguous() for k, v in (modules_to_save_state or {}).items()})
    writes = [
        (WEIGHTS_NAME, lambda p: save_file(tensors, p, metadata={"format": "pt", "minipeft_version": __version__})),
        (CONFIG_NAME, lambda p: p.write_text(json.dumps(values, indent=2) + "\n")),
        (MODEL_CARD_NAME, lambda p: p.write_text(model_card)),
    ]
    if encoder_state is not None:
        state = {k: v.detach().to("cpu").contiguous() for k, v in encoder_state.items()}
        writes.append((ENCODER_STATE_NAME, lambda p: save_file(state, p, metadata={"format": "pt"})))
    written: list[tuple[Path, Path]] = []
    try:
        for name, write in writes:
            written.append((_write_atomically(folder / name, write), folder / name))
    except BaseException:
        for tmp, _ in written:
            tmp.unlink(missing_ok=True)
        raise
    for tmp, final in written:  # every file is complete: rename them into place
        os.replace(tmp, final)
    stale = folder / ENCODER_STATE_NAME
    if encoder_state is None and stale.exists():  # an older save's MLP no longer matches the table
        stale.unlink()


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as error:
        raise ValueError(f"{path} is not a readable safetensors file (truncated or corrupt?): {error}") from None


def load_adapter_weights(folder: str | os.PathLike, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Read ``prompt_embeddings`` (and ``prefix_encoder.safetensors`` when present) from an adapter folder.

    Returns:
        ``{"prompt_embeddings": tensor}``, the other tensors of ``adapter_model.safetensors`` under
        their keys (a ``SEQ_CLS`` adapter's head: ``base_model.classifier.weight``, ...), plus
        ``{"encoder." + name: tensor}`` entries for the trainable state of a reparameterised prefix
        when the folder has one.

    Raises:
        FileNotFoundError: no weights file.
        ValueError: a corrupt or truncated file; no ``prompt_embeddings`` tensor; a pickled
            ``adapter_model.bin`` without ``allow_pickle=True``.
    """
    folder = Path(folder)
    path = folder / WEIGHTS_NAME
    if path.is_file():
        tensors = _read_tensors(path)
    elif (folder / PICKLE_WEIGHTS_NAME).is_file():
        pickle_path = folder / PICKLE_WEIGHTS_NAME
        if not allow_pickle:
            raise ValueError(
                f"{pickle_path} is a pickle, which can run code when loaded; minipeft reads safetensors only. "
                "If you trust the file, pass allow_pickle=True (it is then read with torch.load(weights_only=True)), "
                "or convert it to adapter_model.safetensors."
            )
        try:
            tensors = torch.load(pickle_path, map_location="cpu", weights_only=True)
        except Exception as error:
            raise ValueError(f"{pickle_path} could not be read with torch.load(weights_only=True): {error}") from None
    else:
        raise FileNotFoundError(f"{path} not found: the adapter folder {folder} has no weights.")
    if "prompt_embeddings" not in tensors:
        raise ValueError(f"{path} has no 'prompt_embeddings' tensor (it has {sorted(tensors)}).")
    encoder_path = folder / ENCODER_STATE_NAME
    if encoder_path.is_file():
        tensors.update({f"encoder.{k}": v for k, v in _read_tensors(encoder_path).items()})
    return tensors


def model_card(config: PromptLearningConfig, trainable: int, table_numel: int) -> str:
    """A short README.md for an adapter folder (PEFT-style front matter, so the Hub recognises it)."""
    from . import __version__

    base = config.base_model_name_or_path or ""
    classifier = config.task_type is TaskType.SEQ_CLS
    auto_class, pipeline_tag, what = {
        TaskType.SEQ_CLS: ("AutoModelForSequenceClassification", "text-classification", "a sequence classifier"),
        TaskType.SEQ_2_SEQ_LM: ("AutoModelForSeq2SeqLM", "text2text-generation", "an encoder-decoder"),
    }.get(config.task_type, ("AutoModelForCausalLM", "text-generation", "a causal language model"))
    minipeft_only = getattr(config, "prefix_encoder_and_cross_attention", False)
    compatibility = (
        "for minipeft only: its prefix also covers the encoder and the cross-attention (Li & Liang's "
        "encoder-decoder prefix, `prefix_encoder_and_cross_attention`), which PEFT does not implement, "
        "so PEFT cannot load it"
        if minipeft_only
        else "in PEFT's format: loads with minipeft or with PEFT"
    )
    import_line = "from minipeft import PeftModel" + (
        "" if minipeft_only else "          # or: from peft import PeftModel"
    )
    stored = "`prompt_embeddings` and the classification head" if classifier else "`prompt_embeddings`"
    num_labels = ", num_labels=..." if classifier else ""  # the head's size, as in training
    method = {
        PeftType.PREFIX_TUNING: "Prefix Tuning" if getattr(config, "prefix_projection", False) else "P-Tuning v2",
        PeftType.PROMPT_TUNING: "Prompt Tuning",
    }[config.peft_type]
    return f"""---
base_model: {base}
library_name: {"minipeft" if minipeft_only else "peft"}
pipeline_tag: {pipeline_tag}
tags:
- minipeft
- {config.peft_type.value.lower().replace("_", "-")}
---

# {method} adapter for {base or what}

- Method: {method} ({config.peft_type.value}), {config.num_virtual_tokens} virtual tokens, task {config.task_type.value}.
- Trainable parameters during training: {trainable:,}; stored here: {table_numel:,} ({stored}).
- Written by minipeft {__version__} {compatibility}.

```python
from transformers import {auto_class}
{import_line}

base = {auto_class}.from_pretrained("{base}"{num_labels})
model = PeftModel.from_pretrained(base, "path/to/this/folder")
```
"""


def warn_resuming_without_mlp(folder: Path) -> None:
    warnings.warn(
        f"{folder} holds the projected prefix table but not the MLP that produced it (no {ENCODER_STATE_NAME}, "
        "e.g. an adapter saved by PEFT). Training resumes from the table as a plain P-Tuning v2 prefix "
        "(prefix_projection=False).",
        stacklevel=3,
    )
