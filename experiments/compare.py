"""`infercept compare`: every policy at every rate over several seeds, run as a sweep (experiments/sweep.py);
a table, summary.csv and a plot."""

from __future__ import annotations

import csv
import io
import json
import statistics
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from analysis.knees import ci95
from core.config import ConfigError, RunConfig
from core.summary import METRICS
from core.trace_io import atomic_write_text


def aggregate(runs: list[dict[str, Any]], kind_runs: list[dict[str, Any]]
              ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Mean and 95% interval over seeds per (policy, rate) from a sweep's runs tables: overall rows and
    per-kind rows, policies in order of appearance, rates ascending."""
    order = {p: i for i, p in enumerate(dict.fromkeys(r["policy"] for r in runs))}
    groups: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for r in sorted(runs, key=lambda r: (order[r["policy"]], r["rate_rps"], r["seed"])):
        groups.setdefault((r["policy"], r["rate_rps"]), []).append(r)
    rows, kind_rows = [], []
    for (policy, rate), sums in groups.items():
        row: dict[str, Any] = {"policy": policy, "rate": rate, "seeds": len(sums)}
        row |= {k: statistics.fmean(s[k] for s in sums) for k in METRICS}
        for k in ("norm_latency_ms", "completed_rps", "norm_latency_corrected_ms"):
            row[k + "_ci95"] = ci95([s[k] for s in sums])
        rows.append(row)
        ids = {s["run_id"] for s in sums}
        per_kind: dict[str, list[dict[str, Any]]] = {}
        for kr in kind_runs:
            if kr["run_id"] in ids:
                per_kind.setdefault(kr["kind"], []).append(kr)
        for kind in sorted(per_kind):
            kind_rows.append({"policy": policy, "rate": rate, "kind": kind,
                              **{k: statistics.fmean(p[k] for p in per_kind[kind]) for k in METRICS}})
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


def sweep_toml(base: Mapping[str, Any], grid: Mapping[str, list[Any]], knee: Mapping[str, Any] | None = None,
               description: str = "") -> str:
    """A sweep file's text (for commands that build a sweep from their arguments)."""
    def lit(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, list | tuple):
            return "[" + ", ".join(lit(x) for x in v) + "]"
        if isinstance(v, Mapping):
            return "{ " + ", ".join(f"{json.dumps(k)} = {lit(x)}" for k, x in v.items()) + " }"
        return json.dumps(str(v))

    lines = ["[sweep]", f"description = {lit(description)}"] + ([f"knee = {lit(knee)}"] if knee else [])
    lines += ["", "[base]"] + [f"{k} = {lit(v)}" for k, v in base.items()]
    lines += ["", "[grid]"] + [f"{json.dumps(k)} = {lit(v)}" for k, v in grid.items()]
    return "\n".join(lines) + "\n"


def compare(base: RunConfig, policies: list[str], rates: list[float], seeds: int, out: Path,
            jobs: int = 1, target_ms: float = 100.0, refine: int | None = 0) -> list[dict[str, Any]]:
    """Run policies x rates x seeds as a sweep into ``out`` (run folders under ``out/runs/``, reused when
    run again; knees.csv with ``refine`` bisections of each crossing, none when None), print the table, write summary.csv, summary_by_kind.csv and
    latency_vs_rate.png. Each policy runs with the share of ``base.policy_options`` it accepts; ConfigError
    names an option that none of ``policies`` accepts."""
    from experiments.runstore import read_table
    from experiments.sweep import run_sweep
    from experiments.sweepspec import SweepError

    conf = {k: v for k, v in base.to_dict().items() if k not in ("policy", "rate_rps", "seed")}
    grid: dict[str, list[Any]] = {"policy": list(policies), "rate_rps": list(rates), "seed": [base.seed + s for s in range(seeds)]}
    knee = None if refine is None else {"target_ms": target_ms, "refine": refine}
    with tempfile.TemporaryDirectory(prefix="infercept-compare-") as tmp:
        path = Path(tmp) / f"{out.name or 'compare'}.toml"
        path.write_text(sweep_toml(conf, grid, knee, "infercept compare"))
        try:
            outcome = run_sweep(path, out, jobs, progress=sys.stderr.isatty())
        except SweepError as exc:  # name the setting, not the sweep file compare wrote
            raise ConfigError(str(exc).removeprefix(f"{path}: ")) from exc
    if outcome.failed:
        error = (out / "runs" / outcome.failed[0] / "error.txt").read_text().strip().splitlines()[-1]
        raise ConfigError(f"{len(outcome.failed)} of {outcome.total} runs failed (their tracebacks: "
                          f"{out / 'runs'}/<id>/error.txt); the first: {error}")
    runs, kind_runs = read_table(out / "runs.parquet"), read_table(out / "runs_by_kind.parquet")
    return write_results(runs, kind_runs, base, seeds, out, target_ms)


def write_results(runs: list[dict[str, Any]], kind_runs: list[dict[str, Any]], base: RunConfig, seeds: int,
                  out: Path, target_ms: float = 100.0) -> list[dict[str, Any]]:
    """Aggregate a sweep's runs over seeds, print the table, write summary.csv, summary_by_kind.csv and
    latency_vs_rate.png into ``out``; return the rows."""
    from analysis.figures import latency_vs_rate  # here: matplotlib only when plotting

    rows, kind_rows = aggregate(runs, kind_runs)
    print(table(rows))
    atomic_write_text(out / "summary.csv", to_csv(rows))
    atomic_write_text(out / "summary_by_kind.csv", to_csv(kind_rows))
    title = (f"{base.workload} workload, {Path(base.profile).stem if base.profile else f'{base.gpu}-{base.model}'}"
             f"-tp{base.tp}, batching {base.batching}, {base.duration_s:g}s, {seeds} seed(s)")
    png = latency_vs_rate(rows, out / "latency_vs_rate.png", title, target_ms)
    print(f"wrote {out / 'summary.csv'}, {out / 'summary_by_kind.csv'}, {png}")
    return rows
