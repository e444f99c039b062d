"""Which causal-LM architectures a prefix works on: every model type transformers lists in
``MODEL_FOR_CAUSAL_LM_MAPPING_NAMES``, built tiny from its config (offline, random weights), checked
bare, with minipeft's prefix and with PEFT's.

The checks (each model in float32, eval mode):

(a) ``forward``: a left-padded batch of two rows runs and gives finite logits.
(b) ``oracle``: a prefix made of a 4-token prompt's own keys and values gives the logits of
    prompt + continuation (to 1e-4). Bare: the model continuing from its own cache. Not applicable
    (``n/a``) when the model's cache also holds recurrent state (linear attention, SSM, conv),
    which a key/value prefix cannot carry.
(c) ``padded``: greedy generation of a left-padded row equals the row generated alone: the same
    tokens, from logits equal to 1e-4.

Usage::

    python scripts/architecture_sweep.py            # all types, minipeft and bare; compare with the table
    python scripts/architecture_sweep.py --peft --write   # also PEFT's column; rewrite the committed table
    python scripts/architecture_sweep.py --check   # CI (make test-architectures): fail on any change

The committed table is ``book/architectures.csv`` (shown on ``book/which_models.md``); ``--check``
fails when a type's outcome moves from it, when minipeft fails where the bare model passes (outside
the named shortfalls) or when its logits differ from PEFT's where both pass.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import json
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM
from transformers.cache_utils import LinearAttentionCacheLayerMixin
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

import minipeft
from minipeft.config import _first_attr  # a config field, None when absent or set per layer (Gemma 4)

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "book" / "architectures.csv"
PAGE = ROOT / "book" / "which_models.md"  # its block between the SUMMARY markers is written from the table
SUMMARY_BEGIN, SUMMARY_END = (
    "<!-- summary: written by scripts/architecture_sweep.py --write -->",
    "<!-- end of summary -->",
)
SWEPT_WITH = "5.23.0"  # the transformers version the committed table was made with (requirements.txt)
TOLERANCE = 1e-4
NUM_VIRTUAL_TOKENS = 4
MAX_PARAMETERS = 20_000_000  # a tiny config that is still bigger than this is not built
COLUMNS = ["model_type", "parameters", "bare", "minipeft", "peft", "parity", "layers"]

# transformers' size fields and the tiny values they get (only those the config has)
SIZES = {
    "hidden_size": 64, "num_hidden_layers": 4, "num_layers": 4, "n_layer": 4, "n_layers": 4,
    "num_attention_heads": 4, "n_head": 4, "num_heads": 4, "num_key_value_heads": 2,
    "intermediate_size": 128, "ffn_hidden_size": 128, "n_inner": 128, "ffn_dim": 128,
    "d_model": 64, "n_embd": 64, "dim": 64, "vocab_size": 1000, "head_dim": 16,
    "max_position_embeddings": 512, "moe_intermediate_size": 32, "shared_expert_intermediate_size": 32,
    "num_experts": 4, "n_routed_experts": 4, "num_local_experts": 4, "num_experts_per_tok": 2,
    "n_shared_experts": 1, "q_lora_rank": 32, "kv_lora_rank": 16, "qk_rope_head_dim": 8,
    "qk_nope_head_dim": 8, "v_head_dim": 16, "first_k_dense_replace": 1, "global_head_dim": 32,
    "num_global_key_value_heads": 1, "hidden_size_per_layer_input": 16, "vocab_size_per_layer_input": 1000,
    "encoder_hash_byte_group_vocab": 1000, "linear_num_key_heads": 2, "linear_num_value_heads": 4,
    "linear_key_head_dim": 16, "linear_value_head_dim": 16, "mamba_d_state": 16, "mamba_n_heads": 4,
    "mamba_head_dim": 16, "ssm_state_size": 16, "time_step_rank": 8, "n_group": 1, "topk_group": 1,
    "num_kv_shared_layers": 1, "sliding_window": 64, "attention_chunk_size": 64, "rotary_dim": 8,
    "decoder_layers": 4, "encoder_layers": 4, "decoder_attention_heads": 4, "encoder_attention_heads": 4,
    "decoder_ffn_dim": 128, "encoder_ffn_dim": 128,
}  # fmt: skip
LAYER_COUNTS = {"num_hidden_layers", "num_layers", "n_layer", "n_layers", "decoder_layers", "encoder_layers"}
PATTERN_FIELDS = {"layer_types", "per_layer_config", "mlp_layer_types", "layers_block_type", "hybrid_override_pattern"}
SPECIAL_IDS = {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2, "decoder_start_token_id": 1}


def _shrink(fields: dict[str, Any], sizes: dict[str, int]) -> dict[str, Any]:
    """A config dict with every size field (nested configs too) set to its tiny value."""
    out = {}
    for key, value in fields.items():
        if isinstance(value, dict) and "model_type" in value:
            out[key] = _shrink(value, sizes)
        elif key == "intermediate_size" and isinstance(value, list):
            out[key] = SIZES[key]
        elif key in sizes and isinstance(value, int) and not isinstance(value, bool) and value > 0:
            out[key] = min(value, sizes[key])
        elif key in PATTERN_FIELDS:
            continue  # derived again from the new layer count
        elif key in SPECIAL_IDS and isinstance(value, int) and value >= SIZES["vocab_size"]:
            out[key] = SPECIAL_IDS[key]
        else:
            out[key] = value
    return out


def tiny_configs(model_type: str) -> Any:
    """Candidate tiny configs, tried in turn: the top-level sizes passed to the config class (which
    derives its own layer patterns), then every nested config shrunk, then the nested ones kept;
    each with 4 layers, then 8 (a hybrid's first attention layer may come late)."""
    base = AutoConfig.for_model(model_type)
    for layers in (4, 8):
        sizes = {key: (layers if key in LAYER_COUNTS else value) for key, value in SIZES.items()}
        top = {
            key: min(value, _first_attr(base, key))
            for key, value in sizes.items()
            if isinstance(_first_attr(base, key), int) and not isinstance(_first_attr(base, key), bool)
        }
        if "qk_rope_head_dim" in top and "head_dim" in top:  # latent attention: head_dim is the rotary part
            top["head_dim"] = top["qk_rope_head_dim"]
            top["num_key_value_heads"] = top.get("num_attention_heads", 4)
        yield lambda top=top: AutoConfig.for_model(model_type, **top)
        nested = _shrink(base.to_dict(), sizes)
        nested.pop("model_type", None)
        yield lambda nested=nested: AutoConfig.for_model(model_type, **nested)
        flat = {k: v for k, v in nested.items() if not (isinstance(v, dict) and "model_type" in v)}
        yield lambda flat=flat: AutoConfig.for_model(model_type, **flat)
    # a hybrid whose default pattern puts no attention layer among the first few: alternate explicitly
    hybrid = {**top, "num_hidden_layers": 4}
    if "linear_attention" in (getattr(base, "layer_types", None) or []):
        hybrid["layer_types"] = ["linear_attention", "full_attention"] * 2
        if getattr(base, "mlp_layer_types", None):
            hybrid["mlp_layer_types"] = ["dense"] + ["sparse"] * 3
        yield lambda: AutoConfig.for_model(model_type, **hybrid)
    if hasattr(base, "attn_layer_indices"):
        yield lambda: AutoConfig.for_model(model_type, **hybrid, attn_layer_indices=[1, 3])


def build(model_type: str) -> tuple[Any, str]:
    """``(tiny model, "")`` or ``(None, why it could not be built)``: the first candidate config
    whose model runs a forward pass bare, else the first that builds (its failure is then recorded)."""
    errors, built = [], None
    try:
        candidates = list(tiny_configs(model_type))
    except Exception as error:  # noqa: BLE001 (the default config itself fails: recorded)
        return None, _short(error)
    for make_config in candidates:
        try:
            config = make_config()
            if hasattr(config, "is_decoder") and not getattr(config, "is_encoder_decoder", False):
                config.is_decoder = True  # BERT-like models are causal only as decoders
            with torch.device("meta"):
                size = sum(p.numel() for p in AutoModelForCausalLM.from_config(config).parameters())
            if size > MAX_PARAMETERS:
                raise RuntimeError(f"the tiny config still has {size / 1e6:.0f}M parameters")
            torch.manual_seed(0)
            model = AutoModelForCausalLM.from_config(config).eval()
        except Exception as error:  # noqa: BLE001 (recorded as the reason)
            errors.append(_short(error))
            continue
        built = built or model
        try:
            with torch.no_grad():
                tensors = _inputs(model)
                model(input_ids=tensors["batch"], attention_mask=tensors["mask"])
            return model, ""
        except Exception:  # noqa: BLE001 (try the next candidate)
            continue
    return (built, "") if built is not None else (None, errors[0])


def _short(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:110]}"


