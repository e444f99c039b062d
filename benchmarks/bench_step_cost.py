"""What one training step costs: a prefix, the top two layers (FT-TOP2) and the whole model.

A prefix trains 0.26% of SmolLM2's numbers, yet its step is not 0.26% of fine-tuning's: the loss
depends on the prefix through every layer's attention, so the backward pass still runs through all
30 layers (fine-tuning the top two layers stops after two). What a prefix saves is the gradients
and AdamW state of the frozen weights. This benchmark measures it side by side, each configuration
in a fresh process on the embedded SmolLM2-135M (float32, CPU): the median time of a training step
(forward, backward, AdamW) and the peak resident memory above the idle model (``/proc/self/status``
VmHWM), with and without gradient checkpointing.

    python benchmarks/bench_step_cost.py [--batch 8] [--seq-len 256] [--steps 3]

Results: ``benchmarks/results/step_cost.{csv,json}``; chapter 6 shows them.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
from pathlib import Path

from bench_checkpointing import measure_step, run_child, smollm2_and_batch

RESULTS = Path(__file__).resolve().parent / "results"
NUM_VIRTUAL = 20  # chapter 7's prefix
METHODS = ["prefix", "ft-top2", "full"]


def child(method: str, checkpointing: bool, batch: int, seq_len: int, steps: int) -> dict:
    """In a fresh process: one configuration's trainable numbers, median step time and peak memory."""
    import torch

    from minipeft import PrefixTuningConfig, get_peft_model

    model, input_ids = smollm2_and_batch(checkpointing, batch, seq_len)
    if method == "prefix":
        model = get_peft_model(model, PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=NUM_VIRTUAL))
    elif method == "ft-top2":  # Li & Liang's FT-TOP2: the last two layers and the final norm
        model.requires_grad_(False)
        for module in (*model.model.layers[-2:], model.model.norm):
            module.requires_grad_(True)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5)

    def step() -> None:
        model(input_ids=input_ids, labels=input_ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step_s, peak = measure_step(step, steps)
    return {"trainable": sum(p.numel() for p in params), "step_s": step_s, "peak_above_idle_mib": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--child", nargs=2, metavar=("METHOD", "CHECKPOINTING"))
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1] == "1", args.batch, args.seq_len, args.steps)))
        return
    rows = []
    for checkpointing in (False, True):
        for method in METHODS:
            arguments = ["--batch", str(args.batch), "--seq-len", str(args.seq_len), "--steps", str(args.steps)]
            measured = run_child(__file__, [*arguments, "--child", method, str(int(checkpointing))])
            row = {"method": method, "checkpointing": checkpointing, **measured}
            print(row, flush=True)
            rows.append(row)
    full = next(r for r in rows if r["method"] == "full" and not r["checkpointing"])
    for row in rows:
        row["time_vs_full"] = round(row["step_s"] / full["step_s"], 2)
        row["memory_vs_full"] = round(row["peak_above_idle_mib"] / full["peak_above_idle_mib"], 2)
    summary = {
        "machine": f"{platform.processor() or platform.machine()}, python {platform.python_version()}",
        "batch": args.batch,
        "seq_len": args.seq_len,
        "num_virtual_tokens": NUM_VIRTUAL,
        "steps": args.steps,
        "rows": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "step_cost.json").write_text(json.dumps(summary, indent=2) + "\n")
    with open(RESULTS / "step_cost.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main()
