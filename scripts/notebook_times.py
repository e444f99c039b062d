"""Each chapter's run time under nbval, from pytest's JUnit report (a report, not a test).

    python scripts/notebook_times.py _build/notebooks.xml

`make test-notebooks` writes the report and prints this table, so that every CI log shows what
each chapter costs and whether the whole book still executes in under 15 minutes on 2 cores (the
times of a shared machine vary; the table says so rather than failing a build on them). A
chapter's time is the sum of its cells' (nbval runs one test per cell) plus its kernel's start.
"""

from __future__ import annotations

import argparse
import xml.etree.ElementTree as ET
from pathlib import Path

BUDGET_S = 15 * 60


def chapter_times(report: Path) -> dict[str, float]:
    """Seconds per notebook, in the order nbval ran them."""
    times: dict[str, float] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        # nbval's test ids: classname "book.07_training_a_prefix.ipynb", name "Cell 12"
        name = case.get("classname", "").removeprefix("book.")
        times[name] = times.get(name, 0.0) + float(case.get("time", 0))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("report", type=Path)
    times = chapter_times(parser.parse_args().report)
    for name, seconds in times.items():
        print(f"{name:45} {seconds:7.1f} s")
    total = sum(times.values())
    verdict = "within" if total <= BUDGET_S else "OVER"
    print(f"{'the whole book':45} {total:7.1f} s ({total / 60:.1f} min, {verdict} the {BUDGET_S // 60}-minute budget)")


if __name__ == "__main__":
    main()
