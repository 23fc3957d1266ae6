"""InferCept's techniques one at a time: knee rates of the policy with each option changed.

Usage: python benchmarks/ablation.py [--seeds 3] [--duration-s 1800] [--rates ...]
Writes benchmarks/results/ablation/<variant>/ (as knee.py) and ablation.json, prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from benchmarks.knee import knee
from core.config import build_config
from experiments.compare import compare

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = {
    "full (elapsed estimator)": [],
    "oracle durations": ["policy_options.estimator=oracle"],
    "no swap": ["policy_options.swap=false"],
    "swap not pipelined": ["policy_options.pipelined=false"],
    "no chunked recompute (Eq. 1, v0 batching)": ["policy_options.chunk_fill=false"],
    "no preserve": ["policy_options.preserve=false"],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rates", default="2,2.5,3,3.25,3.5,3.75,4,4.5,5")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--duration-s", type=float, default=1800.0)
    ap.add_argument("--target-ms", type=float, default=100.0)
    args = ap.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    out = ROOT / "benchmarks" / "results" / "ablation"
    knees = {}
    for i, (name, sets) in enumerate(VARIANTS.items()):
        base = build_config({"policy": "infercept", "duration_s": args.duration_s}, sets)
        rows = compare(base, ["infercept"], rates, args.seeds, out / f"variant{i}", os.cpu_count() or 1,
                       args.target_ms)
        knees[name] = knee([(r["rate"], r["norm_latency_ms"]) for r in rows], args.target_ms)
    print(f"\nInferCept knee at {args.target_ms:g} ms/token, mixed workload, GPT-J-6B/A100-40GB:")
    for name, k in knees.items():
        shown = f"> {max(rates):g}" if k is None else f"{k:.2f}"
        print(f"  {name:<44} {shown:>7} req/s")
    (out / "ablation.json").write_text(json.dumps({"rates": rates, "seeds": args.seeds, "knee_rps": knees},
                                                  indent=2) + "\n")


if __name__ == "__main__":
    main()
