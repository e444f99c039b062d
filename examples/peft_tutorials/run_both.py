"""Run every tutorial script with PEFT and with minipeft, one at a time, and compare what they print.

    .venv/bin/python examples/peft_tutorials/run_both.py                  # all four, about 10 minutes
    .venv/bin/python examples/peft_tutorials/run_both.py --only prefix_tuning_seq2seq --precision 8

For each script: its stdout under PEFT_LIBRARY=peft and under PEFT_LIBRARY=minipeft, without the
`[time]` lines, either "identical" or the differing lines (a unified diff); a failed run's exit code
and the end of its traceback. Then every adapter folder the scripts saved (under _runs/peft/ and
_runs/minipeft/) is compared: files present, adapter_config.json, and the largest absolute
difference of each tensor in adapter_model.safetensors.

The runs use one thread (OMP_NUM_THREADS=1): on a shared 2-core machine two OpenMP threads wait on
each other, and a tiny T5's training step takes 0.75 s instead of 0.016 s. Both libraries run under
the same settings. --precision sets torch's print precision (PRINT_PRECISION, 4 by default, as in
the tutorials' outputs) for the scripts that print tensors. Exit code 1 if anything differs or fails.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUNS = HERE / "_runs"
LIBRARIES = ("peft", "minipeft")
SCRIPTS = {
    "prefix_tuning_clm": [],
    "prefix_tuning_seq2seq": [],
    "prefix_tuning_seq_cls": [],
    "peft_no_lora_accelerate": [
        "--peft_type",
        "prefix_tuning",
        "--seed",
        "0",
        "--output_dir",
        "_runs/{library}/accelerate_prefix_tuning",
    ],
}


def run(script: str, library: str, precision: int) -> tuple[int, str, str, float]:
    env = dict(
        os.environ,
        PEFT_LIBRARY=library,
        PRINT_PRECISION=str(precision),
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
    )
    args = [arg.format(library=library) for arg in SCRIPTS[script]]
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(HERE / f"{script}.py"), *args], cwd=HERE, env=env, capture_output=True, text=True
    )
    return done.returncode, done.stdout, done.stderr, time.perf_counter() - start


def without_timing(text: str) -> list[str]:
    return [line for line in text.splitlines() if not line.startswith("[time]")]


def compare_adapters() -> list[str]:
    """One line per adapter folder saved by both runs (or by one of them)."""
    from safetensors.torch import load_file

    lines = []
    folders = {
        p.parent.relative_to(RUNS / library)
        for library in LIBRARIES
        if (RUNS / library).is_dir()
        for p in (RUNS / library).rglob("adapter_config.json")
    }
    for folder in sorted(folders):
        a, b = RUNS / "peft" / folder, RUNS / "minipeft" / folder
        if not (a.is_dir() and b.is_dir()):
            lines.append(f"  {folder}: saved by {'peft' if a.is_dir() else 'minipeft'} only")
            continue
        notes = []
        files_a, files_b = {p.name for p in a.iterdir()}, {p.name for p in b.iterdir()}
        if files_a != files_b:
            notes.append(
                f"files only in peft: {sorted(files_a - files_b)}, only in minipeft: {sorted(files_b - files_a)}"
            )
        config_a = json.loads((a / "adapter_config.json").read_text())
        config_b = json.loads((b / "adapter_config.json").read_text())
        keys = sorted(
            k for k in config_a.keys() | config_b.keys() if config_a.get(k, "<absent>") != config_b.get(k, "<absent>")
        )
        if keys:
            notes.append(
                "adapter_config.json differs: "
                + "; ".join(
                    f"{k}: peft {config_a.get(k, '<absent>')!r}, minipeft {config_b.get(k, '<absent>')!r}" for k in keys
                )
            )
        weights = "adapter_model.safetensors"
        if (a / weights).is_file() and (b / weights).is_file():
            tensors_a, tensors_b = load_file(a / weights), load_file(b / weights)
            if tensors_a.keys() != tensors_b.keys():
                notes.append(f"tensor names differ: peft {sorted(tensors_a)}, minipeft {sorted(tensors_b)}")
            common = sorted(tensors_a.keys() & tensors_b.keys())
            diffs = {k: (tensors_a[k] - tensors_b[k]).abs().max().item() for k in common}
            notes.append(f"tensors {', '.join(f'{k} max|diff| {v:.3g}' for k, v in diffs.items())}")
        lines.append(f"  {folder}: " + "; ".join(notes))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=list(SCRIPTS), default=list(SCRIPTS))
    parser.add_argument("--precision", type=int, default=4, help="torch's print precision in the scripts")
    args = parser.parse_args()

    shutil.rmtree(RUNS, ignore_errors=True)
    all_identical = True
    for script in args.only:
        results = {library: run(script, library, args.precision) for library in LIBRARIES}
        times = ", ".join(f"{library} {results[library][3]:.0f} s" for library in LIBRARIES)
        failed = [library for library in LIBRARIES if results[library][0] != 0]
        out = {library: without_timing(results[library][1]) for library in LIBRARIES}
        if not failed and out["peft"] == out["minipeft"]:
            print(f"{script}: identical ({len(out['peft'])} lines; {times})")
            continue
        all_identical = False
        print(f"{script}: DIFFERENT ({times})")
        for library in failed:
            tail = results[library][2].strip().splitlines()[-6:]
            print(f"  {library} exited with {results[library][0]}:")
            print("\n".join(f"    {line}" for line in tail))
        if not failed or out["peft"] != out["minipeft"]:
            diff = difflib.unified_diff(out["peft"], out["minipeft"], "peft", "minipeft", n=0, lineterm="")
            print("\n".join(f"  {line[:300]}" for line in diff))
    print("saved adapters (peft vs minipeft):")
    print("\n".join(compare_adapters()) or "  none")
    sys.exit(0 if all_identical else 1)


if __name__ == "__main__":
    main()
