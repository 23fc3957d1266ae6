"""The per-policy figures the README's "why each lands where it does" paragraphs quote, from a sweep's tables.

Usage: python benchmarks/policy_facts.py docs/results/sweeps/recent_gptj6b_v0 [--policies continuum,saga]
       [--rates 1.5,2,2.5] [--kinds]

Prints, per policy and rate, the means over the sweep's seeds of the mean latency, GPU waste, recompute share,
recomputed / prefix-hit / swapped tokens and the pause decisions (kept, discarded, swapped); with ``--kinds``
also per augmentation type (from runs_by_kind.parquet). Knees are in the sweep's knees.csv.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq

COLUMNS = ("norm_latency_ms", "gpu_waste_pct", "recompute_share_pct", "recomputed_tokens", "prefix_hit_tokens",
           "swapped_tokens", "preserved_pauses", "discarded_pauses", "swapped_pauses")


def means(path: Path, policies: set[str] | None, rates: set[float] | None, by_kind: bool,
          ) -> dict[tuple, dict[str, float]]:
    """(policy, rate[, kind]) -> mean over seeds of each of COLUMNS."""
    rows = pq.read_table(path).to_pylist()
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        if (policies and r["policy"] not in policies) or (rates and r["rate_rps"] not in rates):
            continue
        groups[(r["policy"], r["rate_rps"], r["kind"]) if by_kind else (r["policy"], r["rate_rps"])].append(r)
    return {k: {c: statistics.fmean(float(r[c]) for r in v) for c in COLUMNS} | {"seeds": len(v)}
            for k, v in sorted(groups.items())}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sweep", type=Path, help="a sweep's output folder (runs.parquet, runs_by_kind.parquet)")
    ap.add_argument("--policies", default="", help="comma-separated policy names (default: all)")
    ap.add_argument("--rates", default="", help="comma-separated rates in req/s (default: all)")
    ap.add_argument("--kinds", action="store_true", help="also per augmentation type")
    args = ap.parse_args()
    runs = args.sweep / "runs.parquet"
    if not runs.is_file():
        print(f"policy_facts: error: {runs} not found (not a sweep's output folder?)", file=sys.stderr)
        return 2
    try:
        rates = {float(x) for x in args.rates.split(",") if x}
    except ValueError:
        print(f"policy_facts: error: --rates {args.rates!r}: expected numbers separated by commas", file=sys.stderr)
        return 2
    policies = {x for x in args.policies.split(",") if x}
    tables = [("", means(runs, policies, rates, False))]
    if args.kinds:
        tables.append(("by kind ", means(args.sweep / "runs_by_kind.parquet", policies, rates, True)))
    for title, table in tables:
        print(f"# {title}means over seeds: " + ", ".join(COLUMNS))
        for key, v in table.items():
            cells = [f"{v[c]:.4g}" for c in COLUMNS]
            print(" ".join(str(k) for k in key), f"(n={v['seeds']}):", " ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
