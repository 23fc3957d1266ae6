"""The TTL family: at a pause, keep (pin) the KV on the GPU for a time-to-live tau chosen then, discard it
when tau runs out before the tool returns; tau = 0 discards at once. Durations are learned online from
``observe`` only (never from ReqView.tool_s). Three presets (``make_ttl_policy``):

- ``continuum`` — Continuum as released (vllm-continuum, ``estimate_with_func.set_up_pin``): pin for
  ``ttl_s`` (2 s, FIXED_THRESHOLD_CONTINUUM) if the running mean duration of this pause's tool is <= ttl_s
  or the tool is unseen (the release reads an unseen tool's mean as 0), else discard at once. The release
  uses one constant as threshold and pin length; ``ttl_s`` sets both.
- ``continuum_utility`` — Continuum's paper rule (arXiv 2511.02230 §4): tau* = argmax_tau
  F(tau) * (eta * Qbar + R(c)) - tau. Choices made here:
  * F: the empirical CDF of this tool's durations once it has more than 100, else of all tools' durations
    pooled; while there are <= 100 durations in all, an exponential prior with mean 1 s.
  * Candidates: {0} U the samples F is built on (all tools' when pooled). An empirical CDF rises only at its
    samples, so this is the exact argmax over every tau >= 0. Under the prior the argmax over every tau >= 0
    is taken in closed form (core/durations.py exp_prior_argmax), not over a grid.
  * Qbar: the mean of the last 256 "readmit" waits (0 before any).
  * R(c): ``cost.step_s`` of one pass prefilling the paused request's c computed tokens alone, causal
    attention included (BatchShape(prefill_tokens=c, prefill_attn_pairs=c(c+1)/2)) — what the simulator
    charges a whole recompute with nothing beside it. T_fwd(c) would drop the quadratic attention term that
    Continuum's profiled prefill curve has.
  * eta: ``eta`` (default 1); with ``eta_rule="correlation"`` Continuum's data-driven eta = -Corr(k, N - k)
    over the programs finished so far (the "finish" Observation gives N, a program's total turns; each
    finished program of N turns gives the pairs (k, N - k), k = 1..N-1), and ``eta`` while the correlation
    is undefined (fewer than 2 pairs, or only programs of 2 turns, whose pairs are all (1, 1)). Not clipped:
    a positive correlation gives a negative weight, as the formula says.
  * Ties go to the smaller tau.
- ``saga`` — SAGA's pressure-scaled TTL: tau = min(exp(mu + 1.645 sigma), 300 s) * (1 - 0.5 m), mu and sigma
  from an exponentially weighted (0.2 on the newest) log-normal fit of the tool's durations (core/durations.py
  EwLogNormal: first sample mu = log d, sigma = 0; durations floored at 1 ms before the log), ``cold_start_s``
  (capped at 300 s too) before the tool's first sample; m = clip((u - 0.7) / 0.2, 0, 1), u = 1 -
  free_gpu_blocks / gpu_blocks_total at the pause (0 when the total is unknown).

Common to all: the TTL counts from the pause's start; a pinned request is discarded by the first plan after
its expiry, and ``next_decision_at`` returns the earliest expiry so that jumps stop there. A tool that returns
in time ends the pin; the engines run a resumed request that kept its KV at once, so the pin covers its next
turn's wait as the release's does. Pinned KV is not given up early under memory pressure (the engine preempts
running requests instead), as in the release.
Traits: resume_to_front; queue order "program" (Continuum's program-level FCFS) for both Continuum presets,
"arrival" for SAGA.
"""

from __future__ import annotations

import math
from typing import Any

from core.cost import BatchShape, CostModel
from core.durations import (
    DurationHistory,
    EwLogNormal,
    RecentMean,
    TurnCorrelation,
    ecdf_argmax,
    exp_prior_argmax,
)
from core.types import EMPTY_PLAN, EngineState, KvAction, Observation, PolicyTraits, ReqView, StepPlan

HISTORY_THRESHOLD = 100  # continuum_utility: samples needed before a CDF (per tool, or in all) is trusted
PRIOR_MEAN_S = 1.0  # continuum_utility: mean of the exponential prior
QUEUE_WINDOW = 256  # continuum_utility: readmission waits averaged into Qbar
ETA_RULES = ("fixed", "correlation")
SAGA_ALPHA = 0.2  # weight of the newest sample in the log-normal fit
SAGA_Z = 1.645  # the fit's 95th percentile
SAGA_CAP_S = 300.0
SAGA_PRESSURE_FROM, SAGA_PRESSURE_SPAN, SAGA_PRESSURE_CUT = 0.7, 0.2, 0.5


