"""Knees: the request rate at which a latency curve first crosses a target, from a sweep's runs table.

A curve is the runs that share every label but ``rate_rps`` and ``seed``; its points are the means over seeds
at each rate. The knee is the first crossing, linearly interpolated between the two rates around it; a sweep
with ``[sweep.knee] refine = n`` has bisected every crossing interval n times, so the interpolation spans a
narrow interval (between coarse points it would put the knee of an exploding curve too low).
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import statistics
from collections.abc import Sequence
from typing import Any

KNEE_METRICS = ("norm_latency_ms", "norm_latency_p50_ms", "norm_latency_p90_ms", "norm_latency_corrected_ms")
SHORT = {"norm_latency_ms": "mean", "norm_latency_p50_ms": "p50", "norm_latency_p90_ms": "p90",
         "norm_latency_corrected_ms": "corrected"}
KNEE_COLUMNS = ("setup", "policy", "metric", "target_ms", "knee_rps", "knee_rps_ci95", "infercept_ratio",
                "bound", "seeds")
REFERENCE = "infercept"
CURVE_FREE = ("rate_rps", "seed", "run_id")
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)
"""Student t quantile 0.975 for 1..30 degrees of freedom; 1.96 beyond."""


def ci95(values: Sequence[float]) -> float:
    """Half-width of the 95 % confidence interval of the mean (Student t); 0 for fewer than two values."""
    vals = [v for v in values if not math.isnan(v)]
    if len(vals) < 2:
        return 0.0
    t = _T975[len(vals) - 2] if len(vals) - 1 <= len(_T975) else 1.96
    return t * statistics.stdev(vals) / math.sqrt(len(vals))


def _clean(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    return sorted((r, lat) for r, lat in points if not math.isnan(lat))


def knee(points: Sequence[tuple[float, float]], target_ms: float) -> float | None:
    """First crossing of ``target_ms`` by the (rate, latency) curve, interpolated; None if it never crosses.
    If the curve is above the target at its lowest rate, that rate (an upper bound: see ``knee_bound``)."""
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


def crossing_midpoint(points: Sequence[tuple[float, float]], target_ms: float) -> float | None:
    """The midpoint of the grid interval in which the curve first crosses the target, or None."""
    for (r0, l0), (r1, l1) in itertools.pairwise(_clean(points)):
        if l1 > target_ms >= l0:
            return round((r0 + r1) / 2, 6)
    return None


def curve_key(row: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """What identifies a row's curve: every label but rate and seed (metrics excluded by the caller)."""
    return tuple((k, v) for k, v in row.items() if k not in CURVE_FREE)


def curves(rows: Sequence[dict[str, Any]], labels: Sequence[str], metric: str
           ) -> dict[tuple[tuple[str, Any], ...], list[tuple[float, float]]]:
    """Curve -> [(rate, mean of ``metric`` over seeds)], rates ascending."""
    by: dict[tuple[tuple[str, Any], ...], dict[float, list[float]]] = {}
    for r in rows:
        key = curve_key({k: r[k] for k in labels if k in r})
        by.setdefault(key, {}).setdefault(float(r["rate_rps"]), []).append(float(r[metric]))
    return {k: sorted((rate, statistics.fmean(v)) for rate, v in pts.items()) for k, pts in by.items()}


def setup_name(key: tuple[tuple[str, Any], ...]) -> str:
    """A curve's setting without its policy, e.g. ``a100-gptj-6b-tp1-v0-1800s`` (+ workload, variant, …)."""
    d = dict(key)
    hw = d.get("profile") or f"{d.get('gpu')}-{d.get('model')}-tp{d.get('tp')}"
    name = f"{hw}-{d.get('batching')}"
    if d.get("workload") not in (None, "mixed"):
        name += f"-{d['workload']}"
    name += f"-{float(d.get('duration_s', 0)):g}s"
    fixed = ("profile", "gpu", "model", "tp", "batching", "workload", "duration_s", "policy")
    name += "".join(f"-{v}" if k == "variant" else f"-{k}={v}" for k, v in key
                    if k not in fixed and v is not None)
    return name


