"""InferCept's min-waste interception (INFERCEPT.md §2): waste equations, swap budget, chunked recompute.

Waste is in token-seconds (memory x time divided by the KV bytes per token M, as the reference code does).
Every technique is an option of this one policy, so the paper's ablation is a set of flags:

- ``estimator``: "elapsed" (the paper: T_INT is estimated as the time elapsed since the pause) or "oracle"
  (the released code: the true remaining time of the interception);
- ``chunk_fill``: chunked recomputation and chunk-and-fill batching up to S (Eq. 4); off: Eq. 1;
- ``swap``: budgeted swap, given to the requests with the largest waste first (§2.4-2.5);
- ``pipelined``: swaps overlap the forward pass (only the excess over the step stalls);
- ``preserve``: may keep a paused request's KV on the GPU (off: discard whatever is not swapped).
"""

from __future__ import annotations

import math

from core.cost import CostModel
from core.types import EMPTY_PLAN, EngineState, KvAction, PolicyTraits, ReqView, StepPlan


def preserve_waste(t_int_s: float, ctx_tokens: float) -> float:
    """Eq. 2: WastePreserve = T_INT * C (token-seconds)."""
    return t_int_s * ctx_tokens


def discard_waste(cost: CostModel, ctx_tokens: float, other_tokens: float) -> float:
    """Eq. 1: the whole context recomputed in one pass; it and every other running token wait T_fwd(C)."""
    t = cost.fwd_s(ctx_tokens)
    return t * ctx_tokens + t * other_tokens


def chunked_discard_waste(cost: CostModel, ctx_tokens: int, running_query_tokens: int,
                          running_gpu_tokens: int) -> float:
    """Eq. 4 in the discrete form of the released code (INFERCEPT.md §2.10), token-seconds.

    The context is recomputed in chunks of c = max(S - R, 1) tokens piggy-backed on decode iterations of
    T_fwd(S); the request's own rebuilt context grows chunk by chunk (first term), and each chunk lengthens
    an iteration by its marginal time a*c for the Rb running tokens (second and third terms).
    """
    s = cost.saturation_tokens
    chunk = max(s - running_query_tokens, 1)
    n = max(math.ceil(ctx_tokens / chunk) - 1, 0)
    last = ctx_tokens % chunk
    a = cost.fwd_s(1) - cost.fwd_s(0)
    return (cost.fwd_s(s) * chunk * n * (n + 1) / 2 + a * chunk * n * running_gpu_tokens
            + a * last * (running_gpu_tokens + last))


def swap_budget_tokens(cost: CostModel) -> int:
    """N: tokens of KV the link moves during one saturated step, T_swap(N) = T_fwd(S) (§2.5)."""
    return cost.swap_tokens_in(cost.fwd_s(cost.saturation_tokens))


class MinWaste:
    """The InferCept policy; see the module docstring for the options."""

    name = "infercept"
    plans_steps = True

    def __init__(self, cost: CostModel, estimator: str = "elapsed", chunk_fill: bool = True,
                 swap: bool = True, pipelined: bool = True, preserve: bool = True) -> None:
        if estimator not in ("elapsed", "oracle"):
            raise ValueError(f"policy option estimator={estimator!r}: expected 'elapsed' or 'oracle'")
        self.cost = cost
        self.estimator = estimator
        self.chunk_fill, self.swap, self.preserve = chunk_fill, swap, preserve
        self.traits = PolicyTraits(resume_to_front=True, chunk_fill=chunk_fill, pipelined_swap=pipelined)
        self.budget_blocks = swap_budget_tokens(cost) // cost.block_size_tokens

    def t_int_s(self, req: ReqView, now_s: float) -> float:
        """The interception time that Eq. 2 charges: elapsed so far, or the oracle's remaining time."""
        elapsed = max(now_s - req.paused_at_s, 0.0)
        return elapsed if self.estimator == "elapsed" else max(req.tool_s - elapsed, 0.0)

    def gpu_tokens(self, req: ReqView) -> int:
        """Tokens of ``req``'s KV that sit on the GPU (a partial swap-out leaves the first blocks)."""
        return min(req.computed_tokens, req.gpu_blocks * self.cost.block_size_tokens)

    def wastes(self, req: ReqView, state: EngineState) -> tuple[float, float]:
        """(WastePreserve, WasteDiscard) of ``req`` now, token-seconds."""
        c = self.gpu_tokens(req)
        wp = preserve_waste(self.t_int_s(req, state.now_s), c) if self.preserve else math.inf
        if self.chunk_fill:
            wd = chunked_discard_waste(self.cost, c, state.running_query_tokens, state.running_gpu_tokens)
        else:
            wd = discard_waste(self.cost, c, state.running_gpu_tokens)
        return wp, wd

    def on_pause(self, req: ReqView, state: EngineState) -> KvAction:
        """Keep the KV for now; plan_step decides every step from then on."""
        return KvAction.PRESERVE

    def plan_step(self, state: EngineState) -> StepPlan:
        """Swap-in resumed requests, then rank paused GPU requests by min(WP, WD) descending: the head gets
        the swap-out budget, the rest is discarded if WD < WP, else kept; under memory pressure preserved
        requests are discarded, cheapest WD first, until the shortage is covered."""
        budget = self.budget_blocks if self.swap else 0
        ins: list[tuple[str, int]] = []
        if state.swapped and budget:
            free_gpu = state.free_gpu_blocks
            for r in sorted(state.swapped, key=_by_ticket):
                n = min(r.cpu_blocks, budget, free_gpu)
                if n <= 0:
                    break
                ins.append((r.rid, n))
                budget, free_gpu = budget - n, free_gpu - n
        scored = sorted(((self.wastes(r, state), r) for r in state.paused if r.gpu_blocks), key=_by_waste)
        free_cpu = state.free_cpu_blocks + sum(n for _, n in ins)
        short = state.gpu_blocks_short
        outs, discards, kept = [], [], []
        for (wp, wd), r in scored:
            n = min(r.gpu_blocks, budget, free_cpu)
            if n > 0:
                outs.append((r.rid, n))
                budget, free_cpu, short = budget - n, free_cpu - n, short - n
            elif wd < wp:
                discards.append(r.rid)
                short -= r.gpu_blocks
            else:
                kept.append((wd, r))
        if short > 0:
            for _, r in sorted(kept, key=_by_cost):
                if short <= 0:
                    break
                discards.append(r.rid)
                short -= r.gpu_blocks
        if not (ins or outs or discards):
            return EMPTY_PLAN
        return StepPlan(swap_out=tuple(outs), swap_in=tuple(ins), discard=tuple(discards))

    def next_decision_at(self, state: EngineState) -> float:
        """After an empty plan: the earliest time a kept request's WP reaches its WD (closed form under the
        elapsed estimator: WP grows linearly, WD only grows with the running context); inf for the oracle
        (the remaining time only shrinks)."""
        if self.estimator == "oracle" or not self.preserve:
            return math.inf
        t = math.inf
        for r in state.paused:
            c = self.gpu_tokens(r)
            if c:
                t = min(t, r.paused_at_s + self.wastes(r, state)[1] / c)
        return t


def _by_ticket(r: ReqView) -> int:
    return r.ticket


def _by_waste(x: tuple[tuple[float, float], ReqView]) -> tuple[float, int]:
    """Largest min(WP, WD) first; ties by arrival order."""
    return -min(x[0]), x[1].ticket


def _by_cost(x: tuple[float, ReqView]) -> tuple[float, int]:
    """Cheapest WD first; ties by arrival order."""
    return x[0], x[1].ticket
