"""How each claim of the paper (analysis/claims.py) is measured from sweep results.

Every measuring function takes ``{sweep name: SweepData}`` (only the sweeps given to the report; the caller
checks that the claim's own sweep is among them) and returns a Finding: the text of our number, and
(ours, paper low, paper high) triples that analysis/claims.py checks against its tolerance.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analysis.knees import curve_key, curves, knee, knee_bound, setup_name
from core.summary import METRICS

SETUPS = {"6B": "e2e_gptj6b", "13B-1": "e2e_vicuna13b", "13B-2": "e2e_vicuna13b_tp2", "70B": "e2e_llama70b_tp4"}
"""The paper's four setups and the sweeps that run them."""
LADDER_SETUP = "vicuna13b_tp2"
"""The paper's ablation: Vicuna-13B (probably TP=2) at 2 req/s (INFERCEPT.md §4.5)."""
BASELINES = ("discard", "improved_discard", "preserve", "swap")


@dataclass(frozen=True)
class SweepData:
    """One sweep folder's results: runs table, knees.csv rows (text cells), knee target, run counts."""

    name: str
    folder: Path
    rows: list[dict[str, Any]]
    knees: list[dict[str, str]]
    target_ms: float
    num_failed: int
    revisions: tuple[str, ...]


@dataclass(frozen=True)
class Finding:
    """Our number for a claim: the text shown, and (ours, paper low, paper high) triples to check; a
    ``lower_bounds`` entry marks a check whose "ours" is only a lower bound (it fails only above the range)."""

    ours: str
    checks: tuple[tuple[float, float, float], ...] = ()
    lower_bounds: tuple[bool, ...] = ()


Sweeps = dict[str, SweepData]


def select(rows: list[dict[str, Any]], **where: Any) -> list[dict[str, Any]]:
    """The rows whose labels equal ``where``."""
    return [r for r in rows if all(r.get(k) == v for k, v in where.items())]


def points(rows: list[dict[str, Any]], metric: str = "norm_latency_ms") -> list[tuple[float, float]]:
    """[(rate, mean of ``metric`` over seeds)], rates ascending: ``rows`` as one curve."""
    return next(iter(curves(rows, [], metric).values()), [])


def knee_of(rows: list[dict[str, Any]], target_ms: float) -> tuple[float | None, str]:
    """Knee (req/s) of the mean normalized latency and its bound (analysis.knees.knee_bound)."""
    pts = points(rows)
    return knee(pts, target_ms), knee_bound(pts, target_ms)


def knee_rate(rows: list[dict[str, Any]], target_ms: float) -> float:
    """The sweep's rate nearest the knee (the highest rate when it never crosses, the lowest when above)."""
    rates = [r for r, _ in points(rows)]
    k, bound = knee_of(rows, target_ms)
    return rates[-1] if k is None else rates[0] if bound == "above_at_first_rate" else nearest(rates, k)


def nearest(rates: list[float], x: float) -> float:
    """The rate nearest ``x`` (the lower one on a tie)."""
    return min(rates, key=lambda r: (abs(r - x), r))


def at(rows: list[dict[str, Any]], rate: float, metric: str) -> float:
    """Mean of ``metric`` over the seeds at ``rate``."""
    return dict(points(rows, metric)).get(rate, math.nan)


def setups(data: SweepData) -> dict[str, list[dict[str, Any]]]:
    """The runs grouped by setup (every label but policy, rate and seed), named as in knees.csv."""
    out: dict[str, list[dict[str, Any]]] = {}
    for r in data.rows:
        out.setdefault(setup_name(curve_key({k: v for k, v in r.items() if k not in METRICS})), []).append(r)
    return out


def _each(sweeps: Sweeps, fn: Callable[[list[dict[str, Any]], float], tuple[str, list[float]]]
          ) -> tuple[list[str], list[float]]:
    """``fn(rows, target)`` on every setup of every e2e sweep given; a missing sweep is named as such."""
    parts, values = [], []
    for label, name in SETUPS.items():
        if name not in sweeps:
            parts.append(f"{label}: not measured (sweep {name} not given)")
            continue
        groups = setups(sweeps[name])
        for setup, rows in groups.items():
            text, vals = fn(rows, sweeps[name].target_ms)
            parts.append(f"{label}{f' ({setup})' if len(groups) > 1 else ''}: {text}")
            values += vals
    return parts, values


