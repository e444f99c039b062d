"""pytest plugin for the PEFT-suite harness (loaded with ``-p plugin``; run.py puts this folder on sys.path).

It does four things, none of which changes a test:

* selection: keeps only the parametrised cases whose parameters contain one of the config classes in
  ``PEFT_SUITE_CONFIGS`` (comma-separated class names; default PrefixTuningConfig,PromptTuningConfig). A parameter
  "contains" a class when it is the class itself, an instance of it, or a tuple/list/dict holding either (one level
  deep, which covers PEFT's ``(config_cls, config_kwargs)`` pairs and ``[(cls, kwargs), ...]`` lists). Matching is by
  class *name* so that the same rule selects the same cases whether ``peft`` is the real package or the shim.
  With ``PEFT_SUITE_SELECTION=<json file>`` the selection is instead the list of node ids in that file (run.py
  collects it once against the real PEFT and reuses it for the minipeft run, so both runs judge the same cases;
  a selected id that the minipeft run cannot collect is reported as "not collected").
* upstream's tests/conftest.py behaviour that matters off-CI: tests marked ``regression`` are skipped.
* outcomes: every selected case's outcome (passed / failed / skipped / error, with the exception type and first
  line of the message) goes to ``PEFT_SUITE_RESULTS`` (a JSON file), together with collection errors.
* a guard: ``PEFT_SUITE_EXPECT_PEFT`` = "shim" or "real" makes the session fail at start if ``import peft`` inside
  the test process does not resolve to that package (and ``PEFT_SUITE_EXPECT_MINIPEFT`` likewise for the folder
  ``import minipeft`` must come from).
"""

from __future__ import annotations

import json
import os
import sys
import time

import pytest

_RESULTS: dict[str, dict] = {}
_USER_DESELECTED: set[str] = set()  # selected cases that -k / -m / other plugins then deselected
_COLLECT_ERRORS: list[dict] = []
_SELECTED: list[dict] = []
_CONFIG_NAMES = [
    n for n in os.environ.get("PEFT_SUITE_CONFIGS", "PrefixTuningConfig,PromptTuningConfig").split(",") if n
]


def _class_names(value, depth=0) -> set[str]:
    names: set[str] = set()
    if isinstance(value, type):
        names.add(value.__name__)
    elif getattr(value, "__peft_suite_missing__", False):  # a shim placeholder for a name minipeft lacks
        names.add(value.__name__)
    elif type(value).__name__.endswith("Config"):
        names.add(type(value).__name__)
    if depth < 2 and isinstance(value, (tuple, list)):
        for v in value:
            names |= _class_names(v, depth + 1)
    if depth < 2 and isinstance(value, dict):
        for v in value.values():
            names |= _class_names(v, depth + 1)
    return names


def _missing_params(item) -> list[str]:
    """The shim placeholders among a case's parameters (e.g. PromptEncoderConfig when minipeft lacks it)."""
    callspec = getattr(item, "callspec", None)
    found = []
    for value in callspec.params.values() if callspec else ():
        for v in value if isinstance(value, (tuple, list)) else (value,):
            if getattr(v, "__peft_suite_missing__", False):
                found.append(f"{v.__module__}.{v.__name__}")
    return found


def _item_configs(item) -> list[str]:
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return []
    found: set[str] = set()
    for value in callspec.params.values():
        found |= _class_names(value)
    return sorted(n for n in found if n in _CONFIG_NAMES)


def _exception_summary(report) -> tuple[str, str]:
    """(exception type, first line of its message) of a failed report."""
    longrepr = report.longrepr
    crash = getattr(longrepr, "reprcrash", None)
    if crash is not None:
        message = crash.message or ""
        first = message.strip().splitlines()[0] if message.strip() else ""
        etype, _, rest = first.partition(": ")
        if not rest and " " in etype:  # e.g. "assert x == y" with no type prefix
            return "AssertionError", first
        return etype, rest
    text = str(longrepr)
    lines = [ln for ln in text.splitlines() if ln.startswith("E ")]
    first = lines[0][1:].strip() if lines else text.strip().splitlines()[-1] if text.strip() else ""
    etype, _, rest = first.partition(": ")
    return etype, rest


def _no_hub_backoff():
    """Offline, huggingface_hub's retry back-off (1+2+4+8+8 s per missing optional file, each time a test enters
    PEFT's ``hub_online_once`` for a new model id) only wastes time: the connection to the unreachable endpoint is
    refused at once. Make its waits zero; nothing else in huggingface_hub changes."""
    import types

    try:
        import huggingface_hub.utils._http as hub_http
    except ImportError:
        return
    fake_time = types.SimpleNamespace(**{k: getattr(time, k) for k in dir(time) if not k.startswith("_")})
    fake_time.sleep = lambda seconds: None
    hub_http.time = fake_time


