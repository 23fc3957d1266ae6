"""From a real run's client log and engine log to the project's Metrics (what a simulated run records).

Times become seconds from the run's start. Pauses take the engine's instant and action, resumes, first
tokens and finishes the client's; events after the window are dropped. A request the window ends inside a
segment of (running, or waiting after a preemption) is credited the tokens the client received of it, as
the simulator credits its segment in progress; one paused at the end was credited its segment at the pause
(the engine logs a pause at its next step: a pause in the engine's very last step before it stopped would be
missing, its segment's tokens with it).

Every step row is the simulator's (``sim/engine.py``, ``_record``), from measured durations: ``stall_s`` is the
swap connector's copy time inside the step (the CPU build copies synchronously), ``fwd_s`` the rest;
``recompute_s`` is the recomputed tokens' share of the step by the cost model applied to its shape (step time
less that of the same step without them), times the measured ``fwd_s``; ``waste_block_s`` charges the blocks
held by paused requests for the step (and those idle when it ends until the next step: a step's swap-outs
free blocks, its pauses idle them), the blocks of recomputing requests for the step, the other running
blocks for the recompute time, and the running blocks for the copy stall.
"""

from __future__ import annotations

import bisect
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from core.cost import BatchShape, FittedCostModel
from core.metrics import SWAP_STALL, Metrics
from core.types import RequestSpec
from real.driver import ClientLog