def _num(cell: str) -> float | None:
    return float(cell) if cell else None


def _gains(data: SweepData) -> list[tuple[str, float | None, str, bool]]:
    """Per setup of knees.csv: (setup, InferCept's knee over discard's, text), mean normalized latency."""
    if not data.knees:
        return [("", None, f"not measured (no knees.csv in {data.folder})", False)]
    mean = [k for k in data.knees if k["metric"] == "norm_latency_ms"]
    max_rate = max(float(r["rate_rps"]) for r in data.rows)
    out = []
    for row in (k for k in mean if k["policy"] == "discard"):
        ic = next((k for k in mean if k["setup"] == row["setup"] and k["policy"] == "infercept"), None)
        ratio, dk = _num(row["infercept_ratio"]), _num(row["knee_rps"])
        sign = "≥ " if row["bound"] == "above_at_first_rate" else ""
        if ratio is None and ic is not None and ic["bound"] == "never_crossed" and dk:
            ratio, sign = max_rate / dk, "≥ "
        ick = "-" if ic is None or not ic["knee_rps"] else f"{float(ic['knee_rps']):.2f}"
        text = "-" if ratio is None else f"{sign}{ratio:.2f}×"
        text += f" (knees {dk if dk is None else f'{dk:.2f}'} → {ick} req/s at {data.target_ms:g} ms/token"
        base = [(float(k["infercept_ratio"]), k["policy"]) for k in mean
                if k["setup"] == row["setup"] and k["policy"] in BASELINES and k["infercept_ratio"]]
        text += f"; over the best baseline ({min(base)[1]}): {min(base)[0]:.2f}×)" if len(base) > 1 else ")"
        out.append((row["setup"], ratio, text, sign == "≥ "))
    return out


def load_gain(name: str, paper: float) -> Callable[[Sweeps], Finding]:
    """InferCept's knee over discard's, from ``name``'s knees.csv (one value per setup)."""
    def measure(sweeps: Sweeps) -> Finding:
        gains = _gains(sweeps[name])
        multi = len(gains) > 1
        return Finding("; ".join(f"{s}: {t}" if multi else t for s, _, t, _ in gains),
                       tuple((v, paper, paper) for _, v, _, _ in gains if v is not None),
                       tuple(b for _, v, _, b in gains if v is not None))
    return measure


def load_gain_overall(sweeps: Sweeps) -> Finding:
    """The per-setup load gains, min–max, each checked against 1.6–2×."""
    parts, vals, bounds = [], [], []
    for label, name in SETUPS.items():
        gains = (_gains(sweeps[name]) if name in sweeps
                 else [("", None, f"not measured (sweep {name} not given)", False)])
        parts += [f"{label}: {t.split(' (')[0] if v is not None else t}" for _, v, t, _ in gains]
        vals += [v for _, v, _, _ in gains if v is not None]
        bounds += [b for _, v, _, b in gains if v is not None]
    span = f"{min(vals):.2f}×" + (f"–{max(vals):.2f}×" if len(vals) > 1 else "")
    head = f"{span} over {len(vals)} setup{'s' * (len(vals) > 1)}; " if vals else ""
    return Finding(head + ", ".join(parts), tuple((v, 1.6, 2.0) for v in vals), tuple(bounds))


def _pair(rows: list[dict[str, Any]], metric: str, rates: list[float]) -> list[tuple[float, float]]:
    """[(rate, discard's metric over InferCept's)] at ``rates``."""
    d, ic = select(rows, policy="discard"), select(rows, policy="infercept")
    return [(r, at(d, r, metric) / at(ic, r, metric)) for r in rates]


def _common(rows: list[dict[str, Any]]) -> list[float]:
    rates = [{r for r, _ in points(select(rows, policy=p))} for p in ("discard", "infercept")]
    return sorted(rates[0] & rates[1])


def completed_rps(sweeps: Sweeps) -> Finding:
    """InferCept's completed requests/s over discard's at the rate nearest InferCept's own knee (the load it
    sustains), per setup; every setup checked."""
    def one(rows: list[dict[str, Any]], target: float) -> tuple[str, list[float]]:
        rates = _common(rows)
        if not rates:
            return "no rate with both discard and InferCept", []
        top = nearest(rates, knee_rate(select(rows, policy="infercept"), target))
        rate, inv = _pair(rows, "completed_rps", [top])[0]
        return f"{1 / inv:.2f}× at {rate:g} req/s", [1 / inv]
    parts, vals = _each(sweeps, one)
    return Finding("; ".join(parts), tuple((v, 2.0, math.inf) for v in vals))


