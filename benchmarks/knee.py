"""Knee benchmark: the request rate each policy sustains at a normalized-latency target, on four metrics.

knee = the rate where a latency curve (each point the mean over seeds) first crosses the target, linearly
interpolated between the two grid rates around the crossing. It is computed on four curves:
  norm_latency_ms            the paper's metric (mean over requests; an unfinished request counts to the
                             window end, so a few starving requests dominate it from the first rate where
                             they appear)
  norm_latency_p50_ms        median request
  norm_latency_p90_ms        90th percentile
  norm_latency_corrected_ms  mean, each unfinished request's latency corrected (see README, metrics glossary)
Each interval of the rate grid in which a curve crosses the target is bisected --refine times (default 2)
with runs at its midpoint: linear interpolation between two coarse points would put the knee of a curve that
explodes inside the interval too low, and that error is largest for the policies with the steepest curves.
Usage:
  python benchmarks/knee.py [--model gptj-6b --gpu a100 --tp 1] [--batching v0] [--target-ms 100]
                            [--rates 1,1.5,...] [--seeds 3] [--duration-s 1800] [--refine 2]
                            [--out docs/results/knee-...]
Writes into --out (default docs/results/knee-<gpu>-<model>-tp<tp>-<batching>-<window>s):
  knees.csv (setup, policy, metric, target_ms, knee_rps, infercept_ratio, bound, duration_s, seeds),
  summary.csv, summary_by_kind.csv, latency_vs_rate.png and run.json (the arguments); prints the knee table.
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.config import RunConfig, build_config
from core.policy import PAPER_POLICIES
from experiments.compare import aggregate, run_grid, write_results

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results"
DEFAULT_RATES = "1,1.25,1.5,1.75,2,2.25,2.5,3,3.25,3.5,3.75,4,4.5,5"
KNEE_METRICS = ("norm_latency_ms", "norm_latency_p50_ms", "norm_latency_p90_ms", "norm_latency_corrected_ms")
SHORT = {"norm_latency_ms": "mean", "norm_latency_p50_ms": "p50", "norm_latency_p90_ms": "p90",
         "norm_latency_corrected_ms": "corrected"}
KNEE_COLUMNS = ("setup", "policy", "metric", "target_ms", "knee_rps", "infercept_ratio", "bound",
                "duration_s", "seeds")
REFERENCE = "infercept"


def _clean(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    return sorted((r, lat) for r, lat in points if not math.isnan(lat))


def knee(points: Sequence[tuple[float, float]], target_ms: float) -> float | None:
    """First crossing of ``target_ms`` by the (rate, latency) curve, interpolated; None if it never crosses.

    If the curve is already above the target at its lowest rate, that rate is returned (an upper bound:
    see ``knee_bound``)."""
    pts = _clean(points)
    if pts and pts[0][1] > target_ms:
        return pts[0][0]
    for (r0, l0), (r1, l1) in itertools.pairwise(pts):
        if l1 > target_ms >= l0:
            return r0 + (r1 - r0) * (target_ms - l0) / (l1 - l0)
    return None


def knee_bound(points: Sequence[tuple[float, float]], target_ms: float) -> str:
    """How to read ``knee``: "crossed" (interpolated), "above_at_first_rate" (knee <= the lowest rate),
    "never_crossed" (knee > the highest rate) or "no_points"."""
    pts = _clean(points)
    if not pts:
        return "no_points"
    if pts[0][1] > target_ms:
        return "above_at_first_rate"
    return "crossed" if knee(pts, target_ms) is not None else "never_crossed"


def knee_rows(rows: list[dict[str, Any]], policies: Sequence[str], target_ms: float, setup: str,
              duration_s: float, seeds: int, metrics: Sequence[str] = KNEE_METRICS) -> list[dict[str, Any]]:
    """One row per (policy, metric): the knee, and InferCept's knee over it (None where either is None)."""
    out = []
    for metric in metrics:
        curves = {p: [(r["rate"], float(r[metric])) for r in rows if r["policy"] == p] for p in policies}
        knees = {p: knee(c, target_ms) for p, c in curves.items()}
        ref = knees.get(REFERENCE)
        for p in policies:
            k = knees[p]
            out.append({"setup": setup, "policy": p, "metric": metric, "target_ms": target_ms, "knee_rps": k,
                        "infercept_ratio": ref / k if ref is not None and k else None,
                        "bound": knee_bound(curves[p], target_ms), "duration_s": duration_s, "seeds": seeds})
    return out


