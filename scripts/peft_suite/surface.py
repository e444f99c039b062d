#!/usr/bin/env python3
"""List every PEFT name that PEFT's test files import (statically, module level and inside functions) and what the
shim resolves it to in minipeft. Run it with the suite's venv, after run.py has unpacked the sdist:

    _build/peft-suite/venv/bin/python scripts/peft_suite/surface.py [test files...]

Default files: the five that hold the prompt-learning cases, plus testing_common.py and testing_utils.py.
Prints "module.name -> minipeft.x.name | MISSING | module | harness helper" and writes
_build/peft-suite/surface.json.
"""

from __future__ import annotations

import ast
import json
import os
import sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
BUILD = HERE.parent.parent / "_build" / "peft-suite"
TESTS = BUILD / "peft-0.21.2" / "tests"
DEFAULT = [
    "test_config.py",
    "test_decoder_models.py",
    "test_encoder_decoder_models.py",
    "test_feature_extraction_models.py",
    "test_seq_classifier.py",
    "testing_common.py",
    "testing_utils.py",
]


def imported_names(path: Path) -> dict[str, set[str]]:
    found: dict[str, set[str]] = defaultdict(set)
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "peft":
            for alias in node.names:
                found[node.module].add(alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "peft":
                    found[alias.name].add("")
    return found


def main(argv=None) -> int:
    files = [TESTS / f for f in (argv or sys.argv[1:] or DEFAULT)]
    os.environ.setdefault("PEFT_SUITE_PEFT_SRC", str(BUILD / "peft-0.21.2" / "src" / "peft"))
    os.environ.setdefault("PEFT_SUITE_HARNESS_HELPERS", "peft")
    sys.path.insert(0, str(HERE / "shim"))
    import peft  # the shim

    assert getattr(peft, "__peft_suite_shim__", False), peft.__file__
    import importlib

    surface: dict[str, dict[str, str]] = {}
    users: dict[str, set[str]] = defaultdict(set)
    for path in files:
        for module, names in imported_names(path).items():
            for name in names:
                users[f"{module}.{name}" if name else module].add(path.name)
                shim_module = importlib.import_module(module)
                if not name:
                    surface.setdefault(module, {})
                    continue
                value = getattr(shim_module, name)
                if getattr(value, "__peft_suite_missing__", False):
                    where = "MISSING"
                elif type(value).__name__ == "_ShimModule":
                    where = "module"
                else:
                    where = peft._LOG.get(module, {}).get(name, "?")
                surface.setdefault(module, {})[name] = where
    for module in sorted(surface):
        for name, where in sorted(surface[module].items()):
            print(f"{module}.{name} -> {where}   [{', '.join(sorted(users[f'{module}.{name}']))}]")
    (BUILD / "surface.json").write_text(json.dumps(surface, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
