"""vLLM 0.32 scheduler subclass that runs the project's Policy on paused streaming sessions.

Select with ``scheduler_cls="real.scheduler.InterceptScheduler"`` (``InterceptAsyncScheduler`` when async
scheduling is on). Its settings come in ``additional_config["infercept"]`` (see ``real.engine``): the policy
name and options, the profile (cost model) it is fed, and the file the engine log goes to.

- pause (``_handle_stopped_request``): vLLM keeps the blocks (preserve); the next ``schedule`` asks
  ``Policy.on_pause`` and applies the action; every step asks ``plan_step`` when there are paused requests;
- discard frees the blocks at once; at resume the frontier is reset to 0 and the request re-enters the
  waiting queue (back: discard; by original arrival, ahead of later arrivals: policies with
  ``resume_to_front``) and recomputes by chunked prefill;
- swap copies blocks to host slots through ``real.swap`` (whole request, or the plan's blocks per step);
  the device blocks are freed after the step that copied the last of them; a whole swap that finds too few
  free host slots discards instead (as the simulator does). The resume is admitted with the swapped tokens
  as an external hit: synchronous and whole for the swap baseline, asynchronous and budgeted for InferCept
  (the plan's ``swap_in`` blocks per step; the request computes from the step after the last of them);
- every step is logged (``real.steplog``) with its shape, duration and the time spent in the policy hook.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from vllm.v1.core.sched.async_scheduler import AsyncScheduler
from vllm.v1.core.sched.scheduler import Scheduler
from vllm.v1.request import RequestStatus

from core.cost import FittedCostModel
from core.policy import make_policy
from core.types import KvAction, StepPlan
from real.steplog import StepLog
from real.views import Paused, blocks_of, engine_state, hints, req_view, trace_rid


class InterceptMixin:
    """The policy hook and its bookkeeping; mixed into Scheduler / AsyncScheduler."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cfg = self.vllm_config.additional_config["infercept"]
        cost = FittedCostModel.from_profile(cfg["profile"], cfg.get("engine", {})) if cfg.get("profile") else None
        self.ic_policy = make_policy(cfg["policy"], cost, tool_means_s=cfg.get("tool_means_s") or None,
                                     **cfg.get("policy_options", {}))
        self.ic_waiting_cap = cost.saturation_tokens if cost is not None else self.max_num_scheduled_tokens
        self.ic_swapper = self.connector if hasattr(self.connector, "reserve") else None
        if self.ic_swapper is not None:  # InferCept swaps in within its per-step budget; the baseline whole
            self.ic_swapper.chunked_in = cfg["policy"] == "infercept"
        self.ic_paused: dict[str, Paused] = {}  # by vLLM request id
        self.ic_redo: dict[str, int] = {}  # request id -> frontier of KV computed before (recompute below it)
        self.ic_log = StepLog(cfg["log"])
        self._ic_freeing: list[str] = []  # swap-outs whose last copy rides the step being scheduled
        self._ic_inflight: deque[dict[str, Any]] = deque()  # FIFO: async scheduling runs one step ahead

    # ------------------------------------------------------------------ pause / resume
    def _handle_stopped_request(self, request: Any) -> bool:
        finished = super()._handle_stopped_request(request)
        if not finished and request.status == RequestStatus.WAITING_FOR_STREAMING_REQ:
            h = hints(request)
            self.ic_paused[request.request_id] = Paused(
                request.request_id, trace_rid(request), int(h.get("ticket", 0)), h.get("req_kind", h.get("kind", "")),
                h.get("kind", ""), float(h.get("tool_s", 0.0)), time.monotonic(), request.num_computed_tokens)
        return finished

    def _update_request_as_session(self, session: Any, update: Any) -> None:
        super()._update_request_as_session(session, update)
        p = self.ic_paused.get(session.request_id)
        if p is None:
            return
        if p.place in ("new", "gpu") and p.copied_blocks:  # a swap-out in progress: cancel it, keep the KV
            self.ic_swapper.release(session.request_id, p.slots)
            self._ic_freeing = [r for r in self._ic_freeing if r != session.request_id]
            p.slots = []
        if p.place not in ("discarded", "cpu"):
            if p.place == "new":  # resumed before any step asked the policy: it stayed preserved
                self.ic_log.event(p.paused_at_s, p.rid, "pause:preserve", p.ctx_tokens)
            del self.ic_paused[session.request_id]
            return
        self.ic_redo[session.request_id] = p.ctx_tokens if p.place == "discarded" else 0
        session.num_computed_tokens = 0  # the KV is gone: recompute (or load) through normal admission
        self.kv_holding_waiting.remove_request(session)
        if self.ic_policy.traits.resume_to_front:
            self._ic_insert_by_arrival(session, p.ticket)
        else:
            self.waiting.add_request(session)
        if p.place == "cpu":
            p.resumed = True  # stays visible to the policy as swapped until admitted
        else:
            del self.ic_paused[session.request_id]

    def _ic_insert_by_arrival(self, session: Any, ticket: int) -> None:
        """Queue a resumed request by its original arrival (ahead of every later arrival), as the simulator
        does; vLLM's FCFS waiting queue is a deque."""
        at = next((i for i, r in enumerate(self.waiting) if int(hints(r).get("ticket", ticket + 1)) > ticket),
                  len(self.waiting))
        self.waiting.insert(at, session)

    # ------------------------------------------------------------------ actions
    def _ic_discard(self, rid: str, p: Paused, now: float) -> None:
        self.ic_log.event(now, p.rid, "discard", p.ctx_tokens)
        self._free_request_blocks(self.requests[rid])
        if p.slots:
            self.ic_swapper.release(rid, p.slots)
            p.slots = []
        self._ic_freeing = [r for r in self._ic_freeing if r != rid]
        p.place = "discarded"

    def _ic_swap_out(self, rid: str, p: Paused, num_blocks: int, now: float) -> bool:
        """Copy the next ``num_blocks`` blocks; once all are copied, free the device blocks after the step.
        False if there are not enough free host slots (nothing is copied)."""
        if self.ic_swapper is None or rid in self._ic_freeing:
            return False
        ids = self.kv_cache_manager.get_block_ids(rid)[0]
        todo = list(ids[p.copied_blocks:p.copied_blocks + num_blocks])
        slots = self.ic_swapper.reserve(len(todo)) if todo else None
        if not slots:
            return False
        self.ic_swapper.queue_out(todo, slots)
        p.slots.extend(slots)
        bs = self.block_size
        tokens = min(p.ctx_tokens, len(p.slots) * bs) - min(p.ctx_tokens, (len(p.slots) - len(slots)) * bs)
        self.ic_log.event(now, p.rid, "swap_out", tokens)
        if len(p.slots) == len(ids):
            self._ic_freeing.append(rid)
        return True

    def _ic_apply(self, plan: StepPlan, by_rid: dict[str, str], now: float) -> None:
        for rid, n in plan.swap_out:
            self._ic_swap_out(by_rid[rid], self.ic_paused[by_rid[rid]], n, now)
        for rid in plan.discard:
            self._ic_discard(by_rid[rid], self.ic_paused[by_rid[rid]], now)
        if self.ic_swapper is not None and self.ic_swapper.chunked_in:
            for rid, n in plan.swap_in:  # copied in this step if vLLM admits the request now (or has)
                self.ic_swapper.grant(by_rid[rid], n)
        # otherwise a swapped request is loaded whole when vLLM admits it (see real.swap)

    def _ic_hook(self) -> None:
        now = time.monotonic()
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
        if self.ic_policy.plans_steps and self.ic_paused:
            host = self.ic_swapper.host_free_blocks() if self.ic_swapper else 0
            plan = self.ic_policy.plan_step(engine_state(self, now, self.ic_paused, host, self.ic_waiting_cap))
            if not plan.empty:
                self._ic_apply(plan, {p.rid: rid for rid, p in self.ic_paused.items()}, now)

    # ------------------------------------------------------------------ the step
    def has_requests(self) -> bool:
        """Keep the engine stepping until the policy has been asked about every new pause (an idle engine
        would otherwise leave it preserved until the tool returns)."""
        return super().has_requests() or any(p.place == "new" for p in self.ic_paused.values())

    def schedule(self, *args: Any, **kwargs: Any) -> Any:
        t0 = time.monotonic()
        if self.ic_paused:
            self._ic_hook()
        t1 = time.monotonic()
        out = super().schedule(*args, **kwargs)
        t_exec = time.monotonic()
        self._ic_swapped_in(out, t1)
        rec = self.ic_log.shape(self, out, t0, t1, t_exec, self.ic_redo, self.ic_paused)
        freeing, self._ic_freeing = self._ic_freeing, []
        self._ic_inflight.append({"rec": rec, "freeing": freeing})
        return out

    def _ic_swapped_in(self, out: Any, t: float) -> None:
        """Log the KV this step brings back: budgeted chunks of swap-ins in progress (a request whose last
        chunk this is leaves the policy's view), and the whole hits of admitted swapped requests."""
        if self.ic_swapper is None:
            return
        bs = self.block_size
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

    def update_from_output(self, scheduler_output: Any, model_runner_output: Any) -> Any:
        t_exec_end = time.monotonic()
        cur = self._ic_inflight.popleft()
        for rid in cur["freeing"]:  # their copies ran in this step: the device blocks may go
            p = self.ic_paused.get(rid)
            if p is not None and p.place == "gpu" and rid in self.requests:
                self._free_request_blocks(self.requests[rid])
                self.ic_swapper.set_swapped(rid, p.slots, p.ctx_tokens)
                p.place = "cpu"
        result = super().update_from_output(scheduler_output, model_runner_output)
        if self.ic_swapper is not None:  # the worker's copy time in this step (the throttle included)
            cur["rec"]["copy_s"], self.ic_swapper.last_copy_s = self.ic_swapper.last_copy_s, 0.0
        self.ic_log.step(cur["rec"], t_exec_end, time.monotonic(), self)
        return result

    def _preempt_request(self, request: Any, timestamp: float, drop_stale_output: bool = False) -> None:
        self.ic_redo[request.request_id] = request.num_computed_tokens
        self.ic_log.event(time.monotonic(), trace_rid(request), "discard", request.num_computed_tokens)
        super()._preempt_request(request, timestamp, drop_stale_output)

    def finish_requests(self, request_ids: Any, finished_status: Any) -> Any:
        reqs = super().finish_requests(request_ids, finished_status)
        for r in reqs:
            self.ic_paused.pop(r.request_id, None)
            self.ic_redo.pop(r.request_id, None)
        return reqs

    def shutdown(self) -> None:
        self.ic_log.close()
        super().shutdown()


class InterceptScheduler(InterceptMixin, Scheduler):
    """Synchronous scheduling (the CPU build; calibration runs)."""


class InterceptAsyncScheduler(InterceptMixin, AsyncScheduler):
    """Async scheduling (the CUDA default)."""
