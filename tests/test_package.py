"""The package as a user installs it: public API, version, data files, type hints.

`scripts/test_installed.sh` runs the whole test suite against the built wheel in a fresh virtual
environment with MINIPEFT_TEST_INSTALLED=1; then the tests below also check that what is imported
is the installed package, not the source tree.
"""

import ast
import importlib
import importlib.metadata
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import transformers
from helpers import REPO

import minipeft
import minipeft.book

INSTALLED = os.environ.get("MINIPEFT_TEST_INSTALLED") == "1"


def test_all_names_exist_and_are_documented():
    assert len(minipeft.__all__) == len(set(minipeft.__all__)), "duplicate names in __all__"
    for name in minipeft.__all__:
        obj = getattr(minipeft, name)  # AttributeError names a missing export
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), f"minipeft.{name} has no docstring"


def test_public_functions_have_type_hints():
    for name in minipeft.__all__:
        obj = getattr(minipeft, name)
        if inspect.isfunction(obj):
            assert "return" in obj.__annotations__, f"minipeft.{name} has no return type hint"


def package_modules() -> list[str]:
    """Every module of the installed or checked-out package, e.g. ``minipeft.config``, ``minipeft.book.training``."""
    package = Path(minipeft.__file__).parent
    names = []
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        if parts[-1] == "__main__":
            continue
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_every_public_module_object_is_exported():
    # a public function or class defined in a minipeft module but missing from __all__ is undiscoverable;
    # a module's own __all__ says what it makes public (cross-module internals stay out of it)
    exported = {id(getattr(minipeft, name)) for name in [*minipeft.__all__, *minipeft.book.__all__]}
    for module_name in package_modules():
        module = importlib.import_module(module_name)
        public = getattr(module, "__all__", None)
        for name, obj in vars(module).items():
            if name.startswith("_") or name == "main" or getattr(obj, "__module__", None) != module.__name__:
                continue
            if public is not None and name not in public:
                continue
            if inspect.isclass(obj) or inspect.isfunction(obj):
                assert id(obj) in exported, f"{module_name}.{name} is public but not in minipeft.__all__"


def test_the_method_does_not_import_the_books_scaffolding():
    core = set(minipeft.__all__)
    assert not core & set(minipeft.book.__all__)
    for name in core:
        module = getattr(getattr(minipeft, name), "__module__", "minipeft")
        assert not module.startswith("minipeft.book"), f"minipeft.{name} comes from the book's scaffolding"


def test_importing_minipeft_does_not_import_datasets():
    """``datasets`` serves the book's data (minipeft[book]); ``pip install minipeft`` alone must import."""
    code = "import sys, minipeft; print(sorted(m for m in ('datasets', 'pyarrow', 'pandas') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_version_in_one_place():
    # pyproject.toml reads the version from minipeft.__version__; the installed metadata must agree
    assert importlib.metadata.version("minipeft") == minipeft.__version__


def test_data_files_and_type_marker_ship_with_the_package():
    package = Path(minipeft.__file__).parent
    assert (package / "py.typed").is_file()
    assert (package / "book" / "DATASHEET.md").is_file()
    assert len(minipeft.load_complaints("train")) == 480


@pytest.mark.skipif(not INSTALLED, reason="only when testing the installed wheel (scripts/test_installed.sh)")
def test_imported_from_the_installed_wheel():
    location = Path(minipeft.__file__).resolve()
    assert "site-packages" in location.parts, f"minipeft was imported from {location}, not the installed wheel"
    files = importlib.metadata.files("minipeft")
    assert any(str(f).endswith("LICENSE") for f in files), "the wheel does not carry the license"


@pytest.mark.skipif(
    not os.environ.get("MINIPEFT_EXPECT_TRANSFORMERS"), reason="only in the oldest-transformers environment"
)
def test_running_with_the_expected_transformers():
    from packaging.version import Version

    assert Version(transformers.__version__) == Version(os.environ["MINIPEFT_EXPECT_TRANSFORMERS"])


def imports_of(module_name: str) -> tuple[set[str], list[str]]:
    """The minipeft modules ``module_name`` imports at its top level, and its imports of minipeft inside functions."""
    path = Path(importlib.import_module(module_name).__file__)
    package = module_name if path.name == "__init__.py" else module_name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    top_level, nested = set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            targets = [f"{base}.{node.module}"] if node.module else [f"{base}.{alias.name}" for alias in node.names]
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [node.module] if isinstance(node, ast.ImportFrom) else [alias.name for alias in node.names]
            targets = [name for name in names if name and name.split(".")[0] == "minipeft"]
        else:
            continue
        in_function = any(
            isinstance(parent, (ast.FunctionDef, ast.AsyncFunctionDef))
            and parent.lineno <= node.lineno <= parent.end_lineno
            for parent in ast.walk(tree)
        )
        (nested.extend if in_function else top_level.update)(targets)
    known = set(package_modules())
    return {t if t in known else t.rpartition(".")[0] for t in top_level} - {module_name}, nested


def test_import_graph_has_no_cycles_and_no_imports_inside_functions():
    graph = {}
    for module_name in package_modules():
        graph[module_name], nested = imports_of(module_name)
        assert not nested, f"{module_name} imports {nested} inside a function"
    done, stack = set(), []

    def visit(module_name):  # depth-first search; a module met again on the current path closes a cycle
        assert module_name not in stack, (
            f"import cycle: {' -> '.join([*stack[stack.index(module_name) :], module_name])}"
        )
        if module_name in done:
            return
        stack.append(module_name)
        for target in graph.get(module_name, ()):
            visit(target)
        stack.pop()
        done.add(module_name)

    for module_name in graph:
        visit(module_name)
    core = [m for m in graph if not m.startswith("minipeft.book") and m != "minipeft"]
    for module_name in core:
        assert not any(t.startswith("minipeft.book") for t in graph[module_name]), f"{module_name} imports the book"


def test_every_public_name_says_which_chapter_explains_it():
    chapters = {p.name for p in (REPO / "book").iterdir() if p.suffix in (".ipynb", ".md")}
    for name in [*minipeft.__all__, *minipeft.book.__all__]:
        obj = getattr(minipeft, name)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        cited = re.findall(r"Explained in: book/(\w+\.(?:ipynb|md))", inspect.getdoc(obj) or "")
        assert cited, f"minipeft.{name}'s docstring names no chapter ('Explained in: book/NN_....ipynb')"
        if chapters:  # the checkout (the installed-wheel run has no book/)
            assert set(cited) <= chapters, f"minipeft.{name} cites {cited}, not all chapters of the book"