def _nonnegative(key: str, value: Any) -> float:
    """``value`` as a float, or ValueError naming the option if it is not a finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < math.inf:
        raise ValueError(f"policy option {key}={value!r}: expected a finite number >= 0")
    return float(value)


class TtlPolicy:
    """Pins at the pause for ``ttl_s(req, state)`` seconds (0: discard at once), discards at expiry."""

    name = ""
    plans_steps = True

    def __init__(self, traits: PolicyTraits) -> None:
        self.traits = traits
        self.expiry_at: dict[str, float] = {}  # rid of a pinned pause -> when its TTL runs out (s)

    def ttl_s(self, req: ReqView, state: EngineState) -> float:
        """The TTL (s) this preset gives ``req`` at its pause; 0 means discard at once."""
        raise NotImplementedError

    def on_pause(self, req: ReqView, state: EngineState) -> KvAction:
        """Discard if the TTL is 0, else keep the KV on the GPU and remember when the TTL runs out."""
        ttl = self.ttl_s(req, state)
        if ttl <= 0:
            self.expiry_at.pop(req.rid, None)
            return KvAction.DISCARD
        start = req.paused_at_s if math.isfinite(req.paused_at_s) else state.now_s
        self.expiry_at[req.rid] = start + ttl
        return KvAction.PRESERVE

    def plan_step(self, state: EngineState) -> StepPlan:
        """Discard every paused request that still holds GPU blocks and whose TTL has run out, oldest first."""
        due = [r for r in state.paused
               if r.gpu_blocks and self.expiry_at.get(r.rid, math.inf) <= state.now_s]
        if not due:
            return EMPTY_PLAN
        return StepPlan(discard=tuple(r.rid for r in sorted(due, key=_by_ticket)))

    def next_decision_at(self, state: EngineState) -> float:
        """The earliest TTL expiry among paused requests holding GPU blocks; ``inf`` if none is pinned."""
        return min((self.expiry_at.get(r.rid, math.inf) for r in state.paused if r.gpu_blocks),
                   default=math.inf)

    def observe(self, obs: Observation) -> None:
        """A resume ends the pause's pin; the preset learns from the measurement (``learn``)."""
        if obs.event == "resume":
            self.expiry_at.pop(obs.rid, None)
        self.learn(obs)

    def learn(self, obs: Observation) -> None:
        """Update the preset's statistics from one observation."""


class ContinuumTtl(TtlPolicy):
    """Continuum as released: a fixed pin for tools whose mean duration is short (or unknown)."""

    name = "continuum"

    def __init__(self, ttl_s: Any = 2.0) -> None:
        super().__init__(PolicyTraits(resume_to_front=True, queue_order="program"))
        self.fixed_ttl_s = _nonnegative("ttl_s", ttl_s)
        self.history = DurationHistory()

    def ttl_s(self, req: ReqView, state: EngineState) -> float:
        """ttl_s if the tool is unseen or its running mean is <= ttl_s, else 0."""
        mean = self.history.mean_s(req.tool_kind)
        return self.fixed_ttl_s if mean is None or mean <= self.fixed_ttl_s else 0.0

    def learn(self, obs: Observation) -> None:
        """Add a resumed interception's duration to its tool's running mean."""
        if obs.event == "resume":
            self.history.add(obs.tool_kind, obs.value_s)


