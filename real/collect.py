"""From a real run's client log and engine log to the project's Metrics (what a simulated run records).

Times become seconds from the run's start. Pauses take the engine's instant and action, resumes, first
tokens and finishes the client's; events after the window are dropped.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from core.metrics import Metrics
from core.types import RequestSpec
from real.driver import ClientLog


def read_engine_log(path: str | Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(step records, KV events) of an engine log, in file order."""
    steps, events = [], []
    for line in Path(path).read_text().splitlines():
        rec = json.loads(line)
        (steps if rec["e"] == "step" else events).append(rec)
    return steps, events


def step_row(s: dict[str, Any], t0: float) -> tuple[float, ...]:
    """One STEP_COLUMNS row of an engine step record."""
    dur = s["t_end"] - s["t0"]
    fwd = s["t_out"] - s["t_exec"]
    q = s["num_decode"] + s["prefill_tokens"]
    return (s["t0"] - t0, 1, dur, fwd, s["num_decode"], s["decode_ctx_tokens"], s["prefill_tokens"],
            s["recompute_tokens"], s["swap_tokens"], s["gpu_used_blocks"], s["gpu_paused_blocks"],
            s["cpu_used_blocks"], 0.0, fwd * s["recompute_tokens"] / q if q else 0.0,
            s["gpu_paused_blocks"] * dur, s["t_sched"] - s["t0"])


def build_metrics(specs: list[RequestSpec], t0: float, client: ClientLog, engine_log: str | Path,
                  window_s: float, total_gpu_blocks: int) -> tuple[Metrics, list[dict[str, Any]]]:
    """The run's Metrics and its raw step records (for the step-time comparison)."""
    steps, kv_events = read_engine_log(engine_log)
    by_rid = {s.rid: s for s in specs}
    end = window_s if math.isfinite(window_s) else max(
        [t - t0 for t, *_ in client.events] + [s["t_end"] - t0 for s in steps] + [0.0])
    m = Metrics(end, total_gpu_blocks)
    merged = [(t, 0, name, rid, v) for t, name, rid, v in client.events]
    merged += [(e["t"], 1, e["e"], e["rid"], e["v"]) for e in kv_events]
    merged.sort(key=lambda x: (x[0], x[1]))
    seg_of: dict[str, int] = {}
    for t_abs, _, name, rid, v in merged:
        t = t_abs - t0
        if t > end or rid not in by_rid:
            continue
        if name == "arrive":
            m.arrive(t, rid, by_rid[rid].kind, v)
        elif rid not in m.requests:
            continue
        elif name == "token":
            m.token(t, rid)
        elif name.startswith("pause:"):
            k = seg_of.get(rid, 0)
            m.pause(t, rid, by_rid[rid].segments[k].gen_tokens, name.split(":", 1)[1])
            seg_of[rid] = k + 1
        elif name == "resume":
            m.resume(t, rid, v)
        elif name == "finish":
            m.finish(t, rid, v)
        elif name in ("swap_out", "swap_in"):
            m.swap(t, rid, name, v)
        elif name == "discard":
            m.discard(t, rid, v)
        elif name == "recompute":
            m.recompute(t, rid, v)
        elif name == "admit":
            m.admit(t, rid, v)
    for s in steps:
        if s["t0"] - t0 <= end:
            m.step(*step_row(s, t0))
    waste = float(m.steps["waste_block_s"].sum()) if m.step_rows else 0.0
    m.attribute("_paused", waste_block_s=waste)
    m.notes["steps"] = len(m.step_rows)
    return m, steps
