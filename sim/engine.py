"""The engine process: take arrivals and tool returns, apply the policy's plan, form a batch, time the step.

Steady decoding between state changes is advanced in one jump whose duration is summed in closed form
(step j of a jump lasts A + B*j: every decoder's context grows by one token per step).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Generator
from typing import Any

import simpy

from core.cost import BatchShape, FittedCostModel, warn_out_of_range
from core.metrics import SWAP_STALL, Metrics
from core.policy import Policy
from core.types import EngineState, RequestSpec
from sim.batch import BatchForming, Step
from sim.jump import first_k_reaching, total_s
from sim.offload import store_chunks
from sim.waitqueue import queue_placement


class Engine(BatchForming):
    """One engine process over EngineQueues; ``batching`` is "v0" or "v1" (InferCept's chunk-fill overrides)."""

    def __init__(self, env: simpy.Environment, specs: list[RequestSpec], cost: FittedCostModel, policy: Policy,
                 metrics: Metrics, batching: str, duration_s: float, drain: bool, jump: bool = True,
                 check: bool = False, progress: Callable[[float], None] | None = None) -> None:
        super().__init__(cost, policy, metrics)
        self.progress = progress  # called now and then with the simulated time
        self.env, self.specs = env, specs
        self.next_arrival = 0
        self.mode = "fill" if policy.traits.chunk_fill else (policy.traits.batching or batching)
        if self.mode not in ("fill", "v0", "v1"):
            raise ValueError(f"policy {policy.name}: batching trait {policy.traits.batching!r}: expected v0 or v1")
        self.waiting.placement = queue_placement(self.mode, batching)
        self.budget = cost.saturation_tokens if self.mode == "fill" else cost.token_budget_tokens
        # vLLM v1's kv_holding_waiting; not with InferCept's budgeted swap-ins, whose half swapped-in requests
        # hold blocks too (the two would wait for each other)
        self.hold_resumes = self.mode == "v1" and not policy.plans_steps
        if self.mode == "v0" and self.budget < cost.max_context_tokens:
            raise ValueError(f"engine.token_budget_tokens = {self.budget}: v0 prefills whole contexts, so it must "
                             f"be at least the model's context ({cost.max_context_tokens})")
        for spec in specs:
            need = -(-spec.total_tokens // cost.block_size_tokens)
            if need > cost.gpu_kv_blocks:
                raise ValueError(f"request {spec.rid} needs {need} KV blocks at its longest ({spec.total_tokens} "
                                 f"tokens); the GPU holds {cost.gpu_kv_blocks}")
        self.duration_s, self.drain, self.jump, self.check_blocks = duration_s, drain, jump, check
        self.a_ctx = cost.per_decode_ctx_token_s
        self.warned = False
        self.num_generated = 0  # tokens sampled so far (the invariant: every one is credited to a request)
        self.seen_until_s = math.inf if drain else duration_s
        self.outputs_s = 0.0  # when the last step's outputs came

    # ---------- the process ----------
    def run(self) -> Generator[simpy.events.Event, Any, None]:
        """The SimPy process: loops until every request is done (drain) or the window closes."""
        env, policy, cost = self.env, self.policy, self.cost
        plans, n_specs = policy.plans_steps, len(self.specs)
        # a pipelined swap hides behind the forward pass only where the link copies beside it
        pipelined = policy.traits.pipelined_swap and cost.swap_overlap
        n_iter, replanned_at = 0, -1.0
        host = self.pool.host  # the host tier (vllm_offload), or None
        while True:
            now = env.now
            n_iter += 1
            if self.progress and n_iter % 4096 == 0:
                self.progress(now)
            if self.copied:  # swap-outs that held their blocks until their last copy (swap_holds_blocks)
                self.release_copied(now)
            self._absorb(now)
            if self.loaded:
                self.start_loaded(now)
            if self.num_done == n_specs or (not self.drain and now >= self.duration_s):
                break
            moved = self.pending_swap_tokens
            self.pending_swap_tokens = 0
            state, acted = None, False
            if plans and (self.paused_gpu or self.swapped):
                state = self.state(now, self._blocks_needed(), cost.saturation_tokens)
                plan = policy.plan_step(state)
                if not plan.empty:
                    moved += self.apply(plan, now)
                    acted = True  # the plan changed the state: no jump this step
            pad = 0  # swap_holds_blocks: the connector copies whole blocks, a partial last block's rest rides too
            if self.swap_blocks:
                pad, self.swap_blocks = self.swap_blocks * self.bs - moved, 0
            step = self._form(now)
            stores = 0  # tokens the host tier stores from this step's decoders (offload_prompt_only off)
            if host is not None:  # one link: reloads and write-through stores ride it with the swaps
                moved += self.link_tokens + store_chunks(host, step.chunks, self.bs, not self.store_decodes)
                self.link_tokens = 0
                if self.store_decodes and step.decode:
                    stores = (self.group.blocks_needed(2) - self.group.blocks_needed_now()) * self.bs
            step.swap_tokens = moved + stores
            shape = self._shape(step)
            fwd = cost.step_s(shape) if shape.query_tokens else 0.0
            if fwd == 0.0 and moved == 0:
                if step.preempted:
                    continue  # everything running was preempted and nothing admitted in that step: form the next
                if self.swapped and self.pool.gpu_free and replanned_at != now:
                    replanned_at = now  # a preemption freed blocks after the plan: let it swap in now
                    continue
                nxt = min(self._next_external(), math.inf if self.drain else self.duration_s)
                if state is not None and not acted:  # nothing runs: wake for the policy's own deadline (a TTL)
                    due = policy.next_decision_at(state)
                    nxt = min(nxt, due) if due > now else nxt
                if nxt == math.inf:
                    raise RuntimeError(f"simulation stuck at t={now:.3f}s: nothing can run "
                                       f"({len(self.waiting)} waiting, {len(self.holding)} resumed holding KV, "
                                       f"{len(self.swapped)} swapped)")
                yield env.timeout(nxt - now)
                continue
            if not self.warned and cost.out_of_range(shape):
                warn_out_of_range(cost, shape)
                self.warned = True
            stall = 0.0
            if moved or stores:
                swap_s = cost.swap_s(moved + pad + stores)
                # a pipelined copy hides behind the forward pass, not behind the host's work around it
                hide = cost.gpu_s(shape) if shape.query_tokens else 0.0
                stall = max(swap_s - hide, 0.0) if pipelined else swap_s
            k, dur = 1, fwd + stall
            if self.jump and step.decode and not (step.chunks or moved or step.preempted or acted) and (
                    not self.store_decodes or self._stores_hidden(shape, pipelined)):
                k, dur = self._jump_length(now, fwd, len(self.group.members), state)
                if self.store_decodes:  # every block the jump fills is written through, hidden
                    stores = (self.group.blocks_needed(k + 1) - self.group.blocks_needed_now()) * self.bs
            if host is not None and stores:
                host.stored_tokens += stores
            if not self.drain and now + dur > self.duration_s:
                break
            if k > 1:
                self.pool.allocate_gpu(self.group.blocks_needed(k) - self.group.blocks_needed_now())
            self._record(now, k, dur, fwd, stall, shape, step)
            yield env.timeout(dur)
            # the step's outputs come before the engine loop's gap that ends it (a part of const_s): the next
            # plan, at the step's end, sees that much time gone since a pause, as the engine's does
            self.outputs_s = env.now - min(cost.busy_gap_s, fwd)
            self._complete(step, k, self.outputs_s)
            if self.check_blocks:
                self.check()
            else:
                self.check_gpu_blocks()
        if not self.drain:  # arrivals and tool returns inside the window that the last step overran
            self.release_copied(self.duration_s, end=True)
            self._absorb(self.duration_s, hop_s=0.0)  # the client's: what it sent inside the window counts
        # drain: the client's last finish (the last step's outputs, before the engine loop's gap)
        self.m.end_s = self.outputs_s + self.out_hop_s if self.drain else self.duration_s
        self.flush_waste(self.m.end_s)
        if self.pool.host is not None:
            self.m.notes["host_stored_tokens"] = self.pool.host.stored_tokens
            self.m.notes["host_reloaded_tokens"] = self.pool.host.reloaded_tokens
        self._close()

    def _absorb(self, now: float, hop_s: float | None = None) -> None:
        """Take the arrivals and returns sent ``hop_s`` (default: the client's in-hop) or more before ``now``."""
        hop_s = self.in_hop_s if hop_s is None else hop_s
        while self.next_arrival < len(self.specs) and self.specs[self.next_arrival].arrival_s + hop_s <= now:
            spec = self.specs[self.next_arrival]
            self.arrive(spec, spec.arrival_s)
            self.next_arrival += 1
        while self.returns and self.returns[0][0] + hop_s <= now:
            at, _, r = heapq.heappop(self.returns)
            self.resume(r, at, now)

    def _next_external(self) -> float:
        nxt = (self.specs[self.next_arrival].arrival_s + self.in_hop_s if self.next_arrival < len(self.specs)
               else math.inf)
        return min(nxt, self.next_return_at())

    # ---------- jumps ----------
    def _stores_hidden(self, shape: BatchShape, pipelined: bool) -> bool:
        """Decoders' write-through stores hide behind every step of a jump: a step fills at most one block
        of each decoder of one phase (context length mod block size), copied beside a forward pass no
        shorter than this one's."""
        return pipelined and self.cost.swap_s(max(self.group.phase_list) * self.bs) <= self.cost.gpu_s(shape)
    def _jump_length(self, now: float, first_s: float, n: int, state: EngineState | None) -> tuple[int, float]:
        """Identical decode steps to run at once, and their summed duration: step j lasts first_s + b*j.
        ``state`` is what the policy planned on this step (its plan was empty), or None if it was not asked."""
        b = self.a_ctx * n
        k = self.group.steps_to_next_end()
        until = self._next_external()
        if state is not None:
            until = min(until, self.policy.next_decision_at(state))
        if self.order == "plas" and self.waiting:  # a promotion may change what is admitted
            until = min(until, self.waiting.next_promotion())
        if until < math.inf:  # the first k whose end reaches the next event
            k = min(k, first_k_reaching(first_s, b, until - now))
        if not self.drain:  # the last k that ends inside the window (at least 1: the caller stops there)
            k = min(k, max(first_k_reaching(first_s, b, self.duration_s - now, strict=True) - 1, 1))
        if self.order == "mars" and self.waiting:  # MARS's guard counts steps
            due = self.waiting.next_promotion()
            k = min(k, max(int(due) - self.steps_done, 1)) if due < math.inf else k
        free = self.pool.gpu_free + self.group.blocks_needed_now()  # this step's blocks are already taken
        if n * (k // self.bs + 1) > free:  # k steps might need more blocks than are free: the exact bound
            k = min(k, self.group.max_steps_within(free))
        return int(k), total_s(first_s, b, int(k))

    # ---------- after the step ----------
    def _complete(self, step: Step, k: int, t: float) -> None:
        self.steps_done += k
        if step.decode:
            self.num_generated += k * len(self.group.members)
            self.group.advance(k)
        for r, n in step.redo:
            self.m.recompute(t, r.rid, n)
        for r, q in step.chunks:
            r.computed += q
            r.ever_computed = max(r.ever_computed, r.computed)
            if r.computed == r.num_tokens:
                r.num_tokens += 1
                r.gen_in_seg += 1
                self.num_generated += 1
                self.client_token(r, t)
                if r.gen_in_seg >= r.segment.gen_tokens:
                    self.end_segment(r, t)
                else:
                    self.join_group(r)
        for r in self.group.pop_ended():
            self.end_segment(r, t)

    def _record(self, now: float, k: int, dur: float, fwd: float, stall: float, shape: BatchShape,
                step: Step) -> None:
        """Per-step sample and waste: paused GPU blocks over the step, plus blocks stalled by a recompute or
        a swap (the other running requests for the marginal time, the recomputing ones for the whole step)."""
        step.redo = redo = [(r, min(r.computed + q, r.ever_computed) - r.computed) for r, q in step.chunks
                            if r.ever_computed > r.computed]  # tokens whose KV had existed before
        redo_tokens = sum(n for _, n in redo) if redo else 0
        redo_s = 0.0
        if redo_tokens:  # the recomputed tokens are the first n of their chunk
            redo_pairs = sum(n * (r.computed + (n + 1) / 2) for r, n in redo)
            whole = sum(r.ever_computed >= r.computed + q for r, q in step.chunks  # prefill chunks all recomputed
                        if not (q == 1 and r.pending == 1))
            without = BatchShape(shape.num_decode, shape.decode_ctx_tokens, shape.prefill_tokens - redo_tokens,
                                 shape.prefill_attn_pairs - redo_pairs, shape.num_prefill_seqs - whole)
            redo_s = fwd - (self.cost.step_s(without) if without.query_tokens else 0.0)
        paused_blocks = self.paused_gpu_blocks  # idle blocks, charged per kind over time by EngineQueues._changed
        waste = paused_blocks * dur
        if redo or stall:
            running_blocks = self.pool.gpu_used - paused_blocks
            redo_blocks = sum(r.gpu_blocks for r, _ in redo)
            redo_waste = (running_blocks - redo_blocks) * redo_s + redo_blocks * dur
            for r, n in redo:
                self.m.attribute(r.kind, waste_block_s=redo_waste * n / redo_tokens,
                                 recompute_s=redo_s * n / redo_tokens)
            if stall:
                self.m.attribute(SWAP_STALL, waste_block_s=(running_blocks - redo_blocks) * stall)
            waste += redo_waste + (running_blocks - redo_blocks) * stall
        self.m.step(now, k, dur, dur - stall, shape.num_decode, shape.decode_ctx_tokens, shape.prefill_tokens,
                    redo_tokens, step.swap_tokens, self.pool.gpu_used, paused_blocks, self.pool.cpu_used, stall,
                    redo_s, waste, 0.0)

    def _close(self) -> None:
        """End of the run: credit the tokens of every unfinished request's segment in progress, wherever it
        sits (running, waiting after a preemption, resumed and holding its KV, swapped); a paused request's
        were credited at its pause."""
        for r in list(self.group.members.values()):
            self.group.leave(r)
        for r in (self.running + self.holding + self.loaded + list(self.waiting)
                  + list(self.swapped.values())):
            if r.gen_in_seg:
                self.m.progress(r.rid, r.gen_in_seg)
