"""Knee benchmark: the request rate each policy sustains at a normalized-latency target.

knee = the rate where the mean (over seeds) latency curve first crosses the target, linearly interpolated
between the two grid rates around the crossing. Usage:
  python benchmarks/knee.py [--model gptj-6b --gpu a100 --tp 1] [--batching v0] [--target-ms 100]
                            [--rates 1,1.25,...] [--seeds 3] [--duration-s 1800] [--out benchmarks/results/knee-...]
Writes summary.csv, the latency plot and knees.json into --out, and prints the knee ratios.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
from pathlib import Path

from core.config import build_config
from experiments.cli import POLICY_ORDER
from experiments.compare import compare

ROOT = Path(__file__).resolve().parent.parent


def knee(points: list[tuple[float, float]], target_ms: float) -> float | None:
    """First crossing of ``target_ms`` by the (rate, latency) curve, interpolated; None if it never crosses."""
    pts = sorted(points)
    if pts and pts[0][1] > target_ms:
        return pts[0][0]
    for (r0, l0), (r1, l1) in itertools.pairwise(pts):
        if l1 > target_ms >= l0:
            return r0 + (r1 - r0) * (target_ms - l0) / (l1 - l0)
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="gptj-6b")
    ap.add_argument("--gpu", default="a100")
    ap.add_argument("--tp", type=int, default=1)
    ap.add_argument("--workload", default="mixed")
    ap.add_argument("--batching", default="v0")
    ap.add_argument("--target-ms", type=float, default=100.0)
    ap.add_argument("--rates", default="1,1.5,2,2.25,2.5,2.75,3,3.5,4,4.5,5")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--duration-s", type=float, default=1800.0)
    ap.add_argument("--policies", default=",".join(POLICY_ORDER))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"knee-{args.gpu}-{args.model}-tp{args.tp}-{args.batching}")
    base = build_config({"model": args.model, "gpu": args.gpu, "tp": args.tp, "workload": args.workload,
                         "batching": args.batching, "duration_s": args.duration_s}, args.set)
    rates = [float(r) for r in args.rates.split(",")]
    rows = compare(base, args.policies.split(","), rates, args.seeds, out, os.cpu_count() or 1, args.target_ms)
    knees = {p: knee([(r["rate"], r["norm_latency_ms"]) for r in rows if r["policy"] == p], args.target_ms)
             for p in args.policies.split(",")}
    ref = knees.get("discard")
    print(f"\nknee at {args.target_ms:g} ms/token ({args.seeds} seeds, {args.duration_s:g} s windows):")
    for p, k in knees.items():
        ratio = f"{k / ref:.2f}x discard" if k and ref else ""
        shown = f"> {max(rates):g}" if k is None else f"{k:.2f}"
        print(f"  {p:<17} {shown:>7} req/s  {ratio}")
    (out / "knees.json").write_text(json.dumps({"target_ms": args.target_ms, "seeds": args.seeds,
                                                "duration_s": args.duration_s, "rates": rates,
                                                "batching": args.batching, "knee_rps": knees}, indent=2) + "\n")


if __name__ == "__main__":
    main()