class ContinuumUtility(TtlPolicy):
    """Continuum's paper rule: the TTL maximising expected saved time minus time pinned."""

    name = "continuum_utility"

    def __init__(self, cost: CostModel, eta: Any = 1.0, eta_rule: Any = "fixed") -> None:
        super().__init__(PolicyTraits(resume_to_front=True, queue_order="program"))
        if eta_rule not in ETA_RULES:
            raise ValueError(f"policy option eta_rule={eta_rule!r}: expected one of {ETA_RULES}")
        self.eta_rule = eta_rule
        self.eta = _nonnegative("eta", eta)
        self.turns = TurnCorrelation()
        self.cost = cost
        self.history = DurationHistory()
        self.queue_delay = RecentMean(QUEUE_WINDOW)

    def recompute_s(self, computed_tokens: int) -> float:
        """R(c): one pass prefilling ``computed_tokens`` tokens alone, causal attention included (s)."""
        c = computed_tokens
        if c <= 0:
            return 0.0
        return self.cost.step_s(BatchShape(prefill_tokens=c, prefill_attn_pairs=c * (c + 1) / 2,
                                           num_prefill_seqs=1))

    def current_eta(self) -> float:
        """The weight of Qbar: ``eta``, or -Corr(k, N - k) of the finished programs (``eta`` while undefined)."""
        corr = self.turns.corr() if self.eta_rule == "correlation" else None
        return self.eta if corr is None else -corr

    def benefit_s(self, req: ReqView) -> float:
        """eta * Qbar + R(c): the time a pin saves if the tool returns within it (s)."""
        return self.current_eta() * self.queue_delay.mean + self.recompute_s(req.computed_tokens)

    def ttl_s(self, req: ReqView, state: EngineState) -> float:
        """tau* under the exponential prior (<= 100 durations in all), the pooled empirical CDF (this tool
        has <= 100) or the tool's own."""
        benefit = self.benefit_s(req)
        if self.history.num_total <= HISTORY_THRESHOLD:
            return exp_prior_argmax(PRIOR_MEAN_S, benefit)
        if self.history.count(req.tool_kind) <= HISTORY_THRESHOLD:
            return ecdf_argmax(self.history.pooled, benefit)
        return ecdf_argmax(self.history.sorted_s(req.tool_kind), benefit)

    def learn(self, obs: Observation) -> None:
        """Resumes feed the duration history, readmissions the queueing-delay window, finishes eta."""
        if obs.event == "resume":
            self.history.add(obs.tool_kind, obs.value_s)
        elif obs.event == "readmit":
            self.queue_delay.add(obs.value_s)
        elif obs.event == "finish":
            self.turns.add_program(round(obs.value_s))


class SagaTtl(TtlPolicy):
    """SAGA: a high quantile of the tool's log-normal fit, shortened under GPU memory pressure."""

    name = "saga"

    def __init__(self, cold_start_s: Any = 2.0) -> None:
        super().__init__(PolicyTraits(resume_to_front=True, queue_order="arrival"))
        self.cold_start_s = _nonnegative("cold_start_s", cold_start_s)
        self.fit = EwLogNormal(SAGA_ALPHA)

    def ttl_s(self, req: ReqView, state: EngineState) -> float:
        """min(exp(mu + 1.645 sigma) or cold_start_s, 300 s) * (1 - 0.5 m) at the pause's KV utilisation."""
        base = self.fit.quantile_s(req.tool_kind, SAGA_Z)
        base = min(self.cold_start_s if base is None else base, SAGA_CAP_S)
        return base * (1 - SAGA_PRESSURE_CUT * pressure(state))

    def learn(self, obs: Observation) -> None:
        """Fold a resumed interception's duration into its tool's fit."""
        if obs.event == "resume":
            self.fit.add(obs.tool_kind, obs.value_s)


def pressure(state: EngineState) -> float:
    """SAGA's m = clip((u - 0.7) / 0.2, 0, 1), u = 1 - free / total GPU blocks (0 when the total is 0)."""
    total = state.gpu_blocks_total
    u = 1 - state.free_gpu_blocks / total if total > 0 else 0.0
    return min(max((u - SAGA_PRESSURE_FROM) / SAGA_PRESSURE_SPAN, 0.0), 1.0)


PRESET_OPTIONS: dict[str, frozenset[str]] = {
    "continuum": frozenset({"ttl_s"}), "continuum_utility": frozenset({"eta", "eta_rule"}),
    "saga": frozenset({"cold_start_s"})}


def make_ttl_policy(preset: str, cost: CostModel, **options: Any) -> TtlPolicy:
    """Build a TTL preset ("continuum", "continuum_utility", "saga") with its options (queue_order is
    applied by core.policy.make_policy); an unknown preset, option or bad value raises ValueError."""
    if preset not in PRESET_OPTIONS:
        raise ValueError(f"unknown TTL preset {preset!r}; expected one of {sorted(PRESET_OPTIONS)}")
    for key in options:
        if key not in PRESET_OPTIONS[preset]:
            raise ValueError(f"policy_options.{key}: policy {preset!r} has no option {key!r} "
                             f"(it accepts: {', '.join(sorted(PRESET_OPTIONS[preset]))})")
    if preset == "continuum":
        return ContinuumTtl(**options)
    if preset == "continuum_utility":
        return ContinuumUtility(cost, **options)
    return SagaTtl(**options)


def _by_ticket(r: ReqView) -> int:
    return r.ticket
