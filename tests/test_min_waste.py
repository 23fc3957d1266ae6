"""InferCept's decisions against waste values worked out by hand (test cost: T_fwd(x) = 0.01 + 1e-4 x s,
S = 100, 16-token blocks, swap budget = T_fwd(S) * 1 MB/s / 1 kB = 20 tokens = 1 block per step)."""

from __future__ import annotations

import math

import pytest
from conftest import make_cost

from core.min_waste import MinWaste, chunked_discard_waste, discard_waste, preserve_waste, swap_budget_tokens
from core.types import EngineState, KvAction, ReqView, Status


def view(rid: str, ctx: int, paused_at: float, tool_s: float = 10.0, ticket: int = 0, cpu: int = 0,
         status: Status = Status.PAUSED) -> ReqView:
    gpu = 0 if cpu else -(-ctx // 16)
    return ReqView(rid, ticket, "qa", status, ctx + 1, ctx, gpu, cpu, paused_at, tool_s)


def state(now: float, paused=(), swapped=(), r_q: int = 50, r_gpu: int = 1000, free_gpu: int = 50,
          free_cpu: int = 100, short: int = 0) -> EngineState:
    return EngineState(now, 16, free_gpu, free_cpu, r_q, r_gpu, short, tuple(paused), tuple(swapped))


def test_waste_equations_by_hand() -> None:
    cost = make_cost()
    # Eq. 2: 2 s * 250 tokens
    assert preserve_waste(2.0, 250) == pytest.approx(500.0)
    # Eq. 1: T_fwd(250) = 0.035 s; 0.035 * 250 + 0.035 * 1000
    assert discard_waste(cost, 250, 1000) == pytest.approx(43.75)
    # Eq. 4 (discrete): chunk = 100 - 50 = 50, n = ceil(250/50) - 1 = 4, last = 0
    # 0.02 * 50 * 4*5/2 + 1e-4 * 50 * 4 * 1000 = 10 + 20
    assert chunked_discard_waste(cost, 250, 50, 1000) == pytest.approx(30.0)
    # with a partial last chunk: C = 260 -> n = 5, last = 10: 0.02*50*15 + 1e-4*50*5*1000 + 1e-4*10*(1000+10)
    assert chunked_discard_waste(cost, 260, 50, 1000) == pytest.approx(15.0 + 25.0 + 1.01)
    assert swap_budget_tokens(cost) == 20


def test_discards_when_recompute_is_cheaper_than_preserving() -> None:
    pol = MinWaste(make_cost(), swap=False)
    st = state(10.0, [view("a", 250, paused_at=8.0)])  # WP = 2 s * 250 = 500 > WD = 30
    assert pol.wastes(st.paused[0], st) == (pytest.approx(500.0), pytest.approx(30.0))
    assert pol.plan_step(st).discard == ("a",)


def test_preserves_a_fresh_pause_until_the_crossing_time() -> None:
    pol = MinWaste(make_cost(), swap=False)
    assert pol.on_pause(view("a", 250, 10.0), state(10.0)) is KvAction.PRESERVE
    st = state(10.05, [view("a", 250, paused_at=10.0)])  # WP = 0.05 * 250 = 12.5 < 30
    assert pol.plan_step(st).empty
    # WP reaches WD = 30 when elapsed = 30 / 250 = 0.12 s
    assert pol.next_decision_at(st) == pytest.approx(10.12)
    assert pol.plan_step(state(10.121, [view("a", 250, paused_at=10.0)])).discard == ("a",)


def test_oracle_uses_the_remaining_time() -> None:
    pol = MinWaste(make_cost(), swap=False, estimator="oracle")
    # remaining = 2.1 - 2.0 = 0.1 s: WP = 25 < WD = 30 -> keep; the elapsed estimator would discard (WP 500)
    st = state(10.0, [view("a", 250, paused_at=8.0, tool_s=2.1)])
    assert pol.plan_step(st).empty
    assert math.isinf(pol.next_decision_at(st))
    st = state(10.0, [view("a", 250, paused_at=8.0, tool_s=5.0)])  # remaining 3 s: WP = 750 > 30
    assert pol.plan_step(st).discard == ("a",)


def test_swap_budget_goes_to_the_most_wasteful_request() -> None:
    pol = MinWaste(make_cost())
    # a: WP = 1 s * 250 = 250, min(250, 30) = 30; b: WP = 0.01 * 250 = 2.5 -> a is the head
    st = state(10.0, [view("b", 250, paused_at=9.99, ticket=1), view("a", 250, paused_at=9.0, ticket=2)])
    plan = pol.plan_step(st)
    assert plan.swap_out == (("a", 1),)  # 1 block = the whole 20-token budget
    assert plan.discard == ()  # b: WP 2.5 < WD 30 -> kept


def test_swap_in_comes_first_and_shares_the_budget() -> None:
    pol = MinWaste(make_cost())
    back = view("s", 40, paused_at=1.0, cpu=3, status=Status.SWAPPED)
    st = state(10.0, [view("a", 250, paused_at=9.0)], swapped=[back])
    plan = pol.plan_step(st)
    assert plan.swap_in == (("s", 1),)  # the whole budget (1 block) goes to the resumed request
    assert plan.swap_out == ()
    assert plan.discard == ("a",)  # no budget left; WP 250 > WD 30


def test_memory_pressure_discards_the_cheapest_preserved_request() -> None:
    pol = MinWaste(make_cost(), swap=False)
    small, big = view("small", 100, paused_at=9.99, ticket=1), view("big", 250, paused_at=9.99, ticket=2)
    assert pol.plan_step(state(10.0, [small, big])).empty
    # WD(100) = 0.02*50*1*2/2 + 1e-4*50*1*1000 = 1 + 5 = 6 < WD(250) = 30: small goes first
    plan = pol.plan_step(state(10.0, [small, big], short=3))
    assert plan.discard == ("small",)  # its 7 blocks cover the 3 missing


def test_without_chunking_the_policy_uses_eq1() -> None:
    pol = MinWaste(make_cost(), swap=False, chunk_fill=False)
    st = state(10.0, [view("a", 250, paused_at=9.9)])  # WP = 25 < Eq.1 WD = 43.75 -> keep
    assert pol.wastes(st.paused[0], st)[1] == pytest.approx(43.75)
    assert pol.plan_step(st).empty
    assert pol.traits.chunk_fill is False


def test_bad_option_is_named() -> None:
    with pytest.raises(ValueError, match="estimator"):
        MinWaste(make_cost(), estimator="psychic")
