"""MARS (core/mars.py) against values worked out by hand (test cost: T_fwd(x) = 0.01 + 1e-4 x s, S = 100, so
every step of the score is T_fwd(S) = 0.02 s; T_swap = 1 ms per token; 16-token blocks), its starvation guard
in the simulator's queue, and a short simulation where its ranking reorders the queue."""

from __future__ import annotations

import pytest
from conftest import make_cost
from test_engine import run

from core.config import ConfigError, check_policy_options
from core.mars import Mars
from core.policy import make_policy
from core.queue_order import MARS_STARVATION_STEPS
from core.types import EngineState, KvAction, RequestSpec, ReqView, Segment, Status
from sim.request import Req
from sim.waitqueue import WaitQueue

MEANS = {"qa": 0.1, "math": 1e-4, "chatbot": 28.0}


def waiting(ctx: int = 120, gen: int = 30, returned: int = 20, kind: str = "qa", last: bool = False,
            rid: str = "a", done: int = 0) -> ReqView:
    return ReqView(rid, 0, kind, Status.WAITING, ctx, 0, 0, 0, float("nan"), 0.0, kind, seg_gen_tokens=gen,
                   seg_tool_tokens=returned, seg_done_tokens=done, last_segment=last)


def paused(rid: str, at: float, kind: str, gpu: int, ctx: int = 200) -> ReqView:
    return ReqView(rid, 0, kind, Status.PAUSED, ctx + 1, ctx, gpu, 0, at, 0.0, kind)


def state(query: int = 50, gpu_tokens: int = 1000, short: int = 0, paused_views: tuple = ()) -> EngineState:
    return EngineState(1.0, 16, 10, 100, query, gpu_tokens, short, paused_views)


def mars(**options: object) -> Mars:
    pol = make_policy("mars", make_cost(), tool_means_s=MEANS, **options)
    assert isinstance(pol, Mars)
    return pol


def test_the_action_is_the_least_waste_of_the_three() -> None:
    """C = 200. Under load (R, Rb) = (50, 1000): WS = 2 * 0.2 s * 1000 = 400; WD (chunks of 50, n = 3, last
    50) = 0.02*50*6 + 1e-4*50*3*1000 + 1e-4*50*1050 = 26.25. Under (50, 10): WS = 4, WD = 6.45."""
    pol = mars()
    assert pol.choose(200, 0.1, (50, 1000)) is KvAction.PRESERVE  # WP = 20 < 26.25
    assert pol.choose(200, 0.2, (50, 1000)) is KvAction.DISCARD  # WP = 40 > 26.25 < 400
    assert pol.choose(200, 0.1, (50, 10)) is KvAction.SWAP  # WS = 4 < 6.45 < WP = 20
    assert pol.choose(200, 0.01, (50, 10)) is KvAction.PRESERVE  # WP = 2
    # at the pause: the computed context and the tool's mean, under the load of the state
    assert pol.on_pause(paused("p", 0.0, "qa", 13), state()) is KvAction.PRESERVE  # mean 0.1
    assert pol.on_pause(paused("p", 0.0, "chatbot", 13), state()) is KvAction.DISCARD  # mean 28 s
    assert pol.on_pause(paused("p", 0.0, "qa", 13), state(gpu_tokens=10)) is KvAction.SWAP
    # swap_cost = "pipelined": only the copy beyond a saturated step stalls, 2 * max(0.2 - 0.02, 0) * Rb:
    # 360 under (50, 1000), still above WD = 26.25; 3.6 under (50, 10), below WP = 0.019 * 200 = 3.8, which
    # the stall's 4 is not
    piped = mars(swap_cost="pipelined")
    assert piped.choose(200, 0.2, (50, 1000)) is KvAction.DISCARD
    assert pol.choose(200, 0.019, (50, 10)) is KvAction.PRESERVE
    assert piped.choose(200, 0.019, (50, 10)) is KvAction.SWAP
    with pytest.raises(ValueError, match="swap_cost"):
        mars(swap_cost="free")


