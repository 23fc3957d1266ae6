"""InferCept's decisions against waste values worked out by hand (test cost: T_fwd(x) = 0.01 + 1e-4 x s,
S = 100, 16-token blocks, 1 kB of KV per token over a 1 MB/s link (1 ms per token), so a saturated step's
swap budget is T_fwd(S) * 1 MB/s / 1 kB = 20 tokens = 1 block)."""

from __future__ import annotations

import math

import pytest
from conftest import make_cost

from core.min_waste import MinWaste
from core.types import EngineState, KvAction, ReqView, Status
from core.waste import (
    Estimator,
    blocking_swap_waste,
    chunked_discard_waste,
    discard_waste,
    preserve_waste,
    swap_budget_tokens,
)


def view(rid: str, ctx: int, paused_at: float, tool_s: float = 10.0, ticket: int = 0, cpu: int = 0,
         status: Status = Status.PAUSED, kind: str = "chatbot", gpu: int | None = None) -> ReqView:
    gpu = (0 if cpu else -(-ctx // 16)) if gpu is None else gpu
    return ReqView(rid, ticket, kind, status, ctx + 1, ctx, gpu, cpu, paused_at, tool_s, kind)


def state(now: float, paused=(), swapped=(), r_q: int = 50, r_gpu: int = 1000, free_gpu: int = 50,
          free_cpu: int = 100, short: int = 0, needed: int = 0, waiting: int = 0) -> EngineState:
    return EngineState(now, 16, free_gpu, free_cpu, r_q, r_gpu, short, tuple(paused), tuple(swapped), needed,
                       waiting)


def saturated(**opts) -> MinWaste:
    return MinWaste(make_cost(), budget="saturated", **opts)


def test_waste_equations_by_hand() -> None:
    cost = make_cost()
    assert preserve_waste(2.0, 250) == pytest.approx(500.0)  # Eq. 2: 2 s * 250 tokens
    # Eq. 1: T_fwd(250) = 0.035 s; 0.035 * 250 + 0.035 * 1000
    assert discard_waste(cost, 250, 1000) == pytest.approx(43.75)
    # Eq. 4 (discrete): chunk = 100 - 50 = 50, n = ceil(260/50) - 1 = 5, last = 10:
    # 0.02*50*15 + 1e-4*50*5*1000 + 1e-4*10*(1000+10)
    assert chunked_discard_waste(cost, 260, 50, 1000) == pytest.approx(15.0 + 25.0 + 1.01)
    # an exact multiple keeps its last chunk: C = 250 -> n = 4, last = 50 (the reference code's C mod c = 0
    # would drop it): 0.02*50*10 + 1e-4*50*4*1000 + 1e-4*50*(1000+50)
    assert chunked_discard_waste(cost, 250, 50, 1000) == pytest.approx(10.0 + 20.0 + 5.25)
    # C = c: one chunk, not zero
    assert chunked_discard_waste(cost, 50, 50, 1000) == pytest.approx(1e-4 * 50 * 1050)
    assert blocking_swap_waste(cost, 250, 1000) == pytest.approx(2 * 0.25 * 1000)  # Eq. 3
    assert swap_budget_tokens(cost) == 20  # T_fwd(100) = 0.02 s of a 1 MB/s link at 1 kB/token
    assert swap_budget_tokens(cost, 50) == 15  # T_fwd(50) = 0.015 s


def test_the_step_budget_follows_the_steps_own_query_tokens() -> None:
    fast = make_cost(link_bytes_per_s=1e7)  # 0.1 ms per token
    pol = MinWaste(fast)
    assert pol.budget_blocks(state(0.0, r_q=50)) == 9  # T_fwd(50) = 15 ms -> 150 tokens -> 9 blocks
    assert pol.budget_blocks(state(0.0, r_q=50, waiting=500)) == 12  # B capped at S: 20 ms -> 200 tokens
    assert MinWaste(fast, budget="saturated").budget_blocks(state(0.0, r_q=0)) == 12
    assert MinWaste(fast, pipelined=False).budget_blocks(state(0.0)) == 0  # no budget: whole swaps


def test_discards_when_recompute_is_cheaper_than_preserving() -> None:
    pol = MinWaste(make_cost(), swap=False)
    st = state(10.0, [view("a", 260, paused_at=8.0)])  # WP = 2 s * 260 = 520 > WD = 41.01
    assert pol.wastes(st.paused[0], st) == (pytest.approx(520.0), pytest.approx(41.01))
    assert pol.plan_step(st).discard == ("a",)


def test_preserves_a_fresh_pause_until_the_crossing_time() -> None:
    pol = MinWaste(make_cost(), swap=False)
    assert pol.on_pause(view("a", 250, 10.0), state(10.0)) is KvAction.PRESERVE
    st = state(10.05, [view("a", 250, paused_at=10.0)])  # WP = 0.05 * 250 = 12.5 < WD = 35.25
    assert pol.plan_step(st).empty
    assert pol.next_decision_at(st) == pytest.approx(10.141)  # WP reaches WD when elapsed = 35.25 / 250
    assert pol.plan_step(state(10.142, [view("a", 250, paused_at=10.0)])).discard == ("a",)


def test_paper_estimator_uses_profiled_means_for_stable_kinds_only() -> None:
    est = Estimator("paper", {"qa": 0.7, "chatbot": 28.0})
    qa, chat = view("q", 250, 10.0, kind="qa"), view("c", 250, 10.0, kind="chatbot")
    assert est.t_int_s(qa, 10.2) == pytest.approx(0.5)  # mean 0.7 - 0.2 elapsed
    assert est.t_int_s(qa, 11.0) == 0.0  # never below 0
    assert est.t_int_s(chat, 10.2) == pytest.approx(0.2)  # chatbot: elapsed, whatever its mean
    assert est.t_int_s(view("m", 250, 10.0, kind="math"), 10.2) == pytest.approx(0.2)  # no mean: elapsed
    pol = MinWaste(make_cost(), {"qa": 0.7}, swap=False)
    # a fresh qa pause: WP = 0.7 * 250 = 175 > WD 35.25 -> discarded at once (elapsed would keep it)
    assert pol.plan_step(state(10.0, [qa])).discard == ("q",)
    assert MinWaste(make_cost(), {"qa": 0.7}, swap=False, estimator="elapsed").plan_step(state(10.0, [qa])).empty
    # a short one stays, and its estimate only shrinks: no decision time
    pol = MinWaste(make_cost(), {"qa": 0.1}, swap=False)
    assert pol.plan_step(state(10.0, [qa])).empty  # WP = 25 < 35.25
    assert math.isinf(pol.next_decision_at(state(10.0, [qa])))


def test_oracle_uses_the_remaining_time() -> None:
    pol = MinWaste(make_cost(), swap=False, estimator="oracle")
    # remaining = 2.1 - 2.0 = 0.1 s: WP = 25 < WD = 35.25 -> keep; the elapsed estimator would discard (500)
    st = state(10.0, [view("a", 250, paused_at=8.0, tool_s=2.1)])
    assert pol.plan_step(st).empty
    assert math.isinf(pol.next_decision_at(st))
    st = state(10.0, [view("a", 250, paused_at=8.0, tool_s=5.0)])  # remaining 3 s: WP = 750 > 35.25
    assert pol.plan_step(st).discard == ("a",)


def test_swap_budget_goes_to_the_most_wasteful_request() -> None:
    pol = saturated()
    # a: WP = 1 s * 250 = 250, min(250, 35.25) = 35.25; b: WP = 0.01 * 250 = 2.5 -> a is the head
    st = state(10.0, [view("b", 250, paused_at=9.99, ticket=1), view("a", 250, paused_at=9.0, ticket=2)])
    plan = pol.plan_step(st)
    assert plan.swap_out == (("a", 1),)  # 1 block = the whole 20-token budget
    assert plan.discard == ()  # b: WP 2.5 < WD 35.25 -> kept


def test_swap_in_comes_first_and_leaves_the_blocks_running_requests_need() -> None:
    pol = saturated()
    back = view("s", 40, paused_at=1.0, cpu=3, status=Status.SWAPPED)
    plan = pol.plan_step(state(10.0, [view("a", 250, paused_at=9.0)], swapped=[back]))
    assert plan.swap_in == (("s", 1),)  # the whole budget (1 block) goes to the resumed request
    assert plan.swap_out == () and plan.discard == ("a",)  # no budget left; WP 250 > WD 35.25
    # 4 blocks free, the decoders take all 4 next step: nothing may be swapped in (swap-in + new tokens
    # <= swap-out + free, §2.5), so the budget goes to the swap-out instead
    plan = pol.plan_step(state(10.0, [view("a", 250, paused_at=9.0)], swapped=[back], free_gpu=4, needed=4))
    assert plan.swap_in == () and plan.swap_out == (("a", 1),)


def test_swap_outs_may_use_the_cpu_blocks_this_steps_swap_ins_free() -> None:
    pol = MinWaste(make_cost(link_bytes_per_s=1e7), budget="saturated")  # 12 blocks a step
    back = view("s", 40, paused_at=1.0, cpu=3, status=Status.SWAPPED)
    plan = pol.plan_step(state(10.0, [view("a", 250, paused_at=9.0)], swapped=[back], free_cpu=0))
    assert plan.swap_in == (("s", 3),) and plan.swap_out == (("a", 3),)  # CPU full: only what s frees


def test_a_half_swapped_request_is_charged_its_whole_context_for_a_discard() -> None:
    pol = saturated()
    half = view("h", 250, paused_at=9.0, gpu=8, cpu=8)  # 128 tokens on the GPU, 122 on the CPU
    wp, wd = pol.wastes(half, state(10.0, [half]))
    assert wp == pytest.approx(1.0 * 128)  # only the GPU part idles
    assert wd == pytest.approx(35.25)  # the whole 250 tokens are recomputed


def test_memory_pressure_discards_the_cheapest_preserved_request() -> None:
    pol = MinWaste(make_cost(), swap=False)
    small, big = view("small", 100, paused_at=9.99, ticket=1), view("big", 250, paused_at=9.99, ticket=2)
    assert pol.plan_step(state(10.0, [small, big])).empty
    # WD(100): n = 1, last = 50: 0.02*50*1 + 1e-4*50*1*1000 + 1e-4*50*1050 = 1 + 5 + 5.25 < WD(250) = 35.25
    plan = pol.plan_step(state(10.0, [small, big], short=3))
    assert plan.discard == ("small",)  # its 7 blocks cover the 3 missing


def test_without_chunking_the_policy_uses_eq1_and_keeps_chunk_and_fill_batching() -> None:
    pol = MinWaste(make_cost(), swap=False, chunk_fill=False)
    st = state(10.0, [view("a", 250, paused_at=9.9)])  # WP = 25 < Eq.1 WD = 43.75 -> keep
    assert pol.wastes(st.paused[0], st)[1] == pytest.approx(43.75)
    assert pol.plan_step(st).empty
    assert pol.traits.chunk_fill is True and pol.traits.chunk_recompute is False


def test_skip_short_pauses_spends_no_link_time_on_a_pause_back_before_its_round_trip() -> None:
    pol = saturated(skip_short_pauses=True)
    fresh = view("a", 250, paused_at=9.99)  # elapsed 0.01 s < round trip 2 * 0.25 s: not swapped
    st = state(10.0, [fresh])
    assert pol.plan_step(st).empty and saturated().plan_step(st).swap_out == (("a", 1),)
    # the next decision: WP reaches WD at 9.99 + 35.25 / 250 (before the round trip's 9.99 + 0.5)
    assert pol.next_decision_at(st) == pytest.approx(9.99 + 0.141)
    assert saturated(skip_short_pauses=True, preserve=False).next_decision_at(st) == pytest.approx(9.99 + 0.5)
    old = view("a", 250, paused_at=9.0)  # elapsed 1 s > 0.5 s
    assert pol.plan_step(state(10.0, [old])).swap_out == (("a", 1),)


def test_unpipelined_swap_moves_whole_contexts_when_eq3_is_cheapest() -> None:
    pol = MinWaste(make_cost(), pipelined=False)
    a = view("a", 250, paused_at=9.0)
    # Rb = 10: WS = 2 * 0.25 * 10 = 5; WD = 0.02*50*10 + 1e-4*50*4*10 + 1e-4*50*60 = 10.5; WP = 250
    assert pol.plan_step(state(10.0, [a], r_gpu=10)).swap_out == (("a", 16),)
    # Rb = 1000: WS = 500 > WD = 35.25 -> discard
    assert pol.plan_step(state(10.0, [a])).discard == ("a",)
    assert pol.traits.pipelined_swap is False


def test_bad_option_is_named() -> None:
    with pytest.raises(ValueError, match="estimator"):
        MinWaste(make_cost(), estimator="psychic")
    with pytest.raises(ValueError, match="budget"):
        MinWaste(make_cost(), budget="sometimes")
    with pytest.raises(ValueError, match="skip_short_pauses"):
        MinWaste(make_cost(), skip_short_pauses="yes")  # type: ignore[arg-type]


def test_a_swap_in_starts_only_if_its_rest_and_its_returned_tokens_fit() -> None:
    pol = MinWaste(make_cost(link_bytes_per_s=1e7), budget="saturated")  # 12 blocks a step
    # 3 blocks on the CPU, 100 tokens of context (64 had KV + 36 returned): 7 blocks once back, 4 of them new
    back = ReqView("s", 0, "qa", Status.SWAPPED, 100, 48, 0, 3, 1.0, 5.0, "qa")
    assert back.growth_blocks(16) == 4
    assert pol.plan_step(state(10.0, swapped=[back], free_gpu=6)).empty  # 3 + 4 > 6: it would be preempted
    assert pol.plan_step(state(10.0, swapped=[back], free_gpu=7)).swap_in == (("s", 3),)
    assert pol.plan_step(state(10.0, swapped=[back], free_gpu=9, needed=2)).swap_in == (("s", 3),)
    assert pol.plan_step(state(10.0, swapped=[back], free_gpu=9, needed=3)).empty


def test_heuristic_preserve_keeps_pauses_below_the_threshold_and_never_keeps_the_others() -> None:
    pol = saturated(heuristic_preserve_s=4.0)  # chatbot pauses: T_INT = the time elapsed (paper estimator)
    fresh, old, older = view("a", 250, 9.0), view("b", 250, 5.0, ticket=1), view("c", 250, 4.0, ticket=2)
    # 1 s elapsed < 4 s: kept, and no link time for it (min-waste would give it the 1-block budget)
    assert pol.plan_step(state(10.0, [fresh])).empty
    assert saturated().plan_step(state(10.0, [fresh])).swap_out == (("a", 1),)
    # 5 and 6 s >= 4 s: WP is infinite, so the budget goes to one (ranked by min(WP, WD) = WD, equal here:
    # arrival order) and the other is discarded (WD = 35.25 < infinity); the fresh one stays
    plan = pol.plan_step(state(10.0, [fresh, old, older]))
    assert plan.swap_out == (("b", 1),) and plan.discard == ("c",)
    # the fresh one's decision changes when its elapsed time reaches the threshold
    assert pol.next_decision_at(state(10.0, [fresh])) == pytest.approx(13.0)
    # a math pause under the paper estimator: T_INT = mean 2 s - elapsed, below 4 s for good
    math_pol = MinWaste(make_cost(), {"math": 2.0}, budget="saturated", heuristic_preserve_s=4.0)
    calc = view("m", 250, 0.0, kind="math")
    assert math_pol.plan_step(state(10.0, [calc])).empty
    assert math_pol.next_decision_at(state(10.0, [calc])) == math.inf
    # under memory pressure a kept request is still discarded
    assert pol.plan_step(state(10.0, [fresh], short=1)).discard == ("a",)
    with pytest.raises(ValueError, match="heuristic_preserve_s"):
        MinWaste(make_cost(), heuristic_preserve_s=-1.0)
