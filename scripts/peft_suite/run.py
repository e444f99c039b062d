#!/usr/bin/env python3
"""Run PEFT 0.21.2's own prompt-learning test cases, unchanged and offline, against PEFT or against minipeft.

    python3 scripts/peft_suite/run.py --target peft              # the reference: the real PEFT
    python3 scripts/peft_suite/run.py --target minipeft          # minipeft behind the `peft` shim
    python3 scripts/peft_suite/run.py --target both --group ptuning
    python3 scripts/peft_suite/run.py --target minipeft --minipeft-ref HEAD   # a committed minipeft

Everything it makes lives in _build/peft-suite/ (git-ignored):

* ``venv/``: a virtual environment layered on the project's .venv (a .pth adds .venv's site-packages, so torch,
  transformers, peft 0.21.2 and minipeft are the project's own) plus PEFT's test extras that the selected files
  import (datasets, diffusers, parameterized, scipy, scikit-learn, protobuf, sentencepiece) and pytest-timeout,
  pinned by .venv's ``pip freeze`` as constraints so that nothing of .venv is shadowed by another version;
* ``sdist/peft-0.21.2.tar.gz`` (``pip download --no-binary :all: --no-deps peft==0.21.2``) and its unpacked
  ``peft-0.21.2/``: PEFT's tests come only from there (an empty ``tests/__init__.py`` is added: the sdist leaves it
  out, and the tests import their helpers relatively);
* ``hub/``: the offline hub cache of tiny stand-in models (make_hub_cache.py);
* ``selection-<group>.json``: the selected node ids, collected once against the real PEFT;
* ``results-<target>-<group>.json`` / ``.csv``, ``run-<target>-<group>.log``; for minipeft also
  ``failures-<group>.md`` / ``.json`` (categorize.py) and ``shim-surface-<group>.json`` (every PEFT name the tests
  imported and what it resolved to).

Selection (plugin.py): the parametrised cases whose parameters hold one of the group's config classes (by class
name): group ``prompt`` = PrefixTuningConfig, PromptTuningConfig; ``ptuning`` = PromptEncoderConfig. Over PEFT's
whole tests/ folder only five files have such cases (test_config, test_decoder_models,
test_encoder_decoder_models, test_feature_extraction_models, test_seq_classifier), so those are the files run.

Offline: HF_HUB_OFFLINE=1, HF_HUB_CACHE=_build/peft-suite/hub, HF_ENDPOINT=http://127.0.0.1:9 (a closed loopback
port: PEFT's ``hub_online_once`` switches offline mode *off* the first time a test sees a model id, and then every
request is refused at once and huggingface_hub falls back to the cache), and no back-off sleeps (plugin.py).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
BUILD = REPO / "_build" / "peft-suite"
PEFT_VERSION = "0.21.2"
SDIST_DIR = BUILD / "sdist"
SRC = BUILD / f"peft-{PEFT_VERSION}"
VENV = BUILD / "venv"
HUB = BUILD / "hub"
PROJECT_VENV = REPO / ".venv"
# PEFT's test extras that the selected files import, at the versions measured here (a package the project's .venv
# already has is installed at .venv's version instead, through the constraints file)
TEST_EXTRAS = {
    "datasets": "5.2.0",
    "diffusers": "0.42.1",
    "parameterized": "0.9.0",
    "scipy": "1.17.1",
    "scikit-learn": "1.9.1",
    "protobuf": "7.36.2",
    "sentencepiece": "0.2.3",
    "pytest-timeout": "2.4.0",
}
TEST_FILES = [
    "tests/test_config.py",
    "tests/test_decoder_models.py",
    "tests/test_encoder_decoder_models.py",
    "tests/test_feature_extraction_models.py",
    "tests/test_seq_classifier.py",
]
GROUPS = {
    "prompt": "PrefixTuningConfig,PromptTuningConfig",
    "ptuning": "PromptEncoderConfig",
}


def log(msg: str) -> None:
    print(f"[peft-suite] {msg}", file=sys.stderr, flush=True)


def sh(cmd, **kwargs):
    log("$ " + " ".join(str(c) for c in cmd))
    return subprocess.run([str(c) for c in cmd], check=True, **kwargs)


def venv_python() -> Path:
    return VENV / "bin" / "python"


def ensure_venv() -> None:
    marker = VENV / ".peft-suite-installed"
    if marker.exists():
        return
    project_python = PROJECT_VENV / "bin" / "python"
    if not project_python.exists():
        sys.exit(f"{project_python} not found: set up the project first (make setup)")
    base = subprocess.run(
        [str(project_python), "-c", "import sys; print(sys._base_executable)"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    if VENV.exists():
        shutil.rmtree(VENV)
    sh([base, "-m", "venv", VENV])
    site = subprocess.run(
        [str(project_python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    own_site = subprocess.run(
        [str(venv_python()), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # addsitedir (not a bare path line) so that .venv's own .pth files (minipeft's editable finder) apply too
    Path(own_site, "_project_venv.pth").write_text(f"import site; site.addsitedir({site!r})\n")
    freeze = subprocess.run(
        [str(project_python), "-m", "pip", "freeze", "--exclude-editable"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    constraints = BUILD / "constraints.txt"
    constraints.write_text(
        "".join(
            line + "\n"
            for line in freeze.splitlines()
            if "==" in line and not line.lower().startswith(("minipeft==", "-e"))
        )
    )
    pinned = {line.split("==")[0].lower().replace("_", "-") for line in constraints.read_text().splitlines()}
    extras = [name if name in pinned else f"{name}=={version}" for name, version in TEST_EXTRAS.items()]
    sh([venv_python(), "-m", "pip", "install", "--quiet", "-c", constraints, *extras])
    marker.write_text(" ".join(extras) + "\n")


def ensure_sdist() -> None:
    tarball = SDIST_DIR / f"peft-{PEFT_VERSION}.tar.gz"
    if not tarball.exists():
        SDIST_DIR.mkdir(parents=True, exist_ok=True)
        sh(
            [
                venv_python(),
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-binary",
                ":all:",
                "--no-deps",
                f"peft=={PEFT_VERSION}",
                "-d",
                SDIST_DIR,
            ]
        )
    if not (SRC / "tests" / "test_decoder_models.py").exists():
        if SRC.exists():
            shutil.rmtree(SRC)
        with tarfile.open(tarball) as tar:
            tar.extractall(BUILD, filter="data")
    init = SRC / "tests" / "__init__.py"
    if not init.exists():
        init.write_text("")  # the sdist omits it; tests import `.testing_common`


def ensure_hub() -> None:
    sh([venv_python(), HERE / "make_hub_cache.py", HUB], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def minipeft_source(args) -> Path:
    if args.minipeft_ref:
        dest = BUILD / f"minipeft-{args.minipeft_ref.replace('/', '_')}"
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", "--format=tar", args.minipeft_ref, "minipeft"],
            check=True,
            capture_output=True,
        ).stdout
        import io

        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(dest, filter="data")
        return dest
    return Path(args.minipeft_src).resolve()


def base_env(args) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PEFT_SUITE_", "PYTHONPATH"))}
    env.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_HUB_CACHE=str(HUB),
        HF_HOME=str(BUILD / "hf-home"),
        HF_ENDPOINT="http://127.0.0.1:9",
        HF_HUB_DISABLE_TELEMETRY="1",
        PEFT_SUITE_NO_HUB_BACKOFF="1",
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS=str(args.threads),
        MKL_NUM_THREADS=str(args.threads),
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


def pytest_cmd(args, extra: list[str]) -> list[str]:
    cmd = ["nice", "-n", str(args.nice), str(venv_python()), "-m", "pytest"]
    cmd += ["-c", str(HERE / "pytest.ini"), "--rootdir", str(SRC), "-p", "no:cacheprovider", "-p", "plugin"]
    cmd += ["--continue-on-collection-errors", "-q", "-rN", "--color=no"]
    return cmd + extra


def select(args, group: str) -> Path:
    path = BUILD / f"selection-{group}.json"
    if path.exists() and not args.reselect:
        return path
    env = base_env(args)
    env.update(
        PYTHONPATH=str(HERE),
        PEFT_SUITE_CONFIGS=GROUPS[group],
        PEFT_SUITE_RESULTS=str(path),
        PEFT_SUITE_EXPECT_PEFT="real",
    )
    log(f"collecting the {group} cases against the real PEFT")
    subprocess.run(
        pytest_cmd(args, ["--collect-only", *TEST_FILES]),
        cwd=SRC,
        env=env,
        check=False,
        stdout=subprocess.DEVNULL,
        timeout=900,
    )
    data = json.loads(path.read_text())
    if data["collect_errors"]:
        sys.exit(f"collection errors against the real PEFT: {data['collect_errors']}")
    per_file = Counter(row["file"] for row in data["selected"])
    log(f"selected {len(data['selected'])} cases: " + ", ".join(f"{f} {n}" for f, n in sorted(per_file.items())))
    return path


def variant(args, target: str) -> str:
    """'' for the default minipeft run; otherwise a suffix naming what differs (so runs do not overwrite)."""
    parts = ["filtered"] if args.pytest_args else []  # a partial run never overwrites a full one
    if target == "peft":
        return "".join("-" + p for p in parts)
    if args.shim_calls != "lazy":
        parts.append(f"calls-{args.shim_calls}")
    if args.harness_helpers != "peft":
        parts.append(f"helpers-{args.harness_helpers}")
    if args.minipeft_ref:
        parts.append(f"ref-{args.minipeft_ref.replace('/', '_')}")
    return "".join("-" + p for p in parts)


def run_target(args, target: str, group: str, selection: Path) -> dict:
    tag = f"{target}-{group}{variant(args, target)}"
    results = BUILD / f"results-{tag}.json"
    logfile = BUILD / f"run-{tag}.log"
    env = base_env(args)
    env.update(
        PEFT_SUITE_CONFIGS=GROUPS[group],
        PEFT_SUITE_SELECTION=str(selection),
        PEFT_SUITE_RESULTS=str(results),
    )
    if target == "peft":
        env.update(PYTHONPATH=str(HERE), PEFT_SUITE_EXPECT_PEFT="real")
    else:
        surface = BUILD / f"shim-surface-{group}{variant(args, target)}.json"
        surface.unlink(missing_ok=True)
        src = minipeft_source(args)
        env.update(
            # the shim first, then the minipeft to test (ahead of .venv's editable minipeft), then the plugin
            PYTHONPATH=os.pathsep.join([str(HERE / "shim"), str(src), str(HERE)]),
            PEFT_SUITE_EXPECT_PEFT="shim",
            PEFT_SUITE_PEFT_SRC=str(SRC / "src" / "peft"),
            PEFT_SUITE_HARNESS_HELPERS=args.harness_helpers,
            PEFT_SUITE_SHIM_CALLS=args.shim_calls,
            PEFT_SUITE_SHIM_LOG=str(surface),
            PEFT_SUITE_EXPECT_MINIPEFT=str(src / "minipeft"),
        )
    extra = [f"--timeout={args.test_timeout}", *args.pytest_args, *TEST_FILES]
    if results.exists():
        results.unlink()
    log(f"running {target} / {group} (log: {logfile.relative_to(REPO)})")
    start = time.monotonic()
    with open(logfile, "w") as out:
        try:
            proc = subprocess.run(
                pytest_cmd(args, extra), cwd=SRC, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=args.timeout
            )
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    elapsed = time.monotonic() - start
    if not results.exists():
        sys.exit(f"pytest wrote no results (rc={rc}); see {logfile}")
    data = json.loads(results.read_text())
    data.update(target=target, group=group, tag=tag, wall_seconds=round(elapsed, 1), pytest_rc=rc)
    if target == "minipeft":
        data.update(minipeft_source=str(src), shim_calls=args.shim_calls, harness_helpers=args.harness_helpers)
    results.write_text(json.dumps(data, indent=1))
    with open(results.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["nodeid", "file", "configs", "outcome", "exc_type", "message", "duration_s"])
        for row in data["results"]:
            writer.writerow(
                [
                    row["nodeid"],
                    row["file"],
                    "+".join(row.get("configs", [])),
                    row["outcome"],
                    row.get("exc_type", ""),
                    (row.get("message") or "").splitlines()[0][:300] if row.get("message") else "",
                    round(row.get("duration", 0.0), 3),
                ]
            )
    return data


def summarize(data: dict) -> str:
    c = Counter(row["outcome"] for row in data["results"])
    passed = c["passed"]
    failed = c["failed"] + c["error"] + c["not_collected"] + c[None]
    parts = [f"{passed} passed", f"{failed} failed"]
    if c["skipped"]:
        parts.append(f"{c['skipped']} skipped")
    detail = f"(failed = {c['failed']} failed + {c['error']} errors + {c['not_collected']} not collected"
    unfinished = f" + {c[None]} unfinished" if c[None] else ""
    detail += f"{unfinished}; {len(data['results'])} selected cases"
    detail += f"; {data['wall_seconds']} s)"
    return ", ".join(parts), detail


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", choices=["peft", "minipeft", "both"], default="minipeft")
    parser.add_argument("--group", choices=sorted(GROUPS), default="prompt")
    parser.add_argument("--minipeft-src", default=str(REPO), help="folder holding minipeft/ (default: this checkout)")
    parser.add_argument("--minipeft-ref", help="test minipeft/ as committed at this git revision instead")
    parser.add_argument("--shim-calls", choices=["lazy", "strict"], default="lazy")
    parser.add_argument("--harness-helpers", choices=["peft", "none"], default="peft")
    parser.add_argument("--reselect", action="store_true", help="collect the selection again")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the machine is shared)")
    parser.add_argument("--nice", type=int, default=10)
    parser.add_argument("--timeout", type=int, default=3600, help="seconds for the whole pytest run")
    parser.add_argument("--test-timeout", type=int, default=300, help="seconds for one test case")
    parser.add_argument("--no-categorize", action="store_true")
    parser.add_argument(
        "--min-passed", type=int, default=0, help="exit with 1 when fewer cases pass (CI's guard against regressions)"
    )
    parser.add_argument("pytest_args", nargs="*", help="after --: extra pytest arguments (e.g. -k generate)")
    args = parser.parse_args(argv)

    BUILD.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    ensure_venv()
    ensure_sdist()
    ensure_hub()
    selection = select(args, args.group)
    log(f"set-up and selection: {time.monotonic() - t0:.1f} s")
    targets = ["peft", "minipeft"] if args.target == "both" else [args.target]
    lines = []
    for target in targets:
        data = run_target(args, target, args.group, selection)
        summary, detail = summarize(data)
        lines.append((data["tag"], summary, detail))
        if target == "minipeft" and not args.no_categorize:
            subprocess.run(
                [sys.executable, str(HERE / "categorize.py"), str(BUILD / f"results-{data['tag']}.json")],
                check=False,
            )
    for tag, summary, detail in lines:
        print(f"{tag}: {summary} {detail}")
    if len(lines) == 1:
        print(lines[0][1])  # the plain closing line
    passed = int(lines[-1][1].split(" passed")[0])
    if passed < args.min_passed:
        print(f"[peft-suite] {passed} passed, fewer than the {args.min_passed} required (--min-passed)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
