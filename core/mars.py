"""MARS / LAMPS (INFERCEPT.md §7; mars-repository/mars-codebase ``vllm/core/policy.py`` and
``scheduler_v2.py``): the pause action of a request's coming segment is chosen from predicted lengths, and the
waiting queue is ranked by the memory x time of the segment under that action, smallest first, with a
starvation guard (core/queue_order.py ``mars``: promoted after ``MARS_STARVATION_STEPS`` steps of waiting).

Predictions: the segment's length before its interception is the true one by default (an oracle: MARS's
OPT-125M predictor guesses it in 50 bins of 10 tokens), times exp(sigma * z) with ``length_error_sigma`` (z a standard
normal drawn from (``noise_seed``, request, segment), the same in both backends); the interception's duration
is the tool's mean from the workload's per-type statistics (``tool_means_s``; 0 for a tool without one). The
returned tokens are the true ones, as MARS's code uses them.

The action (``choose``) is InferCept's rule on those predictions: preserve if T_INT * C is the smallest of
the three wastes, else swap if the swap's is, else discard (chunked Eq. 4); ties as MARS: preserve, then swap.
The swap's waste (``swap_cost``): "stall" (default, what MARS's code charges): Eq. 3, the running batch
stalled for an unpipelined copy out and back, 2 T_swap(C) * Rb; "pipelined": only the part of each copy a
saturated step does not hide, 2 max(T_swap(C) - T_fwd(S), 0) * Rb — what the engine, which overlaps MARS's
whole-context swaps with the forward pass as the reference's swap path does, actually stalls (an ablation).
It is applied at the pause with the engine's load then; the queue score uses the load at the policy's last
decision (a pause or a plan; none before the first pause). The score, in token-seconds, with every step
charged T_fwd(S) as MARS's ``f_s``: the area of the pending prefill (chunks of S; its last chunk samples the
first token) and of decoding the rest of the predicted length (minus what a preempted request had decoded),
then for a segment with an interception the hold (preserve: C * T_INT; swap: C * 2 T_swap(C); discard: 0)
and the area of what the resume computes (the returned tokens, or the whole context after a discard).

Choices where the code is ambiguous or quirky (README "MARS"): the score is computed when the request enters
the queue (MARS recomputes it every step against the running batch); every waiting request counts towards
the starvation guard (MARS's counter starts only once a request has run); swapped requests come back whole,
oldest first, ahead of the waiting queue, as the swap baseline's; under memory pressure preserved pauses are
discarded, the one expected back last first.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping

from core.cost import CostModel
from core.policy import Swap
from core.types import EngineState, KvAction, Observation, PolicyTraits, ReqView, StepPlan
from core.waste import blocking_swap_waste, chunked_discard_waste, preserve_waste

SWAP_COSTS = ("stall", "pipelined")


class Mars(Swap):
    """The MARS policy; see the module docstring."""

    name = "mars"
    plans_steps = True

    def __init__(self, cost: CostModel, tool_means_s: Mapping[str, float] | None = None,
                 length_error_sigma: float = 0.0, noise_seed: int = 0, swap_cost: str = "stall") -> None:
        if swap_cost not in SWAP_COSTS:
            raise ValueError(f"policy option swap_cost={swap_cost!r}: expected one of {SWAP_COSTS}")
        if isinstance(length_error_sigma, bool) or not (isinstance(length_error_sigma, (int, float))
                                                        and length_error_sigma >= 0):
            raise ValueError(f"policy option length_error_sigma={length_error_sigma!r}: expected a number >= 0")
        if isinstance(noise_seed, bool) or not isinstance(noise_seed, int):
            raise ValueError(f"policy option noise_seed={noise_seed!r}: expected an integer")
        self.cost, self.swap_cost = cost, swap_cost
        self.means = {k: float(v) for k, v in (tool_means_s or {}).items()}
        self.sigma, self.seed = float(length_error_sigma), noise_seed
        self.step_s = cost.fwd_s(cost.saturation_tokens)
        self.load = (0, 0)  # (running query tokens, running GPU tokens) of the last state seen
        self.traits = PolicyTraits(resume_to_front=True, chunk_fill=True, pipelined_swap=True, queue_order="mars")

    # ---------- predictions ----------
    def predicted_gen_tokens(self, req: ReqView) -> int:
        """The predicted length of ``req``'s current segment (at least 1 token), decoded tokens included."""
        if not self.sigma:
            return req.seg_gen_tokens
        z = random.Random(f"{self.seed}:{req.rid}:{req.segment}").gauss(0.0, 1.0)
        return max(round(req.seg_gen_tokens * math.exp(self.sigma * z)), 1)

    def predicted_tool_s(self, req: ReqView) -> float:
        """The predicted duration of ``req``'s interception: its tool's mean (0 if none is known)."""
        return self.means.get(req.tool_kind or req.kind, 0.0)

    # ---------- the action and the score ----------
    def choose(self, ctx_tokens: int, tool_s: float, load: tuple[int, int]) -> KvAction:
        """The action of least waste for a pause of ``ctx_tokens`` lasting ``tool_s``, under ``load``."""
        wp = preserve_waste(tool_s, ctx_tokens)
        ws = blocking_swap_waste(self.cost, ctx_tokens, load[1])
        if self.swap_cost == "pipelined":
            ws = 2 * max(self.cost.swap_s(ctx_tokens) - self.step_s, 0.0) * load[1]
        wd = chunked_discard_waste(self.cost, ctx_tokens, load[0], load[1])
        if wp <= ws and wp <= wd:
            return KvAction.PRESERVE
        return KvAction.SWAP if ws <= wd else KvAction.DISCARD

    def prefill_area(self, from_tokens: int, to_tokens: int) -> float:
        """Token-seconds of computing a context from ``from_tokens`` to ``to_tokens`` in chunks of S, each
        step holding the context computed by its end."""
        s, n = self.cost.saturation_tokens, -(-max(to_tokens - from_tokens, 0) // self.cost.saturation_tokens)
        full = max(n - 1, 0)  # chunks of S before the last, which ends at to_tokens
        return self.step_s * (full * from_tokens + s * full * (full + 1) / 2 + (to_tokens if n else 0))

    def queue_score(self, req: ReqView) -> float:
        """Memory x time (token-seconds) of ``req``'s coming segment under its predicted action."""
        ctx = req.context_tokens
        left = max(self.predicted_gen_tokens(req) - req.seg_done_tokens, 1)  # tokens still to sample
        # the prefill's last chunk samples the first; each of the other left - 1 steps holds one more token
        area = self.prefill_area(req.computed_tokens, ctx) + self.step_s * (
            (left - 1) * ctx + (left - 1) * left / 2)
        if req.last_segment:
            return area
        end = ctx + left
        tool_s = self.predicted_tool_s(req)
        action = self.choose(end, tool_s, self.load)
        if action is KvAction.DISCARD:  # no hold; the resume recomputes the whole context
            return area + self.prefill_area(0, end + req.seg_tool_tokens)
        hold = end * tool_s if action is KvAction.PRESERVE else end * 2 * self.cost.swap_s(end)
        return area + hold + self.prefill_area(end, end + req.seg_tool_tokens)

    # ---------- the Policy seam ----------
    def on_pause(self, req: ReqView, state: EngineState) -> KvAction:
        """The action of least waste on the predicted interception time, under the load now."""
        self.load = (state.running_query_tokens, state.running_gpu_tokens)
        return self.choose(req.computed_tokens, self.predicted_tool_s(req), self.load)

    def plan_step(self, state: EngineState) -> StepPlan:
        """Swap resumed requests back in (whole, oldest first); under memory pressure discard preserved
        pauses, the one expected back last first, until the shortage is covered."""
        self.load = (state.running_query_tokens, state.running_gpu_tokens)
        plan = super().plan_step(state)
        short = state.gpu_blocks_short
        if short <= 0:
            return plan
        discards = []
        kept = [r for r in state.paused if r.gpu_blocks and not r.cpu_blocks]
        for r in sorted(kept, key=lambda v: (-(v.paused_at_s + self.predicted_tool_s(v)), v.ticket)):
            if short <= 0:
                break
            discards.append(r.rid)
            short -= r.gpu_blocks
        return StepPlan(swap_in=plan.swap_in, discard=tuple(discards)) if discards else plan

    def next_decision_at(self, state: EngineState) -> float:
        """Decisions change only with events (a pause, a resume, memory pressure)."""
        return math.inf

    def observe(self, obs: Observation) -> None:
        """MARS uses profiled means, not online statistics."""

