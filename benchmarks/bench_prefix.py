"""What a prefix costs, measured side by side: minipeft vs PEFT, prefix vs no prefix.

On the embedded SmolLM2-135M-Instruct, in one run, with fixed seeds, a warm-up and the median of
several repeats (configurations interleaved round-robin, so that drifts of a shared machine hit
them alike):

1. a training step (forward + backward + Adam step), batch 8 x 64 tokens, 30 virtual tokens, for
   minipeft and PEFT, with and without the reparameterisation MLP: time, and peak memory (resident
   set size above the idle model, each configuration in its own process); and, alone, the only code
   that differs between the two, the prefix path (encoder -> cache, forward and backward);
2. generation of 32 new tokens (greedy) for a batch of 8 prompts: the bare model, minipeft with a
   30-token prefix, PEFT with the same prefix;
3. forward latency (batch 8 x 64 tokens, no gradient) as the prefix grows from 1 to 200 virtual tokens.

Results: ``benchmarks/results/*.csv``, ``*.png`` and ``machine.txt``. Ratios are what to read; the
absolute times depend on the machine.

Usage::

    python benchmarks/bench_prefix.py --repeats 11   # about 8 minutes on 2 CPU cores
    python benchmarks/bench_prefix.py --quick    # fewer repeats, for a smoke test
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
BATCH, SEQ_LEN, NUM_VIRTUAL = 8, 64, 30


def load():
    from minipeft import load_base_model

    return load_base_model()


def wrap(library: str, model, prefix_projection: bool, num_virtual_tokens: int = NUM_VIRTUAL):
    """A prefix-tuned copy of ``model``; the same prefix weights for both libraries (seed 0)."""
    torch.manual_seed(0)
    if library == "minipeft":
        from minipeft import PrefixTuningConfig, get_peft_model

        config = PrefixTuningConfig(
            task_type="CAUSAL_LM", num_virtual_tokens=num_virtual_tokens, prefix_projection=prefix_projection
        )
        wrapped = get_peft_model(copy.deepcopy(model), config)
    else:
        import peft

        config = peft.PrefixTuningConfig(
            task_type="CAUSAL_LM", num_virtual_tokens=num_virtual_tokens, prefix_projection=prefix_projection
        )
        wrapped = peft.get_peft_model(copy.deepcopy(model), config)
    with torch.no_grad():
        for param in wrapped.prompt_encoder.parameters():
            param.mul_(0.05)
    return wrapped


def training_batch(vocab_size: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(10, vocab_size, (BATCH, SEQ_LEN), generator=generator)
    labels = input_ids.clone()
    labels[:, : SEQ_LEN // 2] = -100  # loss on the second half, as for prompt + answer
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": labels}


def make_train_step(model, batch):
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    model.train()

    def step():
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def round_robin(fns: dict[str, object], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(timed(fn))
    return times


def rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory_child(library: str, prefix_projection: bool) -> None:
    """Run in a fresh process: peak RSS of three training steps above the idle wrapped model."""
    torch.manual_seed(0)
    model, _ = load()
    wrapped = wrap(library, model, prefix_projection)
    del model
    batch = training_batch(wrapped.config.vocab_size)
    step = make_train_step(wrapped, batch)
    baseline = rss_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    for _ in range(3):
        step()
    print(json.dumps({"peak_above_idle_mib": (rss_kib("VmHWM") - baseline) / 1024}))


def measure_memory(library: str, prefix_projection: bool) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", library, str(int(prefix_projection))],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_above_idle_mib"]


def write_csv(name: str, rows: list[dict]) -> None:
    path = RESULTS / f"{name}.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {path.relative_to(RESULTS.parent.parent)}")


def bench_training(model, repeats: int) -> list[dict]:
    batch = training_batch(model.config.vocab_size)
    fns = {}
    for projection in (False, True):
        for library in ("minipeft", "peft"):
            fns[(library, projection)] = make_train_step(wrap(library, model, projection), batch)
    times = round_robin({f"{lib}|{proj}": fn for (lib, proj), fn in fns.items()}, repeats)
    rows = []
    for projection in (False, True):
        medians = {lib: statistics.median(times[f"{lib}|{projection}"]) for lib in ("minipeft", "peft")}
        memory = {lib: measure_memory(lib, projection) for lib in ("minipeft", "peft")}
        rows.append(
            {
                "variant": "Prefix Tuning (MLP)" if projection else "P-Tuning v2 (table)",
                "minipeft_s": round(medians["minipeft"], 4),
                "peft_s": round(medians["peft"], 4),
                "time_ratio": round(medians["minipeft"] / medians["peft"], 3),
                "minipeft_peak_mib": round(memory["minipeft"], 1),
                "peft_peak_mib": round(memory["peft"], 1),
                "memory_ratio": round(memory["minipeft"] / memory["peft"], 3),
            }
        )
        print(rows[-1])
    return rows


def bench_prefix_path(model, repeats: int) -> list[dict]:
    """The only code that differs between the libraries: prefix encoder -> cache, forward and backward."""

    def runner(wrapped):
        wrapped.train()

        def run():
            cache = wrapped.get_prompt(BATCH)
            total = sum(layer.keys.sum() + layer.values.sum() for layer in cache.layers)
            total.backward()
            wrapped.zero_grad(set_to_none=True)

        return run

    rows = []
    for projection in (False, True):
        fns = {lib: runner(wrap(lib, model, projection)) for lib in ("minipeft", "peft")}
        times = round_robin(fns, repeats, warmup=3)
        medians = {lib: statistics.median(t) for lib, t in times.items()}
        rows.append(
            {
                "variant": "Prefix Tuning (MLP)" if projection else "P-Tuning v2 (table)",
                "minipeft_ms": round(1000 * medians["minipeft"], 3),
                "peft_ms": round(1000 * medians["peft"], 3),
                "time_ratio": round(medians["minipeft"] / medians["peft"], 3),
            }
        )
        print(rows[-1])
    return rows


def generation_batch(tokenizer) -> dict[str, torch.Tensor]:
    questions = [
        "What is the capital of France?",
        "Name three fruits.",
        "Why is the sky blue?",
        "Write a haiku about autumn.",
        "What does a compiler do?",
        "Give me a tip for sleeping better.",
        "How many legs does a spider have?",
        "Explain prefix tuning in one sentence.",
    ]
    texts = [
        tokenizer.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True, tokenize=False)
        for q in questions
    ]
    return tokenizer(texts, return_tensors="pt", padding=True)


def bench_generation(model, tokenizer, repeats: int) -> list[dict]:
    batch = generation_batch(tokenizer)
    kwargs = dict(max_new_tokens=32, min_new_tokens=32, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    # the base model is a copy too: copied weights live in fresh memory, unlike the loaded (memory-mapped) ones
    models = {
        "base model": copy.deepcopy(model),
        "minipeft": wrap("minipeft", model, False),
        "peft": wrap("peft", model, False),
    }
    for m in models.values():
        m.eval()

    def runner(m):
        def run():
            with torch.no_grad():
                m.generate(**batch, **kwargs)

        return run

    times = round_robin({name: runner(m) for name, m in models.items()}, repeats)
    base = statistics.median(times["base model"])
    rows = []
    for name in models:
        median = statistics.median(times[name])
        rows.append(
            {
                "model": name if name == "base model" else f"{name}, 30-token prefix",
                "seconds": round(median, 4),
                "tokens_per_s": round(BATCH * 32 / median, 1),
                "vs_base": round(median / base, 3),
                "vs_peft": round(median / statistics.median(times["peft"]), 3),
            }
        )
        print(rows[-1])
    return rows


def bench_forward_latency(model, repeats: int) -> list[dict]:
    batch = training_batch(model.config.vocab_size)
    batch = {k: v for k, v in batch.items() if k != "labels"}
    lengths = [1, 5, 10, 30, 50, 100, 200]

    def runner(m):
        def run():
            with torch.no_grad():
                m(**batch)

        return run

    fns = {"base|0": runner(copy.deepcopy(model).eval())}  # a copy, like the wrapped models (see bench_generation)
    for n in lengths:
        for library in ("minipeft", "peft"):
            fns[f"{library}|{n}"] = runner(wrap(library, model, False, num_virtual_tokens=n).eval())
    times = round_robin(fns, repeats)
    base = statistics.median(times["base|0"])
    rows = [{"num_virtual_tokens": 0, "library": "base model", "seconds": round(base, 4), "vs_base": 1.0}]
    for n in lengths:
        for library in ("minipeft", "peft"):
            median = statistics.median(times[f"{library}|{n}"])
            rows.append(
                {
                    "num_virtual_tokens": n,
                    "library": library,
                    "seconds": round(median, 4),
                    "vs_base": round(median / base, 3),
                }
            )
    for row in rows:
        print(row)
    return rows


def plot(training: list[dict], generation: list[dict], latency: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    ax = axes[0]
    xs = range(len(training))
    ax.bar([x - 0.2 for x in xs], [r["minipeft_s"] for r in training], 0.4, label="minipeft")
    ax.bar([x + 0.2 for x in xs], [r["peft_s"] for r in training], 0.4, label="PEFT")
    ax.set_xticks(list(xs), [r["variant"] for r in training], fontsize=8)
    ax.set_ylabel("seconds per step")
    ax.set_title(f"Training step, batch {BATCH} x {SEQ_LEN}")
    ax.legend()
    ax = axes[1]
    ax.bar([r["model"].replace(", ", "\n") for r in generation], [r["seconds"] for r in generation], color="#55a868")
    ax.set_ylabel("seconds")
    ax.set_title(f"Generating 32 tokens, batch {BATCH}")
    ax.tick_params(axis="x", labelsize=8)
    ax = axes[2]
    for library, marker in (("minipeft", "o"), ("peft", "s")):
        rows = [r for r in latency if r["library"] == library]
        ax.plot([r["num_virtual_tokens"] for r in rows], [r["seconds"] for r in rows], marker=marker, label=library)
    ax.axhline(latency[0]["seconds"], color="gray", linestyle="--", label="no prefix")
    ax.set_xlabel("num_virtual_tokens")
    ax.set_ylabel("seconds per forward")
    ax.set_title(f"Forward latency, batch {BATCH} x {SEQ_LEN}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "benchmarks.png", dpi=110)
    print("wrote benchmarks/results/benchmarks.png")


def machine_description() -> str:
    import peft
    import transformers

    import minipeft

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    return "\n".join(
        [
            f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
            f"cpu: {cpu}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}",
            f"python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}, "
            f"peft {peft.__version__}, minipeft {minipeft.__version__}",
            f"model: SmolLM2-135M-Instruct (embedded, float32); batch {BATCH} x {SEQ_LEN}; {NUM_VIRTUAL} virtual tokens",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="2 repeats")
    parser.add_argument("--memory-child", nargs=2, metavar=("LIBRARY", "PROJECTION"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child[0], bool(int(args.memory_child[1])))
        return
    repeats = 2 if args.quick else args.repeats
    RESULTS.mkdir(exist_ok=True)
    description = machine_description()
    print(description)
    (RESULTS / "machine.txt").write_text(description + f"\nrepeats: {repeats} (median reported)\n")
    model, tokenizer = load()
    training = bench_training(model, repeats)
    write_csv("train_step", training)
    write_csv("prefix_path", bench_prefix_path(model, 10 * repeats))
    generation = bench_generation(model, tokenizer, repeats)
    write_csv("generation", generation)
    latency = bench_forward_latency(model, repeats)
    write_csv("forward_latency", latency)
    plot(training, generation, latency)


if __name__ == "__main__":
    main()
