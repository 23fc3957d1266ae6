"""A sweep's run folders and its aggregated tables.

``OUT/runs/<id>/`` holds a finished run (config.toml, summary.json, run.json) or a failed one (config.toml,
error.txt, run.json). A folder is built under a hidden temporary name and renamed into place, so a sweep
killed at any moment leaves either a whole folder or none (hidden leftovers are removed when a sweep starts).
``runs.parquet`` and ``runs_by_kind.parquet`` are rebuilt from the folders, rows in the sweep's order, with
simulated quantities only: the same sweep gives the same bytes however it was run.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from core.config import to_toml
from core.summary import METRICS
from experiments.sweepspec import SweepRun

DONE, FAILED, MISSING = "done", "failed", "missing"


def runs_dir(out: Path) -> Path:
    return out / "runs"


@contextmanager
def locked(out: Path) -> Iterator[None]:
    """Hold ``OUT/.lock`` (flock) while a sweep writes into ``out``; a second sweep into the same folder is
    refused with an error naming it."""
    import fcntl

    from experiments.sweepspec import SweepError

    with open(out / ".lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise SweepError(f"--out {out}: another sweep is writing into this folder") from exc
        yield


def clean_leftovers(out: Path) -> int:
    """Remove hidden temporary folders a killed sweep left behind; return how many."""
    n = 0
    for p in runs_dir(out).glob(".*"):
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        n += 1
    return n


def state(out: Path, run_id: str) -> str:
    """DONE (summary.json present), FAILED (error.txt present) or MISSING."""
    folder = runs_dir(out) / run_id
    if (folder / "summary.json").exists():
        return DONE
    return FAILED if (folder / "error.txt").exists() else MISSING


def write_run(out: Path, run: SweepRun, result: dict[str, Any], meta: dict[str, Any]) -> None:
    """Write ``run``'s folder atomically from an executor's ``result`` (replacing a failed one)."""
    final = runs_dir(out) / run.run_id
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{run.run_id}.tmp-"))
    try:
        (tmp / "config.toml").write_text(to_toml(run.config.to_dict()))
        info = {"run_id": run.run_id, "labels": run.labels, "status": result["status"],
                "wall_s": result["wall_s"], **meta}
        (tmp / "run.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        if result["status"] == DONE:
            (tmp / "summary.json").write_text(json.dumps(result["summary"], indent=2, sort_keys=True))
        else:
            (tmp / "error.txt").write_text(result["error"])
        for p in tmp.iterdir():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
        if final.exists():
            old = final.with_name(f".{run.run_id}.old")
            shutil.rmtree(old, ignore_errors=True)
            final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_run(out: Path, run_id: str, name: str) -> dict[str, Any]:
    """A JSON file of a run folder."""
    return dict(json.loads((runs_dir(out) / run_id / name).read_text()))


def stale_folders(out: Path, current: set[str], revision: str) -> dict[str, int]:
    """Finished or failed run folders that are not runs of this sweep now, by reason: another revision of the
    simulator, or the same revision (another profile, workload file or configuration)."""
    counts = {"other_revision": 0, "other_inputs": 0}
    folder = runs_dir(out)
    for p in sorted(folder.iterdir()) if folder.exists() else []:
        if p.name.startswith(".") or p.name in current or not (p / "run.json").exists():
            continue
        rev = json.loads((p / "run.json").read_text()).get("revision")
        counts["other_revision" if rev != revision else "other_inputs"] += 1
    return counts


def _sort_key(run: SweepRun, order: dict[str, dict[Any, int]]) -> tuple[Any, ...]:
    key: list[Any] = []
    for k, v in run.labels.items():
        if k in order and k != "rate_rps" and v in order[k]:
            key.append((0, order[k][v], 0.0, ""))
        else:
            num = float(v) if isinstance(v, int | float) else -1.0
            key.append((1, 0, num, str(v)))
    return tuple(key)


def ordered(runs: Sequence[SweepRun], grid_order: dict[str, list[Any]]) -> list[SweepRun]:
    """Runs in the sweep's order: variants and grid keys in file order, rates ascending (refined ones
    among them), independent of when each finished."""
    order = {k: {v: i for i, v in enumerate(vals)} for k, vals in grid_order.items()}
    return sorted(runs, key=lambda r: _sort_key(r, order))


def _write_parquet(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({c: [r.get(c) for r in rows] for c in columns})
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)


def write_tables(out: Path, runs: Sequence[SweepRun], label_keys: list[str]) -> tuple[int, int]:
    """Rebuild runs.parquet (one row per finished run: run_id, labels, every summary metric) and
    runs_by_kind.parquet (one row per run and augmentation kind) from the run folders; return the rows."""
    rows, kind_rows = [], []
    for run in runs:
        if state(out, run.run_id) != DONE:
            continue
        s = read_run(out, run.run_id, "summary.json")
        head = {"run_id": run.run_id, **{k: run.labels.get(k) for k in label_keys}}
        rows.append({**head, **{m: float(s["overall"][m]) for m in METRICS}})
        for kind in sorted(s["by_kind"]):
            kind_rows.append({**head, "kind": kind, **{m: float(s["by_kind"][kind][m]) for m in METRICS}})
    cols = ["run_id", *label_keys]
    _write_parquet(out / "runs.parquet", rows, cols + list(METRICS))
    _write_parquet(out / "runs_by_kind.parquet", kind_rows, cols + ["kind", *METRICS])
    return len(rows), len(kind_rows)


def read_table(path: Path) -> list[dict[str, Any]]:
    """A Parquet table as a list of rows."""
    import pyarrow.parquet as pq

    return list(pq.read_table(path).to_pylist())
