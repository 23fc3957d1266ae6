"""Knee benchmark from the command line: a sweep of policies x rates x seeds with knee refinement.

A thin caller of experiments/sweep.py (the shipped figures use the sweep files experiments/sweeps/*.toml;
this script builds the same kind of sweep from its arguments, e.g. for the paper's trace in `make
bench-paper-trace`). knee = the rate where a latency curve (mean over seeds) first crosses the target,
interpolated, on four metrics (analysis/knees.py); every crossing interval is bisected --refine times.
Usage:
  python benchmarks/knee.py [--model gptj-6b --gpu a100 --tp 1] [--workload mixed] [--batching v0]
                            [--target-ms 100] [--rates 1,1.5,...] [--seeds 3] [--duration-s 1800] [--refine 2]
                            [--out docs/results/knee-...]
Writes into --out (default docs/results/knee-<gpu>-<model>-tp<tp>-<batching>-<window>s): the sweep's
runs/, runs.parquet, runs_by_kind.parquet and knees.csv, plus summary.csv, summary_by_kind.csv and
latency_vs_rate.png; prints the knee table.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from core.config import build_config
from core.policy import PAPER_POLICIES
from experiments.compare import compare

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results"
DEFAULT_RATES = "1,1.25,1.5,1.75,2,2.25,2.5,3,3.25,3.5,3.75,4,4.5,5"


def default_name(gpu: str, model: str, tp: int, batching: str, duration_s: float,
                 workload: str = "mixed") -> str:
    """The default output folder's name."""
    wl = "" if workload == "mixed" else f"-{Path(workload).stem}"
    return f"knee-{gpu}-{model}-tp{tp}-{batching}{wl}-{duration_s:g}s"


def main(argv: Sequence[str] | None = None) -> Path:
    """Run the sweep; return the output folder (knees.csv in it)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="gptj-6b")
    ap.add_argument("--gpu", default="a100")
    ap.add_argument("--tp", type=int, default=1)
    ap.add_argument("--workload", default="mixed")
    ap.add_argument("--batching", default="v0")
    ap.add_argument("--target-ms", type=float, default=100.0)
    ap.add_argument("--rates", default=DEFAULT_RATES)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--duration-s", type=float, default=1800.0)
    ap.add_argument("--policies", default=",".join(PAPER_POLICIES))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--refine", type=int, default=2,
                    help="bisections of each interval where a curve crosses the target (default 2)")
    ap.add_argument("--out", default="", help="output folder (default docs/results/knee-<setup>)")
    args = ap.parse_args(argv)
    setup = default_name(args.gpu, args.model, args.tp, args.batching, args.duration_s, args.workload)
    out = Path(args.out) if args.out else RESULTS / setup
    base = build_config({"model": args.model, "gpu": args.gpu, "tp": args.tp, "workload": args.workload,
                         "batching": args.batching, "duration_s": args.duration_s}, args.set,
                        policy_options=False)
    rates = [float(r) for r in args.rates.split(",")]
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    compare(base, policies, rates, args.seeds, out, args.jobs, args.target_ms, max(args.refine, 0))
    print(f"wrote {out / 'knees.csv'}")
    return out


if __name__ == "__main__":
    main()
