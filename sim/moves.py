"""KV moves on the engine's queues: discard, swap out / in, a policy's plan, recompute-preemption.

A mixin of ``EngineQueues`` (sim/state.py), which owns the queues, the pool and the idle-block tally these
moves keep current through ``_changed``. Every move keeps the blocks conserved and records its event.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.queue_order import keeps_ticket_on_resume
from core.types import Status, StepPlan
from sim.request import Req

if TYPE_CHECKING:
    from sim.state import EngineQueues

    _Base = EngineQueues
else:
    _Base = object


class KvMoves(_Base):
    """Moves of KV between the GPU, the CPU and nowhere."""

    def full_blocks(self, r: Req) -> int:
        """GPU blocks of ``r`` full of computed tokens (what the prefix cache keeps when it frees them)."""
        bs: int = self.bs
        return min(r.gpu_blocks, r.computed // bs)

    def stored_while_decoding(self, r: Req) -> None:
        """``r`` left the decode group: its host-tier run takes the blocks it filled there (their link time
        was charged step by step as they filled; the run is brought up to date only now)."""
        if self.pool.host is not None:
            self.pool.host.store(r.rid, r.computed // self.bs)

    def discard(self, r: Req, t: float) -> None:
        """Drop all of a paused request's KV (GPU and CPU); with the prefix cache on, its full GPU blocks
        stay cached until evicted."""
        self.m.discard(t, r.rid, r.computed)
        self.pool.free_gpu(r.gpu_blocks, r.rid, self.full_blocks(r))
        self.pool.free_cpu(r.cpu_blocks)
        self._hold(r, -r.held_blocks, free=True)
        r.gpu_blocks = r.cpu_blocks = r.computed = 0
        self._changed(r, t)

    def _hold(self, r: Req, n: int, free: bool = False) -> None:
        """``r`` holds ``n`` more GPU blocks beyond its gpu_blocks (n < 0: fewer; ``free``: back to the pool)."""
        r.held_blocks += n
        self.held_blocks += n
        if free and n:
            self.pool.free_gpu(-n)

    def _gpu_tokens(self, r: Req) -> int:
        return min(r.computed, r.gpu_blocks * self.bs)

    def swap_out(self, r: Req, n: int, t: float) -> int:
        """Move ``n`` GPU blocks of paused ``r`` to the CPU; return the tokens moved. Block by block the last
        ones go first (the GPU keeps a prefix); with engine.swap_holds_blocks the first ones, as the
        executor's connector copies them (the request's blocks are freed together after the last)."""
        assert 0 < n <= r.gpu_blocks and r.status is Status.PAUSED
        self.pool.allocate_cpu(n)
        if self.cost.swap_holds_blocks:  # freed after the coming step, which copies them (release_copied)
            done = r.held_blocks * self.bs  # tokens of the first blocks, copied already
            moved = min(r.computed, done + n * self.bs) - min(r.computed, done)
            self._hold(r, n)
            self.swap_blocks += n
            if n == r.gpu_blocks:
                self.copied.append((r, self.steps_done + 1))
        else:
            moved = self._gpu_tokens(r) - min(r.computed, (r.gpu_blocks - n) * self.bs)
            self.pool.free_gpu(n)
        r.gpu_blocks -= n
        r.cpu_blocks += n
        self._changed(r, t)
        self.m.swap(t, r.rid, "swap_out", moved)
        return moved

    def swap_in(self, r: Req, n: int, t: float) -> int:
        """Bring ``n`` CPU blocks of ``r`` back to the GPU; a resumed request whose KV is all back runs in
        this step where the link copies layer by layer beside the forward pass (each layer waits for its
        copy, as vLLM 0.2 and the reference did) or where the copy is a synchronous load before it (the
        executor's whole swap-in), else from the next step (an asynchronous load, the policy trait
        ``async_swap_in``: vLLM 0.32's connector schedules the request once the load is done)."""
        assert 0 < n <= r.cpu_blocks
        before = self._gpu_tokens(r)
        if self.cost.swap_holds_blocks:  # every block is allocated with the first, then filled
            if not r.held_blocks:
                self.pool.allocate_gpu(r.cpu_blocks)
                self._hold(r, r.cpu_blocks)
            self._hold(r, -n)
            self.swap_blocks += n
        else:
            self.pool.allocate_gpu(n)
        self.pool.free_cpu(n)
        r.gpu_blocks += n
        r.cpu_blocks -= n
        moved = self._gpu_tokens(r) - before
        self.m.swap(t, r.rid, "swap_in", moved)
        if r.status is Status.SWAPPED and not r.cpu_blocks:
            del self.swapped[r.rid]
            if self.cost.swap_overlap or not self.policy.traits.async_swap_in:
                self.start_running(r)
            else:
                self.loaded.append(r)
        self._changed(r, t)
        return moved

    def start_loaded(self, t: float) -> None:
        """Requests whose swap-in completed on the last step take their running slots."""
        for r in self.loaded:
            self.start_running(r)
            self._changed(r, t)
        self.loaded.clear()

    def release_copied(self, t: float, end: bool = False) -> None:
        """engine.swap_holds_blocks: free the GPU blocks of the swap-outs whose last block a completed step
        copied (vLLM frees them after that step); ``end``: all of them (the end of the run)."""
        waiting = []
        for r, after in self.copied:
            if not (end or after <= self.steps_done):
                waiting.append((r, after))
            elif r.held_blocks and not r.gpu_blocks:  # not discarded since
                self._hold(r, -r.held_blocks, free=True)
                self._changed(r, t)
        self.copied = waiting

    def cancel_swap_out(self, r: Req) -> None:
        """engine.swap_holds_blocks: ``r`` resumed while its swap-out ran: the copy is dropped (its CPU
        blocks freed) and its KV, still whole on the GPU, is kept, as vLLM's connector does."""
        self.pool.free_cpu(r.cpu_blocks)
        r.gpu_blocks += r.held_blocks
        self._hold(r, -r.held_blocks)
        r.cpu_blocks = 0

    def apply(self, plan: StepPlan, t: float) -> int:
        """Apply a policy's plan — discards, then swap-ins, then swap-outs (a step's swap-outs may use the
        CPU blocks its swap-ins free, §2.5) — and return the tokens it moves over the link. An entry that
        the pools or the request cannot honour raises ValueError naming the policy, request and counts."""
        moved = 0
        for rid in plan.discard:
            r = self.paused.get(rid)
            if r is None:
                raise ValueError(f"policy {self.policy.name}: discard of {rid!r}, which is not paused")
            self.discard(r, t)
        holds = self.cost.swap_holds_blocks  # held: a swap-in that cannot take its blocks waits, a swap-out
        # takes the host blocks that are free (the executor)
        for rid, n in plan.swap_in:
            r = self.swapped.get(rid) or self.paused.get(rid)
            ok = r is not None and 0 < n <= r.cpu_blocks
            # held: all its blocks are taken with the first chunk (the policy may have counted another
            # swap-in's held blocks as free); block by block: this chunk's
            if ok and not self.pool.can_allocate_gpu((0 if r.held_blocks else r.cpu_blocks) if holds else n):
                if holds:
                    continue
                ok = False
            if not ok:
                raise ValueError(f"policy {self.policy.name}: cannot swap in {n} blocks of {rid!r} "
                                 f"({self.pool.gpu_free} GPU blocks free)")
            moved += self.swap_in(r, n, t)
        for rid, n in plan.swap_out:
            r = self.paused.get(rid)
            ok = r is not None and 0 < n <= r.gpu_blocks
            if ok and not self.pool.can_allocate_cpu(n):
                if holds:  # a skipped swap-in kept the host blocks the plan counted on: the first that fit
                    n = self.pool.cpu_free
                    if not n:
                        continue
                else:
                    ok = False
            if not ok:
                raise ValueError(f"policy {self.policy.name}: cannot swap out {n} blocks of {rid!r} "
                                 f"({self.pool.cpu_free} CPU blocks free)")
            moved += self.swap_out(r, n, t)
        return moved

    def preempt(self, r: Req, t: float) -> None:
        """Recompute-preemption: free a running (or KV-holding resumed) request's KV (its full blocks stay
        cached with the prefix cache on) and queue it (``WaitQueue.add``): a running one as vLLM queues it (at
        the front under ``arrival``); a holding one, which vLLM never preempts, as the executor's deadlock
        breaker requeues it (``real/actions.py`` ``_ic_unblock``): as a resumed discard."""
        holding = r in self.holding
        if holding:
            self.holding.remove(r)
        elif r.in_group:
            self.group.leave(r)
            self.running.remove(r)
            if self.store_decodes:
                self.stored_while_decoding(r)
        else:
            self.partials.remove(r)
            self.running.remove(r)
        self.m.discard(t, r.rid, r.computed)
        self.pool.free_gpu(r.gpu_blocks, r.rid, self.full_blocks(r))
        r.service_tokens += r.computed - r.turn_base
        r.gpu_blocks = r.computed = r.turn_base = 0
        r.status = Status.WAITING
        kept = keeps_ticket_on_resume(self.order, self.policy.traits.resume_to_front)
        if holding and not kept:
            r.ticket, self.next_ticket = self.next_ticket, self.next_ticket + 1
        self.waiting.add(r, t, preempted=not holding, kept_ticket=holding and kept)
        self._changed(r, t)  # a holding request's idle blocks are gone

