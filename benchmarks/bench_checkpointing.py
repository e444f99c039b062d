"""Gradient checkpointing with a prefix: peak memory and time of a training step, with and without it.

One training step (forward, backward, AdamW) of a P-Tuning v2 prefix on the embedded SmolLM2-135M at
long inputs, for: minipeft without checkpointing, minipeft with it, PEFT without it, and PEFT with it
(which PEFT refuses for a prefix: the error is recorded). Each configuration runs in a fresh process
(peak resident memory above the idle wrapped model, from /proc/self/status VmHWM; the median step
time of ``--steps`` steps after one warm-up). Results: ``benchmarks/results/checkpointing.{csv,json}``.

    python benchmarks/bench_checkpointing.py [--batch 4] [--seq-len 1024] [--steps 3]
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
NUM_VIRTUAL = 30
CONFIGS = [("minipeft", False), ("minipeft", True), ("peft", False), ("peft", True)]


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def measure_step(step: Callable[[], None], steps: int) -> tuple[float, int]:
    """``step`` run once to warm up (and to create the optimizer's state), then ``steps`` times: the
    median seconds of one, and the peak resident memory above the memory before it, in MiB."""
    baseline = _rss_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) starts at the current RSS
    step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return round(statistics.median(times), 2), round((_rss_kib("VmHWM") - baseline) / 1024)


def run_child(script: str, arguments: list[str]) -> dict:
    """``script`` run with ``arguments`` in a fresh Python process; the JSON object it printed last."""
    out = subprocess.run([sys.executable, script, *arguments], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def smollm2_and_batch(checkpointing: bool, batch: int, seq_len: int) -> tuple[Any, Any]:
    """The embedded SmolLM2 (with gradient checkpointing on if asked) and ``(batch, seq_len)`` random token ids."""
    import warnings

    import torch

    warnings.filterwarnings("ignore")
    from minipeft import load_base_model

    torch.manual_seed(0)
    model, _ = load_base_model()
    if checkpointing:
        model.gradient_checkpointing_enable()
    generator = torch.Generator().manual_seed(0)
    return model, torch.randint(0, model.config.vocab_size, (batch, seq_len), generator=generator)


def child(library: str, checkpointing: bool, batch: int, seq_len: int, steps: int) -> dict:
    """In a fresh process: one configuration's peak memory above idle and median step time."""
    import torch

    model, input_ids = smollm2_and_batch(checkpointing, batch, seq_len)
    if library == "peft":
        import peft

        config = peft.PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=NUM_VIRTUAL)
        get_peft_model = peft.get_peft_model
    else:
        import minipeft

        config = minipeft.PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=NUM_VIRTUAL)
        get_peft_model = minipeft.get_peft_model
    try:
        wrapped = get_peft_model(model, config).train()
        optimizer = torch.optim.AdamW([p for p in wrapped.parameters() if p.requires_grad], lr=1e-3)

        def step() -> None:
            wrapped(input_ids=input_ids, labels=input_ids).loss.backward()
            optimizer.step()
            optimizer.zero_grad()

        step_s, peak = measure_step(step, steps)
        return {"step_s": step_s, "peak_above_idle_mib": peak, "error": ""}
    except Exception as error:  # PEFT's refusal is a result, not a failure of the benchmark
        return {"step_s": "", "peak_above_idle_mib": "", "error": f"{type(error).__name__}: {error}"[:200]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--child", nargs=2, metavar=("LIBRARY", "CHECKPOINTING"))
    args = parser.parse_args()
    if args.child:
        library, checkpointing = args.child[0], args.child[1] == "1"
        print(json.dumps(child(library, checkpointing, args.batch, args.seq_len, args.steps)))
        return
    rows = []
    for library, checkpointing in CONFIGS:
        arguments = ["--batch", str(args.batch), "--seq-len", str(args.seq_len), "--steps", str(args.steps)]
        measured = run_child(__file__, [*arguments, "--child", library, str(int(checkpointing))])
        row = {"library": library, "checkpointing": checkpointing, **measured}
        print(row, flush=True)
        rows.append(row)
    off, on = rows[0], rows[1]
    summary = {
        "machine": f"{platform.processor() or platform.machine()}, python {platform.python_version()}",
        "batch": args.batch,
        "seq_len": args.seq_len,
        "num_virtual_tokens": NUM_VIRTUAL,
        "steps": args.steps,
        "memory_ratio_on_off": round(on["peak_above_idle_mib"] / off["peak_above_idle_mib"], 2),
        "time_ratio_on_off": round(on["step_s"] / off["step_s"], 2),
        "rows": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "checkpointing.json").write_text(json.dumps(summary, indent=2) + "\n")
    with open(RESULTS / "checkpointing.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}))


if __name__ == "__main__":
    main()
