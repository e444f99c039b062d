"""P-Tuning v2 vs Prefix Tuning on the complaints task, measured: learning rates, seeds, prefix lengths.

Li & Liang (2021, section 4.3 and footnote 3) report that optimising the prefix directly is unstable
and that the MLP reparameterisation trains well at a learning rate about 100 times lower; Liu et al.
(2022, section 3.3) find the reparameterisation's benefit depends on the task. This script checks
that on the embedded SmolLM2 with the book's data set, in one run:

1. both variants over a learning-rate grid, 3 seeds each, same step budget: validation loss and
   validation accuracy (greedy generation of the label);
2. P-Tuning v2 at prefix lengths 1, 5, 10, 20, 50 (Li & Liang figure 4), 3 seeds each;
3. a table of methods at the same budget, on the test split: P-Tuning v2, Prefix Tuning, input-only
   prompt tuning, fine-tuning the top 2 layers (Li & Liang's FT-TOP2, its learning rate chosen on
   the validation split like the others), and zero-shot.

The step budget: 40 steps of 8 examples (320 examples, 2/3 of an epoch), half of chapter 7's 80.

Both prefix variants start from a prefix of the same scale (standard deviation 0.02, like the
model's own embeddings), so that the comparison is about training, not initialisation.

Results: benchmarks/results/{training_sweep,length_sweep,methods}.csv and training_sweep.png.
Usage: python benchmarks/sweep_training.py [--parts rates,lengths,methods]   (about 40 minutes on 2 CPU cores;
without `rates`, the best learning rates come from the committed training_sweep.csv)
Each CSV is rewritten after every run, so an interrupted sweep keeps what it measured.
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


def prefix_model(model, num_virtual_tokens: int, prefix_projection: bool, seed: int):
    torch.manual_seed(seed)
    config = PrefixTuningConfig(
        task_type="CAUSAL_LM", num_virtual_tokens=num_virtual_tokens, prefix_projection=prefix_projection
    )
    peft_model = get_peft_model(model, config)
    encoder = peft_model.prompt_encoder["default"]
    with torch.no_grad():
        if prefix_projection:  # rescale the MLP's last layer so the initial prefix has std INIT_STD
            out = encoder(torch.arange(num_virtual_tokens).unsqueeze(0))
            scale = INIT_STD / out.std()
            encoder.transform[2].weight.mul_(scale)
            encoder.transform[2].bias.mul_(scale)
        else:
            torch.nn.init.normal_(encoder.embedding.weight, std=INIT_STD)
    return peft_model


def top2_model(model):
    """A copy of ``model`` with only its last two transformer layers and final norm trainable."""
    top2 = copy.deepcopy(model)
    for param in top2.parameters():
        param.requires_grad_(False)
    for module in (*top2.model.layers[-2:], top2.model.norm):
        for param in module.parameters():
            param.requires_grad_(True)
    return top2, sum(p.numel() for p in top2.parameters() if p.requires_grad)


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
    }


OUT = RESULTS  # where the CSVs are written (--out)


def write_csv(name: str, rows: list[dict]) -> None:
    with (OUT / f"{name}.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {OUT / f'{name}.csv'}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--parts", default="rates,lengths,methods", help="which parts to run, comma-separated")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the CSVs (a smoke run: not results/)")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    global OUT
    OUT = args.out
    OUT.mkdir(parents=True, exist_ok=True)
    model, tokenizer = load_base_model()
    data = load_complaints()
    rates = {"P-Tuning v2": [1e-3, 1e-2, 3e-2, 1e-1], "Prefix Tuning": [1e-4, 3e-4, 1e-3, 1e-2]}

    sweep = []
    if "rates" not in parts:
        with (RESULTS / "training_sweep.csv").open() as f:
            sweep = [
                {**r, "learning_rate": float(r["learning_rate"]), "validation_loss": float(r["validation_loss"])}
                for r in csv.DictReader(f)
            ]
    for variant, grid in rates.items() if "rates" in parts else ():
        for lr in grid:
            for seed in range(args.seeds):
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
        return min(
            rates[variant],
            key=lambda lr: statistics.mean(r["validation_loss"] for r in rows if r["learning_rate"] == lr),
        )

    best = {variant: best_rate(variant) for variant in rates}
    lengths = []
    for n in (1, 5, 10, 20, 50) if "lengths" in parts else ():
        for seed in range(args.seeds):
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
    for variant in rates:
        peft_model = prefix_model(model, 20, variant == "Prefix Tuning", 0)
        trainable = peft_model.get_nb_trainable_parameters()[0]
        saved = peft_model.prompt_table().numel()
        result = run(model, tokenizer, peft_model, data, args.steps, best[variant], 0, evaluate_on="test")
        methods.append(
            {
                "method": f"{variant} (20 tokens)",
                "learning_rate": best[variant],
                "trainable": trainable,
                "saved": saved,
                **result,
            }
        )
        print(methods[-1], flush=True)
    torch.manual_seed(0)
    prompt_model = get_peft_model(model, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=20))
    with torch.no_grad():
        torch.nn.init.normal_(prompt_model.prompt_encoder["default"].embedding.weight, std=INIT_STD)
    result = run(model, tokenizer, prompt_model, data, args.steps, 3e-2, 0, evaluate_on="test")
    methods.append(
        {
            "method": "Prompt tuning (20 tokens, input only)",
            "learning_rate": 3e-2,
            "trainable": 20 * 576,
            "saved": 20 * 576,
            **result,
        }
    )
    print(methods[-1], flush=True)
    # FT-TOP2: fine-tune the last two transformer layers and the final norm of a copy of the model;
    # its learning rate is chosen on the validation split (seed 0), like the prefixes' rates.
    top2_rates = [1e-4, 3e-4, 1e-3, 3e-3]
    top2_sweep = []
    for lr in top2_rates:
        top2, trainable = top2_model(model)
        row = {"learning_rate": lr, **run(model, tokenizer, top2, data, args.steps, lr, 0)}
        print("FT-TOP2", row, flush=True)
        top2_sweep.append(row)
    write_csv("top2_sweep", top2_sweep)
    top2_lr = min(top2_sweep, key=lambda r: r["validation_loss"])["learning_rate"]
    top2, trainable = top2_model(model)
    result = run(model, tokenizer, top2, data, args.steps, top2_lr, 0, evaluate_on="test")
    del top2
    methods.append(
        {
            "method": "Fine-tuning the top 2 layers (FT-TOP2)",
            "learning_rate": top2_lr,
            "trainable": trainable,
            "saved": trainable,
            **result,
        }
    )
    print(methods[-1], flush=True)
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
        }
    )
    write_csv("methods", methods)


if __name__ == "__main__":
    main()
