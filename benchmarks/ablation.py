"""InferCept's techniques one at a time: the policy's knee rates with one option changed from its defaults.

Usage: python -m benchmarks.ablation [--seeds 3] [--duration-s 1800] [--rates ...] [--variants full,...]
                                     [--out docs/results/ablation]
Mixed workload, GPT-J-6B on A100-40GB, v0 batching (InferCept batches the same way in v0 and v1). Writes
ablation.csv (variant, changed, description, knee_<metric>_rps on the four metrics of knee.py, the ratio
to the full policy on the mean) and ablation_summary.csv (every variant's summary rows), and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.knee import (
    KNEE_METRICS,
    RESULTS,
    SHORT,
    format_knee,
    knee,
    knee_bound,
    refined_grid,
    rows_to_csv,
)
from core.config import build_config
from experiments.compare import to_csv, write_results

# name -> (the options changed from full InferCept, what that means); each variant changes exactly one thing.
VARIANTS: dict[str, tuple[list[str], str]] = {
    "full": ([], "defaults: paper estimator, step budget, chunk fill, pipelined swap, preserve"),
    "estimator-elapsed": (["policy_options.estimator=elapsed"],
                          "T_INT estimated as the time elapsed since the pause"),
    "estimator-oracle": (["policy_options.estimator=oracle"], "T_INT known exactly (oracle)"),
    "no-swap": (["policy_options.swap=false"], "no swap: preserve or discard only"),
    "swap-unpipelined": (["policy_options.pipelined=false"],
                         "the paper's swap: whole contexts chosen by Eq. 3's waste, copies stall the step"),
    "no-chunk-fill": (["policy_options.chunk_fill=false"],
                      "recomputations run whole (no chunked recomputation)"),
    "no-preserve": (["policy_options.preserve=false"], "never keeps a paused request's KV on the GPU"),
    "budget-saturated": (["policy_options.budget=saturated"],
                         "swap budget T_fwd(S) of a saturated step (the old behaviour), not the step's own"),
    "skip-short-pauses": (["policy_options.skip_short_pauses=true"],
                          "no link time for a pause expected back before its swap round trip completes"),
}
DEFAULT_RATES = "2,2.5,3,3.25,3.5,3.75,4,4.5,5"


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rates", default=DEFAULT_RATES)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--duration-s", type=float, default=1800.0)
    ap.add_argument("--target-ms", type=float, default=100.0)
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"subset of {','.join(VARIANTS)}")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--refine", type=int, default=2, help="bisections of each bracketing interval (knee.py)")
    ap.add_argument("--out", default=str(RESULTS / "ablation"))
    args = ap.parse_args(argv)
    rates = [float(r) for r in args.rates.split(",")]
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        ap.error(f"unknown variants {unknown}; expected names from {list(VARIANTS)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table, all_rows = [], []
    with tempfile.TemporaryDirectory(prefix="infercept-ablation-") as tmp:
        for name in names:
            sets, desc = VARIANTS[name]
            base = build_config({"policy": "infercept", "duration_s": args.duration_s}, sets)
            results = refined_grid(base, ["infercept"], rates, args.seeds, args.jobs, args.target_ms, args.refine)
            rows = write_results(results, base, args.seeds, Path(tmp) / name, args.target_ms)
            all_rows += [{"variant": name, **r} for r in rows]
            entry: dict[str, Any] = {"variant": name, "changed": " ".join(s.removeprefix("policy_options.")
                                                                          for s in sets) or "-",
                                     "description": desc}
            for m in KNEE_METRICS:
                pts = [(r["rate"], float(r[m])) for r in rows]
                entry[f"knee_{SHORT[m]}_rps"] = knee(pts, args.target_ms)
                entry[f"bound_{SHORT[m]}"] = knee_bound(pts, args.target_ms)
            table.append(entry)
    full = next((e["knee_mean_rps"] for e in table if e["variant"] == "full"), None)
    for e in table:
        k = e["knee_mean_rps"]
        e["vs_full_mean"] = k / full if k is not None and full else None
    columns = ["variant", "changed", *(f"knee_{SHORT[m]}_rps" for m in KNEE_METRICS), "vs_full_mean",
               *(f"bound_{SHORT[m]}" for m in KNEE_METRICS), "description"]
    (out / "ablation.csv").write_text(rows_to_csv(table, columns))
    (out / "ablation_summary.csv").write_text(to_csv(all_rows))
    meta = {"rates": rates, "seeds": args.seeds, "duration_s": args.duration_s, "target_ms": args.target_ms,
            "variants": names, "setting": "mixed, gptj-6b, a100, tp1, v0"}
    (out / "run.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"\nInferCept knee at {args.target_ms:g} ms/token, mixed workload, GPT-J-6B/A100-40GB, "
          f"{args.seeds} seeds, {args.duration_s:g} s windows (req/s):")
    metric_heads = "".join(f"{SHORT[m]:>10}" for m in KNEE_METRICS)
    print(f"{'variant':<19}{'changed':<32}{metric_heads}{'vs full':>9}")
    for e in table:
        cells = "".join(f"{format_knee(e[f'knee_{SHORT[m]}_rps'], e[f'bound_{SHORT[m]}'], max(rates)):>10}"
                        for m in KNEE_METRICS)
        ratio = "" if e["vs_full_mean"] is None else f"{e['vs_full_mean']:.2f}x"
        print(f"{e['variant']:<19}{e['changed']:<32}{cells}{ratio:>9}")
    print(f"wrote {out / 'ablation.csv'}, {out / 'ablation_summary.csv'}")
    return table


if __name__ == "__main__":
    main()