def brackets(rows: list[dict[str, Any]], policy: str, target_ms: float,
             metrics: Sequence[str] = KNEE_METRICS) -> set[float]:
    """Midpoints of the grid intervals in which ``policy``'s curves first cross the target, one per metric
    (deduplicated): where a linear interpolation between coarse points would misplace a knee whose
    latency explodes inside the interval."""
    mids = set()
    for metric in metrics:
        pts = _clean([(r["rate"], float(r[metric])) for r in rows if r["policy"] == policy])
        for (r0, l0), (r1, l1) in itertools.pairwise(pts):
            if l1 > target_ms >= l0:
                mids.add(round((r0 + r1) / 2, 6))
                break
    return mids


def refined_grid(base: RunConfig, policies: list[str], rates: list[float], seeds: int, jobs: int,
                 target_ms: float, refine: int) -> list[tuple[RunConfig, dict[str, Any]]]:
    """The grid's runs, then ``refine`` rounds that add the midpoint of every interval in which a policy's
    curve crosses the target (brackets) at every seed, so each knee is interpolated over a narrow interval."""
    results = run_grid(base, policies, rates, seeds, jobs)
    for _ in range(refine):
        rows, _ = aggregate(results)
        for p in policies:
            mids = sorted(brackets(rows, p, target_ms))
            if mids:
                results += run_grid(base, [p], mids, seeds, jobs)
    return results


def rows_to_csv(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    """CSV text; floats to 4 significant digits, None as an empty cell."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow(["" if r[c] is None else f"{r[c]:.4g}" if isinstance(r[c], float) else r[c]
                    for c in columns])
    return buf.getvalue()


def format_knee(k: float | None, bound: str, max_rate: float) -> str:
    if bound == "never_crossed":
        return f"> {max_rate:g}"
    if bound == "above_at_first_rate":
        return f"<= {k:g}"
    return "-" if k is None else f"{k:.2f}"


def knee_table(krows: list[dict[str, Any]], max_rate: float) -> str:
    """Policies down, metrics across: knee (req/s) and InferCept's knee over it (IC ratio; ">" where InferCept
    stays under the target at every rate: then the highest rate over the policy's knee)."""
    metrics = list(dict.fromkeys(r["metric"] for r in krows))
    policies = list(dict.fromkeys(r["policy"] for r in krows))
    by = {(r["policy"], r["metric"]): r for r in krows}
    head = f"{'policy':<17}" + "".join(f"{SHORT.get(m, m) + ' knee':>20}" for m in metrics)
    lines = [head, f"{'':<17}" + "".join(f"  {'req/s':>9} {'IC ratio':>8}" for _ in metrics)]
    for p in policies:
        cells = []
        for m in metrics:
            r = by[(p, m)]
            ratio = "" if r["infercept_ratio"] is None else f"{r['infercept_ratio']:.2f}x"
            ref = by.get((REFERENCE, m))
            if ref and ref["bound"] == "never_crossed" and r["knee_rps"]:  # a lower bound: max rate over it
                ratio = f">{max_rate / r['knee_rps']:.2f}x"
            cells.append(f"  {format_knee(r['knee_rps'], r['bound'], max_rate):>9} {ratio:>8}")
        lines.append(f"{p:<17}" + "".join(cells))
    return "\n".join(lines)


def default_name(gpu: str, model: str, tp: int, batching: str, duration_s: float,
                 workload: str = "mixed") -> str:
    wl = "" if workload == "mixed" else f"-{Path(workload).stem}"
    return f"knee-{gpu}-{model}-tp{tp}-{batching}{wl}-{duration_s:g}s"


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
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
                         "batching": args.batching, "duration_s": args.duration_s}, args.set)
    rates = [float(r) for r in args.rates.split(",")]
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    results = refined_grid(base, policies, rates, args.seeds, args.jobs, args.target_ms, args.refine)
    out.mkdir(parents=True, exist_ok=True)
    rows = write_results(results, base, args.seeds, out, args.target_ms)
    krows = knee_rows(rows, policies, args.target_ms, setup, args.duration_s, args.seeds)
    print(f"\nknee at {args.target_ms:g} ms/token ({args.seeds} seeds, {args.duration_s:g} s windows, "
          f"{setup}):")
    print(knee_table(krows, max(rates)))
    (out / "knees.csv").write_text(rows_to_csv(krows, KNEE_COLUMNS))
    (out / "run.json").write_text(json.dumps({"setup": setup, "rates": rates, "policies": policies,
                                              **{k: v for k, v in vars(args).items()
                                                 if k not in ("rates", "policies", "out", "jobs")}},
                                             indent=2) + "\n")
    print(f"wrote {out / 'knees.csv'}")
    return krows


if __name__ == "__main__":
    main()
