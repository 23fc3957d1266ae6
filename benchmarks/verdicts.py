"""Several `infercept validate` folders side by side: each one's verdict and its worst verdict rows, to see
whether repeated invocations on one machine reach the same verdict.

    python benchmarks/verdicts.py docs/results/validate-default docs/results/validate-default-2 ...
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from experiments.fidelity import MIN_DECISIONS, STEP_ERROR_GATE, VERDICT_METRICS  # noqa: E402


def worst(rows: list[dict[str, str]], column: str) -> str:
    """The verdict row with the largest |``column``| among those the verdict holds to it (decision counts
    under MIN_DECISIONS in both skipped; ``rel_error`` only where the step-time error is under the gate)."""
    gated = {r["policy"] for r in rows if r["metric"] == "step_time_error_median"
             and float(r["rel_error"]) >= STEP_ERROR_GATE} if column == "rel_error" else set()
    best, label = -1.0, "-"
    for r in rows:
        if r["metric"] not in VERDICT_METRICS or r["policy"] in gated:
            continue
        if r["metric"].endswith("_pauses") and max(float(r["real"]), float(r["sim"])) < MIN_DECISIONS:
            continue
        err = abs(float(r[column]))
        if err > best:
            best, label = err, f"{r['policy']} {r['metric']} {100 * float(r[column]):+.1f} %"
    return label


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
        rows = list(csv.DictReader((folder / "validation.csv").open()))
        text = (folder / "report.md").read_text()
        found = re.search(r"\*\*verdict: (\w+)", text)
        consts = re.findall(r"const ([\d.]+) ms", text)
        print(f"| {folder} | {found.group(1) if found else '?'} | {worst(rows, 'rel_error_calibrated')} | "
              f"{worst(rows, 'rel_error')} | {' / '.join(consts)} |")


if __name__ == "__main__":
    main()
