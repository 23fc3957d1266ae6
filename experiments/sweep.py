"""`infercept sweep FILE.toml --out DIR`: run a sweep's grid on a process pool or Ray, resumably.

The runs of the grid (experiments/sweepspec.py) that have no finished folder under ``DIR/runs/`` are run (a
failed one only with ``retry_failed``); with ``[sweep.knee] refine = n``, n rounds then add the midpoint of
every rate interval in which a curve crosses the target, at every seed, and run those too. At the end
``runs.parquet``/``runs_by_kind.parquet`` are rebuilt from the folders (and ``knees.csv`` written when the
sweep has a knee section). ``timing.json`` keeps the wall times, which are not results.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analysis.knees import (
    KNEE_COLUMNS,
    crossing_midpoint,
    curve_key,
    curves,
    knee_rows,
    knee_table,
    rows_to_csv,
)
from core.trace_io import atomic_write_text
from experiments import runstore
from experiments.executors import run_local, run_ray
from experiments.runid import code_revision
from experiments.sweepspec import Sweep, SweepError, SweepRun, expand, load_sweep, resolve


@dataclass
class Outcome:
    """What a sweep invocation did."""

    total: int = 0
    reused: int = 0
    ran: int = 0
    failed: list[str] = field(default_factory=list)
    run_wall_s: float = 0.0
    wall_s: float = 0.0


def refinements(sweep: Sweep, runs: Sequence[SweepRun], out: Path, revision: str) -> list[SweepRun]:
    """One refinement round: for every curve of the finished runs and every knee metric, runs at the midpoint
    of the interval where the curve first crosses the target, at every seed of the curve (not yet in runs)."""
    assert sweep.knee is not None
    have = {r.key for r in runs}
    done = [r for r in runs if runstore.state(out, r.run_id) == runstore.DONE]
    by_curve: dict[Any, list[SweepRun]] = {}
    rows = []
    for r in done:
        s = runstore.read_run(out, r.run_id, "summary.json")["overall"]
        rows.append({**r.labels, **{m: s[m] for m in sweep.knee.metrics}})
        by_curve.setdefault(curve_key(r.labels), []).append(r)
    new: dict[str, SweepRun] = {}  # by key: two variants sharing a run each get their own midpoints
    for metric in sweep.knee.metrics:
        for key, pts in curves(rows, sweep.label_keys, metric).items():
            mid = crossing_midpoint(pts, sweep.knee.target_ms)
            if mid is None:
                continue
            for r in by_curve[key]:  # one run per seed of this curve at the midpoint
                run = resolve(sweep, {**r.point, "rate_rps": mid}, r.variant, revision)
                if run.key not in have:
                    new[run.key] = run
    return list(new.values())


def _results(todo: Sequence[SweepRun], executor: str, jobs: int, address: str
             ) -> Iterator[tuple[SweepRun, dict[str, Any]]]:
    order = sorted(todo, key=lambda r: -r.config.rate_rps * r.config.duration_s)  # longest first
    configs = [r.config.to_dict() for r in order]
    it = run_ray(configs, address, jobs) if executor == "ray" else run_local(configs, jobs)
    for i, result in it:
        yield order[i], result


def execute_runs(todo: Sequence[SweepRun], out: Path, executor: str, jobs: int, address: str,
                 revision: str, outcome: Outcome, bar: Any) -> None:
    """Run ``todo`` and write each folder as its result arrives."""
    for run, result in _results(todo, executor, jobs, address):
        if result["status"] == runstore.DONE and result["revision"] != revision:
            result = {**result, "status": runstore.FAILED,
                      "error": f"the worker ran simulator revision {result['revision']}, not {revision}: "
                               "install this project's revision on every node\n"}
        elif result["status"] == runstore.DONE and result["inputs"] != run.inputs:
            result = {**result, "status": runstore.FAILED,
                      "error": f"the worker read files with digests {result['inputs']}, not {run.inputs}: "
                               "every node needs the same profile and workload files\n"}
        runstore.write_run(out, run, result, {"revision": revision, "executor": executor})
        outcome.ran += 1
        outcome.run_wall_s += result["wall_s"]
        if result["status"] != runstore.DONE:
            outcome.failed.append(run.run_id)
        bar.update(1)
        bar.set_postfix(failed=len(outcome.failed), refresh=False)


def _todo(runs: Sequence[SweepRun], out: Path, retry_failed: bool) -> list[SweepRun]:
    """The runs to execute, each id once (two variants may resolve to the same configuration: it runs once
    and appears under both labels in the tables)."""
    want = {runstore.MISSING, runstore.FAILED} if retry_failed else {runstore.MISSING}
    unique = {r.run_id: r for r in reversed(runs)}
    return [r for r in unique.values() if runstore.state(out, r.run_id) in want][::-1]


def run_sweep(path: str | Path, out: str | Path, jobs: int = 0, executor: str = "local", address: str = "",
              retry_failed: bool = False, progress: bool = True,
              echo: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> Outcome:
    """Run the sweep file at ``path`` into ``out``; see the module docstring."""
    from tqdm import tqdm

    t0 = time.perf_counter()
    sweep, out, jobs = load_sweep(path), Path(out), jobs or os.cpu_count() or 1
    revision = code_revision()
    runs = expand(sweep, revision)  # every error in the file is raised here, before anything runs
    try:
        runstore.runs_dir(out).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SweepError(f"--out {out}: cannot create the sweep folder: {exc}") from exc
    with runstore.locked(out):
        runstore.clean_leftovers(out)
        outcome = Outcome(reused=len({r.run_id for r in runs
                                      if runstore.state(out, r.run_id) == runstore.DONE}))
        todo = _todo(runs, out, retry_failed)
        with tqdm(total=len(todo), desc=sweep.name, unit="run", file=sys.stderr, disable=not progress,
                  dynamic_ncols=True) as bar:
            execute_runs(todo, out, executor, jobs, address, revision, outcome, bar)
            for _ in range(sweep.knee.refine if sweep.knee else 0):
                extra = refinements(sweep, runs, out, revision)
                outcome.reused += len({r.run_id for r in extra if runstore.state(out, r.run_id) == runstore.DONE})
                runs = runs + extra
                todo = _todo(extra, out, retry_failed)
                bar.total += len(todo)
                bar.refresh()
                execute_runs(todo, out, executor, jobs, address, revision, outcome, bar)
        outcome.wall_s = time.perf_counter() - t0
        _finish(sweep, Path(path), out, runs, jobs, executor, address, outcome, echo)
    return outcome


def _finish(sweep: Sweep, path: Path, out: Path, runs: list[SweepRun], jobs: int, executor: str,
            address: str, outcome: Outcome, echo: Callable[[str], None]) -> None:
    """The sweep's tables, knees.csv, failed.json, timing.json and its file, each written atomically."""
    runs = runstore.ordered(runs, {"variant": [v["name"] for v in sweep.variants], **sweep.grid})
    outcome.total = len({r.run_id for r in runs})
    outcome.failed = sorted({r.run_id for r in runs if runstore.state(out, r.run_id) == runstore.FAILED})
    n_rows, _ = runstore.write_tables(out, runs, sweep.label_keys)
    if sweep.knee and n_rows:
        rows = runstore.read_table(out / "runs.parquet")
        krows = knee_rows(rows, sweep.label_keys, sweep.knee.target_ms, sweep.knee.metrics)
        atomic_write_text(out / "knees.csv", rows_to_csv(krows, KNEE_COLUMNS))
        echo(f"knees at {sweep.knee.target_ms:g} ms/token:\n"
             + knee_table(krows, max(float(r["rate_rps"]) for r in rows)))
    atomic_write_text(out / "failed.json", json.dumps(outcome.failed, indent=1) + "\n")
    # on a cluster (--address) the jobs are the cluster's, not --jobs: no efficiency figure
    efficiency = outcome.run_wall_s / (jobs * outcome.wall_s) if outcome.ran and not address else None
    if outcome.ran:  # timing.json: one entry per invocation that ran something (wall times are not results)
        timing = json.loads((out / "timing.json").read_text()) if (out / "timing.json").exists() else []
        timing = timing if isinstance(timing, list) else [timing]
        timing.append({"jobs": jobs, "executor": executor, "ran": outcome.ran, "reused": outcome.reused,
                       "wall_s": round(outcome.wall_s, 3), "run_wall_s_sum": round(outcome.run_wall_s, 3),
                       "parallel_efficiency": None if efficiency is None else round(efficiency, 3)})
        atomic_write_text(out / "timing.json", json.dumps(timing, indent=2) + "\n")
    atomic_write_text(out / "sweep.toml", path.read_text())
    echo(f"{sweep.name}: {outcome.total} runs ({outcome.ran} ran, {outcome.reused} reused, "
         f"{len(outcome.failed)} failed), {n_rows} rows in {out / 'runs.parquet'}; {outcome.wall_s:.1f} s wall"
         + (f", parallel efficiency {efficiency:.0%} on {jobs} jobs" if efficiency else ""))
    for rid in outcome.failed:
        echo(f"  failed: {runstore.runs_dir(out) / rid / 'error.txt'}")


def dry_run(path: str | Path, out: str | Path) -> str:
    """The runs a sweep would make, and how many are done, failed, to run, or stale in ``out``."""
    sweep, out = load_sweep(path), Path(out)
    if out.exists() and not out.is_dir():
        raise SweepError(f"--out {out}: not a folder")
    revision = code_revision()
    runs = expand(sweep, revision)
    for _ in range(sweep.knee.refine if sweep.knee else 0):  # the rounds the finished runs already decide
        if any(runstore.state(out, r.run_id) != runstore.DONE for r in runs):
            break
        runs = runs + refinements(sweep, runs, out, revision)
    states = [runstore.state(out, r.run_id) for r in runs]
    keys = [k for k in sweep.label_keys if len({str(r.labels[k]) for r in runs}) > 1]
    lines = [f"{r.run_id:<17}{st:<8}" + " ".join(f"{k}={r.labels[k]}" for k in keys)
             for r, st in zip(runs, states)]
    stale = runstore.stale_folders(out, {r.run_id for r in runs}, revision)
    refine = (f"; knee refinement (up to {sweep.knee.refine} rounds) may add midpoints"
              if sweep.knee and sweep.knee.refine else "")
    lines.append(f"{sweep.name}: {len(runs)} runs known: {states.count(runstore.DONE)} done, "
                 f"{states.count(runstore.FAILED)} failed, {states.count(runstore.MISSING)} to run{refine}; "
                 f"stale folders in {out}: {stale['other_revision']} from another simulator revision, "
                 f"{stale['other_inputs']} from another profile, workload file or configuration "
                 f"(revision {revision})")
    return "\n".join(lines)


__all__ = ["Outcome", "SweepError", "dry_run", "run_sweep"]
