"""Figures against request rate, one panel per setup: latency, latency per augmentation kind, GPU memory
waste, recompute share, TTFT and completed requests/s. Each reads a sweep folder's tables and writes
``<sweep>-<figure>.png`` and ``.pdf``; curves are means over seeds with their 95 % band (analysis/load.py)."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analysis.load import SETUP_KEYS, SweepData, as_data, describe, family, group_curves, require, split
from analysis.plot import draw_curves, legend, panels, save, target_line

NEEDED = ("policy", "rate_rps", "seed", "duration_s", "batching")
"""Labels every rate figure reads (beside its metrics)."""


@dataclass(frozen=True)
class Metric:
    """A metric as one kind of panel draws it."""

    column: str
    axis_label: str
    log_y: bool = False
    target: bool = False


LATENCY = Metric("norm_latency_ms", "normalized latency (ms/token)", log_y=True, target=True)
WASTE = Metric("gpu_waste_pct", "GPU KV memory waste (% of block-time)")
RECOMPUTE = Metric("recompute_share_pct", "recompute share of forward time (%)")
TTFT = Metric("ttft_p50_s", "time to first token, p50 (s)", log_y=True)
COMPLETED = Metric("completed_rps", "completed requests (req/s)")


def _title(text: str) -> str:
    return textwrap.fill(text, 58)


def rate_panels(data: SweepData, rows: Sequence[dict[str, Any]], table: str, figure: str, what: str,
                metrics: Sequence[Metric], out_dir: Path, panel_keys: Sequence[str] = SETUP_KEYS) -> list[Path]:
    """One panel per group of ``rows`` (by ``panel_keys``) and metric: each curve's mean against rate with
    its 95 % band; written as ``<sweep>-<figure>``."""
    require(rows, [*NEEDED, *(m.column for m in metrics)], figure, table, data.folder)
    keys = [k for k in panel_keys if k in rows[0]]
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in rows:  # a family of variants (ladder-*, option-*) gets panels of its own
        groups.setdefault((*(r.get(k) for k in keys), family(r)), []).append(r)
    one_setup = len(split(rows, [k for k in SETUP_KEYS if k in rows[0]])) == 1
    fig, axes = panels(len(groups) * len(metrics), ncols=max(len(metrics), 3 if len(metrics) == 1 else 1))
    i = 0
    for key, group in groups.items():
        head = ([f"{key[-1]}-* variants"] if key[-1] else []) + ([str(group[0]["kind"])] if "kind" in keys else [])
        for m in metrics:
            ax = axes[i]
            i += 1
            draw_curves(ax, group_curves(group, m.column), skip=panel_keys, log_y=m.log_y)
            if m.target:
                target_line(ax, data.target_ms)
            ax.set_xlabel("request rate (req/s)")
            ax.set_ylabel(m.axis_label)
            ax.set_title(_title(" · ".join(head if one_setup else [*head, describe(group)])), fontsize=8)
    fig.suptitle(f"{data.name}: {what}" + (f"\n{describe(rows)}" if one_setup else ""), fontsize=10)
    legend(fig, axes)
    return save(fig, out_dir, f"{data.name}-{figure}")


def latency(sweep: SweepData | str | Path, out_dir: Path) -> list[Path]:
    """Mean normalized latency (ms/token, log) against request rate per setup, with the knee target."""
    data = as_data(sweep)
    return rate_panels(data, data.rows, "runs.parquet", "latency", "normalized latency vs request rate",
                       [LATENCY], out_dir)


def latency_by_kind(sweep: SweepData | str | Path, out_dir: Path) -> list[Path]:
    """Mean normalized latency against rate per augmentation kind (one panel per kind and setup), from
    runs_by_kind.parquet; in a sweep over single-kind workloads each kind's panel holds its own workload."""
    data = as_data(sweep)
    rows = data.kind_rows()
    require(rows, ["kind"], "latency_by_kind", "runs_by_kind.parquet", data.folder)
    return rate_panels(data, rows, "runs_by_kind.parquet", "latency_by_kind",
                       "normalized latency per augmentation kind", [LATENCY], out_dir, (*SETUP_KEYS, "kind"))


def gpu_waste(sweep: SweepData | str | Path, out_dir: Path) -> list[Path]:
    """GPU memory waste (% of KV memory) per policy against request rate."""
    data = as_data(sweep)
    return rate_panels(data, data.rows, "runs.parquet", "gpu_waste", "GPU memory waste vs request rate",
                       [WASTE], out_dir)


def recompute_share(sweep: SweepData | str | Path, out_dir: Path) -> list[Path]:
    """Share of forward time spent recomputing discarded context (%) per policy against request rate."""
    data = as_data(sweep)
    return rate_panels(data, data.rows, "runs.parquet", "recompute_share",
                       "recompute share of forward time vs request rate", [RECOMPUTE], out_dir)


def ttft_throughput(sweep: SweepData | str | Path, out_dir: Path) -> list[Path]:
    """Median time to first token (s, log) and completed requests per second against request rate."""
    data = as_data(sweep)
    return rate_panels(data, data.rows, "runs.parquet", "ttft_throughput",
                       "time to first token and completed requests vs request rate", [TTFT, COMPLETED],
                       out_dir)
