"""The baseline policies' decisions."""

from __future__ import annotations

import math

import pytest
from conftest import make_cost

from core.policy import (
    PAPER_POLICIES,
    POLICIES,
    Discard,
    ImprovedDiscard,
    Preserve,
    Swap,
    SwapBlocking,
    check_options,
    make_policy,
)
from core.types import EngineState, KvAction, ReqView, Status


def _view(rid: str, cpu: int, ticket: int, ctx: int = 0) -> ReqView:
    ctx = ctx or 16 * cpu  # by default the pending tokens fit the last block
    return ReqView(rid, ticket, "chatbot", Status.SWAPPED, ctx, 16 * cpu - 1, 0, cpu, 1.0, 5.0)


def _state(free_gpu: int, swapped=(), needed: int = 0) -> EngineState:
    return EngineState(2.0, 16, free_gpu, 100, 10, 1000, 0, (), tuple(swapped), needed)


def test_fixed_policies() -> None:
    st = _state(10)
    v = _view("a", 0, 0)
    assert Discard().on_pause(v, st) is KvAction.DISCARD and not Discard().traits.resume_to_front
    assert ImprovedDiscard().on_pause(v, st) is KvAction.DISCARD and ImprovedDiscard().traits.resume_to_front
    assert Preserve().on_pause(v, st) is KvAction.PRESERVE
    # the paper's swap copies beside the forward pass (per-layer pipeline); swap_blocking does not
    assert Swap().on_pause(v, st) is KvAction.SWAP and Swap().traits.pipelined_swap
    assert SwapBlocking().on_pause(v, st) is KvAction.SWAP and not SwapBlocking().traits.pipelined_swap
    for p in (Discard(), ImprovedDiscard(), Preserve()):
        assert p.plan_step(st).empty and math.isinf(p.next_decision_at(st))


def test_swap_brings_back_whole_requests_in_fcfs_order() -> None:
    sw = [_view("late", 3, 5), _view("early", 4, 1), _view("mid", 5, 3)]
    plan = Swap().plan_step(_state(10, sw))
    assert plan.swap_in == (("early", 4), ("mid", 5))  # 4 + 5 fit in 10; "late" (3) waits: FCFS stops
    assert Swap().plan_step(_state(3, sw)).empty  # nothing fits: only an event can free blocks
    assert Swap().next_decision_at(_state(3, sw)) == math.inf
    # as vLLM 0.2's can_swap_in: the running requests' next blocks and the request's own returned tokens
    assert Swap().plan_step(_state(10, sw, needed=2)).swap_in == (("early", 4),)  # 4 + 5 > 10 - 2
    grows = [_view("g", 4, 1, ctx=100)]  # 100 tokens need 7 blocks: 3 more than its 4
    assert Swap().plan_step(_state(6, grows)).empty and Swap().plan_step(_state(7, grows)).swap_in == (("g", 4),)


def test_registry() -> None:
    assert set(POLICIES) == {"discard", "improved_discard", "preserve", "swap", "swap_blocking", "infercept",
                             "continuum", "continuum_utility", "saga", "vllm_native", "vllm_offload", "mars"}
    assert PAPER_POLICIES == ("discard", "improved_discard", "preserve", "swap", "infercept")
    assert make_policy("infercept", make_cost(), estimator="oracle").estimator == "oracle"
    with pytest.raises(ValueError, match="unknown policy 'lru'"):
        make_policy("lru", make_cost())
    with pytest.raises(ValueError, match="policy_options.estimtor: policy 'infercept' has no option"):
        make_policy("infercept", make_cost(), estimtor="oracle")
    with pytest.raises(ValueError, match="policy 'preserve' has no option 'swap'"):
        check_options("preserve", {"swap": False})
