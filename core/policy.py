"""The Policy seam and the four baseline policies (vLLM discard, improved discard, preserve, swap).

A policy is a deterministic function of what it is shown: it never reads a clock, imports a backend or does
I/O. Adding one = a class + a registry line + tests; ``sim/`` and ``real/`` need no edit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol

from core.cost import CostModel
from core.queue_order import QUEUE_ORDERS
from core.types import EMPTY_PLAN, EngineState, KvAction, Observation, PolicyTraits, ReqView, StepPlan


class Policy(Protocol):
    """Decides what happens to the KV of paused requests."""

    name: str
    traits: PolicyTraits
    plans_steps: bool  # False: plan_step always returns an empty plan (the engine may skip calling it)

    def on_pause(self, req: ReqView, state: EngineState) -> KvAction:
        """Called once when ``req`` enters an interception; the engine applies the action at once."""
        ...

    def plan_step(self, state: EngineState) -> StepPlan:
        """Called before every step that has paused or swapped requests; moves within the step's budget."""
        ...

    def next_decision_at(self, state: EngineState) -> float:
        """Called right after plan_step(state) returned an empty plan, when the engine wants to jump: an
        instant (s) before which plan_step, given this state advanced by steady decoding only, would still
        return an empty plan; ``inf`` if only an event (arrival, pause, resume, finish) can change its mind."""
        ...

    def observe(self, obs: Observation) -> None:
        """Told after the fact: a pause's measured duration at its return, a dropped request's wait before
        readmission. Policies that learn online (the TTL family) update their statistics here."""
        ...


class RankingPolicy(Policy, Protocol):
    """A policy that orders the waiting queue itself (``traits.queue_order == "mars"``)."""

    def queue_score(self, req: ReqView) -> float:
        """The request's rank when it enters the waiting queue: smaller is served first."""
        ...


class _Fixed:
    """A policy that decides once, at the pause, and never moves anything afterwards."""

    name = ""
    action = KvAction.PRESERVE
    traits = PolicyTraits()
    plans_steps = False

    def on_pause(self, req: ReqView, state: EngineState) -> KvAction:
        """The same action for every pause."""
        return self.action

    def plan_step(self, state: EngineState) -> StepPlan:
        """Nothing to move."""
        return EMPTY_PLAN

    def next_decision_at(self, state: EngineState) -> float:
        """Never acts between events."""
        return math.inf

    def observe(self, obs: Observation) -> None:
        """Learns nothing."""


class Discard(_Fixed):
    """vLLM: free the KV at the pause; the resumed request re-enters the waiting queue at the back."""

    name = "discard"
    action = KvAction.DISCARD
    traits = PolicyTraits(resume_to_front=False)


class ImprovedDiscard(_Fixed):
    """Discard, but the resumed request keeps its original arrival order (front of the queue)."""

    name = "improved_discard"
    action = KvAction.DISCARD
    traits = PolicyTraits(resume_to_front=True)


class Preserve(_Fixed):
    """Keep the KV on the GPU for the whole pause."""

    name = "preserve"
    action = KvAction.PRESERVE


class Swap(_Fixed):
    """The paper's Swap baseline: the whole context out at the pause and back at resume, without a budget,
    copied layer by layer beside the forward pass as the reference's swap path does (INFERCEPT.md §1.2,
    §5.4): a step waits for max(copy, compute). Resumed requests are swapped in whole, oldest first, while
    GPU blocks last."""

    name = "swap"
    action = KvAction.SWAP
    plans_steps = True
    traits = PolicyTraits(pipelined_swap=True)

    def plan_step(self, state: EngineState) -> StepPlan:
        """Swap in every resumed request that fits, in FCFS order, stopping at the first that does not. As
        vLLM 0.2's can_swap_in, a request fits if its blocks and those for its own pending tokens are free
        after the running requests take theirs for the next step (else it would be preempted at once)."""
        free = state.free_gpu_blocks - state.running_blocks_needed
        bs = state.block_size_tokens
        ins = []
        for r in sorted(state.swapped, key=lambda v: v.ticket):
            if r.cpu_blocks + r.growth_blocks(bs) > free:
                break
            ins.append((r.rid, r.cpu_blocks))
            free -= r.cpu_blocks + r.growth_blocks(bs)
        return StepPlan(swap_in=tuple(ins)) if ins else EMPTY_PLAN

    def next_decision_at(self, state: EngineState) -> float:
        """Nothing fitted (the plan was empty): only an event can free GPU blocks."""
        return math.inf


class SwapBlocking(Swap):
    """Swap with no copy/compute overlap: a step waits for copy + compute (not one of the paper's five)."""

    name = "swap_blocking"
    traits = PolicyTraits(pipelined_swap=False)


def _min_waste(cost: CostModel, tool_means_s: Mapping[str, float] | None = None, **options: Any) -> Policy:
    from core.min_waste import MinWaste

    return MinWaste(cost, tool_means_s=tool_means_s, **options)


