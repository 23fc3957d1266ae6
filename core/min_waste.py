"""InferCept's min-waste interception policy (INFERCEPT.md §2.4-2.9), every technique an option.

Options (``policy_options.*``), each changing one thing, so the paper's ablation is a set of flags:

- ``estimator``: T_INT of Eq. 2, "paper" (profiled means for math/qa/ve, elapsed time for the others),
  "elapsed" or "oracle" (the released code) — see core/waste.py;
- ``budget``: the per-step swap budget N, "step" (the paper: T_swap(N) = T_fwd(B) of the step's own query
  tokens B, so the copy hides behind it) or "saturated" (T_fwd(S) on every step);
- ``chunk_fill``: chunked recomputation (Eq. 4); off: a recompute runs whole in one pass (Eq. 1); the
  chunk-and-fill batching up to S is kept either way;
- ``swap``: the swap option at all;
- ``pipelined``: swaps overlap the forward pass within the budget; off: the paper's unpipelined swap — whole
  contexts, no budget, chosen when Eq. 3's waste is the smallest of the three, the copy stalls the step;
- ``preserve``: may keep a paused request's KV on the GPU (off: discard whatever is not swapped);
- ``skip_short_pauses``: spend no link time on a pause expected (by the estimator) to return before its
  swap round trip 2*T_swap(C) completes (off, as the paper's algorithm: leftover budget goes to any pause);
- ``heuristic_preserve_s``: the ablation's "heuristic preserve" step instead of min-waste's keep rule (0,
  the default: off): a pause whose estimated T_INT is below this many seconds is kept on the GPU and spends
  no link time, any other is never kept (swapped within the budget, else discarded). The reference code's
  heuristics preserve below 4 s (INFERCEPT.md §4.5).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from core.cost import CostModel
from core.types import EMPTY_PLAN, EngineState, KvAction, Observation, PolicyTraits, ReqView, StepPlan
from core.waste import (
    Estimator,
    blocking_swap_waste,
    chunked_discard_waste,
    discard_waste,
    preserve_waste,
    swap_budget_tokens,
)

BUDGETS = ("step", "saturated")


class MinWaste:
    """The InferCept policy; see the module docstring for the options."""

    name = "infercept"
    plans_steps = True

    def __init__(self, cost: CostModel, tool_means_s: Mapping[str, float] | None = None,
                 estimator: str = "paper", budget: str = "step", chunk_fill: bool = True, swap: bool = True,
                 pipelined: bool = True, preserve: bool = True, skip_short_pauses: bool = False,
                 heuristic_preserve_s: float = 0.0) -> None:
        if budget not in BUDGETS:
            raise ValueError(f"policy option budget={budget!r}: expected one of {BUDGETS}")
        flags = {"chunk_fill": chunk_fill, "swap": swap, "pipelined": pipelined, "preserve": preserve,
                 "skip_short_pauses": skip_short_pauses}
        for key, value in flags.items():
            if not isinstance(value, bool):
                raise ValueError(f"policy option {key}={value!r}: expected true or false")  # noqa: TRY004
        self.cost = cost
        self.est = Estimator(estimator, tool_means_s)
        self.estimator, self.budget = estimator, budget
        self.chunk_fill, self.swap, self.pipelined, self.preserve = chunk_fill, swap, pipelined, preserve
        self.skip_short = skip_short_pauses
        if isinstance(heuristic_preserve_s, bool) or not heuristic_preserve_s >= 0:
            raise ValueError(f"policy option heuristic_preserve_s={heuristic_preserve_s!r}: expected a number >= 0")
        self.heuristic_s = float(heuristic_preserve_s)
        self.traits = PolicyTraits(resume_to_front=True, chunk_fill=True, pipelined_swap=pipelined,
                                   chunk_recompute=chunk_fill, async_swap_in=True)
        self.saturated_blocks = swap_budget_tokens(cost) // cost.block_size_tokens
        self.step_blocks: dict[int, int] = {}  # N in blocks by the step's query tokens B (the cost is fixed)

    # ---------- the quantities of the equations ----------
    def budget_blocks(self, state: EngineState) -> int:
        """N of this step in blocks (0 without a pipelined swap): sized to T_fwd(B), B = the query tokens
        the step is expected to carry (running ones plus what waiting requests could add, capped at S)."""
        if not (self.swap and self.pipelined):
            return 0
        if self.budget == "saturated":
            return max(self.saturated_blocks, 1)
        b = min(state.running_query_tokens + state.waiting_query_tokens, self.cost.saturation_tokens)
        n = self.step_blocks.get(b)
        if n is None:  # at least one block, so a swapped request comes back over a link slower than that
            n = self.step_blocks[b] = max(swap_budget_tokens(self.cost, b) // self.cost.block_size_tokens, 1)
        return n

    def gpu_tokens(self, req: ReqView) -> int:
        """Tokens of ``req``'s KV that sit on the GPU (a partial swap-out leaves the first blocks)."""
        return min(req.computed_tokens, req.gpu_blocks * self.cost.block_size_tokens)

    def wastes(self, req: ReqView, state: EngineState) -> tuple[float, float]:
        """(WastePreserve, WasteDiscard) of ``req`` now, token-seconds. Preserving idles the GPU part; a
        discard drops the whole computed context, CPU part included, so WD is over all of it."""
        if self.heuristic_s:
            wp = 0.0 if self.heuristic_keeps(req, state) else math.inf
        elif self.preserve:
            wp = preserve_waste(self.est.t_int_s(req, state.now_s), self.gpu_tokens(req))
        else:
            wp = math.inf
        c = req.computed_tokens
        if self.chunk_fill:
            wd = chunked_discard_waste(self.cost, c, state.running_query_tokens, state.running_gpu_tokens)
        else:
            wd = discard_waste(self.cost, c, state.running_gpu_tokens)
        return wp, wd

    def round_trip_s(self, req: ReqView) -> float:
        """Link time to swap ``req``'s whole context out and back."""
        return 2 * self.cost.swap_s(req.computed_tokens)

    def heuristic_keeps(self, req: ReqView, state: EngineState) -> bool:
        """heuristic_preserve_s: a pause not yet swapped whose estimated T_INT is below the threshold."""
        return not req.cpu_blocks and self.est.t_int_s(req, state.now_s) < self.heuristic_s

    def skips(self, req: ReqView, state: EngineState) -> bool:
        """No link time for this pause: skip_short_pauses and it is expected back before its swap round
        trip, or the heuristic keeps it."""
        if self.heuristic_s and self.heuristic_keeps(req, state):
            return True
        return (self.skip_short and not req.cpu_blocks
                and self.est.t_int_s(req, state.now_s) < self.round_trip_s(req))

    # ---------- decisions ----------
    def on_pause(self, req: ReqView, state: EngineState) -> KvAction:
        """Keep the KV for now; plan_step decides every step from then on."""
        return KvAction.PRESERVE

    def plan_step(self, state: EngineState) -> StepPlan:
        """Swap in resumed requests (oldest first, within the budget and the GPU blocks the running requests
        do not need next step), then rank paused GPU requests by min(WP, WD) descending: the head gets the
        swap-out budget (CPU blocks freed by this step's swap-ins count), the rest is discarded if WD < WP,
        else kept; under memory pressure kept requests are discarded, cheapest WD first, until the shortage
        is covered. Unpipelined: whole swaps, for requests whose Eq. 3 waste is the smallest."""
        budget = self.budget_blocks(state)
        room = max(state.free_gpu_blocks - state.running_blocks_needed, 0)
        ins: list[tuple[str, int]] = []
        ins_blocks = 0
        if self.swap:
            bs = self.cost.block_size_tokens
            for r in sorted(state.swapped, key=_by_ticket):
                # started only if the rest of its KV and the blocks of its own pending tokens fit
                need = r.cpu_blocks + r.growth_blocks(bs)
                n = min(r.cpu_blocks, budget) if self.pipelined else r.cpu_blocks
                if n <= 0 or need > room:
                    break
                ins.append((r.rid, n))
                budget, room, ins_blocks = budget - n, room - need, ins_blocks + n
        free_cpu = state.free_cpu_blocks + ins_blocks
        short = state.gpu_blocks_short
        outs, discards, kept = [], [], []
        may_skip = self.skip_short or self.heuristic_s
        for (wp, wd), r in sorted([(self.wastes(r, state), r) for r in state.paused if r.gpu_blocks],
                                  key=_by_waste):
            n = 0
            if self.pipelined and not (may_skip and self.skips(r, state)):
                n = min(r.gpu_blocks, budget, free_cpu)
            elif self.swap and not self.pipelined and r.gpu_blocks <= free_cpu:
                ws = blocking_swap_waste(self.cost, r.computed_tokens, state.running_gpu_tokens)
                n = r.gpu_blocks if ws < min(wp, wd) else 0
            if n > 0:
                outs.append((r.rid, n))
                budget, free_cpu, short = budget - n, free_cpu - n, short - n
            elif wd < wp:
                discards.append(r.rid)
                short -= r.gpu_blocks
            else:
                kept.append((wd, r))
        for wd, r in sorted(kept, key=_by_cost):
            if short <= 0:
                break
            discards.append(r.rid)
            short -= r.gpu_blocks
        if not (ins or outs or discards):
            return EMPTY_PLAN
        return StepPlan(swap_out=tuple(outs), swap_in=tuple(ins), discard=tuple(discards))

    def next_decision_at(self, state: EngineState) -> float:
        """After an empty plan: the earliest time a kept request's decision can change by time alone — its
        WP reaching its WD, or (skip_short_pauses) its elapsed time reaching its swap round trip — for the
        requests whose estimate grows with time (the elapsed rule; WD only grows with the running context).
        Estimates that only shrink (profiled means, the oracle) never turn a kept request into a discard."""
        t = math.inf
        for r in state.paused:
            c = self.gpu_tokens(r)
            if not c or not self.est.grows(r):
                continue
            if self.heuristic_s:
                t = min(t, r.paused_at_s + self.heuristic_s)
            elif self.preserve:
                t = min(t, r.paused_at_s + self.wastes(r, state)[1] / c)
            if self.skip_short and not r.cpu_blocks:
                t = min(t, r.paused_at_s + self.round_trip_s(r))
        return t

    def observe(self, obs: Observation) -> None:
        """InferCept does not learn online (the paper's estimator uses the workload's profiled means)."""


def _by_ticket(r: ReqView) -> int:
    return r.ticket


def _by_waste(x: tuple[tuple[float, float], ReqView]) -> tuple[float, int]:
    """Largest min(WP, WD) first; ties by arrival order."""
    return -min(x[0]), x[1].ticket


def _by_cost(x: tuple[float, ReqView]) -> tuple[float, int]:
    """Cheapest WD first; ties by arrival order."""
    return x[0], x[1].ticket
