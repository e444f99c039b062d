"""Adapters on the Hugging Face Hub: finding an adapter's files in a folder or a Hub repository, and uploading one.

``from_pretrained`` takes a local folder or a Hub repository id, as PEFT's does; files come through
``huggingface_hub.hf_hub_download`` (its cache, ``revision``, ``subfolder``, ``token``, offline mode).
``push_to_hub`` uploads the adapter folder that ``save_pretrained`` writes, and nothing else.

Follows PEFT ``src/peft/config.py`` (``PeftConfig.from_pretrained``), ``src/peft/utils/save_and_load.py``
(``load_peft_weights``) and transformers' ``PushToHubMixin``.

Explained in: book/05_saving_and_loading.ipynb
"""

from __future__ import annotations

import inspect
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import huggingface_hub
from huggingface_hub import hf_hub_download

__all__: list[str] = []  # internals of from_pretrained, load_adapter and push_to_hub

_DOWNLOAD_PARAMETERS = set(inspect.signature(hf_hub_download).parameters) - {"repo_id", "filename", "subfolder"}


def hub_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``kwargs`` that ``hf_hub_download`` takes (``revision``, ``cache_dir``, ``token``, ...)."""
    return {k: v for k, v in kwargs.items() if k in _DOWNLOAD_PARAMETERS}


def resolve_file(
    name_or_path: str | os.PathLike, filename: str, subfolder: str | None = None, **download_kwargs: Any
) -> Path:
    """The path of ``filename`` in a local adapter folder, or downloaded (cached) from a Hub repository.

    A path that exists on disk is a folder; anything else is a Hub repository id.

    Raises:
        FileNotFoundError: the folder or repository (at that revision) has no such file, or the id is
            neither a folder nor a valid repository id; the message says which.
    """
    folder = Path(name_or_path, subfolder) if subfolder else Path(name_or_path)
    if (folder / filename).is_file():
        return folder / filename
    if Path(name_or_path).exists():
        raise FileNotFoundError(
            f"{folder / filename} not found: is {folder} an adapter folder written by save_pretrained?"
        )
    try:
        return Path(hf_hub_download(str(name_or_path), filename, subfolder=subfolder, **download_kwargs))
    except (huggingface_hub.errors.HFValidationError, huggingface_hub.errors.EntryNotFoundError, OSError) as error:
        where = f"{name_or_path}" + (f" (subfolder {subfolder})" if subfolder else "")
        raise FileNotFoundError(
            f"{filename} not found: {where} is neither a local adapter folder nor a Hub repository holding it "
            f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})."
        ) from error


def file_exists(name_or_path: str | os.PathLike, filename: str, subfolder: str | None = None, **kwargs: Any) -> bool:
    """Whether :func:`resolve_file` would find ``filename``."""
    try:
        resolve_file(name_or_path, filename, subfolder, **kwargs)
    except FileNotFoundError:
        return False
    return True


def push_folder_to_hub(
    save: Callable[[str], None],
    repo_id: str,
    commit_message: str | None = None,
    private: bool | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    **kwargs: Any,
) -> Any:
    """Write the adapter with ``save(folder)`` into a temporary folder and upload exactly that folder.

    Returns the ``CommitInfo`` of ``huggingface_hub.upload_folder``.
    """
    api = huggingface_hub.HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    with tempfile.TemporaryDirectory() as folder:
        save(folder)
        return api.upload_folder(
            repo_id=repo_id,
            folder_path=folder,
            commit_message=commit_message or "Upload adapter (minipeft)",
            revision=revision,
            create_pr=create_pr,
        )