def latency_reduction(name: str, low: float, high: float) -> Callable[[Sweeps], Finding]:
    """Discard's normalized latency over InferCept's, min and max over the rates from half discard's knee to
    discard's knee (where both still sustain the load; past it discard's latency explodes, and so would the
    ratio)."""
    def measure(sweeps: Sweeps) -> Finding:
        data, parts, checks = sweeps[name], [], []
        for rows in setups(data).values():
            k, _ = knee_of(select(rows, policy="discard"), data.target_ms)
            top = k if k is not None else math.inf
            low_rate = 0.5 * k if k is not None else 0.0
            ratios = _pair(rows, "norm_latency_ms", [r for r in _common(rows) if low_rate <= r <= top])
            if not ratios:
                parts.append("no common rate")
                continue
            lo, hi = min(v for _, v in ratios), max(v for _, v in ratios)
            parts.append(f"{lo:.2f}×–{hi:.2f}× over {ratios[0][0]:g}–{ratios[-1][0]:g} req/s")
            checks += [(lo, low, low), (hi, high, high)]
        return Finding("; ".join(parts), tuple(checks))
    return measure


def gpu_waste(sweeps: Sweeps) -> Finding:
    """Discard's, swap's and InferCept's GPU waste at the rate nearest each one's own knee."""
    paper = {"discard": 27.0, "swap": 26.0, "infercept": 0.69}

    def one(rows: list[dict[str, Any]], target: float) -> tuple[str, list[float]]:
        cells, vals = [], []
        for pol in paper:
            p = select(rows, policy=pol)
            rate = knee_rate(p, target) if p else math.nan
            vals.append(at(p, rate, "gpu_waste_pct") if p else math.nan)
            cells.append(f"{pol} {vals[-1]:.2f} % at {rate:g} req/s")
        return ", ".join(cells), vals
    parts, vals = _each(sweeps, one)
    return Finding("; ".join(parts), tuple((v, p, p) for v, p in zip(vals, [*paper.values()] * len(vals))))


def recompute_share(sweeps: Sweeps) -> Finding:
    """Discard's recompute share of forward time at the rate nearest its own knee (loaded, still
    sustaining); the range below its knee in brackets."""
    def one(rows: list[dict[str, Any]], target: float) -> tuple[str, list[float]]:
        d = select(rows, policy="discard")
        if not d:
            return "no discard runs", []
        pts, k = points(d, "recompute_share_pct"), knee_of(d, target)[0]
        below = [v for r, v in pts if k is None or r < k]
        span = f" ({min(below):.0f}–{max(below):.0f} % below its knee)" if below else ""
        rate = knee_rate(d, target)
        value = dict(pts)[rate]
        return f"{value:.1f} % at {rate:g} req/s{span}", [value]
    parts, vals = _each(sweeps, one)
    return Finding("; ".join(parts), tuple((v, 37.0, 40.0) for v in vals))


def per_kind(kind: str, paper: float) -> Callable[[Sweeps], Finding]:
    """On the ``kind``-only workload: max over the rates below discard's knee of discard's latency over
    InferCept's."""
    def measure(sweeps: Sweeps) -> Finding:
        data = sweeps["per_kind"]
        rows = select(data.rows, workload=kind)
        k, bound = knee_of(select(rows, policy="discard"), data.target_ms)
        rates = [r for r in _common(rows) if bound == "never_crossed" or (k is not None and r < k
                                                                              and bound == "crossed")]
        if not rows or not rates:
            return Finding(f"no rate below discard's knee on the {kind} workload" if rows
                           else f"no {kind} runs in sweep per_kind")
        rate, best = max(_pair(rows, "norm_latency_ms", rates), key=lambda p: (p[1], -p[0]))
        knee_text = "never crossed" if k is None else f"{k:.2f} req/s"
        return Finding(f"{best:.2f}× at {rate:g} req/s (discard's knee: {knee_text})", ((best, paper, paper),))
    return measure
