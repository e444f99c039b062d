"""Adapters on the Hub, offline: loading from a Hugging Face cache by repository id (revision, subfolder), and
push_to_hub uploading the adapter folder and nothing else (the Hub client replaced by a recorder)."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import huggingface_hub
import pytest
import torch
from helpers import ATOL, padded_batch, tiny_llama

from minipeft import PeftConfig, PeftModel, PrefixTuningConfig, get_peft_model
from minipeft import hub as minipeft_hub

REPO_ID = "someone/tiny-prefix"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def hub_cache(tmp_path: Path, adapter_folder: Path, subfolder: str | None = None) -> Path:
    """A Hugging Face cache holding ``adapter_folder``'s files as REPO_ID at COMMIT (the ``main`` branch)."""
    cache = tmp_path / "hub"
    repo = cache / f"models--{REPO_ID.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    shutil.copytree(adapter_folder, snapshot / subfolder if subfolder else snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    return cache


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    base = tiny_llama()
    model = get_peft_model(copy.deepcopy(base), PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4))
    model.save_pretrained(tmp_path / "adapter")
    return base, model.eval(), tmp_path / "adapter"


def test_loads_by_repository_id_from_the_cache_offline(saved, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    base, model, folder = saved
    cache = hub_cache(tmp_path, folder)
    loaded = PeftModel.from_pretrained(copy.deepcopy(base), REPO_ID, cache_dir=cache)
    input_ids, attention_mask = padded_batch()
    with torch.no_grad():
        expected = model(input_ids=input_ids, attention_mask=attention_mask).logits
        assert (loaded(input_ids=input_ids, attention_mask=attention_mask).logits - expected).abs().max() <= ATOL
    config = PeftConfig.from_pretrained(REPO_ID, cache_dir=cache, revision=COMMIT)
    assert isinstance(config, PrefixTuningConfig) and config.num_virtual_tokens == 4


def test_loads_from_a_subfolder_and_names_what_is_missing(saved, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    base, _, folder = saved
    cache = hub_cache(tmp_path, folder, subfolder="prefix")
    loaded = PeftModel.from_pretrained(copy.deepcopy(base), REPO_ID, subfolder="prefix", cache_dir=cache)
    assert loaded.active_peft_config.num_virtual_tokens == 4
    with pytest.raises(FileNotFoundError, match="adapter_config.json not found: someone/other is neither a local"):
        PeftModel.from_pretrained(copy.deepcopy(base), "someone/other", cache_dir=cache)


class RecordingHub:
    """Stands in for huggingface_hub.HfApi: records what would be created and uploaded."""

    calls: list = []

    def __init__(self, token=None):
        self.token = token

    def create_repo(self, repo_id, private=None, exist_ok=False):
        RecordingHub.calls.append(("create_repo", repo_id, private))
        return huggingface_hub.RepoUrl(f"https://huggingface.co/{repo_id}")

    def upload_folder(self, repo_id, folder_path, commit_message, revision=None, create_pr=False):
        files = sorted(p.name for p in Path(folder_path).rglob("*") if p.is_file())
        sizes = sum(p.stat().st_size for p in Path(folder_path).rglob("*") if p.is_file())
        RecordingHub.calls.append(("upload_folder", repo_id, files, sizes, commit_message))
        return "commit-info"


def test_push_to_hub_uploads_the_adapter_only(saved, monkeypatch):
    _, model, _ = saved
    RecordingHub.calls = []
    monkeypatch.setattr(minipeft_hub.huggingface_hub, "HfApi", RecordingHub)
    assert model.push_to_hub(REPO_ID, private=True, commit_message="prefix") == "commit-info"
    (create, _, private), (upload, repo, files, size, message) = RecordingHub.calls
    assert (create, private, upload, repo, message) == ("create_repo", True, "upload_folder", REPO_ID, "prefix")
    assert files == ["README.md", "adapter_config.json", "adapter_model.safetensors"]
    base_size = sum(p.numel() * p.element_size() for p in model.get_base_model().parameters())
    assert size < base_size / 10
