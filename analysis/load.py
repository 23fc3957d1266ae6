"""A sweep folder's tables -> curves: the mean of a metric over seeds at each rate, and its 95 % band.

A curve is the runs that share every label but ``rate_rps`` and ``seed`` (as in analysis/knees.py); its point
at a rate is the mean over the seeds that ran there, with the Student-t half-width ``analysis.knees.ci95`` of
those seeds' values. Missing values (NaN: a percentile over no requests) are left out of a point.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analysis.knees import ci95, knee, knee_bound
from core.summary import METRICS
from experiments.runstore import read_table

FREE = ("run_id", "rate_rps", "seed")
"""Columns that are not a curve's labels: they vary along a curve (or name its runs)."""
SETUP_KEYS = ("profile", "gpu", "model", "tp", "batching", "duration_s", "workload")
"""Labels that make a setup: what a panel of a figure shows."""
VARIANT_FAMILIES = ("ladder", "option")
"""Variant name prefixes whose variants rate figures draw in panels of their own (the ablation sweep's)."""
KNEE_METRIC = "norm_latency_ms"
"""The latency whose knee the bar figures draw (mean normalized latency, the paper's)."""


class MissingDataError(ValueError):
    """A figure asked of a sweep folder whose tables lack what it draws; the message names both."""


@dataclass(frozen=True)
class SweepData:
    """A sweep folder's runs table (and where it came from); ``target_ms`` from its sweep.toml's knee."""

    name: str
    folder: Path
    rows: list[dict[str, Any]]
    target_ms: float | None

    def kind_rows(self) -> list[dict[str, Any]]:
        """The rows of runs_by_kind.parquet (one per run and augmentation kind)."""
        path = self.folder / "runs_by_kind.parquet"
        if not path.exists():
            raise MissingDataError(f"{self.folder}: no runs_by_kind.parquet")
        return read_table(path)


@dataclass(frozen=True)
class Curve:
    """One curve: its labels, and per rate (ascending) the mean, the 95 % half-width and the seeds' values."""

    labels: dict[str, Any]
    rates_rps: tuple[float, ...]
    mean: tuple[float, ...]
    ci95: tuple[float, ...]
    samples: tuple[tuple[tuple[Any, float], ...], ...]


@dataclass(frozen=True)
class Knee:
    """A curve's knee at a target (as analysis.knees.knee_rows computes it), for bar figures."""

    labels: dict[str, Any]
    knee_rps: float | None
    ci95_rps: float | None  # None unless every seed's own curve crossed (as knees.csv)
    bound: str
    min_rate_rps: float
    max_rate_rps: float
    seeds: int


def load_sweep_dir(folder: str | Path) -> SweepData:
    """Read ``folder``'s runs.parquet and its knee target; a folder without runs.parquet is an error."""
    from experiments.sweepspec import load_sweep

    folder = Path(folder)
    path = folder / "runs.parquet"
    if not path.exists():
        raise MissingDataError(f"{folder}: no runs.parquet (is it a folder written by `infercept sweep`?)")
    toml = folder / "sweep.toml"
    spec = load_sweep(toml).knee if toml.exists() else None
    return SweepData(folder.name, folder, read_table(path), spec.target_ms if spec else None)


def as_data(sweep: SweepData | str | Path) -> SweepData:
    """``sweep`` itself, or the sweep folder it names, loaded."""
    return sweep if isinstance(sweep, SweepData) else load_sweep_dir(sweep)


def require(rows: Sequence[dict[str, Any]], columns: Iterable[str], figure: str, table: str,
            folder: Path) -> None:
    """Raise MissingDataError naming the figure, the table, the folder and the columns it lacks."""
    have = set(rows[0]) if rows else set()
    missing = [c for c in columns if c not in have]
    if not rows:
        raise MissingDataError(f"{figure}: {table} in {folder} has no rows")
    if missing:
        names = ", ".join(repr(c) for c in missing)
        raise MissingDataError(f"{figure}: {table} in {folder} lacks column{'s' * (len(missing) > 1)} {names}")


