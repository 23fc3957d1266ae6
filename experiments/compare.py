"""`infercept compare`: every policy at every rate over several seeds; a table, summary.csv and a plot."""

from __future__ import annotations

import csv
import io
import math
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from core.config import RunConfig, options_by_policy
from core.summary import METRICS, summarize
from core.trace_io import atomic_write_text
from sim.run import simulate

_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def ci95(values: list[float]) -> float:
    """Half-width of the 95% confidence interval of the mean (Student t); 0 for one value."""
    vals = [v for v in values if not math.isnan(v)]
    if len(vals) < 2:
        return 0.0
    return _T975.get(len(vals) - 1, 1.96) * statistics.stdev(vals) / math.sqrt(len(vals))


def run_one(cfg: RunConfig) -> tuple[dict[str, Any], float]:
    """Simulate one configuration; return its summary and the wall time (for the log only)."""
    t0 = time.perf_counter()
    summary = summarize(simulate(cfg))
    return summary, time.perf_counter() - t0


def aggregate(cfg_runs: list[tuple[RunConfig, dict[str, Any]]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Mean and 95% interval over seeds per (policy, rate): overall rows and per-kind rows."""
    groups: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for cfg, s in cfg_runs:
        groups.setdefault((cfg.policy, cfg.rate_rps), []).append(s)
    rows, kind_rows = [], []
    for (policy, rate), sums in groups.items():
        row: dict[str, Any] = {"policy": policy, "rate": rate, "seeds": len(sums)}
        for k in METRICS:
            vals = [s["overall"][k] for s in sums]
            row[k] = statistics.fmean(vals)
        for k in ("norm_latency_ms", "completed_rps", "norm_latency_corrected_ms"):
            row[k + "_ci95"] = ci95([s["overall"][k] for s in sums])
        rows.append(row)
        for kind in sorted({k for s in sums for k in s["by_kind"]}):
            per = [s["by_kind"][kind] for s in sums if kind in s["by_kind"]]
            kind_rows.append({"policy": policy, "rate": rate, "kind": kind,
                              **{k: statistics.fmean(p[k] for p in per) for k in METRICS}})
    return rows, kind_rows


def to_csv(rows: list[dict[str, Any]]) -> str:
    """CSV text with stable number formatting (same inputs, same bytes)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def table(rows: list[dict[str, Any]]) -> str:
    """A terminal table of the main metrics."""
    cols = [("policy", "{:<17}"), ("rate", "{:>5.2f}"), ("norm_latency_ms", "{:>9.1f}"),
            ("norm_latency_ms_ci95", "{:>7.1f}"), ("norm_latency_p90_ms", "{:>8.1f}"),
            ("completed_rps", "{:>6.3f}"), ("ttft_p50_s", "{:>7.3f}"), ("gpu_waste_pct", "{:>6.1f}"),
            ("recompute_share_pct", "{:>6.1f}")]
    head = ["policy", "rate", "lat ms/t", "±95%", "p90", "done/s", "ttft50", "waste%", "recmp%"]
    widths = [17, 5, 9, 7, 8, 6, 7, 6, 6]
    lines = [" ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(head, widths)))]
    for r in rows:
        lines.append(" ".join(f.format(r[c]) for c, f in cols))
    return "\n".join(lines)


def compare(base: RunConfig, policies: list[str], rates: list[float], seeds: int, out: Path,
            jobs: int = 1, target_ms: float = 100.0) -> list[dict[str, Any]]:
    """Run the grid, print the table, write summary.csv, summary_by_kind.csv and latency_vs_rate.png.

    Each policy runs with the share of ``base.policy_options`` it accepts; ConfigError names an option that
    none of ``policies`` accepts."""
    results = run_grid(base, policies, rates, seeds, jobs)
    return write_results(results, base, seeds, out, target_ms)


def run_grid(base: RunConfig, policies: list[str], rates: list[float], seeds: int,
             jobs: int = 1) -> list[tuple[RunConfig, dict[str, Any]]]:
    """Simulate policies x rates x seeds (``jobs`` processes); (config, summary) per run, in grid order."""
    from concurrent.futures import (
        ProcessPoolExecutor,  # here: `infercept run` imports this module for table()
    )

    shares = options_by_policy(policies, base.policy_options)
    cfgs = [replace(base, policy=p, policy_options=shares[p], rate_rps=r, seed=base.seed + s).validate()
            for p in policies for r in rates for s in range(seeds)]
    results: list[tuple[RunConfig, dict[str, Any]]] = []
    t0 = time.perf_counter()
    pool = ProcessPoolExecutor(max_workers=jobs) if jobs > 1 else None
    try:
        outcomes = pool.map(run_one, cfgs) if pool else map(run_one, cfgs)
        for i, (cfg, (summary, wall_s)) in enumerate(zip(cfgs, outcomes), start=1):
            results.append((cfg, summary))
            if sys.stderr.isatty():
                print(f"\r[{i}/{len(cfgs)}] {cfg.policy} rate={cfg.rate_rps:g} seed={cfg.seed} "
                      f"({wall_s:.1f}s)".ljust(70), end="", file=sys.stderr, flush=True)
    finally:
        if pool:
            pool.shutdown()
    print(f"\n{len(cfgs)} runs in {time.perf_counter() - t0:.1f}s wall", file=sys.stderr)
    return results


def write_results(results: list[tuple[RunConfig, dict[str, Any]]], base: RunConfig, seeds: int, out: Path,
                  target_ms: float = 100.0) -> list[dict[str, Any]]:
    """Aggregate runs over seeds (rows sorted by policy order of appearance, then rate), print the table,
    write summary.csv, summary_by_kind.csv and latency_vs_rate.png into ``out``; return the rows."""
    from analysis.figures import latency_vs_rate  # here: matplotlib only when plotting

    order = {p: i for i, p in enumerate(dict.fromkeys(cfg.policy for cfg, _ in results))}
    results = sorted(results, key=lambda x: (order[x[0].policy], x[0].rate_rps, x[0].seed))
    rows, kind_rows = aggregate(results)
    print(table(rows))
    atomic_write_text(out / "summary.csv", to_csv(rows))
    atomic_write_text(out / "summary_by_kind.csv", to_csv(kind_rows))
    title = (f"{base.workload} workload, {Path(base.profile).stem if base.profile else f'{base.gpu}-{base.model}'}"
             f"-tp{base.tp}, batching {base.batching}, {base.duration_s:g}s, {seeds} seed(s)")
    png = latency_vs_rate(rows, out / "latency_vs_rate.png", title, target_ms)
    print(f"wrote {out / 'summary.csv'}, {out / 'summary_by_kind.csv'}, {png}")
    return rows