def test_the_score_is_the_segments_memory_times_time() -> None:
    """Context 120 (none computed), 30 tokens decoded, 20 returned: prefill 0.02*(100 + 120) = 4.4 (its last
    chunk samples the first token), then 29 decode steps 0.02*(29*120 + 29*30/2) = 78.3; at the pause C = 150."""
    pol = mars()
    assert pol.queue_score(waiting(last=True)) == pytest.approx(82.7)  # no interception follows
    # preempted after decoding 10 of its 30 (now in its 130-token context): 20 left, 19 decode steps
    assert pol.queue_score(waiting(ctx=130, done=10, last=True)) == pytest.approx(
        0.02 * (100 + 130) + 0.02 * (19 * 130 + 19 * 20 / 2))
    # load (0, 0): WS = 0, so swap: hold 150 * 2 * 0.15 = 45, then the 20 returned tokens 0.02 * 170 = 3.4
    assert pol.queue_score(waiting()) == pytest.approx(82.7 + 45 + 3.4)
    pol.on_pause(paused("p", 0.0, "qa", 13), state())  # the policy now sees load (50, 1000)
    # math (mean 1e-4): preserve, hold 150 * 1e-4
    assert pol.queue_score(waiting(kind="math")) == pytest.approx(82.7 + 0.015 + 3.4)
    # qa (mean 0.1): WP 15 < WD (chunks of 50: 3 + 10 + 5.25 = 18.25): preserve, hold 15
    assert pol.queue_score(waiting()) == pytest.approx(82.7 + 15 + 3.4)
    # chatbot (28 s): discard, the resume recomputes all 170 tokens: 0.02 * (100 + 170) = 5.4
    assert pol.queue_score(waiting(kind="chatbot")) == pytest.approx(82.7 + 5.4)


def test_predicted_lengths_are_true_by_default_and_seeded_noise_otherwise() -> None:
    assert mars().predicted_gen_tokens(waiting(gen=30)) == 30
    noisy = [mars(length_error_sigma=0.5, noise_seed=s).predicted_gen_tokens(waiting(gen=30)) for s in range(8)]
    assert noisy == [mars(length_error_sigma=0.5, noise_seed=s).predicted_gen_tokens(waiting(gen=30))
                     for s in range(8)]  # the same draw for the same (seed, request, segment)
    assert len(set(noisy)) > 1 and all(n >= 1 for n in noisy)
    with pytest.raises(ValueError, match="length_error_sigma"):
        mars(length_error_sigma=-1.0)
    with pytest.raises(ConfigError, match="noise_seed"):
        check_policy_options("mars", {"noise_seed": 1.5})
    with pytest.raises(ConfigError, match="queue_order"):  # MARS brings its own order
        check_policy_options("mars", {"queue_order": "arrival"})


def test_memory_pressure_discards_the_pause_expected_back_last() -> None:
    """Short of 5 blocks: chatbot (back at 1 + 28 s, 3 blocks) goes, then math (at 0.5 + 1e-4, 10 blocks)
    covers the rest; qa (back at 0.1) stays."""
    views = (paused("qa", 0.0, "qa", 4), paused("chat", 1.0, "chatbot", 3), paused("m", 0.5, "math", 10))
    plan = mars().plan_step(state(short=5, paused_views=views))
    assert plan.discard == ("chat", "m") and not plan.swap_out
    assert mars().plan_step(state(paused_views=views)).empty


def _req(rid: str, ticket: int) -> Req:
    return Req(RequestSpec(rid, 0.0, 10, (Segment(1),)), ticket)


def test_the_simulators_queue_ranks_by_score_and_promotes_after_100_steps() -> None:
    steps = [0]
    scores = {"big": 50.0, "mid": 9.0, "small": 2.0}
    wq = WaitQueue("mars", lambda r: scores[r.rid], lambda: steps[0])
    wq.add(_req("big", 0), 0.0)
    steps[0] = 5
    wq.add(_req("mid", 1), 0.0)
    wq.add(_req("small", 2), 0.0)
    assert [r.rid for r in wq] == ["small", "mid", "big"]
    assert wq.next_promotion() == MARS_STARVATION_STEPS  # big, queued at step 0
    steps[0] = MARS_STARVATION_STEPS - 1
    wq.promote_starved(0.0)
    assert wq.head().rid == "small"
    steps[0] = MARS_STARVATION_STEPS
    wq.promote_starved(0.0)
    assert [r.rid for r in wq] == ["big", "small", "mid"]
    assert wq.pop_head().rid == "big" and wq.next_promotion() == 5 + MARS_STARVATION_STEPS


def test_a_short_request_overtakes_an_earlier_long_one() -> None:
    """Both arrive at 0; InferCept serves the long prompt's 10 chunks first (FCFS), MARS the short request,
    whose score is far smaller, in the first step."""
    specs = [RequestSpec("long", 0.0, 1000, (Segment(200),)), RequestSpec("short", 0.0, 50, (Segment(5),))]
    fcfs, ranked = run(specs, "infercept"), run(specs, "mars")
    assert ranked.requests["short"].first_token_s < fcfs.requests["short"].first_token_s
    # step 1: the short prompt, then 50 tokens of the long one fill S = 100
    assert ranked.requests["short"].first_token_s == pytest.approx(0.01 + 1e-4 * 100)
    assert ranked.requests["long"].finish_s > ranked.requests["short"].finish_s
