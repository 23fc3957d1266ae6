"""vLLM 0.32 scheduler subclass that runs the project's Policy on paused streaming sessions.

Select with ``scheduler_cls="real.scheduler.InterceptScheduler"`` (``InterceptAsyncScheduler`` when async
scheduling is on). Its settings come in ``additional_config["infercept"]`` (see ``real.engine``): the policy
name and options, the profile (cost model) it is fed, and the file the engine log goes to.

- pause (``_handle_stopped_request``): vLLM keeps the blocks (preserve); the next ``schedule`` asks
  ``Policy.on_pause`` and applies the action; every step asks ``plan_step`` when there are paused requests
  (``real.actions``);
- resume (``_update_request_as_session``): the policy is told the pause's measured duration
  (``observe("resume")``); a discarded request's frontier is reset to 0 and it re-enters the waiting queue
  (back: discard; by original arrival, ahead of later arrivals: ``resume_to_front`` or a program order;
  by key: PLAS, see ``real.queues``) and recomputes by chunked prefill, through the prefix cache when the
  policy turned it on; its admission tells the policy how long it waited (``observe("readmit")``);
- swap copies blocks to host slots through ``real.swap``; the resume is admitted with the swapped tokens as an
  external hit: synchronous and whole for the swap baseline, asynchronous and budgeted for InferCept (the
  plan's ``swap_in`` blocks per step; the request computes from the step after the last of them);
- every step is logged (``real.steplog``) with its shape, duration, the time spent in the policy hook and
  the admissions' prefix-cache hits.
"""

from __future__ import annotations

import math
import time
from collections import deque
from typing import Any, cast

from vllm.v1.core.sched.async_scheduler import AsyncScheduler
from vllm.v1.core.sched.scheduler import Scheduler
from vllm.v1.request import RequestStatus

from core.cost import FittedCostModel
from core.policy import RankingPolicy, make_policy
from core.types import Observation
from real.actions import PolicyActions
from real.queues import OrderedWaiting, QueuePlacement
from real.steplog import StepLog
from real.views import Paused, hints, trace_rid, wait_view


