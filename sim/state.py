"""The engine's queues and the moves on them: arrive, pause, resume, finish, preempt, discard, swap.

Every move keeps the blocks conserved (KvPool asserts) and records its event in Metrics.
"""

from __future__ import annotations

import heapq
import math
from typing import cast

from core.cost import FittedCostModel
from core.metrics import Metrics
from core.policy import Policy, RankingPolicy
from core.queue_order import keeps_ticket_on_resume
from core.types import EngineState, KvAction, Observation, RequestSpec, Status
from sim.decoders import DecodeGroup
from sim.kvmanager import KvManager
from sim.moves import KvMoves
from sim.offload import host_blocks
from sim.request import Req
from sim.waitqueue import WaitQueue


class EngineQueues(KvMoves):
    """Requests by status, the KV pool, the decode group, and pending tool returns."""

    def __init__(self, cost: FittedCostModel, policy: Policy, metrics: Metrics) -> None:
        self.cost, self.policy, self.m = cost, policy, metrics
        self.bs = cost.block_size_tokens
        traits = policy.traits
        self.pool = KvManager(cost.gpu_kv_blocks, cost.cpu_kv_blocks, self.bs,
                              traits.prefix_caching or cost.prefix_caching,
                              host_blocks(cost, traits.cpu_tier_gib) if traits.cpu_tier_gib else 0)
        self.lookups = self.pool.cache is not None or self.pool.host is not None  # admissions look up hits
        # the host tier also stores decoders' blocks as they fill (offload_prompt_only off)
        self.store_decodes = self.pool.host is not None and not traits.offload_prompt_only
        self.link_tokens = 0  # host-tier reloads made while forming this step (its link carries them)
        self.group = DecodeGroup(self.bs)
        self.running: list[Req] = []  # admission order; group members included
        self.partials: list[Req] = []  # running and not in the group (prefilling, or about to), same order
        self.order = policy.traits.queue_order
        self.steps_done = 0  # engine steps run so far (MARS's starvation clock)
        self.waiting = WaitQueue(self.order, self._rank if self.order == "mars" else None,
                                 (lambda: self.steps_done) if self.order == "mars" else None)
        # resumed with their KV on the GPU, waiting for blocks for the returned tokens (vLLM v1's
        # kv_holding_waiting, admitted before any waiting request); used when hold_resumes is set
        self.holding: list[Req] = []
        self.hold_resumes = False
        self.paused: dict[str, Req] = {}
        self.swapped: dict[str, Req] = {}  # resumed, some KV still on the CPU
        self.loaded: list[Req] = []  # resumed, the last of its KV copied back in this step: runs from the next
        # caches that follow paused/swapped requests (see _changed): what policies see, and paused GPU blocks
        self.paused_gpu: dict[str, Req] = {}  # paused and holding GPU blocks (what policies act on)
        self.swapped_cpu: dict[str, Req] = {}  # resumed with KV still on the CPU (what policies swap in)
        # GPU blocks that sit idle, by kind: held by paused requests, by resumed ones whose swap-in is not
        # complete, and by resumed ones holding their KV while they wait for admission (v1)
        self.paused_blocks_by_kind: dict[str, int] = {}
        # the client's hops: arrivals and returns reach the engine in_hop_s late, its output the client out_hop_s
        # late; a first token or finish the client would see after seen_until_s (its window's end) is not logged
        self.in_hop_s, self.out_hop_s, self.seen_until_s = cost.client_in_hop_s, cost.client_out_hop_s, math.inf
        self.paused_gpu_blocks = 0  # their sum
        self._counted: dict[str, int] = {}
        self._tally_since: dict[str, float] = {}  # kind -> when its paused-block tally last changed
        self.returns: list[tuple[float, int, Req]] = []  # (tool return time, ticket, req)
        self.next_ticket = 0
        self.pending_swap_tokens = 0  # swapped at a pause; charged to the next step
        self.swap_blocks = 0  # blocks swapped since the last step was charged (swap_holds_blocks: the link's)
        self.held_blocks = 0  # GPU blocks held by running swaps beyond their gpu_blocks (swap_holds_blocks)
        # swap-outs whose last block is copied, with the step count after which their blocks are freed
        self.copied: list[tuple[Req, int]] = []
        self.num_done = 0

    def _rank(self, r: Req) -> float:
        """MARS: the policy's score of ``r`` as it enters the waiting queue (a fresh view)."""
        r.view = None
        return cast(RankingPolicy, self.policy).queue_score(r.make_view())

    # ---------- arrivals, pauses, resumes, finishes ----------
    def arrive(self, spec: RequestSpec, t: float) -> None:
        """A new request, sent by the client at ``t``, joins the waiting queue (queued from when the engine
        sees it, ``in_hop_s`` later)."""
        r = Req(spec, self.next_ticket)
        self.next_ticket += 1
        self.m.arrive(t, r.rid, r.kind, spec.prompt_tokens)
        self.waiting.add(r, t + self.in_hop_s)

    def end_segment(self, r: Req, t: float) -> None:
        """``r`` generated the last token of its segment: finish, or pause and apply the policy's action."""
        self.running.remove(r)
        if not r.in_group and r in self.partials:
            self.partials.remove(r)
        r.service_tokens += r.num_tokens - r.turn_base
        if self.store_decodes:
            self.stored_while_decoding(r)
        if r.is_last_segment:
            self.pool.free_gpu(r.gpu_blocks, r.rid, self.full_blocks(r))
            r.gpu_blocks, r.status = 0, Status.DONE
            self.num_done += 1
            if t + self.out_hop_s <= self.seen_until_s:
                self.m.finish(t + self.out_hop_s, r.rid, r.gen_in_seg)
            else:  # the client's window ends before the finish reaches it: unfinished, its tokens credited
                self.m.progress(r.rid, r.gen_in_seg)
            self.policy.observe(Observation("finish", r.rid, "", t, float(len(r.spec.segments))))
            return
        r.status, r.paused_at = Status.PAUSED, t
        self.paused[r.rid] = r
        self._changed(r, t)
        action = self.policy.on_pause(r.make_view(), self.state(t))
        self.m.pause(t, r.rid, r.gen_in_seg, action.value)
        # the tool starts when the client sees the pause (logged at the engine's time, as the executor logs it)
        heapq.heappush(self.returns, (t + self.out_hop_s + r.segment.tool_s, r.ticket, r))
        if action is KvAction.DISCARD:
            self.discard(r, t)
        elif action is KvAction.SWAP:
            if self.pool.can_allocate_cpu(r.gpu_blocks):
                self.pending_swap_tokens += self.swap_out(r, r.gpu_blocks, t)
            else:
                self.discard(r, t)

    def resume(self, r: Req, t: float, now: float) -> None:
        """The interception returned at ``t``; the engine sees it at ``now`` (its next step boundary): append
        the returned tokens and queue ``r`` by where its KV is (paused blocks count as waste until ``now``)."""
        del self.paused[r.rid]
        ret = r.segment.tool_tokens
        self.m.resume(t, r.rid, ret)
        # a scheduler sees a tool's return only at its next step boundary: that is the duration it can learn
        self.policy.observe(Observation("resume", r.rid, r.segment.kind, now, now - r.paused_at))
        r.num_tokens += ret
        r.chunk_prompt_tokens = r.num_tokens  # the session is reopened with the whole context
        r.seg += 1
        r.gen_in_seg = 0
        r.turn_base = r.computed
        if r.held_blocks and r.gpu_blocks:  # engine.swap_holds_blocks: back while its swap-out ran
            self.cancel_swap_out(r)
        if r.cpu_blocks:
            r.status = Status.SWAPPED
            self.swapped[r.rid] = r
        elif r.gpu_blocks and self.hold_resumes:
            r.status = Status.WAITING
            self.holding.append(r)
        elif r.gpu_blocks:
            self.start_running(r)
        else:
            kept = keeps_ticket_on_resume(self.order, self.policy.traits.resume_to_front)
            if not kept:
                r.ticket, self.next_ticket = self.next_ticket, self.next_ticket + 1
            r.status = Status.WAITING
            r.resumed_at = now  # its wait before readmission counts from when the engine saw the return
            self.waiting.add(r, now, kept_ticket=kept)
        self._changed(r, now)

    def _changed(self, r: Req, t: float) -> None:
        """Refresh what follows a paused, swapped or holding request: its view, the policy's dicts and
        the tally of idle GPU blocks per kind (paused, half swapped-in, or holding their KV while waiting for
        admission), whose time integral is that part of the memory waste. Called at time ``t`` after every
        change to such a request."""
        r.view = None
        rid, status = r.rid, r.status
        paused_on_gpu = status is Status.PAUSED and r.gpu_blocks > 0
        # only resumed requests in `holding` wait with GPU blocks
        idle = status is Status.PAUSED or status is Status.SWAPPED or status is Status.WAITING
        new = r.gpu_blocks + r.held_blocks if idle else 0
        old = self._counted.get(rid, 0)
        if new != old:
            self._integrate(r.kind, t)
            self.paused_blocks_by_kind[r.kind] = self.paused_blocks_by_kind.get(r.kind, 0) + new - old
            self.paused_gpu_blocks += new - old
            if new:
                self._counted[rid] = new
            else:
                del self._counted[rid]
        if paused_on_gpu:
            self.paused_gpu[rid] = r
        else:
            self.paused_gpu.pop(rid, None)
        if status is Status.SWAPPED and r.cpu_blocks:
            self.swapped_cpu[rid] = r
        else:
            self.swapped_cpu.pop(rid, None)

    def _integrate(self, kind: str, t: float) -> None:
        blocks = self.paused_blocks_by_kind.get(kind, 0)
        assert t >= self._tally_since.get(kind, t), "waste integral went back in time"
        if blocks:
            self.m.attribute(kind, waste_block_s=blocks * (t - self._tally_since[kind]))
        self._tally_since[kind] = t

    def flush_waste(self, t: float) -> None:
        """Charge paused blocks up to ``t`` (the end of the run)."""
        for kind in list(self.paused_blocks_by_kind):
            self._integrate(kind, t)

    def start_running(self, r: Req) -> None:
        """``r`` takes a running slot as a partial (it has tokens to compute before it can decode)."""
        r.status = Status.RUNNING
        self.running.append(r)
        self.partials.append(r)

    def join_group(self, r: Req) -> None:
        """A partial caught up (one pending token): it decodes with the group from now on."""
        self.partials.remove(r)
        self.group.join(r)

    # ---------- what the policy sees ----------
    def state(self, t: float, blocks_needed: int = 0, waiting_cap_tokens: int = 0) -> EngineState:
        """A snapshot for the policy (views of paused-on-GPU and swapped requests, cached per request).
        ``blocks_needed``: new blocks the running requests take next step; the waiting requests' pending
        tokens are summed until they reach ``waiting_cap_tokens``."""
        tokens = computed = 0
        for r in self.partials:
            tokens += r.num_tokens
            computed += r.computed
        waiting = 0
        for r in self.waiting:
            if waiting >= waiting_cap_tokens:
                break
            waiting += r.pending
        group = self.group
        free = self.pool.gpu_free  # a swap-out's held blocks are not free; a swap-in's are its coming chunks'
        if self.held_blocks:
            free += sum(r.held_blocks for r in self.swapped_cpu.values())
        paused = tuple([r.view or r.make_view() for r in self.paused_gpu.values()])
        swapped = tuple([r.view or r.make_view() for r in self.swapped_cpu.values()])
        # fields in EngineState's order: now, block size, free GPU / CPU blocks, R, Rb, short, paused, swapped,
        # running blocks needed, waiting query tokens
        return EngineState(t, self.bs, free, self.pool.cpu_free,
                           len(group.members) + tokens - computed, group.ctx_tokens + computed,
                           max(blocks_needed - free, 0), paused, swapped, blocks_needed, waiting,
                           self.pool.gpu_total)

    def next_return_at(self) -> float:
        """When the engine sees the next interception's return (inf if none is running)."""
        return self.returns[0][0] + self.in_hop_s if self.returns else math.inf

    def client_token(self, r: Req, t: float) -> None:
        """The first token after a prefill, sampled at ``t``: the client sees it ``out_hop_s`` later (not at
        all after its window)."""
        if t + self.out_hop_s <= self.seen_until_s:
            self.m.token(t + self.out_hop_s, r.rid)

    def check_gpu_blocks(self) -> None:
        """Cheap per-step conservation check: the pool's used GPU blocks equal what the holders have."""
        held = self.group.blocks + self.paused_gpu_blocks  # the latter counts swapped and holding requests too
        for r in self.partials:
            held += r.gpu_blocks
        assert held == self.pool.gpu_used, f"GPU blocks not conserved: {held} held, {self.pool.gpu_used} used"

    def check(self) -> None:
        """Full recount of every block holder against the pool (O(requests); used in check mode)."""
        assert self.partials == [r for r in self.running if not r.in_group], "partials out of step with running"
        idle = [*self.paused.values(), *self.swapped.values(), *self.holding, *self.loaded]
        idle_gpu = sum(r.gpu_blocks + r.held_blocks for r in idle)
        gpu = self.group.held_blocks_exact() + sum(r.gpu_blocks for r in self.partials) + idle_gpu
        cpu = sum(r.cpu_blocks for r in self.paused.values()) + sum(r.cpu_blocks for r in self.swapped.values())
        assert self.group.blocks == self.group.held_blocks_exact(), "decode group block count drifted"
        assert self.paused_gpu_blocks == idle_gpu, "idle block tally drifted"
        assert self.held_blocks == sum(r.held_blocks for r in idle), "held block count drifted"
        self.pool.check_conservation(gpu, cpu)
        for r in self.running:
            assert r.in_group or (r.computed >= 0 and r.pending >= 1), f"{r.rid}: bad token counts"