def label_columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The label columns of a table: every column but the metrics, run id, rate and seed (table order)."""
    return [c for c in (rows[0] if rows else {}) if c not in METRICS and c not in FREE]


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def group_curves(rows: Sequence[dict[str, Any]], metric: str) -> list[Curve]:
    """Every curve of ``rows`` for ``metric``, in order of first appearance."""
    labels = label_columns(rows)
    by: dict[tuple[tuple[str, Any], ...], dict[float, list[tuple[Any, float]]]] = {}
    for r in rows:
        pts = by.setdefault(tuple((k, r[k]) for k in labels), {})
        if _present(r[metric]):
            pts.setdefault(float(r["rate_rps"]), []).append((r.get("seed"), float(r[metric])))
    out = []
    for key, pts in by.items():
        rates = sorted(pts)
        vals = [[v for _, v in pts[rate]] for rate in rates]
        out.append(Curve(dict(key), tuple(rates), tuple(statistics.fmean(v) for v in vals),
                         tuple(ci95(v) for v in vals), tuple(tuple(pts[rate]) for rate in rates)))
    return out


def curve_knees(rows: Sequence[dict[str, Any]], target_ms: float, metric: str = KNEE_METRIC) -> list[Knee]:
    """Every curve's knee: on the mean over seeds, with the 95 % interval over the seeds' own knees (the
    definitions of analysis.knees.knee_rows, whose knees.csv this reproduces)."""
    out = []
    for c in group_curves(rows, metric):
        mean = list(zip(c.rates_rps, c.mean))
        seeds = sorted({s for pts in c.samples for s, _ in pts}, key=str)
        own = [[(rate, v) for rate, pts in zip(c.rates_rps, c.samples) for s2, v in pts if s2 == s]
               for s in seeds]
        spread = (ci95([knee(pts, target_ms) or math.nan for pts in own])
                  if all(knee_bound(pts, target_ms) == "crossed" for pts in own) else None)
        rates = c.rates_rps or (math.nan,)
        out.append(Knee(c.labels, knee(mean, target_ms), spread,
                        knee_bound(mean, target_ms), rates[0], rates[-1], len(seeds)))
    return out


def varying(dicts: Sequence[dict[str, Any]], skip: Iterable[str] = ()) -> list[str]:
    """The keys whose values differ among ``dicts`` (first dict's order), but those in ``skip``."""
    skip = set(skip)
    keys = list(dict.fromkeys(k for d in dicts for k in d))
    return [k for k in keys if k not in skip and len({repr(d.get(k)) for d in dicts}) > 1]


def distinguishing(dicts: Sequence[dict[str, Any]], skip: Iterable[str] = ()) -> list[str]:
    """The keys a legend needs to tell ``dicts`` apart: those that vary (``varying``); when ``variant`` is one
    of them, only it and the keys that vary among dicts of the same variant (a variant sets the rest)."""
    keys = varying(dicts, skip)
    if "variant" not in keys:
        return keys
    groups: dict[str, list[dict[str, Any]]] = {}
    for d in dicts:
        groups.setdefault(str(d.get("variant")), []).append(d)
    within = {k for g in groups.values() for k in varying(g, skip)}
    return [k for k in keys if k == "variant" or k in within]


def family(row: dict[str, Any]) -> str:
    """The family of a row's variant, ``ladder`` or ``option`` (named ``ladder-*``, ``option-*``), else ""."""
    variant = str(row.get("variant") or "")
    return next((f for f in VARIANT_FAMILIES if variant.startswith(f + "-")), "")


def hardware(labels: dict[str, Any]) -> str:
    """The setup's hardware and model as ``gpu-model-tpN`` (or the profile's name when a profile is given)."""
    if labels.get("profile"):
        return str(labels["profile"])
    return f"{labels.get('gpu')}-{labels.get('model')}-tp{labels.get('tp')}"


def _joined(values: Iterable[Any], fmt: str = "{}") -> str:
    return "/".join(fmt.format(v) for v in dict.fromkeys(v for v in values if v is not None))


def describe(rows: Sequence[dict[str, Any]], with_hardware: bool = True) -> str:
    """A title for ``rows``: hardware, workload (when not mixed), batching, window and seeds, e.g.
    ``a100-gptj-6b-tp1 · v0 batching · 1800 s window · seeds 0-2 (3)``."""
    parts = [_joined(hardware(r) for r in rows)] if with_hardware else []
    workloads = [w for w in dict.fromkeys(r.get("workload") for r in rows) if w not in (None, "mixed")]
    if workloads:
        parts.append(f"workload {_joined(workloads)}")
    parts.append(f"{_joined(r.get('batching') for r in rows)} batching")
    parts.append(f"{_joined((float(r['duration_s']) for r in rows if 'duration_s' in r), '{:g}')} s window")
    seeds = sorted({int(r["seed"]) for r in rows if r.get("seed") is not None})
    if seeds:
        span = f"{seeds[0]}" if len(seeds) == 1 else f"{seeds[0]}-{seeds[-1]}"
        parts.append(f"seed{'s' * (len(seeds) > 1)} {span} ({len(seeds)})")
    return " · ".join(parts)


def split(rows: Sequence[dict[str, Any]], keys: Sequence[str]) -> dict[tuple[Any, ...], list[dict[str, Any]]]:
    """Rows grouped by their values of ``keys`` (groups in order of first appearance)."""
    out: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault(tuple(r.get(k) for k in keys), []).append(r)
    return out


def knee_target(data: SweepData, figure: str) -> float:
    """The sweep's knee target (ms/token); MissingDataError when its sweep.toml has no [sweep.knee]."""
    if data.target_ms is None:
        raise MissingDataError(f"{figure}: sweep.toml in {data.folder} lacks [sweep.knee] (target_ms)")
    return data.target_ms
