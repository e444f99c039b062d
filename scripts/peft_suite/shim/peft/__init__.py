"""A package named ``peft`` that maps PEFT's import names onto minipeft, for running PEFT's own tests.

It implements nothing of PEFT: every name is looked up in minipeft, and a name minipeft lacks becomes a
*placeholder* that raises ``MissingInMinipeft`` (an ImportError; ``MissingAttributeInMinipeft``, an AttributeError,
for attribute access) the moment a test uses it (attribute, iteration, indexing, truth value...); as the second
argument of isinstance/issubclass it answers False (no object is an instance of a class minipeft lacks).
``from peft import AdaLoraConfig`` therefore succeeds at import (PEP 562: ``from m import n`` falls back to the
module's ``__getattr__``), and only the tests that touch the name fail. Calling a placeholder returns another
placeholder (``PEFT_SUITE_SHIM_CALLS=lazy``, the default) or raises (``strict``): PEFT's test modules call missing
names at import time (``LoraConfig(...)`` inside a ``parametrize`` list), which in strict mode makes the whole file
fail to collect. A test module that uses a missing name in any other way at import time still fails to collect.

Resolution of ``peft.<path>.<name>``, first hit wins:

1. ``minipeft.<path>.<name>`` is a module, or PEFT 0.21.2 has a module of that path (its layout is read from the
   unpacked sdist named by ``PEFT_SUITE_PEFT_SRC``; no PEFT code is executed): the shim submodule ``peft.<path>.<name>``;
2. the module ``minipeft.<path>`` (same dotted path) has ``<name>``;
3. ``minipeft`` (top level, its public API) has ``<name>``;
4. a public ``<name>`` in a minipeft submodule that ``import minipeft`` already loaded (sorted, first wins);
5. with ``PEFT_SUITE_HARNESS_HELPERS=peft`` only: the environment probes that PEFT's test scaffolding evaluates at
   import time (``peft.import_utils.*`` and ``infer_device``; see ``HARNESS_HELPERS``) come from PEFT 0.21.2's
   source in the unpacked sdist (never from the installed ``peft`` package); without them ``testing_common.py``
   cannot even be imported (``PeftCommonTester.torch_device = infer_device()``);
6. a placeholder.

Writing an attribute of ``peft.<path>`` (``monkeypatch.setattr``) writes it to ``minipeft.<path>`` when that module
exists, so the patch reaches minipeft's code as it would reach PEFT's.

``PEFT_SUITE_SHIM_LOG=<file>``: every resolution is written there as JSON at exit (the surface the tests import).
"""

from __future__ import annotations

import atexit
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
import types

__peft_suite_shim__ = True

_TARGET_PACKAGE = os.environ.get("PEFT_SUITE_TARGET_PACKAGE", "minipeft")
_PEFT_SRC = os.environ.get("PEFT_SUITE_PEFT_SRC")  # <sdist>/src/peft: used only to know which names are modules
_HELPERS = os.environ.get("PEFT_SUITE_HARNESS_HELPERS", "none")
# name -> where PEFT defines it; taken from the real PEFT only with PEFT_SUITE_HARNESS_HELPERS=peft
HARNESS_HELPERS = {
    "peft.import_utils": "*",  # is_transformers_ge_v5, is_*_available: facts about the environment
    "peft.utils": {"infer_device"},  # "cpu" / "cuda" / ...: evaluated in PeftCommonTester's class body
    "peft.utils.other": {"infer_device"},
}
_LOG: dict[str, dict[str, str]] = {}


class MissingInMinipeft(ImportError):
    """Raised when a test uses a PEFT name that minipeft does not have."""


class MissingAttributeInMinipeft(AttributeError):
    """The same, for attribute access on a placeholder (an AttributeError, so that hasattr/getattr-with-default and
    introspection such as ``inspect.signature`` see an attribute that is not there, as for any object)."""


_CALLS = os.environ.get("PEFT_SUITE_SHIM_CALLS", "lazy")
# set by the harness's pytest plugin while a test runs (setup, call, teardown): calls are lazy only outside tests
_STATE = {"in_test": False}
# the missing names the running test used (the plugin resets it before each test and records it per case)
_USES: list[str] = []


def _message(qualname: str, called: bool) -> str:
    module, _, name = qualname.rpartition(".")
    via = "; used through the result of calling it" if called else ""
    return f"cannot import name '{name}' from '{module}' (minipeft has no such name{via})"