def _ttl(preset: str) -> Callable[..., Policy]:
    def make(cost: CostModel, tool_means_s: Mapping[str, float] | None = None, **options: Any) -> Policy:
        from core.ttl import make_ttl_policy

        return make_ttl_policy(preset, cost, **options)

    return make


def _mars(cost: CostModel, tool_means_s: Mapping[str, float] | None = None, **options: Any) -> Policy:
    from core.mars import Mars

    return Mars(cost, tool_means_s=tool_means_s, **options)


def _vllm(offload: bool) -> Callable[..., Policy]:
    def make(cost: CostModel, tool_means_s: Mapping[str, float] | None = None, **options: Any) -> Policy:
        from core.vllm_policies import VllmNative, VllmOffload

        return VllmOffload(cost, **options) if offload else VllmNative()

    return make


POLICIES: dict[str, Callable[..., Policy]] = {
    "discard": lambda cost, **_: Discard(),
    "improved_discard": lambda cost, **_: ImprovedDiscard(),
    "preserve": lambda cost, **_: Preserve(),
    "swap": lambda cost, **_: Swap(),
    "swap_blocking": lambda cost, **_: SwapBlocking(),
    "infercept": _min_waste,
    "continuum": _ttl("continuum"),
    "continuum_utility": _ttl("continuum_utility"),
    "saga": _ttl("saga"),
    "vllm_native": _vllm(offload=False),
    "vllm_offload": _vllm(offload=True),
    "mars": _mars,
}
"""Policy name -> factory(cost_model, tool_means_s=None, **options)."""

_EVERY = frozenset({"queue_order"})  # options every policy accepts (applied by make_policy)
POLICY_OPTIONS: dict[str, frozenset[str]] = {
    "discard": _EVERY, "improved_discard": _EVERY, "preserve": _EVERY, "swap": _EVERY, "swap_blocking": _EVERY,
    "infercept": _EVERY | {"estimator", "budget", "chunk_fill", "swap", "pipelined", "preserve",
                           "heuristic_preserve_s", "skip_short_pauses"},
    "continuum": _EVERY | {"ttl_s"},
    "continuum_utility": _EVERY | {"eta", "eta_rule"},
    "saga": _EVERY | {"cold_start_s"},
    "vllm_native": _EVERY,
    "vllm_offload": _EVERY | {"cpu_tier_gib", "offload_prompt_only"},
    "mars": frozenset({"length_error_sigma", "noise_seed", "swap_cost"}),  # its own queue order
}
"""Policy name -> the ``policy_options`` keys it accepts."""

PAPER_POLICIES = ("discard", "improved_discard", "preserve", "swap", "infercept")
"""What ``--policies all`` means: the paper's five systems."""

RECENT_POLICIES = ("continuum", "continuum_utility", "saga", "vllm_native", "vllm_offload", "mars")
"""What ``--policies recent`` means: the systems that came after InferCept."""

POLICY_GROUPS: dict[str, tuple[str, ...]] = {
    "all": PAPER_POLICIES, "recent": RECENT_POLICIES, "every": PAPER_POLICIES + RECENT_POLICIES}
"""Group names usable wherever a list of policies is: ``--policies discard,recent``."""


def expand_policies(names: Sequence[str]) -> list[str]:
    """Policy names with groups expanded, in order, without repeats; an unknown name raises ValueError."""
    out: list[str] = []
    for name in names:
        for p in POLICY_GROUPS.get(name, (name,)):
            if p not in POLICIES:
                raise ValueError(f"unknown policy {p!r}; expected a group ({', '.join(POLICY_GROUPS)}) "
                                 f"or one of {sorted(POLICIES)}")
            if p not in out:
                out.append(p)
    return out


def check_options(name: str, options: Mapping[str, Any]) -> None:
    """Raise ValueError naming the policy and the first option key it does not accept."""
    if name not in POLICIES:
        raise ValueError(f"unknown policy {name!r}; expected one of {sorted(POLICIES)}")
    for key in options:
        if key not in POLICY_OPTIONS[name]:
            accepted = ", ".join(sorted(POLICY_OPTIONS[name])) or "none"
            raise ValueError(f"policy_options.{key}: policy {name!r} has no option {key!r} (it accepts: {accepted})")


def make_policy(name: str, cost: CostModel, tool_means_s: Mapping[str, float] | None = None,
                **options: Any) -> Policy:
    """Build a registered policy; unknown names and options raise ValueError naming them.

    ``tool_means_s``: mean interception time per tool label (augmentation kind) of the workload, for
    estimators that use profiled durations; policies that do not need it ignore it."""
    check_options(name, options)
    rest = {k: v for k, v in options.items() if k != "queue_order"}
    policy = POLICIES[name](cost, tool_means_s=tool_means_s, **rest)
    if "queue_order" in options:
        order = options["queue_order"]
        if order not in QUEUE_ORDERS:
            raise ValueError(f"policy option queue_order={order!r}: expected one of {QUEUE_ORDERS}")
        policy.traits = replace(policy.traits, queue_order=order)
    return policy
