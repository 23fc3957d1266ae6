"""The engine log: one JSON line per step and per KV event, written by the scheduler in the engine process.

Times are ``time.monotonic()`` (shared by the processes of one host); the driver subtracts its start.
A step line (``"e": "step"``) holds its shape in the cost model's terms (``BatchShape``), the tokens
scheduled per request, the admissions with their computed tokens, the recomputed tokens (per request, their
attention pairs and the blocks of the requests recomputing), KV blocks (used, held by paused requests,
allocated to swap-ins in progress, on the host; ``gpu_paused_blocks`` counts every idle block: paused
requests', swap-ins' in progress and resumed requests' holding their KV while they wait) and its timing: ``t0`` hook start, ``t_sched`` schedule
start (after the policy hook), ``t_exec`` schedule end, ``t_out`` output processing start, ``t_end`` output
processing end, ``copy_s`` the swap connector's copy time inside the step, and the idle blocks when it ends
(``gpu_paused_blocks_after``, by kind too: a step's swap-outs free theirs, its pauses add theirs), which stay
idle until the next step.
"""

from __future__ import annotations

import json
from typing import Any

from real.views import blocks_of, hints, trace_rid


def idle_blocks(sched: Any, paused: dict[str, Any]) -> tuple[dict[str, int], int]:
    """(idle GPU blocks by kind, those of them allocated to swap-ins in progress), as the simulator counts
    idle blocks: held by paused requests, by resumed ones whose KV is still being loaded back, and by resumed
    ones holding their KV while waiting for admission."""
    host = sched.ic_swapper
    held_by_kind: dict[str, int] = {}
    loading = 0
    for k, p in paused.items():
        is_loading = host is not None and host.load_progress(k) is not None
        if p.place in ("new", "gpu") or is_loading:
            held_by_kind[p.kind] = held_by_kind.get(p.kind, 0) + blocks_of(sched, k)
            loading += blocks_of(sched, k) if is_loading else 0
    for r in sched.kv_holding_waiting:
        if r.request_id not in paused:
            kind = str(hints(r).get("kind", ""))
            held_by_kind[kind] = held_by_kind.get(kind, 0) + blocks_of(sched, r.request_id)
    return held_by_kind, loading


class StepLog:
    """Appends engine records to a JSONL file, flushed per step (a crash leaves whole lines)."""

    def __init__(self, path: str) -> None:
        self._fh = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._swap_tokens = 0

    def event(self, t: float, rid: str, name: str, value: int) -> None:
        """A KV event: pause:<action>, discard, swap_out, swap_in, admit, recompute, prefix_hit (tokens an
        admission found in the GPU prefix cache), reload (tokens it loads from the host tier), seen (the engine
        saw a tool's return)."""
        if name in ("swap_out", "swap_in"):
            self._swap_tokens += value
        self._fh.write(json.dumps({"e": name, "t": t, "rid": rid, "v": value}) + "\n")

    def shape(self, sched: Any, out: Any, t0: float, t_sched: float, t_exec: float, redo: dict[str, int],
              paused: dict[str, Any]) -> dict[str, Any]:
        """The record of a step just scheduled (before it runs); counts recomputed tokens below ``redo``."""
        num_decode = ctx = prefill = recompute = redo_blocks = 0
        pairs = redo_pairs = 0.0
        per_req: dict[str, int] = {}
        redo_req: dict[str, int] = {}
        for req_id, n in out.num_scheduled_tokens.items():
            req = sched.requests[req_id]
            rid = trace_rid(req)
            per_req[rid] = n
            before = req.num_computed_tokens - n
            if n == 1 and before + 1 == req.num_tokens:
                num_decode += 1
                ctx += before + 1
            else:
                prefill += n
                pairs += n * (before + (n + 1) / 2)
            until = redo.get(req_id)
            if until is not None:
                again = max(min(before + n, until) - before, 0)
                if again:  # the first ``again`` tokens of the chunk had been computed before
                    recompute += again
                    redo_req[rid] = again
                    redo_pairs += again * (before + (again + 1) / 2)
                    redo_blocks += blocks_of(sched, req_id)
                    self.event(t_exec, rid, "recompute", again)
                if before + n >= until:
                    del redo[req_id]
        new = {}
        for r in out.scheduled_new_reqs:
            rid = trace_rid(sched.requests[r.req_id])
            new[rid] = r.num_computed_tokens
            self.event(t_exec, rid, "admit", sched.requests[r.req_id].num_tokens - r.num_computed_tokens)
        pool = sched.kv_cache_manager.block_pool
        used = pool.num_gpu_blocks - 1 - pool.get_num_free_blocks()
        held_by_kind, loading = idle_blocks(sched, paused)
        held = sum(held_by_kind.values())
        host = sched.ic_swapper
        host_used = host.num_host_blocks - host.host_free_blocks() if host is not None else 0
        swap, self._swap_tokens = self._swap_tokens, 0
        return {"e": "step", "t0": t0, "t_sched": t_sched, "t_exec": t_exec, "num_decode": num_decode,
                "decode_ctx_tokens": ctx, "prefill_tokens": prefill, "prefill_attn_pairs": pairs,
                "recompute_tokens": recompute, "recompute_attn_pairs": redo_pairs, "recompute_blocks": redo_blocks,
                "recompute": redo_req, "swap_tokens": swap, "gpu_used_blocks": used, "gpu_paused_blocks": held,
                "gpu_paused_blocks_by_kind": held_by_kind, "gpu_loading_blocks": loading, "cpu_used_blocks": host_used, "copy_s": 0.0, "sched": per_req,
                "new": new}

    def step(self, rec: dict[str, Any], t_out: float, t_end: float, sched: Any) -> None:
        """Complete a step's record with its execution and output-processing times; write it."""
        rec["t_out"], rec["t_end"] = t_out, t_end
        after, _ = idle_blocks(sched, sched.ic_paused)  # what stays idle until the next step
        rec["gpu_paused_blocks_after"], rec["gpu_paused_blocks_after_by_kind"] = sum(after.values()), after
        rec["gpu_total_blocks"] = sched.kv_cache_manager.block_pool.num_gpu_blocks - 1
        self._fh.write(json.dumps(rec) + "\n")
        self._fh.flush()

    def close(self) -> None:
        """Flush and close the file."""
        if not self._fh.closed:
            self._fh.close()