class InterceptMixin(PolicyActions, QueuePlacement):
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
            self.ic_swapper.chunked_in = self.ic_policy.traits.async_swap_in
        self.ic_paused: dict[str, Paused] = {}  # by vLLM request id
        self.ic_redo: dict[str, int] = {}  # request id -> frontier of KV computed before (recompute below it)
        self.ic_log = StepLog(cfg["log"])
        self._ic_freeing: list[str] = []  # swap-outs whose last copy rides the step being scheduled
        self._ic_inflight: deque[dict[str, Any]] = deque()  # FIFO: async scheduling runs one step ahead
        self.ic_due_at, self.ic_idle = math.inf, False
        self.ic_moved = False  # the last step copied KV (a plan's next chunk may follow at once)
        self.ic_plan_seen = None
        self.ic_readmit: dict[str, tuple[float, str, str]] = {}  # req id -> (resumed at, tool kind, rid)
        self.ic_local_hit: dict[str, int] = {}  # req id -> tokens its last prefix-cache lookup found
        # PLAS service: tokens computed in finished turns, and the computed tokens the current turn began with
        self.ic_service: dict[str, int] = {}
        self.ic_turn_base: dict[str, int] = {}
        self.ic_order = self.ic_policy.traits.queue_order
        self.ic_steps = 0  # steps that scheduled tokens so far (MARS's starvation clock)
        self.ic_turn_start: dict[str, int] = {}  # req id -> its tokens when its current turn began (MARS)
        if self.ic_order == "mars":
            ranker = cast(RankingPolicy, self.ic_policy)
            self.waiting = OrderedWaiting("mars", lambda r: 0, lambda: float(self.ic_steps),
                                          lambda req: ranker.queue_score(wait_view(req, self._ic_decoded(req))))
        elif self.ic_order != "arrival":  # vLLM's own deque otherwise
            self.waiting = OrderedWaiting(self.ic_order, lambda r: self.ic_service.get(r, 0), time.monotonic)

    # ------------------------------------------------------------------ pause / resume
    def _handle_stopped_request(self, request: Any) -> bool:
        rid = request.request_id  # the turn's service: what it computed (its last sampled token included)
        self.ic_service[rid] = self.ic_service.get(rid, 0) + request.num_tokens - self.ic_turn_base.pop(rid, 0)
        finished = super()._handle_stopped_request(request)
        if finished:  # its number of turns: the index of this, its last, turn + 1
            h = hints(request)
            self.ic_policy.observe(Observation("finish", trace_rid(request), "", time.monotonic(),
                                               float(int(h.get("seg", 0)) + 1)))
        if not finished and request.status == RequestStatus.WAITING_FOR_STREAMING_REQ:
            h = hints(request)
            self.ic_paused[request.request_id] = Paused(
                request.request_id, trace_rid(request), int(h.get("ticket", 0)), h.get("req_kind", h.get("kind", "")),
                h.get("kind", ""), float(h.get("tool_s", 0.0)), time.monotonic(), request.num_computed_tokens)
        return finished

    def _update_request_as_session(self, session: Any, update: Any) -> None:
        now = time.monotonic()
        self._ic_catch_up(now)
        super()._update_request_as_session(session, update)
        req_id = session.request_id
        p = self.ic_paused.get(req_id)
        if p is None:
            return
        self.ic_policy.observe(Observation("resume", p.rid, p.tool_kind, now, now - p.paused_at_s))
        self.ic_log.event(now, p.rid, "seen", 0)  # the pause's KV outcome is decided until now (real.collect)
        if self.ic_swapper is not None:
            self.ic_swapper.cancel_out(req_id)
        if p.place in ("new", "gpu") and p.copied_blocks:  # a swap-out in progress: cancel it, keep the KV
            self.ic_swapper.release(req_id, p.slots)
            self._ic_freeing = [r for r in self._ic_freeing if r != req_id]
            p.slots = []
        self.ic_turn_base[req_id] = 0 if p.place == "discarded" else p.ctx_tokens
        self.ic_turn_start[req_id] = session.num_tokens
        if p.place not in ("discarded", "cpu"):
            if p.place == "new":  # resumed before any step asked the policy: it stayed preserved
                self.ic_log.event(p.paused_at_s, p.rid, "pause:preserve", p.ctx_tokens)
            del self.ic_paused[req_id]
            return
        self.ic_redo[req_id] = p.ctx_tokens if p.place == "discarded" else 0
        session.num_computed_tokens = 0  # the KV is gone: recompute (or load) through normal admission
        self.kv_holding_waiting.remove_request(session)
        if self.ic_order == "mars" and p.place == "cpu":
            self.waiting.add_swapped(session)  # back before anyone is admitted, as the simulator swaps in
        elif self.ic_order == "arrival" and p.place == "cpu":
            self._ic_insert_swapped(session, p.ticket)
        else:
            self._ic_requeue(session, p.ticket)
        if p.place == "cpu":
            p.resumed = True  # stays visible to the policy as swapped until admitted
        else:
            self.ic_readmit[req_id] = (now, p.tool_kind, p.rid)
            del self.ic_paused[req_id]

    def _ic_decoded(self, request: Any) -> int:
        """Tokens the request's current turn decoded before it (re)entered the queue (0 for a new turn)."""
        return request.num_tokens - self.ic_turn_start.get(request.request_id, request.num_prompt_tokens)

    # ------------------------------------------------------------------ the step
    def has_requests(self) -> bool:
        """Keep the engine stepping until the policy has been asked about every new pause (an idle engine
        would otherwise leave it preserved until the tool returns), and, as the simulator's copy-only steps,
        while the last step copied KV and paused requests still hold GPU blocks: the next plan may copy their
        next chunk (a step that copies nothing ends it). Nothing else keeps it stepping: a plan due later (a
        TTL) waits for the next step or resume (``_ic_catch_up``), so an idle engine never spins."""
        busy = (super().has_requests() or any(p.place == "new" for p in self.ic_paused.values())
                or (self.ic_moved and any(p.place == "gpu" for p in self.ic_paused.values())))
        if not busy:
            self.ic_idle = True
        return busy

    def _get_local_prefix_cache_hit(self, request: Any) -> Any:
        found = super()._get_local_prefix_cache_hit(request)
        self.ic_local_hit[request.request_id] = found[1]  # tokens found in the GPU prefix cache
        return found

    def schedule(self, *args: Any, **kwargs: Any) -> Any:
        t0 = time.monotonic()
        self._ic_catch_up(t0)  # woken by an arrival after idling past a due plan: apply it as of then
        self.ic_idle = False
        if self.ic_paused:
            self._ic_hook()
        if isinstance(self.waiting, OrderedWaiting):
            self.waiting.promote_starved()
        t1 = time.monotonic()
        out = super().schedule(*args, **kwargs)
        self.ic_steps += out.total_num_scheduled_tokens > 0
        t_exec = time.monotonic()
        self._ic_unblock(out, t_exec)
        self._ic_admitted(out, t_exec)
        self._ic_swapped_in(out, t1)
        self._ic_swapped_out(t1)
        rec = self.ic_log.shape(self, out, t0, t1, t_exec, self.ic_redo, self.ic_paused)
        if self.ic_plan_seen is not None:  # the plan's inputs and decisions, for diagnosis
            rec["plan"], self.ic_plan_seen = self.ic_plan_seen, None
        freeing, self._ic_freeing = self._ic_freeing, []
        self._ic_inflight.append({"rec": rec, "freeing": freeing})
        return out

    def _ic_admitted(self, out: Any, t: float) -> None:
        """Admissions of this step: log the KV they found instead of computing it (``prefix_hit``: the GPU
        prefix cache; ``reload``: the OffloadingConnector's host tier — our swap connector's hits are
        swap-ins, logged as such), tell the policy how long a dropped request waited (readmit), and take them
        out of the queue order's bookkeeping."""
        host_tier = self.connector is not None and self.ic_swapper is None
        for r in out.scheduled_new_reqs:
            rid = trace_rid(self.requests[r.req_id])
            looked = r.req_id in self.ic_local_hit
            hit = self.ic_local_hit.pop(r.req_id, 0)
            if hit:
                self.ic_log.event(t, rid, "prefix_hit", hit)
            if host_tier and looked and r.num_computed_tokens > hit:
                self.ic_log.event(t, rid, "reload", r.num_computed_tokens - hit)
            back = self.ic_readmit.pop(r.req_id, None)
            if back is not None:
                self.ic_policy.observe(Observation("readmit", back[2], back[1], t, t - back[0]))
        if isinstance(self.waiting, OrderedWaiting):
            for req_id in out.num_scheduled_tokens:
                self.waiting.forget(req_id)

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
        self.ic_moved = cur["rec"]["swap_tokens"] > 0
        self.ic_log.step(cur["rec"], t_exec_end, time.monotonic(), self)
        return result

    def _preempt_request(self, request: Any, timestamp: float, drop_stale_output: bool = False) -> None:
        rid = request.request_id  # what it computed in this turn is service (PLAS), as the simulator counts
        self.ic_service[rid] = self.ic_service.get(rid, 0) + request.num_computed_tokens - self.ic_turn_base.pop(rid, 0)
        self.ic_redo[rid] = request.num_computed_tokens
        self.ic_log.event(time.monotonic(), trace_rid(request), "discard", request.num_computed_tokens)
        super()._preempt_request(request, timestamp, drop_stale_output)

    def finish_requests(self, request_ids: Any, finished_status: Any) -> Any:
        reqs = super().finish_requests(request_ids, finished_status)
        for r in reqs:
            p = self.ic_paused.get(r.request_id)
            if p is not None and p.slots and p.place != "cpu" and self.ic_swapper is not None:
                self.ic_swapper.release(r.request_id, p.slots)  # a swap-out cut short (the host entry: vLLM's)
            for d in (self.ic_paused, self.ic_redo, self.ic_readmit, self.ic_local_hit, self.ic_service,
                      self.ic_turn_base, self.ic_turn_start):
                d.pop(r.request_id, None)
            if isinstance(self.waiting, OrderedWaiting):
                self.waiting.forget(r.request_id)
        return reqs

    def shutdown(self) -> None:
        self.ic_log.close()
        super().shutdown()


class InterceptScheduler(InterceptMixin, Scheduler):
    """Synchronous scheduling (the CPU build; calibration runs)."""


class InterceptAsyncScheduler(InterceptMixin, AsyncScheduler):
    """Async scheduling (the CUDA default)."""
