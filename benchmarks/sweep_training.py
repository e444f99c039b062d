"""P-Tuning v2 vs Prefix Tuning on the complaints task, measured: learning rates, seeds, prefix lengths.

Li & Liang (2021, section 4.3 and footnote 3) report that optimising the prefix directly is unstable and
sensitive to the learning rate and initialisation, and reparameterise it with an MLP; a common rule of thumb
(not a figure from either paper) is that the MLP prefix wants a learning rate about 100 times lower than a
plain table. Liu et al. (2022, section 3.3) find the reparameterisation's benefit depends on the task. This
script checks that on the embedded SmolLM2 with the book's data set, in one run:

1. both variants over a learning-rate grid (five rates each: 1e-3 to 1e-1 for the plain table, 1e-4 to
   1e-2 through the MLP), 3 seeds each, same step budget: validation loss and validation accuracy
   (greedy generation of the label); a variant's best rate has the lowest validation loss, mean of the seeds;
2. P-Tuning v2 at prefix lengths 1, 5, 10, 20, 50 (Li & Liang figure 4), 3 seeds each;
3. a table of methods at the same budget, on the test split: P-Tuning v2, Prefix Tuning, input-only
   prompt tuning (Lester et al.), P-Tuning v1 (Liu et al. 2021, an MLP-encoded input prompt),
   fine-tuning the top 2 layers (Li & Liang's FT-TOP2), and zero-shot. Each method's learning rate
   is the one with the lowest validation loss: from part 1 for the prefixes, from a grid of four
   rates for the others (seed 0, method_rates.csv), widened by one step at a time while the
   best rate is at an edge of what was tried (`--reuse-rates` keeps the runs already measured).

The step budget: 80 steps of 8 examples (640 examples, 4/3 of an epoch), chapter 7's budget. The committed
results took 64 training runs and 116 minutes of training on a 2-core AMD EPYC (the CSVs' `seconds`: a median
of 100 s per run, 48 to 54 s for FT-TOP2; a few runs were slowed by other work on the machine), split into
sittings with `--resume`. The earlier sweep at half the budget (`--steps 40 --out benchmarks/results/steps40`,
with four rates per variant, no 3e-3; its rows predate the `steps` and `cpu` columns) is kept next to it:
chapter 8 shows what doubling the steps changed.

Both prefix variants start from a prefix of the same scale (standard deviation 0.02, like the
model's own embeddings), so that the comparison is about training, not initialisation.

Results: benchmarks/results/{training_sweep,length_sweep,method_rates,methods}.csv.
Usage: python benchmarks/sweep_training.py [--steps 80] [--parts rates,lengths,methods] [--out DIR] [--resume]
(two hours and more on 2 cores with the evaluations; without `rates`, the best learning rates come from the
training_sweep.csv under `--out`)
Each CSV is rewritten after every run, so an interrupted sweep keeps what it measured; `--resume` skips
the runs already in the CSVs under `--out` (a sweep longer than one sitting, e.g. `--steps 80`, split
into parts). Every row records the CPU it ran on: float32 results differ in the last bits between CPUs.
"""

from __future__ import annotations

import argparse
import copy
import csv
import os
import statistics
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from minipeft import (  # noqa: E402
    PrefixTuningConfig,
    PromptEncoderConfig,
    PromptTuningConfig,
    accuracy,
    evaluate_loss,
    get_peft_model,
    load_base_model,
    load_complaints,
    predict_labels,
    predict_labels_by_likelihood,
    tokenize_prompts,
    train,
)

RESULTS = Path(__file__).resolve().parent / "results"
INIT_STD = 0.02


def scale_output(encoder: torch.nn.Module, last: torch.nn.Linear, num_virtual_tokens: int) -> None:
    """Rescale a reparameterising MLP's ``last`` layer so that its first output has std INIT_STD."""
    scale = INIT_STD / encoder(torch.arange(num_virtual_tokens).unsqueeze(0)).std()
    last.weight.mul_(scale)
    last.bias.mul_(scale)


