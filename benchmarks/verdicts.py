"""Several `infercept validate` folders side by side: each one's verdict and its worst verdict rows, to see
whether repeated invocations on one machine reach the same verdict.

    python benchmarks/verdicts.py docs/results/validate-default docs/results/validate-default-2 ...
"""

from __future__ import annotations

import argparse
import csv
import math
import re
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from experiments.fidelity import held_errors  # noqa: E402


def worst(rows: list[dict[str, Any]], column: str) -> str:
    """The row with the largest |``column``| among the errors the verdict holds (``fidelity.held_errors``;
    NaN first, as the verdict counts it a miss)."""
    errs = [(r, err) for r, name, err in held_errors(rows) if name == column]
    if not errs:
        return "-"
    r, err = max(errs, key=lambda x: math.inf if math.isnan(x[1]) else abs(x[1]))
    return f"{r['policy']} {r['metric']} {100 * err:+.1f} %"


def read_rows(path: Path) -> list[dict[str, Any]]:
    """validation.csv with its numbers as floats."""
    return [{k: v if k in ("policy", "metric") else float(v) for k, v in r.items()}
            for r in csv.DictReader(path.open())]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", type=Path)
    args = ap.parse_args()
    for folder in args.folders:
        if not (folder / "validation.csv").is_file() or not (folder / "report.md").is_file():
            sys.exit(f"verdicts: {folder} has no validation.csv and report.md (not a validate folder)")
    print("| folder | verdict | worst calibrated row | worst uncalibrated row held to it | profiles' const_s (ms) |")
    print("|---|---|---|---|---|")
    for folder in args.folders:
        rows = read_rows(folder / "validation.csv")
        text = (folder / "report.md").read_text()
        found = re.search(r"\*\*verdict: (\w+)", text)
        consts = re.findall(r"const ([\d.]+) ms", text)
        print(f"| {folder} | {found.group(1) if found else '?'} | {worst(rows, 'rel_error_calibrated')} | "
              f"{worst(rows, 'rel_error')} | {' / '.join(consts)} |")


if __name__ == "__main__":
    main()
