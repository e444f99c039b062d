#!/usr/bin/env python3
"""Group the failed cases of a PEFT-suite run by root cause and rank the causes by number of cases.

    python3 scripts/peft_suite/categorize.py _build/peft-suite/results-minipeft-prompt.json [--top 30]

A cause is the exception type plus the first line of its message, with the parts that vary from case to case
without changing the cause replaced: the config class under test (PrefixTuningConfig, PromptTuningConfig,
PromptEncoderConfig -> <Config>), model classes (-> <Model>), numbers (-> N), temporary paths, object addresses;
the shim's two exception types (``MissingInMinipeft``, ``MissingAttributeInMinipeft``) count as one. Cases that
failed to collect (a collection error of their file) are one cause per file.

Two rankings: by the exception raised, and by root cause, where a case that used a name minipeft lacks (the shim
records such uses per test) counts under that name whatever it finally raised. Writes ``failures-<tag>.md`` and
``.json`` next to the results file and prints the root-cause ranking.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

CONFIGS = r"\b(PrefixTuningConfig|PromptTuningConfig|PromptEncoderConfig)\b"
MODEL = r"\b[A-Z][A-Za-z0-9]*(ForCausalLM|LMHeadModel|ForConditionalGeneration|ForSequenceClassification|Model)\b"


def cause_of(row: dict) -> tuple[str, str]:
    etype = (row.get("exc_type") or "").rsplit(".", 1)[-1]
    message = (row.get("message") or "").strip().splitlines()
    message = message[0] if message else ""
    if etype in ("MissingAttributeInMinipeft", "MissingInMinipeft"):
        etype = "MissingInMinipeft"
        message = message.replace("; used through the result of calling it", "")
    if row["outcome"] == "not_collected":
        etype = "CollectionError"
    key = message
    if etype != "MissingInMinipeft":  # there the name is the cause
        key = re.sub(CONFIGS, "<Config>", key)
    key = re.sub(MODEL, "<Model>", key)
    key = re.sub(r"0x[0-9a-f]+", "0x…", key)
    key = re.sub(r"(/tmp|/var/tmp)/[^\s'\"]+", "<tmp>", key)
    key = re.sub(r"(?<![A-Za-z_])\d+(\.\d+)?(e-?\d+)?", "N", key)
    key = re.sub(r"\s+", " ", key)[:160]
    return etype, key


def root_of(row: dict) -> tuple[str, str]:
    """The cause, except that a case which used a name minipeft lacks (recorded by the shim during the test), or
    is parametrised with one (e.g. PromptEncoderConfig), is put under that name, whatever exception it finally
    raised (e.g. a TypeError from minipeft receiving a placeholder)."""
    used = (row.get("missing_used") or []) + (row.get("missing_params") or [])
    if used:
        module, _, name = used[0].rpartition(".")
        return "MissingInMinipeft", f"cannot import name '{name}' from '{module}' (minipeft has no such name)"
    return cause_of(row)


def rank(failed: list[dict], key) -> list[dict]:
    causes: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in failed:
        causes[key(row)].append(row)
    ranked = sorted(causes.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    out = []
    for n, ((etype, cause), rows) in enumerate(ranked, 1):
        out.append(
            {
                "rank": n,
                "cases": len(rows),
                "exc_type": etype,
                "cause": cause,
                "example_message": rows[0].get("message", ""),
                "raised_otherwise": sum(1 for r in rows if cause_of(r) != (etype, cause)),
                "per_config": dict(Counter("+".join(r.get("configs", [])) for r in rows)),
                "per_file": dict(
                    Counter(r["file"].split("/")[-1].removeprefix("test_").removesuffix(".py") for r in rows)
                ),
                "tests": dict(Counter(r["nodeid"].split("::")[-1].split("[")[0] for r in rows).most_common()),
                "nodeids": [r["nodeid"] for r in rows],
            }
        )
    return out


def table(out: list[dict]) -> list[str]:
    md = [
        "| # | cases | exception: cause | raised otherwise | configs | files | tests (most cases first) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in out:
        configs = ", ".join(f"{k.replace('Config', '')} {v}" for k, v in sorted(row["per_config"].items()))
        files = ", ".join(f"{k} {v}" for k, v in sorted(row["per_file"].items()))
        tests = ", ".join(f"{k} {v}" for k, v in list(row["tests"].items())[:4])
        cause = f"{row['exc_type']}: {row['cause']}".replace("|", "\\|")
        other = row["raised_otherwise"] or ""
        md.append(f"| {row['rank']} | {row['cases']} | `{cause}` | {other} | {configs} | {files} | {tests} |")
    return md


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path)
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args(argv)
    data = json.loads(args.results.read_text())
    tag = data.get("tag", f"minipeft-{data.get('group', 'prompt')}")
    failed = [r for r in data["results"] if r["outcome"] not in ("passed", "skipped")]
    by_root = rank(failed, root_of)
    by_exception = rank(failed, cause_of)
    c = Counter(r["outcome"] for r in data["results"])
    header = (
        f"{c['passed']} passed, {len(failed)} failed, {c['skipped']} skipped "
        f"({c['failed']} failed + {c['error']} errors + {c['not_collected']} not collected) "
        f"of {len(data['results'])} selected cases; {len(by_root)} root causes, {len(by_exception)} exceptions"
    )
    md = [f"# minipeft on PEFT's cases ({tag}): failures by cause", "", header, ""]
    md += ["## By root cause", ""]
    md += ["A case that used a name minipeft lacks counts under that name, whatever it finally raised", ""]
    md += table(by_root) + ["", "## By the exception raised", ""] + table(by_exception)
    stem = args.results.parent / ("failures-" + tag.removeprefix("minipeft-"))
    stem.with_suffix(".md").write_text("\n".join(md) + "\n")
    stem.with_suffix(".json").write_text(
        json.dumps({"summary": header, "by_root_cause": by_root, "by_exception": by_exception}, indent=1)
    )
    print(header)
    print("by root cause:")
    for row in by_root[: args.top]:
        other = f"  [{row['raised_otherwise']} raised otherwise]" if row["raised_otherwise"] else ""
        print(f"{row['rank']:>3} {row['cases']:>4}  {row['exc_type']}: {row['cause']}{other}")
    if len(by_root) > args.top:
        rest = sum(r["cases"] for r in by_root[args.top :])
        print(f"      ... {len(by_root) - args.top} more causes, {rest} cases (see {stem.with_suffix('.md')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