def prefix_model(model, num_virtual_tokens: int, prefix_projection: bool, seed: int):
    torch.manual_seed(seed)
    config = PrefixTuningConfig(
        task_type="CAUSAL_LM", num_virtual_tokens=num_virtual_tokens, prefix_projection=prefix_projection
    )
    peft_model = get_peft_model(model, config)
    encoder = peft_model.prompt_encoder["default"]
    with torch.no_grad():
        if prefix_projection:
            scale_output(encoder, encoder.transform[2], num_virtual_tokens)
        else:
            torch.nn.init.normal_(encoder.embedding.weight, std=INIT_STD)
    return peft_model


def soft_prompt_model(model):
    """Input-only prompt tuning (Lester et al. 2021), 20 virtual tokens; (model, trainable, saved)."""
    torch.manual_seed(0)
    peft_model = get_peft_model(model, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=20))
    with torch.no_grad():
        torch.nn.init.normal_(peft_model.prompt_encoder["default"].embedding.weight, std=INIT_STD)
    return peft_model, peft_model.get_nb_trainable_parameters()[0], peft_model.prompt_table().numel()


def p_tuning_model(model):
    """P-Tuning v1 (Liu et al. 2021): 20 input tokens from an MLP encoder, PEFT's default; (model, trainable, saved)."""
    torch.manual_seed(0)
    peft_model = get_peft_model(model, PromptEncoderConfig(task_type="CAUSAL_LM", num_virtual_tokens=20))
    encoder = peft_model.prompt_encoder["default"]
    with torch.no_grad():
        scale_output(encoder, encoder.mlp_head[-1], 20)
    return peft_model, peft_model.get_nb_trainable_parameters()[0], peft_model.prompt_table().numel()


