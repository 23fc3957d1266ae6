"""Several `infercept validate` folders (or validation.csv files, e.g. from `resim.py --csv`) side by side:
each one's verdict (PASS, UNRESOLVED or FAIL), strictly (every held error beyond 10 % a miss), and its worst rows, to
see whether repeated invocations on one machine reach the same verdict. The verdict is recomputed from the rows
(``experiments.verdict``) without InferCept's decision floor (its pause counts by kind are in report.md).

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

from experiments.fidelity import TARGET  # noqa: E402
from experiments.verdict import held_errors, unresolved, verdict, verdict_word  # noqa: E402


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


def strict_misses(rows: list[dict[str, Any]]) -> list[str]:
    """The held errors beyond the target, resolvable or not (the rule before ``experiments.spread``)."""
    return [f"{r['policy']} {r['metric']} {100 * err:+.1f} %" for r, _, err in held_errors(rows)
            if not abs(err) <= TARGET]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="+", type=Path, help="validate folders, or validation.csv files (resim --csv)")
    args = ap.parse_args()
    csvs = [p / "validation.csv" if p.is_dir() else p for p in args.paths]
    for path in csvs:
        if not path.is_file():
            sys.exit(f"verdicts: {path} does not exist (give a validate folder or a validation.csv)")
    print("| rows | verdict | strictly (10 % on every held row) | worst calibrated row | worst uncalibrated row held "
          "to it | profiles' const_s (ms) |")
    print("|---|---|---|---|---|---|")
    for path in csvs:
        rows = read_rows(path)
        report = path.parent / "report.md"
        consts = re.findall(r"const ([\d.]+) ms", report.read_text()) if report.is_file() else []
        word, strict = verdict_word(verdict(rows), unresolved(rows)), strict_misses(rows)
        print(f"| {path} | {word} | {'PASS' if not strict else 'FAIL: ' + '; '.join(strict)}"
              f" | {worst(rows, 'rel_error_calibrated')} | {worst(rows, 'rel_error')} | {' / '.join(consts)} |")


if __name__ == "__main__":
    main()