class _Missing:
    """Stands for a name minipeft lacks; fails on any use. ``__name__`` keeps pytest's test ids as under PEFT.

    Calling it fails too, except outside a running test with ``PEFT_SUITE_SHIM_CALLS=lazy`` (the default): then
    the call returns another placeholder that fails on any use. PEFT's test modules call such names at import time
    (``LoraConfig(...)`` in a ``parametrize`` list of test_decoder_models.py); lazily, only the cases that use the
    result fail, instead of the whole file failing to collect. Inside a test a call fails at once, so that a test
    cannot pass by merely constructing something minipeft lacks.
    """

    __peft_suite_missing__ = True

    def __init__(self, qualname: str, called: bool = False):
        object.__setattr__(self, "_qualname", qualname)
        object.__setattr__(self, "_called", called)
        object.__setattr__(self, "__name__", qualname.rpartition(".")[2])
        object.__setattr__(self, "__qualname__", qualname.rpartition(".")[2])
        object.__setattr__(self, "__module__", qualname.rpartition(".")[0])

    def __repr__(self):
        return f"<missing in minipeft: {self._qualname}{'(...)' if self._called else ''}>"

    def _fail(self, *args, **kwargs):
        _USES.append(self._qualname)
        raise MissingInMinipeft(_message(self._qualname, self._called))

    def __call__(self, *args, **kwargs):
        if _CALLS == "lazy" and not _STATE["in_test"]:
            return _Missing(self._qualname, called=True)
        self._fail()

    def __getattr__(self, attr):
        state = object.__getattribute__(self, "__dict__")
        if "_qualname" not in state:  # a half-built copy (copy/pickle protocol)
            raise AttributeError(attr)
        _USES.append(state["_qualname"])
        raise MissingAttributeInMinipeft(_message(state["_qualname"], state["_called"]))

    def __instancecheck__(self, obj):
        # nothing is an instance (or subclass) of a class minipeft does not have; PEFT's test helpers branch on
        # such checks (``issubclass(config_cls, AdaLoraConfig)``, ``isinstance(module, TrainableTokensWrapper)``)
        return False

    def __subclasscheck__(self, cls):
        return False

    __bool__ = __iter__ = __len__ = __getitem__ = __contains__ = _fail
    __mro_entries__ = __setattr__ = __delattr__ = _fail


_PLACEHOLDERS: dict[str, _Missing] = {}
_reference = None


def _log(module: str, name: str, where: str) -> None:
    _LOG.setdefault(module, {}).setdefault(name, where)


def _target_module(shim_name: str):
    """minipeft.<path> for peft.<path>, if that module exists."""
    target = _TARGET_PACKAGE + shim_name[len("peft") :]
    try:
        if importlib.util.find_spec(target) is None:
            return None
    except (ImportError, ValueError):
        return None
    return importlib.import_module(target)


def _peft_has_module(dotted: str) -> bool:
    if not _PEFT_SRC:
        return False
    rel = dotted.split(".")[1:]
    base = os.path.join(_PEFT_SRC, *rel)
    return os.path.isdir(base) or os.path.isfile(base + ".py")


def _load_helpers():
    """PEFT 0.21.2's environment probes, executed from the unpacked sdist (PEFT_SUITE_PEFT_SRC), never from the
    installed PEFT package: ``import_utils.py`` is self-contained (torch, transformers, packaging), and
    ``infer_device`` is taken out of ``utils/other.py`` by its source (ast) with the accelerate probes that file
    imports for it."""
    global _reference
    if _reference is None:
        import ast

        if not _PEFT_SRC:
            raise ImportError("PEFT_SUITE_HARNESS_HELPERS=peft needs PEFT_SUITE_PEFT_SRC (<sdist>/src/peft)")
        spec = importlib.util.spec_from_file_location(
            "_peft_suite_helpers_import_utils", os.path.join(_PEFT_SRC, "import_utils.py")
        )
        import_utils = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(import_utils)
        import accelerate.utils
        import torch

        other_src = open(os.path.join(_PEFT_SRC, "utils", "other.py")).read()
        func = next(
            node
            for node in ast.parse(other_src).body
            if isinstance(node, ast.FunctionDef) and node.name == "infer_device"
        )
        namespace = {
            "torch": torch,
            "is_xpu_available": accelerate.utils.is_xpu_available,
            "is_npu_available": accelerate.utils.is_npu_available,
            "mlu_available": getattr(accelerate.utils, "is_mlu_available", lambda: False)(),
        }
        exec(
            compile(ast.Module(body=[func], type_ignores=[]), os.path.join(_PEFT_SRC, "utils", "other.py"), "exec"),
            namespace,
        )
        _reference = {"peft.import_utils": vars(import_utils), "infer_device": namespace["infer_device"]}
    return _reference


