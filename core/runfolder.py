"""A run folder: config.toml, summary.json, events/steps/requests as Parquet, optional Chrome trace.

The folder is built under a temporary name and renamed into place, so a failed run leaves nothing half
written. Only simulated quantities go in, so the same seed gives the same bytes.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from core.config import to_toml
from core.metrics import INT_STEP_COLUMNS, Metrics


def _write_parquet(path: Path, columns: dict[str, Any]) -> None:
    import pyarrow as pa  # here, not at the top: only runs that save pay for the import
    import pyarrow.parquet as pq

    pq.write_table(pa.table(columns), path, compression="zstd")


def chrome_trace(m: Metrics) -> dict[str, Any]:
    """Steps (one slice per interval) and interceptions (one slice per pause) in Chrome/Perfetto format."""
    events: list[dict[str, Any]] = []
    for start, dur, count, q in zip(m.steps["start_s"], m.steps["dur_s"], m.steps["count"],
                                    m.steps["prefill_tokens"]):
        events.append({"name": f"x{int(count)} steps" if count > 1 else f"step +{int(q)} prefill", "ph": "X",
                       "pid": 1, "tid": 0, "ts": start * 1e6, "dur": dur * 1e6})
    open_pause: dict[str, float] = {}
    tids: dict[str, int] = {}
    for t, rid, ev, _ in m.events:
        if ev.startswith("pause"):
            open_pause[rid] = t
        elif ev == "resume" and rid in open_pause:
            tid = tids.setdefault(rid, len(tids) + 1)
            start = open_pause.pop(rid)
            events.append({"name": f"tool {rid}", "ph": "X", "pid": 2, "tid": tid, "ts": start * 1e6,
                           "dur": (t - start) * 1e6})
        elif ev in ("swap_out", "swap_in", "discard", "finish"):
            events.append({"name": f"{ev} {rid}", "ph": "i", "s": "g", "pid": 1, "tid": 0, "ts": t * 1e6})
    meta = [{"name": "process_name", "ph": "M", "pid": 1, "args": {"name": "engine steps"}},
            {"name": "process_name", "ph": "M", "pid": 2, "args": {"name": "interceptions"}}]
    return {"traceEvents": meta + events, "displayTimeUnit": "ms"}


def save_run(folder: str | Path, m: Metrics, config: dict[str, Any], summary: dict[str, Any],
             trace: bool = False) -> Path:
    """Write the run folder atomically (replacing an existing one); return its path."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.tmp-"))
    try:
        (tmp / "config.toml").write_text(to_toml(config))
        (tmp / "summary.json").write_text(json.dumps({**summary, "notes": m.notes}, indent=2, sort_keys=True))
        _write_parquet(tmp / "events.parquet", m.event_columns)
        _write_parquet(tmp / "steps.parquet", {c: (a.astype("int64") if c in INT_STEP_COLUMNS else a)
                                                for c, a in m.steps.items()})
        recs = {"rid": list(m.requests)}
        for name in ("kind", "arrival_s", "prompt_tokens", "first_token_s", "finish_s", "gen_tokens",
                     "returned_tokens", "tool_s", "recomputed_tokens", "swapped_tokens"):
            recs[name] = [getattr(r, name) for r in m.requests.values()]
        _write_parquet(tmp / "requests.parquet", recs)
        if trace:
            (tmp / "trace.json").write_text(json.dumps(chrome_trace(m)))
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            folder.rename(old)
            tmp.rename(folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder
