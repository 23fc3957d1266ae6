"""Forming a step's batch in the run's batching mode, within the token budget, the slots and the KV blocks.

- ``v0`` (vLLM 0.2): a step either prefills whole pendings (running requests first, then waiting ones, FCFS,
  none while a swapped request waits) or decodes; never both, so a big recompute stalls every decoder.
- ``v1`` (vLLM >= 0.6): decoders, then chunks of running prefills, then admitted waiting requests, all under
  one token budget (chunked prefill). As in vLLM v1's scheduler: a resumed request that kept its KV waits
  for blocks for its returned tokens ahead of every waiting request (policies that plan swaps step by step
  excepted); a request is admitted only if its whole sequence's blocks are free; none is admitted in a step
  that had to preempt.
- ``fill`` (InferCept's chunk-and-fill): like v1 with the budget set to the saturation point S; a resumed
  request that kept its KV goes straight back to running.
Blocks short: recompute-preempt the newest running request (vLLM's default) until the step fits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from core.cost import BatchShape
from core.types import Observation
from sim.request import Req
from sim.state import EngineQueues


@dataclass(slots=True)
class Step:
    """One forward pass being formed: scheduled chunks and what it costs."""

    decode: bool = False  # the decode group takes part
    chunks: list[tuple[Req, int]] = field(default_factory=list)
    swap_tokens: int = 0
    preempted: bool = False  # blocks were freed while forming: the next step may admit, so no jump
    redo: list[tuple[Req, int]] = field(default_factory=list)  # recomputed tokens per chunk (set when recorded)


class BatchForming(EngineQueues):
    """Batch forming on top of the engine's queues; ``mode`` and ``budget`` are set by the Engine."""

    mode: str
    budget: int

    def _blocks_needed(self) -> int:
        """New GPU blocks the running requests take next step (decoders, and partials' whole pendings)."""
        return self.group.blocks_needed_now() + sum(
            r.blocks_for(r.computed + r.pending, self.bs) for r in self.partials)

    def _form(self, now: float) -> Step:
        step = Step()
        partials = self.partials
        if self.mode == "v0":  # a step prefills (whole pendings, no decoders) or decodes
            step.chunks = self._fit([(r, r.pending) for r in partials if r.pending > 1], self.budget, whole=True)
            if step.chunks or self._can_admit_whole(now):
                self._make_room(step, now)
                self._admit(step, self.budget - _tokens(step.chunks), now, whole=True)
                if step.chunks:
                    return step
            step.chunks = [(r, 1) for r in partials if r.pending == 1]
            step.decode = len(self.group.members) > 0
            self._make_room(step, now)
            return step
        step.decode = len(self.group.members) > 0
        left = self.budget - len(self.group.members)
        if self.mode == "fill":
            left = max(left, self.bs)
        step.chunks = self._fit([(r, r.pending) for r in partials], left, whole=False,
                                whole_redo=self.mode == "fill" and not self.policy.traits.chunk_recompute)
        self._make_room(step, now)
        if not step.preempted:  # vLLM v1 admits no waiting request in a step that preempted one
            self._admit(step, left - _tokens(step.chunks), now, whole=False)
        return step

    @staticmethod
    def _fit(cands: list[tuple[Req, int]], left: int, whole: bool, whole_redo: bool = False,
             ) -> list[tuple[Req, int]]:
        """Chunks that fit the token budget in order; ``whole``: only whole pendings (v0); ``whole_redo``:
        a recomputing request runs its whole pending in one pass while any budget is left (Eq. 1)."""
        out: list[tuple[Req, int]] = []
        for r, q in cands:
            q = q if whole_redo and left > 0 and r.ever_computed > r.computed else min(q, left)
            if q <= 0 or (whole and q < r.pending):
                continue
            out.append((r, q))
            left -= q
        return out

    def _make_room(self, step: Step, now: float) -> None:
        """Preempt the newest running requests until this step's blocks fit, then take them."""
        bs = self.bs
        while True:
            need = self.group.blocks_needed_now() if step.decode else 0
            for r, q in step.chunks:
                need += r.blocks_for(r.computed + q, bs)
            if need <= self.pool.gpu_free:
                break
            if not self.running:
                raise RuntimeError("a single request needs more KV blocks than the GPU has")
            victim = self.running[-1]
            self.preempt(victim, now)
            step.preempted = True
            step.chunks = [(r, q) for r, q in step.chunks if r is not victim]
            step.decode = step.decode and len(self.group.members) > 0
        self.pool.allocate_gpu(need)
        for r, q in step.chunks:
            r.gpu_blocks += r.blocks_for(r.computed + q, self.bs)

    def _can_admit_whole(self, now: float) -> bool:
        if not self.waiting or self.swapped or len(self.running) >= self.cost.max_num_seqs:
            return False
        if self.order in ("plas", "mars"):
            self.waiting.promote_starved(now)
        r = self.waiting.head()
        hit = sum(self._lookup(r)) * self.bs if self.lookups else 0
        return r.pending - hit <= self.budget and self.pool.can_allocate_gpu(r.blocks_for(r.num_tokens, self.bs))

    def _admit(self, step: Step, left: int, now: float, whole: bool) -> None:
        """Admit waiting requests in queue order while the budget, the slots and the blocks last, leaving
        the blocks swapped requests need to come back (v0, as vLLM 0.2: none while one waits)."""
        if self.mode == "v0" and self.swapped:
            return
        # blocks that resumed, still-swapped requests need to come back are not for new admissions (those a
        # running swap-in already holds are taken)
        reserve = sum(r.cpu_blocks - r.held_blocks for r in self.swapped.values()) if self.swapped else 0
        while self.holding and left > 0 and len(self.running) < self.cost.max_num_seqs:
            r = self.holding[0]  # resumed requests holding their KV go first (FIFO), as in vLLM v1
            q = min(r.pending, left)
            need = r.blocks_for(r.computed + q, self.bs)
            if not self.pool.can_allocate_gpu(max(need, r.blocks_for(r.num_tokens, self.bs))):
                if self.running or len(self.holding) == 1:
                    return  # nothing behind it is admitted either
                # every block is held by resumed requests waiting for one more, and nothing runs to free one:
                # vLLM would wait forever; recompute-preempt the newest of them
                self.preempt(self.holding[-1], now)
                continue
            self.holding.pop(0)
            self._take(step, r, q, need)
            self._changed(r, now)  # its KV is no longer idle
            left -= q
        if self.holding:
            return
        whole_redo = self.mode == "fill" and not self.policy.traits.chunk_recompute
        if self.order in ("plas", "mars"):
            self.waiting.promote_starved(now)
        while self.waiting and left > 0 and len(self.running) < self.cost.max_num_seqs:
            r = self.waiting.head()
            # prefix hits (GPU cache, then host tier) start it past their tokens; the GPU hit blocks are
            # free blocks, so they count in what it needs
            if self.lookups:
                gpu_hit, host_hit = self._lookup(r)
                start = r.computed + (gpu_hit + host_hit) * self.bs
            else:
                gpu_hit = host_hit = 0
                start = r.computed
            pending = r.num_tokens - start
            q = pending if whole_redo and r.ever_computed > start else min(pending, left)
            if whole and q < pending:
                break
            need = r.blocks_for(start + q, self.bs)
            # vLLM admits a request only if its whole sequence fits (scheduler_reserve_full_isl), then takes
            # the blocks of the chunk it schedules
            if not self.pool.can_allocate_gpu(max(need, r.blocks_for(r.num_tokens, self.bs)) + reserve):
                break
            self.waiting.pop_head()
            if gpu_hit or host_hit:
                self._take_hit(r, gpu_hit, host_hit, now)
                need -= gpu_hit + host_hit
            self.m.admit(now, r.rid, r.pending)
            if r.resumed_at == r.resumed_at:  # not NaN: a resumed request whose KV had been dropped
                self.policy.observe(Observation("readmit", r.rid, r.spec.segments[r.seg - 1].kind, now,
                                                now - r.resumed_at))
                r.resumed_at = math.nan
            if host_hit:  # vLLM's loads are asynchronous: it computes from the next step (start_loaded)
                self.loaded.append(r)
                self._changed(r, now)
                continue
            self._take(step, r, q, need)
            left -= q

    def _lookup(self, r: Req) -> tuple[int, int]:
        """Blocks a waiting request would reuse if admitted now: (GPU prefix-cache hits, host-tier loads);
        only a request with nothing on the GPU looks up (vLLM: num_computed_tokens == 0)."""
        return (0, 0) if r.gpu_blocks else self.pool.lookup(r.rid, r.num_tokens)

    def _take_hit(self, r: Req, gpu_blocks: int, host_blocks: int, now: float) -> None:
        """Admit ``r``'s prefix hits: it holds those blocks, computed, and the loads ride this step's link."""
        self.pool.take_hit(r.rid, gpu_blocks, host_blocks)
        r.gpu_blocks += gpu_blocks + host_blocks
        r.computed += (gpu_blocks + host_blocks) * self.bs
        self.link_tokens += host_blocks * self.bs
        self.m.prefix_hit(now, r.rid, gpu_blocks * self.bs, host_blocks * self.bs)

    def _take(self, step: Step, r: Req, q: int, need_blocks: int) -> None:
        """Admit ``r`` with a first chunk of ``q`` tokens, taking the ``need_blocks`` it needs for it."""
        self.pool.allocate_gpu(need_blocks)
        r.gpu_blocks += need_blocks
        self.start_running(r)
        step.chunks.append((r, q))

    def _shape(self, step: Step) -> BatchShape:
        n_dec = len(self.group.members) if step.decode else 0
        ctx = self.group.ctx_tokens if step.decode else 0
        pre = pairs = n_pre = 0
        for r, q in step.chunks:
            if q == 1 and r.pending == 1:
                n_dec += 1
                ctx += r.num_tokens
            else:
                pre += q
                n_pre += 1
                pairs += q * (r.computed + (q + 1) / 2)
        return BatchShape(n_dec, ctx, pre, pairs, n_pre)


def _tokens(chunks: list[tuple[Req, int]]) -> int:
    """Query tokens of a list of chunks."""
    total = 0
    for _, q in chunks:
        total += q
    return total