def top2_model(model):
    """A copy of ``model`` with only its last two transformer layers and final norm trainable (Li & Liang's
    FT-TOP2); (model, trainable, saved): everything trained is saved."""
    top2 = copy.deepcopy(model)
    for param in top2.parameters():
        param.requires_grad_(False)
    for module in (*top2.model.layers[-2:], top2.model.norm):
        for param in module.parameters():
            param.requires_grad_(True)
    trainable = sum(p.numel() for p in top2.parameters() if p.requires_grad)
    return top2, trainable, trainable


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo ("unknown" where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return "unknown"


def run(model, tokenizer, peft_model, data, steps, lr, seed, evaluate_on="validation"):
    """Train on ``data["train"]`` and measure on ``data[evaluate_on]`` (``data``: ``load_complaints()``)."""
    tokenized = tokenize_prompts(data, tokenizer)
    history = train(peft_model, tokenizer, tokenized["train"], steps=steps, learning_rate=lr, seed=seed, progress=False)
    predictions = predict_labels(peft_model, tokenizer, data[evaluate_on], batch_size=32)
    return {
        "train_loss": round(statistics.mean(history.loss[-10:]), 4),
        f"{evaluate_on}_loss": round(evaluate_loss(peft_model, tokenizer, tokenized[evaluate_on], batch_size=32), 4),
        f"{evaluate_on}_accuracy": round(accuracy(predictions, data[evaluate_on]), 4),
        "seconds": round(history.seconds, 1),
        "steps": steps,
        "cpu": cpu_name(),
    }


OUT = RESULTS  # where the CSVs are written (--out)


def next_rate(lr: float, up: bool) -> float:
    """The neighbour of ``lr`` on the 1, 3, 10, 30 ... grid, above or below it."""
    first_digit = f"{lr:.0e}"[0]  # "1" or "3"
    factor = (3 if first_digit == "1" else 10 / 3) if up else (1 / 3 if first_digit == "3" else 3 / 10)
    return float(f"{lr * factor:.0e}")


INTEGERS = ("seed", "steps", "num_virtual_tokens", "trainable", "saved")


def read_csv(name: str) -> list[dict]:
    """The rows of ``OUT/name.csv`` (none if it does not exist): the names (variant, method, cpu) and
    empty cells as strings, counts (INTEGERS) as ints, every other number as a float. A row written
    before the ``steps`` column existed has ``steps`` 40, the budget of that time."""
    if not (OUT / f"{name}.csv").exists():
        return []
    text = {"variant", "method", "cpu"}
    with (OUT / f"{name}.csv").open() as f:
        rows = [r if "steps" in r else {**r, "steps": "40"} for r in csv.DictReader(f)]  # steps stays in its column
    return [
        {k: v if k in text or v == "" else (int(v) if k in INTEGERS else float(v)) for k, v in r.items()} for r in rows
    ]


def write_csv(name: str, rows: list[dict]) -> None:
    columns = list(dict.fromkeys(key for row in rows for key in row))  # every row's, in order of appearance
    with (OUT / f"{name}.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {OUT / f'{name}.csv'}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=80, help="training steps of 8 examples per run")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--parts", default="rates,lengths,methods", help="which parts to run, comma-separated")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the CSVs (a smoke run: not results/)")
    parser.add_argument(
        "--reuse-rates",
        action="store_true",
        help="take the other methods' validation runs already in method_rates.csv instead of rerunning them",
    )
    parser.add_argument(
        "--resume", action="store_true", help="keep the runs already in the CSVs under --out and skip them"
    )
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    global OUT
    OUT = args.out
    OUT.mkdir(parents=True, exist_ok=True)
    if args.resume:
        for name in ("training_sweep", "length_sweep", "method_rates", "methods"):
            budgets = {r["steps"] for r in read_csv(name) if r["steps"] != ""}
            if budgets - {args.steps}:
                parser.error(
                    f"{OUT / name}.csv holds runs of {sorted(budgets)} steps; --resume with --steps {args.steps} "
                    "would mix budgets. Give the same --steps, or another --out."
                )
    model, tokenizer = load_base_model()
    data = load_complaints()
    # together the grids reach 30x below and above the rule of thumb's pair (3e-2 plain, 3e-4 with the MLP)
    rates = {"P-Tuning v2": [1e-3, 3e-3, 1e-2, 3e-2, 1e-1], "Prefix Tuning": [1e-4, 3e-4, 1e-3, 3e-3, 1e-2]}

    # Without the rates part, the best rates come from the rates already measured under --out.
    sweep = read_csv("training_sweep") if args.resume or "rates" not in parts else []
    done = {(r["variant"], r["learning_rate"], r["seed"]) for r in sweep}
    for variant, grid in rates.items() if "rates" in parts else ():
        for lr in grid:
            for seed in range(args.seeds):
                if (variant, lr, seed) in done:
                    continue
                peft_model = prefix_model(model, 20, variant == "Prefix Tuning", seed)
                row = {
                    "variant": variant,
                    "learning_rate": lr,
                    "seed": seed,
                    **run(model, tokenizer, peft_model, data, args.steps, lr, seed),
                }
                print(row, flush=True)
                sweep.append(row)
                write_csv("training_sweep", sweep)

    def best_rate(variant: str) -> float:
        rows = [r for r in sweep if r["variant"] == variant]
        missing = [lr for lr in rates[variant] if not any(r["learning_rate"] == lr for r in rows)]
        if missing:
            raise SystemExit(
                f"{OUT / 'training_sweep.csv'} has no {variant} runs at learning rate(s) {missing}: run the "
                "rates part (--parts rates) into this --out first."
            )
        return min(
            rates[variant],
            key=lambda lr: statistics.mean(r["validation_loss"] for r in rows if r["learning_rate"] == lr),
        )

    best = {variant: best_rate(variant) for variant in rates}
    lengths = read_csv("length_sweep") if args.resume else []
    done = {(r["num_virtual_tokens"], r["learning_rate"], r["seed"]) for r in lengths}
    for n in (1, 5, 10, 20, 50) if "lengths" in parts else ():
        for seed in range(args.seeds):
            if (n, best["P-Tuning v2"], seed) in done:
                continue
            peft_model = prefix_model(model, n, False, seed)
            row = {
                "num_virtual_tokens": n,
                "learning_rate": best["P-Tuning v2"],
                "seed": seed,
                **run(model, tokenizer, peft_model, data, args.steps, best["P-Tuning v2"], seed),
            }
            print(row, flush=True)
            lengths.append(row)
            write_csv("length_sweep", lengths)

    if "methods" not in parts:
        return
    methods = []
    earlier = {(r["method"], r["learning_rate"]): r for r in read_csv("methods")} if args.resume else {}

    def add_method(row: dict) -> None:
        methods.append(row)
        print(row, flush=True)
        write_csv("methods", methods)

    for variant in rates:
        if (f"{variant} (20 tokens)", best[variant]) in earlier:
            add_method(earlier[f"{variant} (20 tokens)", best[variant]])
            continue
        peft_model = prefix_model(model, 20, variant == "Prefix Tuning", 0)
        trainable = peft_model.get_nb_trainable_parameters()[0]
        saved = peft_model.prompt_table().numel()
        result = run(model, tokenizer, peft_model, data, args.steps, best[variant], 0, evaluate_on="test")
        add_method(
            {
                "method": f"{variant} (20 tokens)",
                "learning_rate": best[variant],
                "trainable": trainable,
                "saved": saved,
                **result,
            }
        )
    # The other methods: each at the rate that did best on the validation split (seed 0), from its own
    # grid, widened while the best rate is at an edge; then measured once on the test split like the prefixes.
    others = {
        "Prompt tuning (20 tokens, input only)": (soft_prompt_model, [3e-3, 1e-2, 3e-2, 1e-1]),
        "P-Tuning (v1, 20 tokens, MLP encoder)": (p_tuning_model, [3e-4, 1e-3, 3e-3, 1e-2]),
        "Fine-tuning the top 2 layers (FT-TOP2)": (top2_model, [3e-4, 1e-3, 3e-3, 1e-2]),
    }
    method_rates = []
    measured = {}  # (method, rate) -> row; --reuse-rates starts from the rows of an earlier run
    if args.reuse_rates or args.resume:
        for row in read_csv("method_rates"):
            measured[(row["method"], row["learning_rate"])] = row

    def validation_row(method: str, make, lr: float) -> dict:
        if (method, lr) not in measured:
            candidate, _, _ = make(model)
            measured[method, lr] = {
                "method": method,
                "learning_rate": lr,
                **run(model, tokenizer, candidate, data, args.steps, lr, 0),
            }
            del candidate
            print(measured[method, lr], flush=True)
        method_rates.append(measured[method, lr])
        write_csv(
            "method_rates", sorted(method_rates, key=lambda r: (list(others).index(r["method"]), r["learning_rate"]))
        )
        return measured[method, lr]

    for method, (make, grid) in others.items():
        rows = [validation_row(method, make, lr) for lr in grid]
        for _ in range(3):  # the best rate at an edge of the grid: try one step beyond it
            best_row = min(rows, key=lambda r: r["validation_loss"])
            rates_tried = sorted(r["learning_rate"] for r in rows)
            if best_row["learning_rate"] == rates_tried[-1]:
                rows.append(validation_row(method, make, next_rate(rates_tried[-1], up=True)))
            elif best_row["learning_rate"] == rates_tried[0]:
                rows.append(validation_row(method, make, next_rate(rates_tried[0], up=False)))
            else:
                break
        lr = min(rows, key=lambda r: r["validation_loss"])["learning_rate"]
        if (method, lr) in earlier:
            add_method(earlier[method, lr])
            continue
        candidate, trainable, saved = make(model)
        result = run(model, tokenizer, candidate, data, args.steps, lr, 0, evaluate_on="test")
        del candidate
        add_method({"method": method, "learning_rate": lr, "trainable": trainable, "saved": saved, **result})
    zero = predict_labels_by_likelihood(model, tokenizer, data["test"], batch_size=32)
    methods.append(
        {
            "method": "Zero-shot (label likelihood)",
            "learning_rate": 0,
            "trainable": 0,
            "saved": 0,
            "train_loss": "",
            "test_loss": "",
            "test_accuracy": round(accuracy(zero, data["test"]), 4),
            "seconds": 0.0,
            "steps": "",  # no training
            "cpu": cpu_name(),
        }
    )
    write_csv("methods", methods)


if __name__ == "__main__":
    main()
