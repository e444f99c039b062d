"""The package as a user installs it: public API, version, data files, type hints.

`scripts/test_installed.sh` runs the whole test suite against the built wheel in a fresh virtual
environment with MINIPEFT_TEST_INSTALLED=1; then the tests below also check that what is imported
is the installed package, not the source tree.
"""

import importlib
import importlib.metadata
import inspect
import os
from pathlib import Path

import pytest
import transformers

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