def _resolve(shim_name: str, name: str):
    qual = f"{shim_name}.{name}"
    # 1. a submodule
    if not name.startswith("__"):
        target_sub = _TARGET_PACKAGE + qual[len("peft") :]
        try:
            is_target_module = importlib.util.find_spec(target_sub) is not None
        except (ImportError, ValueError):
            is_target_module = False
        if is_target_module or _peft_has_module(qual):
            _log(shim_name, name, "module")
            return importlib.import_module(qual)
    # 2.-4. minipeft
    target = _target_module(shim_name)
    if target is not None and hasattr(target, name):
        _log(shim_name, name, f"{target.__name__}.{name}")
        return getattr(target, name)
    top = importlib.import_module(_TARGET_PACKAGE)
    if not name.startswith("_"):
        if hasattr(top, name):
            _log(shim_name, name, f"{_TARGET_PACKAGE}.{name}")
            return getattr(top, name)
        for modname in sorted(m for m in sys.modules if m.startswith(_TARGET_PACKAGE + ".")):
            module = sys.modules[modname]
            if module is not None and name in vars(module):
                _log(shim_name, name, f"{modname}.{name}")
                return vars(module)[name]
    if name.startswith("__") and name.endswith("__"):
        raise AttributeError(f"module {shim_name!r} has no attribute {name!r}")
    # 5. environment probes of the test scaffolding
    helpers = HARNESS_HELPERS.get(shim_name)
    if _HELPERS == "peft" and helpers and (helpers == "*" or name in helpers):
        helper = _load_helpers()
        source = helper["peft.import_utils"] if helpers == "*" else {name: helper[name]}
        if name in source:
            _log(shim_name, name, f"PEFT 0.21.2 sdist (harness helper) {shim_name}.{name}")
            return source[name]
    # 6. placeholder
    _log(shim_name, name, "MISSING")
    if qual not in _PLACEHOLDERS:
        _PLACEHOLDERS[qual] = _Missing(qual)
    return _PLACEHOLDERS[qual]


_OWN = {
    "__name__",
    "__doc__",
    "__package__",
    "__loader__",
    "__spec__",
    "__path__",
    "__file__",
    "__cached__",
    "__builtins__",
    "__dict__",
    "__class__",
    "__all__",
}


_SHADOWED: dict[tuple[str, str], object] = {}  # (minipeft module, name) -> its value before a test wrote it
_ABSENT = object()


class _ShimModule(types.ModuleType):
    """A forwarding module for ``peft.<path>``: reads resolve as above; writes go to ``minipeft.<path>``."""

    def __getattr__(self, name):
        return _resolve(self.__name__, name)

    def __setattr__(self, name, value):
        if name in _OWN or isinstance(value, types.ModuleType) and value.__name__.startswith("peft"):
            return super().__setattr__(name, value)
        target = _target_module(self.__name__)
        if target is None:
            return super().__setattr__(name, value)
        if isinstance(value, _Missing):  # restoring a name minipeft never had: remove it again
            if name in vars(target):
                delattr(target, name)
            return None
        # remember what minipeft had, so that deleting the name (monkeypatch's undo of a name that is not in this
        # module's own __dict__) puts minipeft's value back instead of removing it
        _SHADOWED.setdefault((target.__name__, name), vars(target).get(name, _ABSENT))
        setattr(target, name, value)

    def __delattr__(self, name):
        target = _target_module(self.__name__)
        if target is not None and (target.__name__, name) in _SHADOWED:
            original = _SHADOWED[(target.__name__, name)]  # kept: monkeypatch may undo the same name twice
            if original is _ABSENT:
                return delattr(target, name) if name in vars(target) else None
            return setattr(target, name, original)
        if target is not None and name in vars(target):
            return delattr(target, name)
        return super().__delattr__(name)

    def __dir__(self):
        target = _target_module(self.__name__)
        return sorted(set(super().__dir__()) | set(dir(target) if target is not None else ()))


class _ShimLoader(importlib.abc.Loader):
    def create_module(self, spec):
        module = _ShimModule(spec.name)
        return module

    def exec_module(self, module):
        module.__path__ = []  # every shim module is a package, so that any PEFT submodule path imports
        target = _target_module(module.__name__)
        module.__doc__ = f"Shim for {module.__name__} -> {target.__name__ if target else 'minipeft (by name)'}"


class _ShimFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.startswith("peft."):
            return importlib.machinery.ModuleSpec(fullname, _ShimLoader(), is_package=True)
        return None


if not any(isinstance(f, _ShimFinder) for f in sys.meta_path):
    sys.meta_path.insert(0, _ShimFinder())

# the top-level package forwards like its submodules
sys.modules[__name__].__class__ = _ShimModule

_top = importlib.import_module(_TARGET_PACKAGE)
__all__ = list(getattr(_top, "__all__", [n for n in dir(_top) if not n.startswith("_")]))


def _write_log():
    path = os.environ.get("PEFT_SUITE_SHIM_LOG")
    if not path:
        return
    try:
        with open(path) as f:
            old = json.load(f)
    except (OSError, ValueError):
        old = {}
    for module, names in _LOG.items():
        old.setdefault(module, {}).update(names)
    with open(path, "w") as f:
        json.dump(old, f, indent=1, sort_keys=True)


atexit.register(_write_log)
