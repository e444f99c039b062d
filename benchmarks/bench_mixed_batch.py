"""One frozen model, many prefixes: serving requests for N adapters in one mixed batch, measured.

On the embedded SmolLM2-135M-Instruct, N adapters (N = 1, 2, 4, 8, 16; prefixes of 30 virtual tokens,
inference tables), greedy generation of exactly 32 new tokens per request, left-padded prompts. Two
kinds of traffic:

- ``one each``: N requests, one per adapter;
- ``mixed``: 16 requests spread round-robin over the N adapters.

Four ways to serve them:

- ``mixed batch``: one ``generate(..., adapter_names=[...])`` call for all requests;
- ``per adapter``: one batch per adapter (``set_adapter``), one after the other;
- ``one at a time``: every request alone;
- ``shared adapter``: the same requests in one batch that uses one adapter: the baseline for the cost
  of mixing (what the mixed batch would cost if all requests wanted the same task).

Reported per (traffic, N, way): seconds for all requests (median of ``--repeats`` after one warm-up call,
ways interleaved round-robin so that drifts of a shared machine hit them alike; a way that makes 8 or more
``generate`` calls is timed once, its sum already averages), new tokens per second, mean latency (a
request is answered when the call that holds it returns; calls run one after the other), and for the
mixed batch its overhead over the shared adapter and its speed-up over per-adapter batches; whether every
row's greedy tokens equal those of its request alone; and the prefix memory (bytes per adapter, per row).

Results: ``benchmarks/results/mixed_batch.csv`` and ``mixed_batch.json`` (machine, memory). Ratios are what
to read; the absolute times depend on the machine.

Usage::

    python benchmarks/bench_mixed_batch.py              # 3 repeats, about 10 minutes on 2 CPU cores
    python benchmarks/bench_mixed_batch.py --quick      # 1 repeat, N = 1, 4, 16, for a smoke test
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import os
import platform
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
NUM_VIRTUAL, NEW_TOKENS, MIXED_REQUESTS = 30, 32, 16
PROMPTS = [
    "My package arrived broken and nobody answers my emails.",
    "The capital of France is",
    "Thanks for the quick refund, great service!",
    "Write a short poem about the sea:",
    "Why is my flight delayed again?",
    "Prefix tuning trains a few vectors and",
    "The new update deleted all my photos.",
    "Summarise: the meeting moved to Friday.",
    "I have been on hold for two hours.",
    "Water boils at",
    "Translate to French: good morning",
    "Your app keeps crashing when I log in.",
    "The best way to learn Python is",
    "Still waiting for my order from last month",
    "List three colours:",
    "Love the new store layout, well done.",
]


def build(model, num_adapters: int):
    """A copy of ``model`` with ``num_adapters`` random 30-token prefixes (seed 0), eval mode, no gradients."""
    from minipeft import PrefixTuningConfig, get_peft_model

    torch.manual_seed(0)
    config = PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=NUM_VIRTUAL, inference_mode=True)
    peft_model = get_peft_model(copy.deepcopy(model), config, adapter_name="task0")
    for index in range(1, num_adapters):
        peft_model.add_adapter(f"task{index}", config)
    with torch.no_grad():
        for param in peft_model.prompt_encoder.parameters():
            param.copy_(torch.randn_like(param) * 0.05)
    return peft_model.eval()


def generate(peft_model, tokenizer, prompts, adapter_names=None, adapter=None):
    """Greedy generation of exactly NEW_TOKENS tokens: ``(len(prompts), NEW_TOKENS)`` new token ids."""
    batch = tokenizer(prompts, return_tensors="pt", padding=True)
    kwargs = dict(max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False)
    if adapter is not None:
        peft_model.set_adapter(adapter)
    with torch.no_grad():
        out = peft_model.generate(**batch, adapter_names=adapter_names, **kwargs)
    return out[:, batch["input_ids"].shape[1] :]


def ways(peft_model, tokenizer, prompts, names):
    """The four ways to serve ``prompts`` (request ``i`` wants adapter ``names[i]``): name -> function that
    returns (new tokens per request, seconds after which each request is answered)."""
    groups = {name: [i for i, n in enumerate(names) if n == name] for name in dict.fromkeys(names)}

    def timed_calls(calls):
        start, tokens, answered = time.perf_counter(), {}, {}
        for rows, adapter, adapter_names in calls:
            out = generate(peft_model, tokenizer, [prompts[i] for i in rows], adapter_names, adapter)
            now = time.perf_counter() - start
            for row, new in zip(rows, out):
                tokens[row], answered[row] = new, now
        order = range(len(prompts))
        return [tokens[i] for i in order], [answered[i] for i in order]

    all_rows = list(range(len(prompts)))
    return {
        "mixed batch": lambda: timed_calls([(all_rows, None, names)]),
        "per adapter": lambda: timed_calls([(rows, name, None) for name, rows in groups.items()]),
        "one at a time": lambda: timed_calls([([i], names[i], None) for i in all_rows]),
        "shared adapter": lambda: timed_calls([(all_rows, names[0], None)]),
    }


def bench(model, tokenizer, traffic: str, num_adapters: int, repeats: int) -> list[dict]:
    peft_model = build(model, num_adapters)
    count = num_adapters if traffic == "one each" else MIXED_REQUESTS
    prompts = PROMPTS[:count]
    names = [f"task{i % num_adapters}" for i in range(count)]
    fns = ways(peft_model, tokenizer, prompts, names)
    if traffic == "one each" and num_adapters > 1:
        del fns["per adapter"]  # one request per adapter: the same calls as one at a time
    elif traffic == "one each":
        fns = {"mixed batch": fns["mixed batch"], "one at a time": fns["one at a time"]}
    calls = {"mixed batch": 1, "shared adapter": 1, "per adapter": num_adapters, "one at a time": count}
    timings = {way: [] for way in fns}
    outputs = {}
    fns["mixed batch"]()  # warm-up
    for round_ in range(repeats):
        for way, fn in fns.items():
            if round_ > 0 and calls[way] >= 8:  # a sum of 8 or more calls already averages: measured once
                continue
            tokens, answered = fn()
            timings[way].append((answered, max(answered)))
            outputs[way] = tokens
    alone = outputs["one at a time"]
    exact = all(torch.equal(a, b) for a, b in zip(outputs["mixed batch"], alone))
    rows = []
    for way, runs in timings.items():
        seconds = statistics.median(total for _, total in runs)
        latency = statistics.median(statistics.mean(answered) for answered, _ in runs)
        rows.append(
            dict(
                traffic=traffic,
                adapters=num_adapters,
                requests=count,
                way=way,
                seconds=round(seconds, 4),
                tokens_per_s=round(count * NEW_TOKENS / seconds, 1),
                mean_latency_s=round(latency, 4),
            )
        )
    by_way = {row["way"]: row["seconds"] for row in rows}
    separate = by_way.get("per adapter", by_way["one at a time"])
    for row in rows:
        if row["way"] == "mixed batch":
            shared = by_way.get("shared adapter")
            row["overhead_vs_shared"] = round(row["seconds"] / shared - 1, 4) if shared else ""
            row["speedup_vs_per_adapter"] = round(separate / row["seconds"], 3)
            row["same_tokens_as_alone"] = exact
    print(json.dumps(rows), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1 repeat, N = 1, 4, 16")
    args = parser.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    from minipeft import load_base_model

    model, tokenizer = load_base_model()
    sizes = (1, 4, 16) if args.quick else (1, 2, 4, 8, 16)
    repeats = 1 if args.quick else args.repeats
    rows = []
    for traffic in ("one each", "mixed"):
        for num_adapters in sizes:
            rows += bench(model, tokenizer, traffic, num_adapters, repeats)
    RESULTS.mkdir(exist_ok=True)
    fields = list(dict.fromkeys(key for row in rows for key in row))
    with open(RESULTS / "mixed_batch.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    memory = build(model, 3).prefix_memory()
    import transformers

    import minipeft

    info = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads "
        f"{torch.get_num_threads()}",
        "versions": f"python {platform.python_version()}, torch {torch.__version__}, transformers "
        f"{transformers.__version__}, minipeft {minipeft.__version__}",
        "model": "SmolLM2-135M-Instruct (embedded, float32)",
        "setup": f"{NUM_VIRTUAL}-token prefixes, greedy, exactly {NEW_TOKENS} new tokens, left-padded prompts",
        "repeats": repeats,
        "prefix_bytes_per_adapter": memory.adapters["task0"][1],
        "prefix_bytes_per_row": memory.per_row,
        "bytes_per_virtual_token": memory.slot_bytes,
        "prefix_memory": str(memory),
    }
    (RESULTS / "mixed_batch.json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