def read_engine_log(path: str | Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(step records, KV events) of an engine log, in file order."""
    steps, events = [], []
    for line in Path(path).read_text().splitlines():
        rec = json.loads(line)
        (steps if rec["e"] == "step" else events).append(rec)
    return steps, events


@dataclass(frozen=True, slots=True)
class StepWaste:
    """One step's stall, recompute time and wasted block-seconds, and who caused them."""

    stall_s: float
    recompute_s: float
    waste_block_s: float
    paused_by_kind: dict[str, float]  # block-seconds of paused requests, by their kind
    recompute_by_rid: dict[str, tuple[float, float]]  # rid -> (recompute s, block-seconds) it caused


def step_waste(s: dict[str, Any], cost: FittedCostModel, span_s: float | None = None) -> StepWaste:
    """Stall, recompute time and waste of one engine step record, as the simulator records a step.
    ``span_s``: time from this step's start to the next one's (or the window end): the blocks idle when the
    step ends are charged over the rest of it, so the engine's idle gaps count as the simulator's continuous
    integral does (default: the step)."""
    dur = s["t_end"] - s["t0"]
    span = dur if span_s is None else max(span_s, dur)
    stall = s.get("copy_s", 0.0)
    fwd = dur - stall
    redo = s["recompute_tokens"]
    redo_s = 0.0
    if redo:
        shape = BatchShape.of_step(s)
        whole = sum(n == s["sched"][rid] for rid, n in s.get("recompute", {}).items())  # chunks all recomputed
        without = BatchShape(s["num_decode"], s["decode_ctx_tokens"], s["prefill_tokens"] - redo,
                             s["prefill_attn_pairs"] - s["recompute_attn_pairs"], shape.num_prefill_seqs - whole)
        full = cost.step_s(shape)
        redo_s = fwd * (full - (cost.step_s(without) if without.query_tokens else 0.0)) / full
    paused = {k: b * dur for k, b in s["gpu_paused_blocks_by_kind"].items()}
    for k, b in s["gpu_paused_blocks_after_by_kind"].items():  # idle from the step's end to the next step
        paused[k] = paused.get(k, 0.0) + b * (span - dur)
    waste = s["gpu_paused_blocks"] * dur + s["gpu_paused_blocks_after"] * (span - dur)
    by_rid: dict[str, tuple[float, float]] = {}
    if redo or stall:
        running = s["gpu_used_blocks"] - s["gpu_paused_blocks"]
        redo_blocks = s.get("recompute_blocks", 0)
        redo_waste = (running - redo_blocks) * redo_s + redo_blocks * dur
        by_rid = {rid: (redo_s * n / redo, redo_waste * n / redo) for rid, n in s.get("recompute", {}).items()}
        waste += redo_waste + (running - redo_blocks) * stall
    return StepWaste(stall, redo_s, waste, paused, by_rid)


def freed_in_gap(s: dict[str, Any], gap_end: float, discards: list[dict[str, Any]], times: list[float],
                 block_size_tokens: int, kind_of: dict[str, str]) -> dict[str, float]:
    """Block-seconds, by kind, of paused KV charged over the gap after step ``s`` (from its end until
    ``gap_end``, absolute) though discarded inside it: a plan the engine applied after idling past its instant (a TTL's expiry,
    logged at that instant) frees the blocks from then on, as the simulator frees them at the expiry.
    ``discards``: the engine's discard events sorted by time, ``times`` their times."""
    out: dict[str, float] = {}
    for e in discards[bisect.bisect_right(times, s["t_exec"]):bisect.bisect_left(times, gap_end)]:
        kind = kind_of.get(e["rid"], "")
        idle_s = max(gap_end - max(e["t"], s["t_end"]), 0.0)  # none when the step runs past the window end
        out[kind] = out.get(kind, 0.0) + -(-e["v"] // block_size_tokens) * idle_s
    return out


def step_row(s: dict[str, Any], t0: float, w: StepWaste) -> tuple[float, ...]:
    """One STEP_COLUMNS row of an engine step record and its waste."""
    dur = s["t_end"] - s["t0"]
    return (s["t0"] - t0, 1, dur, dur - w.stall_s, s["num_decode"], s["decode_ctx_tokens"], s["prefill_tokens"],
            s["recompute_tokens"], s["swap_tokens"], s["gpu_used_blocks"], s["gpu_paused_blocks"],
            s["cpu_used_blocks"], w.stall_s, w.recompute_s, w.waste_block_s, s["t_sched"] - s["t0"])


def build_metrics(specs: list[RequestSpec], t0: float, client: ClientLog, engine_log: str | Path,
                  window_s: float, total_gpu_blocks: int, cost: FittedCostModel) -> tuple[Metrics, list[dict[str, Any]]]:
    """The run's Metrics and its raw step records (for the step-time comparison). ``cost`` is the cost
    model the simulator would use (for the recomputed tokens' share of a step)."""
    steps, kv_events = read_engine_log(engine_log)
    by_rid = {s.rid: s for s in specs}
    end = window_s if math.isfinite(window_s) else max(
        [t - t0 for t, *_ in client.events] + [s["t_end"] - t0 for s in steps] + [0.0])
    m = Metrics(end, total_gpu_blocks)
    merged = [(t, 0, name, rid, v) for t, name, rid, v in client.events]
    merged += [(e["t"], 1, e["e"], e["rid"], e["v"]) for e in kv_events]
    merged.sort(key=lambda x: (x[0], x[1]))
    seg_of: dict[str, int] = {}
    in_seg: dict[str, int] = {}  # tokens the client has received of each request's running segment
    # a return the client sent and the engine has not seen yet: the pause's KV outcome is the engine's until
    # then (a discard or swap-out in between counts), its tool time the client's
    sent: dict[str, tuple[float, int]] = {}
    if not any(e["e"] == "seen" for e in kv_events) and any(name == "resume" for _, name, *_ in client.events):
        raise ValueError(f"{engine_log}: no 'seen' events (the engine seeing a tool's return): a log from before "
                         "the executor wrote them; run it again")
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
            in_seg[rid] = in_seg.get(rid, 0) + v
        elif name == "chunk_end":
            in_seg[rid] = 0
        elif name.startswith("pause:"):
            k = seg_of.get(rid, 0)
            m.pause(t, rid, by_rid[rid].segments[k].gen_tokens, name.split(":", 1)[1])
            seg_of[rid] = k + 1
        elif name == "resume":
            sent[rid] = (t, v)
        elif name == "seen":
            if rid in sent:
                t_sent, returned = sent.pop(rid)
                m.resume(t_sent, rid, returned)
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
        elif name == "prefix_hit":
            m.prefix_hit(t, rid, v, 0)
        elif name == "reload":
            m.prefix_hit(t, rid, 0, v)
    for rid, (t_sent, returned) in sent.items():  # sent in the window, seen after it: resumed, as the simulator
        m.resume(t_sent, rid, returned)
    for rid, n in in_seg.items():  # the window ended inside these segments: credit what the client received
        rec = m.requests[rid]
        if n and math.isnan(rec.finish_s) and math.isnan(rec.paused_at_s):  # a pause credited its segment
            m.progress(rid, n)
    starts = [s["t0"] - t0 for s in steps] + [math.inf]
    discards = sorted((e for e in kv_events if e["e"] == "discard"), key=lambda e: e["t"])
    times = [e["t"] for e in discards]
    kinds = {rid: spec.kind for rid, spec in by_rid.items()}
    for i, s in enumerate(steps):
        if s["t0"] - t0 > end:
            continue
        w = step_waste(s, cost, min(starts[i + 1], end) - (s["t0"] - t0))
        freed = freed_in_gap(s, t0 + min(starts[i + 1], end), discards, times, cost.block_size_tokens, kinds)
        if freed:
            paused = dict(w.paused_by_kind)
            for kind, block_s in freed.items():  # at most what the step charged that kind
                block_s = min(block_s, paused.get(kind, 0.0))
                paused[kind] = paused.get(kind, 0.0) - block_s
                w = replace(w, waste_block_s=w.waste_block_s - block_s)
            w = replace(w, paused_by_kind=paused)
        m.step(*step_row(s, t0, w))
        for kind, block_s in w.paused_by_kind.items():
            m.attribute(kind, waste_block_s=block_s)
        for rid, (redo_s, block_s) in w.recompute_by_rid.items():
            m.attribute(by_rid[rid].kind if rid in by_rid else "", waste_block_s=block_s, recompute_s=redo_s)
        if w.stall_s:
            running = s["gpu_used_blocks"] - s["gpu_paused_blocks"]
            m.attribute(SWAP_STALL, waste_block_s=(running - s.get("recompute_blocks", 0)) * w.stall_s)
    m.notes["steps"] = len(m.step_rows)
    return m, steps
