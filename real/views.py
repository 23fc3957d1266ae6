"""What the policy sees of a vLLM scheduler: ReqView / EngineState built from its queues and KV manager.

Also the engine-private bookkeeping of one paused request (``Paused``) and the hints a request carries
(``hints``: rid, the request's kind, the interception's kind, ticket and true tool time, sent by the driver in
``SamplingParams.extra_args``).

The policy is shown vLLM's free blocks, plus the blocks a budgeted swap-in holds for what it has still to copy
back (vLLM allocated all of them at its admission: they are there for the request's own coming chunks). A
partial swap-out's copied blocks are neither free nor in the request's view: vLLM frees a request's blocks only
after its last copy. The simulator models the same with ``engine.swap_holds_blocks``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from core.types import EngineState, ReqView, Status

# vLLM's RequestStatus values (imported lazily in the engine process; these names keep views importable)
_WAITING_STATES = ("WAITING", "PREEMPTED")

HINT_KEY = "infercept"
"""Key of ``SamplingParams.extra_args`` under which the driver sends a request's hints."""


@dataclass(slots=True)
class Paused:
    """A request inside an interception (or resumed and waiting for its swapped KV), engine side."""

    req_id: str  # vLLM's request id
    rid: str  # the trace's
    ticket: int
    kind: str  # the request's augmentation kind
    tool_kind: str  # the current interception's
    tool_s: float
    paused_at_s: float
    ctx_tokens: int  # tokens whose KV existed at the pause (vLLM's safe frontier)
    place: str = "new"  # new (on_pause not asked yet) | gpu | discarded | cpu (all blocks copied)
    slots: list[int] = field(default_factory=list)  # host slots of the blocks copied so far (block order)
    resumed: bool = False

    @property
    def copied_blocks(self) -> int:
        """Blocks already copied to the host."""
        return len(self.slots)


def hints(request: Any) -> dict[str, Any]:
    """The driver's hints of a vLLM request ({} for a request that came without)."""
    extra = request.sampling_params.extra_args or {}
    return extra.get(HINT_KEY, {})


def trace_rid(request: Any) -> str:
    """The trace's id of a vLLM request (vLLM's own id for a request that came without hints)."""
    return str(hints(request).get("rid", request.request_id))


def blocks_of(sched: Any, req_id: str) -> int:
    """Device blocks a request holds now."""
    return len(sched.kv_cache_manager.coordinator.get_blocks(req_id)[0])


def load_progress(sched: Any, p: Paused) -> tuple[int, int] | None:
    """(blocks copied back, blocks to copy) of ``p``'s budgeted swap-in, if one is in progress."""
    swapper = sched.ic_swapper
    return swapper.load_progress(p.req_id) if swapper is not None and p.resumed else None


def req_view(sched: Any, p: Paused) -> ReqView:
    """The policy's view of one paused (or resumed-but-swapped) request."""
    # blocks a plan's swap-out will copy in the step being scheduled count as moved (a second plan before it)
    copied = p.copied_blocks + (sched.ic_swapper.pending_out(p.req_id) if sched.ic_swapper is not None else 0)
    gpu = 0 if p.place in ("cpu", "discarded") else blocks_of(sched, p.req_id) - copied
    cpu = copied
    loading = load_progress(sched, p)
    if loading is not None:
        gpu, cpu = loading[0], loading[1] - loading[0]
    computed = 0 if p.place == "discarded" else p.ctx_tokens
    status = Status.SWAPPED if p.resumed else Status.PAUSED
    # the tokens whose KV must exist before it decodes again: its context and the chunk's last sampled token
    # (which vLLM drops from the context at the pause, the driver sends it back), then the returned tokens
    context = sched.requests[p.req_id].num_tokens if p.resumed else p.ctx_tokens + 1
    return ReqView(p.rid, p.ticket, p.kind, status, context, computed, gpu, cpu,
                   p.paused_at_s if not p.resumed else math.nan, p.tool_s, tool_kind=p.tool_kind)


def engine_state(sched: Any, now_s: float, paused: dict[str, Paused], host_free_blocks: int,
                 waiting_cap_tokens: int) -> EngineState:
    """A snapshot of the scheduler for the policy. Running = vLLM's ``running`` queue plus the resumed
    requests that kept their KV (vLLM admits them ahead of everything else at this step); the waiting
    requests' pending tokens are summed until they reach ``waiting_cap_tokens`` (swapped ones excluded)."""
    bs = sched.block_size
    pool = sched.kv_cache_manager.block_pool
    free = pool.get_num_free_blocks()  # a swap-out's held blocks are not free (see the module's docstring)
    for p in paused.values():  # a swap-in's blocks not copied back yet are its own coming chunks'
        loading = load_progress(sched, p)
        if loading is not None:
            free += blocks_of(sched, p.req_id) - loading[0]
    holding = [r for r in sched.kv_holding_waiting if r.status.name in _WAITING_STATES]
    query = ctx = need = 0
    for r in [*sched.running, *holding]:
        query += max(r.num_tokens - r.num_computed_tokens, 1)
        ctx += r.num_computed_tokens
        need += max(-(-r.num_tokens // bs) - blocks_of(sched, r.request_id), 0)
    waiting = 0
    for r in sched.waiting:
        if waiting >= waiting_cap_tokens:
            break
        mine = paused.get(r.request_id)
        if r.status.name in _WAITING_STATES and (mine is None or not mine.resumed):
            waiting += r.num_tokens - r.num_computed_tokens
    views = [req_view(sched, p) for p in paused.values() if p.place != "discarded" or p.resumed]
    return EngineState(now_s, bs, free, host_free_blocks, query, ctx, max(need - free, 0),
                       tuple(v for v in views if v.status is Status.PAUSED and v.place.value != "none"),
                       tuple(v for v in views if v.status is Status.SWAPPED and v.cpu_blocks),
                       running_blocks_needed=need, waiting_query_tokens=waiting,
                       gpu_blocks_total=pool.num_gpu_blocks - 1)  # vLLM's pool keeps one null block


def wait_view(request: Any, decoded_tokens: int = 0) -> ReqView:
    """What a ranking policy (MARS) sees of a vLLM request entering the waiting queue, from the driver's
    hints (the current turn's true lengths) and the request's tokens, as the simulator's view of it;
    ``decoded_tokens``: what the turn had decoded before a preemption."""
    h = hints(request)
    return ReqView(trace_rid(request), int(h.get("ticket", 0)), h.get("req_kind", h.get("kind", "")),
                   Status.WAITING, request.num_tokens, request.num_computed_tokens, 0, 0, math.nan,
                   float(h.get("tool_s", 0.0)), h.get("kind", ""), int(h.get("gen_tokens", 0)),
                   int(h.get("tool_tokens", 0)), int(h.get("seg", 0)), decoded_tokens, bool(h.get("last", True)))
