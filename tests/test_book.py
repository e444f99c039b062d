"""The book's pages: every chapter is in the table of contents, every public name on the API page."""

import os
import re
from pathlib import Path

import pytest
import yaml

import minipeft
import minipeft.book

# the checkout (scripts/test_installed.sh runs a copy of tests/ elsewhere and says where the checkout is)
REPO = Path(os.environ.get("MINIPEFT_REPO") or Path(__file__).resolve().parent.parent)
pytestmark = pytest.mark.skipif(
    not (REPO / "_toc.yml").is_file(), reason="needs the repository checkout (not the installed-wheel run)"
)


def toc_files() -> set[str]:
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    files = {toc["root"]}
    for part in toc.get("parts", [{"chapters": toc.get("chapters", [])}]):
        files |= {entry["file"] for entry in part["chapters"]}
    return files


def test_every_page_in_book_is_in_the_table_of_contents():
    pages = {f"book/{p.stem}" for p in (REPO / "book").iterdir() if p.suffix in (".ipynb", ".md")}
    assert pages == toc_files()  # a page missing here is not built (only_build_toc_files)


def test_api_page_documents_every_public_name():
    api = (REPO / "book" / "api.md").read_text()
    documented = set(re.findall(r"^\.\. (?:auto(?:class|function|exception|data)|py:class):: (\w+)", api, re.M))
    assert documented == set(minipeft.__all__) | set(minipeft.book.__all__)
