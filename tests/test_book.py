"""The book's pages: every chapter is in the table of contents, every public name on the API page."""

import re

import pytest
import yaml
from helpers import REPO

import minipeft
import minipeft.book

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