def knee_rows(rows: Sequence[dict[str, Any]], labels: Sequence[str], target_ms: float,
              metrics: Sequence[str] = KNEE_METRICS) -> list[dict[str, Any]]:
    """One row per (curve, metric): the knee on the mean over seeds, the 95 % half-width over the seeds' own
    knees (None unless every seed's curve crossed the target: a seed that never crossed has no knee, only a
    bound), and InferCept's knee (same setting) over it."""
    out = []
    seeds: dict[tuple[tuple[str, Any], ...], set[Any]] = {}
    for r in rows:
        seeds.setdefault(curve_key({k: r[k] for k in labels if k in r}), set())
        seeds[curve_key({k: r[k] for k in labels if k in r})].add(r.get("seed"))
    for metric in metrics:
        mean = curves(rows, labels, metric)
        per_seed: dict[tuple[tuple[str, Any], ...], list[float]] = {}
        for seed in sorted({r.get("seed") for r in rows}, key=str):
            one = curves([r for r in rows if r.get("seed") == seed], labels, metric)
            for key, pts in one.items():
                k = knee(pts, target_ms) if knee_bound(pts, target_ms) == "crossed" else None
                per_seed.setdefault(key, []).append(math.nan if k is None else k)
        knees = {key: knee(pts, target_ms) for key, pts in mean.items()}
        for key, pts in mean.items():
            d = dict(key)
            ref_key = tuple((k, REFERENCE if k == "policy" else v) for k, v in key)
            ref, k = knees.get(ref_key), knees[key]
            seed_knees = per_seed.get(key, [])
            spread = ci95(seed_knees) if seed_knees and not any(map(math.isnan, seed_knees)) else None
            out.append({"setup": setup_name(key), "policy": d.get("policy"), "metric": metric,
                        "target_ms": target_ms, "knee_rps": k, "knee_rps_ci95": spread,
                        "infercept_ratio": ref / k if ref is not None and k else None,
                        "bound": knee_bound(pts, target_ms), "seeds": len(seeds[key])})
    return out


def rows_to_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """CSV text; floats to 4 significant digits, None as an empty cell."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow(["" if r[c] is None else f"{r[c]:.4g}" if isinstance(r[c], float) else r[c]
                    for c in columns])
    return buf.getvalue()


def format_knee(k: float | None, bound: str, max_rate: float) -> str:
    """A knee for a table: "> max" when never crossed, "<= k" when above at the first rate."""
    if bound == "never_crossed":
        return f"> {max_rate:g}"
    if bound == "above_at_first_rate":
        return f"<= {k:g}"
    return "-" if k is None else f"{k:.2f}"


def knee_table(krows: Sequence[dict[str, Any]], max_rate: float) -> str:
    """Setups and policies down, metrics across: knee (req/s) and InferCept's knee over it."""
    metrics = list(dict.fromkeys(r["metric"] for r in krows))
    by = {(r["setup"], r["policy"], r["metric"]): r for r in krows}
    lines = [f"{'setup / policy':<44}" + "".join(f"{SHORT.get(m, m) + ' knee':>16}{'IC/it':>7}"
                                                 for m in metrics)]
    for setup in dict.fromkeys(r["setup"] for r in krows):
        lines.append(setup)
        for p in dict.fromkeys(r["policy"] for r in krows if r["setup"] == setup):
            cells = []
            for m in metrics:
                r = by[(setup, p, m)]
                ratio = "" if r["infercept_ratio"] is None else f"{r['infercept_ratio']:.2f}x"
                cells.append(f"{format_knee(r['knee_rps'], r['bound'], max_rate):>16}{ratio:>7}")
            lines.append(f"  {p:<42}" + "".join(cells))
    return "\n".join(lines)