class Timeout(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: int) -> Any:
    def stop(*_: Any) -> None:
        raise Timeout(f"over {seconds} s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _vocab(model: Any) -> int:
    return min(model.get_input_embeddings().num_embeddings, SIZES["vocab_size"])


def _inputs(model: Any) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    vocab = _vocab(model)
    long, short = (
        torch.randint(3, vocab, (1, 6), generator=generator),
        torch.randint(3, vocab, (1, 3), generator=generator),
    )
    batch = torch.cat([long, torch.cat([torch.zeros(1, 3, dtype=torch.long), short], dim=1)])
    mask = torch.cat([torch.ones(1, 6), torch.cat([torch.zeros(1, 3), torch.ones(1, 3)], dim=1)]).long()
    prompt = torch.randint(3, vocab, (1, NUM_VIRTUAL_TOKENS), generator=generator)
    continuation = torch.randint(3, vocab, (1, 5), generator=generator)
    return {"batch": batch, "mask": mask, "short": short, "prompt": prompt, "continuation": continuation}


def _greedy(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The 4 greedy tokens ``(batch, 4)`` and the logits they were chosen from ``(batch, 4, vocab)``."""
    out = model.generate(
        input_ids=input_ids,
        attention_mask=attention_mask,
        max_new_tokens=4,
        do_sample=False,
        pad_token_id=0,
        output_logits=True,
        return_dict_in_generate=True,
    )
    return out.sequences[:, -4:], torch.stack(out.logits, dim=1)


def _recurrent(cache: Any) -> bool:
    return any(isinstance(layer, LinearAttentionCacheLayerMixin) for layer in getattr(cache, "layers", []))


def _run(check: Any) -> str:
    try:
        return check()
    except Timeout:
        raise
    except Exception as error:  # noqa: BLE001 (the outcome of a check)
        return "FAIL " + _short(error)


@torch.no_grad()
def check(model: Any, which: str, tensors: dict[str, torch.Tensor]) -> tuple[dict[str, str], Any]:
    """``({"forward": ..., "oracle": ..., "padded": ...}, wrapped model)`` for ``which`` in bare,
    minipeft, peft; each outcome ``ok``, ``n/a`` or ``FAIL why``."""
    outcome: dict[str, str] = {}
    if which == "bare":
        wrapped: Any = model
    else:
        library = minipeft if which == "minipeft" else __import__("peft")
        config = library.PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=NUM_VIRTUAL_TOKENS)
        try:
            wrapped = library.get_peft_model(copy.deepcopy(model), config).eval()
        except Exception as error:  # noqa: BLE001
            failed = "FAIL " + _short(error)
            return {"forward": failed, "oracle": failed, "padded": failed}, None
    batch, mask = tensors["batch"], tensors["mask"]

    def forward() -> str:
        logits = wrapped(input_ids=batch, attention_mask=mask).logits
        return "ok" if logits.shape[:2] == batch.shape and torch.isfinite(logits).all() else "FAIL non-finite logits"

    def oracle() -> str:
        prompt, continuation = tensors["prompt"], tensors["continuation"]
        full = model(input_ids=torch.cat([prompt, continuation], dim=1)).logits[:, prompt.shape[1] :]
        cache = model(input_ids=prompt, use_cache=True).past_key_values
        if _recurrent(cache):
            return "n/a"
        if which == "bare":
            ours = model(input_ids=continuation, past_key_values=cache).logits
        else:
            table = minipeft.past_key_values_to_prefix(cache)[0]  # (P, 2*L*token_dim)
            weight = wrapped.prompt_encoder["default"].embedding.weight
            if weight.shape != table.shape:
                return f"FAIL table {tuple(weight.shape)}, the text's keys and values {tuple(table.shape)}"
            weight.copy_(table)
            ours = wrapped(input_ids=continuation).logits
        difference = (ours - full).abs().max().item()
        return "ok" if difference < TOLERANCE else f"FAIL differs by {difference:.1e}"

    def padded() -> str:
        tokens, logits = _greedy(wrapped, batch, mask)
        tokens_alone, logits_alone = _greedy(wrapped, tensors["short"], torch.ones_like(tensors["short"]))
        if not torch.equal(tokens[1:], tokens_alone):
            return f"FAIL {tokens[1:].tolist()} != {tokens_alone.tolist()}"
        difference = (logits[1:] - logits_alone).abs().max().item()
        return "ok" if difference < TOLERANCE else f"FAIL same tokens, logits differ by {difference:.1e}"

    for name, step in (("forward", forward), ("oracle", oracle), ("padded", padded)):
        outcome[name] = _run(step)
    return outcome, wrapped


def summary(outcome: dict[str, str]) -> str:
    """One cell of the table: ``pass``, ``pass (oracle n/a)`` or the first failing check."""
    for name in ("forward", "oracle", "padded"):
        if outcome[name].startswith("FAIL"):
            return f"{name}: {outcome[name][5:]}"
    return "pass (oracle n/a)" if outcome["oracle"] == "n/a" else "pass"


@torch.no_grad()
def parity(ours: Any, theirs: Any, tensors: dict[str, torch.Tensor]) -> str:
    """The largest logit difference between minipeft and PEFT on one random table, or why none."""
    if ours is None or theirs is None:
        return ""
    a, b = ours.prompt_encoder["default"].embedding.weight, theirs.prompt_encoder["default"].embedding.weight
    if a.shape != b.shape:
        return f"tables differ: {tuple(a.shape)} vs {tuple(b.shape)}"
    b.copy_(torch.randn(a.shape, generator=torch.Generator().manual_seed(1)))
    a.copy_(b)
    try:
        x = ours(input_ids=tensors["batch"], attention_mask=tensors["mask"]).logits
        y = theirs(input_ids=tensors["batch"], attention_mask=tensors["mask"]).logits
    except Exception as error:  # noqa: BLE001
        return "FAIL " + _short(error)
    return f"{(x - y).abs().max().item():.1e}"


def _layers(wrapped: Any) -> str:
    """The prefix's layers as minipeft found them, e.g. ``4 kv (2x16)`` or ``1 kv (2x16), 3 none``."""
    layout = getattr(wrapped, "__dict__", {}).get("_cache_layout") if wrapped is not None else None
    if layout is None:
        return "from config"
    shapes = layout.layers
    counts: dict[str, int] = {}
    for shape in shapes:
        label = "none" if shape is None else f"{shape[0]}x{shape[1]}" + (f"/{shape[2]}" if shape[2] != shape[1] else "")
        counts[label] = counts.get(label, 0) + 1
    return ", ".join(f"{n} {label}" for label, n in counts.items())


def sweep(model_types: list[str], with_peft: bool, seconds: int = 120) -> list[dict[str, str]]:
    rows = []
    for model_type in model_types:
        start = time.perf_counter()
        row = {column: "" for column in COLUMNS}
        row["model_type"] = model_type
        try:
            with time_limit(seconds):
                model, why = build(model_type)
                if model is None:
                    row.update(bare=f"not built: {why}", minipeft="not built", peft="not built")
                else:
                    tensors = _inputs(model)
                    row["parameters"] = f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M"
                    row["bare"] = summary(check(model, "bare", tensors)[0])
                    ours, wrapped = check(model, "minipeft", tensors)
                    row["minipeft"], row["layers"] = summary(ours), _layers(wrapped)
                    if with_peft:
                        theirs, peft_wrapped = check(model, "peft", tensors)
                        row["peft"] = summary(theirs)
                        row["parity"] = parity(wrapped, peft_wrapped, tensors)
        except Timeout as error:
            row["minipeft"] = row["minipeft"] or f"timeout: {error}"
        rows.append(row)
        print(f"{model_type:28s} {time.perf_counter() - start:5.1f}s  bare={row['bare'][:40]!r:44} "
              f"minipeft={row['minipeft'][:60]!r} peft={row['peft'][:40]!r}", flush=True)  # fmt: skip
    return rows


def read_table(path: Path = TABLE) -> dict[str, dict[str, str]]:
    with path.open() as file:
        return {row["model_type"]: row for row in csv.DictReader(file)}


def category(cell: str) -> str:
    """What a cell says, without the error text that may vary: pass, pass (oracle n/a), not built,
    or the failing check's name."""
    if cell.startswith("pass") or cell.startswith("not built"):
        return cell.split(":")[0]
    return cell.split(":")[0] + " fails"


# Where minipeft does not pass although the bare model does, and why (checked by --check)
KNOWN_SHORTFALLS = {
    "sparse attention": "uses sparse attention whose layers",  # DeepSeek-V3.2-style indexers: refused by name
    "positions by cache slot": "takes no position_ids",  # RoFormer, MPT: a left-padded batch is refused by name
    "minimax": "IndexError",  # MiniMax's own cache class cannot start with keys in some layers only
    "inkling": "same tokens, logits differ",  # layers with a linear state and attention in one: see the book page
}


def verify(rows: list[dict[str, str]], committed: dict[str, dict[str, str]]) -> list[str]:
    """What is wrong with this run: outcomes that moved from the committed table, a model type the
    bare model passes that minipeft does not (outside :data:`KNOWN_SHORTFALLS`), a logit difference
    from PEFT where both pass."""
    problems = []
    if set(committed) != {row["model_type"] for row in rows}:
        problems.append(
            f"model types differ from the table: {sorted(set(committed) ^ {r['model_type'] for r in rows})}"
        )
    for row in rows:
        model_type, before = row["model_type"], committed.get(row["model_type"])
        for column in ("bare", "minipeft", "peft"):
            if before is not None and category(row[column]) != category(before[column]):
                problems.append(f"{model_type} {column}: {before[column]!r} in the table, now {row[column]!r}")
        if category(row["bare"]).startswith("pass") and not row["minipeft"].startswith("pass"):
            if not any(reason in row["minipeft"] for reason in KNOWN_SHORTFALLS.values()):
                problems.append(f"{model_type}: the bare model passes, minipeft does not: {row['minipeft']}")
        both = row["minipeft"].startswith("pass") and row["peft"].startswith("pass")
        if both and row["parity"] != "0.0e+00":
            problems.append(f"{model_type}: minipeft's logits differ from PEFT's by {row['parity']}")
    return problems


def summary_markdown(rows: list[dict[str, str]]) -> str:
    """The counts per outcome and the types that do not pass, as the book page shows them."""
    kinds = ("pass", "pass (oracle n/a)", "forward fails", "oracle fails", "padded fails", "not built")
    lines = ["| | " + " | ".join(kinds) + " |", "|---|" + "---:|" * len(kinds)]
    for column, label in (("bare", "the bare model"), ("minipeft", "minipeft's prefix"), ("peft", "PEFT's prefix")):
        counts = [sum(category(row[column]) == kind for row in rows) for kind in kinds]
        lines.append(f"| {label} | " + " | ".join(str(n) for n in counts) + " |")
    bare_ok = [row for row in rows if category(row["bare"]).startswith("pass")]
    groups = {
        "The bare model passes, minipeft does not": [r for r in bare_ok if not r["minipeft"].startswith("pass")],
        "minipeft passes, PEFT does not": [
            r for r in bare_ok if r["minipeft"].startswith("pass") and not r["peft"].startswith("pass")
        ],
        "The tiny model fails on its own (no prefix)": [
            r for r in rows if not category(r["bare"]).startswith(("pass", "not built"))
        ],
    }
    for title, members in groups.items():
        lines += ["", f"**{title}** ({len(members)}):", ""]
        column = "bare" if "own" in title else ("peft" if "PEFT" in title else "minipeft")
        lines += [f"- `{r['model_type']}`: {r[column]}" for r in members] or ["- none"]
    built = [r["model_type"] for r in rows if r["bare"].startswith("not built")]
    lines += [
        "",
        f"**Not built offline from a tiny config** ({len(built)}): " + ", ".join(f"`{t}`" for t in built) + ".",
    ]
    return "\n".join(lines)


def write_summary(rows: list[dict[str, str]]) -> str:
    """``PAGE`` with its summary block replaced by :func:`summary_markdown` of ``rows``."""
    page = PAGE.read_text()
    head, _, rest = page.partition(SUMMARY_BEGIN)
    _, _, tail = rest.partition(SUMMARY_END)
    return f"{head}{SUMMARY_BEGIN}\n{summary_markdown(rows)}\n{SUMMARY_END}{tail}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_types", nargs="*", help="model types to check (default: all)")
    parser.add_argument("--peft", action="store_true", help="also check PEFT and the logit parity")
    parser.add_argument("--write", action="store_true", help=f"write {TABLE.relative_to(ROOT)}")
    parser.add_argument("--check", action="store_true", help="all types with PEFT; fail on any change from the table")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    transformers.logging.set_verbosity_error()
    torch.set_num_threads(1)
    if args.check and transformers.__version__ != SWEPT_WITH:
        print(f"The table was made with transformers {SWEPT_WITH}; this is {transformers.__version__}.")
        return 2
    model_types = args.model_types or sorted(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)
    start = time.perf_counter()
    rows = sweep(model_types, with_peft=args.peft or args.check)
    counts: dict[str, dict[str, int]] = {}
    for column in ("bare", "minipeft", "peft"):
        for row in rows:
            key = category(row[column]) if row[column] else "-"
            counts.setdefault(column, {})[key] = counts.get(column, {}).get(key, 0) + 1
    print(json.dumps(counts, indent=1))
    print(f"{len(rows)} model types in {time.perf_counter() - start:.0f} s")
    if args.write:
        with TABLE.open("w", newline="") as file:
            writer = csv.DictWriter(file, COLUMNS, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        PAGE.write_text(write_summary(rows))
    if args.check:
        problems = verify(rows, read_table())
        if PAGE.read_text() != write_summary(list(read_table().values())):
            problems.append(f"{PAGE.relative_to(ROOT)}'s summary does not match {TABLE.relative_to(ROOT)}: run --write")
        print("\n".join(problems) or f"All {len(rows)} model types as in {TABLE.relative_to(ROOT)}.")
        return 1 if problems else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
