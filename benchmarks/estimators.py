"""Why the interception-time estimators differ: InferCept's decisions and latency per augmentation kind.

Runs InferCept with estimator = paper, elapsed and oracle at one rate (mixed workload, GPT-J-6B/A100-40GB,
v0 baselines irrelevant: InferCept batches by chunk-and-fill) and prints, per kind, the pauses it kept,
discarded and swapped, the tokens it recomputed and swapped, and the normalized latency, mean over seeds.
Usage: python benchmarks/estimators.py [--rate 3.25] [--seeds 3] [--duration-s 1800] [--out DIR]
Writes estimators.csv (estimator, kind, metric columns) into --out (default docs/results/estimators/).
"""

from __future__ import annotations

import argparse
import os
import statistics
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from core.config import build_config
from core.summary import summarize
from core.trace_io import atomic_write_text
from experiments.compare import to_csv
from sim.run import simulate

ROOT = Path(__file__).resolve().parent.parent
ESTIMATORS = ("paper", "elapsed", "oracle")
COLUMNS = ("preserved_pauses", "discarded_pauses", "swapped_pauses", "recomputed_tokens", "swapped_tokens",
           "norm_latency_ms", "norm_latency_p50_ms", "gpu_waste_pct", "recompute_share_pct")


def one(args: tuple[str, int, float, float]) -> tuple[str, dict[str, Any]]:
    """Summary of one InferCept run with estimator ``args[0]`` and seed ``args[1]``."""
    est, seed, rate, duration = args
    cfg = build_config({"policy": "infercept", "rate_rps": rate, "duration_s": duration, "seed": seed,
                        "policy_options": {"estimator": est}})
    return est, summarize(simulate(cfg))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=3.25)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--duration-s", type=float, default=1800.0)
    ap.add_argument("--out", default=str(ROOT / "docs" / "results" / "estimators"))
    args = ap.parse_args()
    jobs = [(e, s, args.rate, args.duration_s) for e in ESTIMATORS for s in range(args.seeds)]
    with ProcessPoolExecutor(os.cpu_count() or 1) as pool:
        results = list(pool.map(one, jobs))
    rows = []
    for est in ESTIMATORS:
        sums = [s for e, s in results if e == est]
        for kind in ["overall", *sorted(sums[0]["by_kind"])]:
            per = [s["overall"] if kind == "overall" else s["by_kind"][kind] for s in sums]
            rows.append({"estimator": est, "kind": kind,
                         **{c: statistics.fmean(p[c] for p in per) for c in COLUMNS}})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "estimators.csv", to_csv(rows))
    print(f"InferCept at {args.rate:g} req/s, {args.seeds} seeds, {args.duration_s:g} s windows (mean over seeds)")
    print(f"{'estimator':<9} {'kind':<8} {'kept':>7} {'disc':>7} {'swap':>7} {'recomp tok':>11} "
          f"{'swap tok':>10} {'lat ms/t':>9} {'p50':>6}")
    for r in rows:
        print(f"{r['estimator']:<9} {r['kind']:<8} {r['preserved_pauses']:>7.0f} {r['discarded_pauses']:>7.0f} "
              f"{r['swapped_pauses']:>7.0f} {r['recomputed_tokens']:>11.0f} {r['swapped_tokens']:>10.0f} "
              f"{r['norm_latency_ms']:>9.1f} {r['norm_latency_p50_ms']:>6.1f}")
    print(f"wrote {out / 'estimators.csv'}")


if __name__ == "__main__":
    main()
