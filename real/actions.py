"""The policy hook of the real scheduler and the KV actions it applies (a mixin of ``real.scheduler``).

- ``_ic_hook`` (before every step with paused requests): ``on_pause`` for each new pause, then ``plan_step``;
  after an empty plan it asks ``next_decision_at`` (``ic_due_at``: when the plan could change without an
  event, e.g. a TTL's expiry), so that a resume arriving after the engine idled past that instant applies
  the due plan first, as the simulator's jump to that instant would have;
- discard frees the blocks at once (logged ``discard``);
- ``_ic_unblock`` (after every step that ran nothing): breaks the wait of resumed requests holding every block,
  as the simulator does;
- swap copies blocks to host slots through ``real.swap`` (whole request, or the plan's blocks per step); the
  device blocks are freed after the step that copied the last of them; a whole swap that finds too few free
  host slots discards instead (as the simulator does). A plan is applied in the simulator's order: discards,
  swap-ins, then swap-outs, whose host slots are taken once the step's swap-ins have given theirs back.
"""

from __future__ import annotations

import math
import time
from typing import Any

from core.types import KvAction, StepPlan
from real.queues import ticket_of
from real.views import Paused, blocks_of, engine_state, req_view, trace_rid


class PolicyActions:
    """Applies the policy's decisions to a vLLM scheduler (state lives in ``InterceptMixin``)."""

    ic_policy: Any
    ic_paused: dict[str, Paused]
    ic_swapper: Any
    ic_log: Any
    ic_waiting_cap: int
    _ic_freeing: list[str]
    ic_due_at: float  # when the policy's plan may change without an event (inf: only by an event)
    ic_idle: bool  # the engine had nothing to step since the last hook
    ic_service: dict[str, int]
    ic_turn_base: dict[str, int]
    ic_redo: dict[str, int]
    ic_plan_seen: dict[str, Any] | None  # what the last plan saw and decided (logged with the step)

    def _ic_discard(self, rid: str, p: Paused, now: float) -> None:
        self.ic_log.event(now, p.rid, "discard", p.ctx_tokens)
        self._free_request_blocks(self.requests[rid])  # type: ignore[attr-defined]
        if self.ic_swapper is not None:  # a swap-out planned between steps is dropped with the KV
            self.ic_swapper.cancel_out(rid)
        if p.slots:  # all on the host: its slots are the swapped entry's, given back by release itself
            self.ic_swapper.release(rid, None if p.place == "cpu" else p.slots)
            p.slots = []
        self._ic_freeing = [r for r in self._ic_freeing if r != rid]
        p.place = "discarded"

    def _ic_unblock(self, out: Any, now: float) -> None:
        """Nothing ran, nothing was admitted, nothing is being copied, and two or more resumed requests hold
        their KV waiting for blocks that only they could free: vLLM would wait forever. As the simulator does
        (``sim.batch``), recompute-preempt the newest of them: its blocks freed (logged ``discard``), it goes
        back to the waiting queue, and the next step admits the oldest."""
        if out.total_num_scheduled_tokens or self.running or self._ic_freeing:  # type: ignore[attr-defined]
            return
        queue = list(self.kv_holding_waiting)  # type: ignore[attr-defined]
        if any(r.status.name == "WAITING_FOR_REMOTE_KVS" for r in queue):
            return  # a swap-in is loading: its blocks come free or into use without us
        holding = [r for r in queue if r.status.name == "WAITING" and r.num_computed_tokens > 0]
        if len(holding) < 2:
            return
        r = holding[-1]
        rid, computed = r.request_id, r.num_computed_tokens
        self.ic_service[rid] = self.ic_service.get(rid, 0) + computed - self.ic_turn_base.pop(rid, 0)
        self.ic_redo[rid] = computed
        self.ic_log.event(now, trace_rid(r), "discard", computed)
        self._free_request_blocks(r)  # type: ignore[attr-defined]
        r.num_computed_tokens = 0
        self.kv_holding_waiting.remove_request(r)  # type: ignore[attr-defined]
        self._ic_requeue(r, ticket_of(r))  # type: ignore[attr-defined]

    def _ic_next_blocks(self, rid: str, p: Paused, num_blocks: int) -> list[int]:
        """The device blocks of ``rid`` that a swap-out of ``num_blocks`` copies next (none once all are)."""
        if self.ic_swapper is None or rid in self._ic_freeing:
            return []
        ids = self.kv_cache_manager.get_block_ids(rid)[0]  # type: ignore[attr-defined]
        start = p.copied_blocks + self.ic_swapper.pending_out(rid)  # after those a plan queued already
        return list(ids[start:start + num_blocks])

    def _ic_copied_out(self, rid: str, p: Paused, slots: list[int], t: float) -> None:
        """``rid``'s next blocks are copied into ``slots`` in the step being scheduled; once all are, its device
        blocks are freed after that step."""
        p.slots.extend(slots)
        bs = self.block_size  # type: ignore[attr-defined]
        tokens = min(p.ctx_tokens, len(p.slots) * bs) - min(p.ctx_tokens, (len(p.slots) - len(slots)) * bs)
        self.ic_log.event(t, p.rid, "swap_out", tokens)
        if len(p.slots) == blocks_of(self, rid):
            self._ic_freeing.append(rid)

    def _ic_swap_out(self, rid: str, p: Paused, num_blocks: int, now: float) -> bool:
        """A pause's swap: copy the next ``num_blocks`` blocks; False if there are not enough free host slots
        (nothing is copied)."""
        todo = self._ic_next_blocks(rid, p, num_blocks)
        slots = self.ic_swapper.reserve(len(todo)) if todo else None
        if not slots:
            return False
        self.ic_swapper.queue_out(todo, slots)
        self._ic_copied_out(rid, p, slots, now)
        return True

    def _ic_swapped_out(self, t: float) -> None:
        """The plan's swap-outs that got host slots when the step was built (``real.swap``'s ``out_done``)."""
        if self.ic_swapper is None:
            return
        for req_id, slots in self.ic_swapper.out_done.items():
            p = self.ic_paused.get(req_id)
            if p is None:  # gone since its plan (request_finished cancels it; kept as a guard)
                self.ic_swapper.release(req_id, slots)
                continue
            self._ic_copied_out(req_id, p, slots, t)
        self.ic_swapper.out_done = {}

    def _ic_apply(self, plan: StepPlan, by_rid: dict[str, str], now: float) -> None:
        """Discards, then swap-ins, then swap-outs (which may take the host slots this step's swap-ins free)."""
        for rid in plan.discard:
            self._ic_discard(by_rid[rid], self.ic_paused[by_rid[rid]], now)
        if self.ic_swapper is not None and self.ic_swapper.chunked_in:
            for rid, n in plan.swap_in:  # copied in this step if vLLM admits the request now (or has)
                self.ic_swapper.grant(by_rid[rid], n)
        # otherwise a swapped request is loaded whole when vLLM admits it (see real.swap)
        for rid, n in plan.swap_out:
            todo = self._ic_next_blocks(by_rid[rid], self.ic_paused[by_rid[rid]], n)
            if todo:
                self.ic_swapper.plan_out(by_rid[rid], todo)

    def _ic_hook(self, at_s: float | None = None) -> None:
        """Ask the policy (``on_pause`` for new pauses, then ``plan_step``) and apply its decisions, as of
        ``at_s`` (default: now)."""
        now = time.monotonic() if at_s is None else at_s
        host = self.ic_swapper.host_free_blocks() if self.ic_swapper else 0
        fresh = [(rid, p) for rid, p in self.ic_paused.items() if p.place == "new"]
        for rid, p in fresh:
            state = engine_state(self, now, self.ic_paused, host, self.ic_waiting_cap)
            action = self.ic_policy.on_pause(req_view(self, p), state)
            p.place = "gpu"
            self.ic_log.event(p.paused_at_s, p.rid, "pause:" + action.value, p.ctx_tokens)
            if action is KvAction.DISCARD:
                self._ic_discard(rid, p, now)
            elif action is KvAction.SWAP and not self._ic_swap_out(rid, p, blocks_of(self, rid), now):
                self._ic_discard(rid, p, now)  # the host is full: as the simulator, drop the KV
        self.ic_due_at = math.inf
        if self.ic_policy.plans_steps and self.ic_paused:
            host = self.ic_swapper.host_free_blocks() if self.ic_swapper else 0
            state = engine_state(self, now, self.ic_paused, host, self.ic_waiting_cap)
            plan = self.ic_policy.plan_step(state)
            self.ic_plan_seen = {"query_tokens": state.running_query_tokens + state.waiting_query_tokens,
                                 "free_cpu_blocks": state.free_cpu_blocks, "free_gpu_blocks": state.free_gpu_blocks,
                                 "out": dict(plan.swap_out), "in": dict(plan.swap_in), "discard": list(plan.discard)}
            if plan.empty:
                self.ic_due_at = self.ic_policy.next_decision_at(state)
            else:
                self._ic_apply(plan, {p.rid: rid for rid, p in self.ic_paused.items()}, now)
                self.ic_due_at = now  # the next plan may differ at once

    def _ic_catch_up(self, now: float) -> None:
        """Called at a resume and before each step: if the engine went idle (``ic_idle``: nothing to step, so no plan was asked)
        and the instant the policy's plan was due to change (``ic_due_at``) has passed, apply the plan as of
        that instant, before the resume: a TTL that ran out while nothing ran is discarded (and logged) at
        its expiry, as the simulator's jump to the expiry does. While the engine steps, the next step's
        plan comes after the resume, as in the simulator (returns are taken before the plan)."""
        if self.ic_idle and self.ic_paused and self.ic_due_at <= now:
            self._ic_hook(self.ic_due_at)

    def _ic_swapped_in(self, out: Any, t: float) -> None:
        """Log the KV this step brings back: budgeted chunks of swap-ins in progress (a request whose last
        chunk this is leaves the policy's view), and the whole hits of admitted swapped requests."""
        if self.ic_swapper is None:
            return
        bs = self.block_size  # type: ignore[attr-defined]
        for req_id, (before, after) in self.ic_swapper.moved_in.items():
            p = self.ic_paused.get(req_id)
            if p is None:
                continue
            tokens = self.ic_swapper.claimed.get(req_id, 0)
            self.ic_log.event(t, p.rid, "swap_in", min(tokens, after * bs) - min(tokens, before * bs))
            if self.ic_swapper.load_progress(req_id) is None:  # all back: it computes from the next step
                del self.ic_paused[req_id]
                self.ic_swapper.claimed.pop(req_id, None)
        for r in out.scheduled_new_reqs:  # whole swap-ins: the KV comes back in this step
            p = self.ic_paused.get(r.req_id)
            if p is not None and p.resumed:
                del self.ic_paused[r.req_id]
                self.ic_log.event(t, p.rid, "swap_in", self.ic_swapper.claimed.pop(r.req_id, 0))