def pytest_configure(config):
    config.addinivalue_line("markers", "regression: mark regression tests")
    if os.environ.get("PEFT_SUITE_NO_HUB_BACKOFF") == "1":
        _no_hub_backoff()
    expect = os.environ.get("PEFT_SUITE_EXPECT_PEFT")
    if expect:
        import peft

        is_shim = bool(getattr(peft, "__peft_suite_shim__", False))
        if (expect == "shim") != is_shim:
            raise pytest.UsageError(f"`import peft` resolved to {peft.__file__!r}, expected the {expect} package")
        sys.stderr.write(f"[peft-suite] import peft -> {peft.__file__}\n")
    expect_minipeft = os.environ.get("PEFT_SUITE_EXPECT_MINIPEFT")
    if expect_minipeft:
        import minipeft

        where = os.path.dirname(os.path.realpath(minipeft.__file__))
        if where != os.path.realpath(expect_minipeft):
            raise pytest.UsageError(f"`import minipeft` resolved to {where!r}, expected {expect_minipeft!r}")
        sys.stderr.write(f"[peft-suite] import minipeft -> {where}\n")


@pytest.hookimpl(tryfirst=True)  # before -k/-m: the selection is judged on everything collected
def pytest_collection_modifyitems(session, config, items):
    selection_file = os.environ.get("PEFT_SUITE_SELECTION")
    wanted = None
    if selection_file:
        with open(selection_file) as f:
            wanted = {row["nodeid"]: row for row in json.load(f)["selected"]}
    keep, drop = [], []
    for item in items:
        configs = _item_configs(item)
        if wanted is not None:
            chosen = item.nodeid in wanted
            if chosen:
                configs = wanted[item.nodeid]["configs"]
        else:
            chosen = bool(configs)
        if chosen:
            if "regression" in item.keywords:
                item.add_marker(pytest.mark.skip(reason="need --regression option to run regression tests"))
            keep.append(item)
            _SELECTED.append({"nodeid": item.nodeid, "configs": configs, "file": item.nodeid.split("::")[0]})
            if _missing_params(item):
                _SELECTED[-1]["missing_params"] = _missing_params(item)
        else:
            drop.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
    items[:] = keep
    if wanted is not None:
        seen = {row["nodeid"] for row in _SELECTED}
        for nodeid, row in wanted.items():
            if nodeid not in seen:
                _RESULTS[nodeid] = {
                    "nodeid": nodeid,
                    "file": row["file"],
                    "configs": row["configs"],
                    "outcome": "not_collected",
                    "exc_type": "NotCollected",
                    "message": _collect_error_for(row["file"]),
                    "duration": 0.0,
                }


def _collect_error_for(path: str) -> str:
    for err in _COLLECT_ERRORS:
        if err["file"] == path:
            return f"collection error of {path}: {err['exc_type']}: {err['message']}"
    return "not collected (test no longer generated under this target)"


def _shim():
    peft = sys.modules.get("peft")
    return peft if getattr(peft, "__peft_suite_shim__", False) else None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Tell the shim that a test runs (its calls of missing names then fail at once), and collect the missing
    names the test used."""
    shim = _shim()
    if shim is not None:
        shim._USES.clear()
        shim._STATE["in_test"] = True
    try:
        yield
    finally:
        if shim is not None:
            shim._STATE["in_test"] = False


def pytest_collectreport(report):
    if report.failed:
        etype, msg = _exception_summary(report)
        _COLLECT_ERRORS.append({"file": report.nodeid.split("::")[0], "exc_type": etype, "message": msg})


def pytest_runtest_logreport(report):
    nodeid = report.nodeid
    row = _RESULTS.setdefault(
        nodeid, {"nodeid": nodeid, "file": nodeid.split("::")[0], "outcome": None, "duration": 0.0}
    )
    row["duration"] += getattr(report, "duration", 0.0)
    shim = _shim()
    if shim is not None and shim._USES:
        used = row.setdefault("missing_used", [])
        used.extend(n for n in dict.fromkeys(shim._USES) if n not in used)
    if report.when == "call" or (report.when == "setup" and not report.passed):
        if report.passed:
            row["outcome"] = "passed"
        elif report.skipped:
            row["outcome"] = "skipped"
            longrepr = report.longrepr
            row["message"] = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        else:
            row["outcome"] = "failed" if report.when == "call" else "error"
            row["exc_type"], row["message"] = _exception_summary(report)
    elif report.when == "teardown" and report.failed and row["outcome"] == "passed":
        row["outcome"] = "error"
        row["exc_type"], row["message"] = _exception_summary(report)


@pytest.hookimpl(trylast=True)
def pytest_deselected(items):
    chosen = {row["nodeid"] for row in _SELECTED}
    _USER_DESELECTED.update(item.nodeid for item in items if item.nodeid in chosen)


def pytest_sessionfinish(session, exitstatus):
    path = os.environ.get("PEFT_SUITE_RESULTS")
    if not path:
        return
    selected = {row["nodeid"]: row for row in _SELECTED}
    for nodeid, row in _RESULTS.items():
        row.setdefault("configs", selected.get(nodeid, {}).get("configs", []))
        if "missing_params" in selected.get(nodeid, {}):
            row["missing_params"] = selected[nodeid]["missing_params"]
    data = {
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "exitstatus": int(exitstatus),
        "config_names": _CONFIG_NAMES,
        "selected": _SELECTED,
        "collect_errors": _COLLECT_ERRORS,
        "deselected_by_user": len(_USER_DESELECTED),
        "results": sorted(
            (r for r in _RESULTS.values() if r["nodeid"] not in _USER_DESELECTED), key=lambda r: r["nodeid"]
        ),
    }
    with open(path, "w") as f:
        json.dump(data, f, indent=1)
