"""The TTL presets (core/ttl.py) against values worked out by hand from their equations (test cost: a lone
prefill of x tokens takes 0.01 + 1e-4 x s), and one short simulation per preset."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
import simpy
from conftest import make_cost

from core.config import RunConfig
from core.durations import ecdf_argmax, exp_prior_argmax
from core.metrics import Metrics
from core.policy import Policy, make_policy
from core.summary import summarize
from core.ttl import ContinuumUtility
from core.types import EngineState, KvAction, Observation, RequestSpec, ReqView, Segment, Status
from sim.engine import Engine
from sim.run import simulate


def view(rid: str, paused_at: float, kind: str = "qa", ctx: int = 250, ticket: int = 0, gpu: int | None = None,
         tool_s: float = 0.0) -> ReqView:
    gpu = -(-ctx // 16) if gpu is None else gpu
    return ReqView(rid, ticket, kind, Status.PAUSED, ctx + 1, ctx, gpu, 0, paused_at, tool_s, kind)


def state(now: float, paused: Sequence[ReqView] = (), free_gpu: int = 50, total_gpu: int = 100) -> EngineState:
    return EngineState(now, 16, free_gpu, 100, 50, 1000, 0, tuple(paused), gpu_blocks_total=total_gpu)


def resume(pol: Policy, tool: str, *durations_s: float) -> None:
    for d in durations_s:
        pol.observe(Observation("resume", "x", tool, 0.0, d))


def readmit(pol: Policy, *waits_s: float) -> None:
    for w in waits_s:
        pol.observe(Observation("readmit", "x", "qa", 0.0, w))


# ---------- continuum (as released) ----------
def test_continuum_pins_unseen_and_short_tools_and_discards_long_ones() -> None:
    pol = make_policy("continuum", make_cost())
    assert pol.on_pause(view("a", 0.0, "qa"), state(0.0)) is KvAction.PRESERVE  # unseen tool: pinned
    resume(pol, "qa", 1.0, 2.5)  # mean 1.75 <= 2
    resume(pol, "math", 3.0)  # mean 3 > 2
    resume(pol, "ve", 1.0, 3.0)  # mean exactly 2: still pinned
    assert pol.on_pause(view("b", 1.0, "qa"), state(1.0)) is KvAction.PRESERVE
    assert pol.on_pause(view("c", 1.0, "math"), state(1.0)) is KvAction.DISCARD
    assert pol.on_pause(view("d", 1.0, "ve"), state(1.0)) is KvAction.PRESERVE
    resume(pol, "qa", 5.0)  # running mean (1 + 2.5 + 5) / 3 = 2.83 > 2
    assert pol.on_pause(view("e", 2.0, "qa"), state(2.0)) is KvAction.DISCARD
    short = make_policy("continuum", make_cost(), ttl_s=0.5)
    resume(short, "qa", 1.0)  # the threshold follows ttl_s too
    assert short.on_pause(view("a", 0.0, "qa"), state(0.0)) is KvAction.DISCARD


def test_continuum_discards_at_ttl_expiry_and_says_when() -> None:
    pol = make_policy("continuum", make_cost())
    a, b = view("a", 10.0, ticket=1), view("b", 10.5, ticket=2)
    assert pol.on_pause(a, state(10.0, [a])) is KvAction.PRESERVE
    assert pol.on_pause(b, state(10.5, [a, b])) is KvAction.PRESERVE
    st = state(11.0, [a, b])
    assert pol.plan_step(st).empty
    assert pol.next_decision_at(st) == pytest.approx(12.0)  # a's pin: 10.0 + 2 s
    assert pol.plan_step(state(12.0, [a, b])).discard == ("a",)
    assert pol.plan_step(state(12.6, [b, a])).discard == ("a", "b")  # both expired: oldest first
    gone = view("a", 10.0, ticket=1, gpu=0)  # a's KV was dropped: nothing left to expire but b
    st = state(12.1, [gone, b])
    assert pol.plan_step(st).empty and pol.next_decision_at(st) == pytest.approx(12.5)
    pol.observe(Observation("resume", "b", "qa", 12.2, 1.7))  # b returned in time: its pin is over
    st = state(12.2, [gone])
    assert pol.plan_step(st).empty and pol.next_decision_at(st) == math.inf


def test_traits_options_and_bad_values() -> None:
    cost = make_cost()
    for name, order in (("continuum", "program"), ("continuum_utility", "program"), ("saga", "arrival")):
        pol = make_policy(name, cost)
        assert pol.plans_steps and pol.traits.resume_to_front and pol.traits.queue_order == order, name
    assert make_policy("saga", cost, queue_order="plas").traits.queue_order == "plas"
    bad: list[tuple[str, str, Any]] = [
        ("continuum", "ttl_s", -1), ("continuum", "ttl_s", "2"), ("saga", "cold_start_s", True),
        ("saga", "cold_start_s", math.nan), ("continuum_utility", "eta", -0.5),
        ("continuum_utility", "eta_rule", "pearson")]
    for name, key, value in bad:
        with pytest.raises(ValueError, match=f"policy option {key}="):
            make_policy(name, cost, **{key: value})


def finish(pol: Policy, *turns: int) -> None:
    for n in turns:
        pol.observe(Observation("finish", "x", "", 0.0, float(n)))


def test_eta_by_correlation_of_turns_done_and_to_come() -> None:
    """Programs of 3 and 2 turns give the pairs (1, 2), (2, 1), (1, 1): means 4/3, covariance sum -1/3,
    variance sums 2/3 each, Corr = -0.5, eta = 0.5 (the simulation below). Undefined (eta = the option's) before 2 pairs or with
    only 2-turn programs (all pairs (1, 1)); programs of one N >= 3 alone give Corr = -1."""
    pol = make_policy("continuum_utility", make_cost(), eta_rule="correlation", eta=0.25)
    assert isinstance(pol, ContinuumUtility)
    assert pol.current_eta() == 0.25
    finish(pol, 2, 1, 2)  # two pairs, both (1, 1) (a 1-turn program gives none)
    assert pol.current_eta() == 0.25
    finish(pol, 3)
    # pairs (1,1), (1,1), (1,2), (2,1): means 5/4, covariance sum -1/4, variance sums 3/4: Corr = -1/3
    assert pol.current_eta() == pytest.approx(1 / 3)
    only3 = make_policy("continuum_utility", make_cost(), eta_rule="correlation")
    finish(only3, 3)
    assert only3.current_eta() == pytest.approx(1.0)
    readmit(pol, 2.0)  # Qbar = 2 s; R(250) = 0.01 + 1e-4 * 250 = 0.035 s
    assert pol.benefit_s(view("a", 0.0)) == pytest.approx(2.0 / 3 + 0.035)
    fixed = make_policy("continuum_utility", make_cost(), eta=0.25)
    finish(fixed, 3, 2)  # the fixed rule ignores finishes
    assert fixed.current_eta() == 0.25


def test_the_simulator_tells_the_policy_each_finish() -> None:
    cost = make_cost()
    pol = make_policy("continuum_utility", cost, eta_rule="correlation")
    specs = [RequestSpec("a", 0.0, 100, (Segment(2, 0.1, 5, "qa"), Segment(2, 0.1, 5, "qa"), Segment(2)), "qa"),
             RequestSpec("b", 0.0, 100, (Segment(2, 0.1, 5, "qa"), Segment(2)), "qa")]
    env = simpy.Environment()
    eng = Engine(env, specs, cost, pol, Metrics(100.0, 100), "v1", 100.0, drain=True, check=True)
    env.process(eng.run())
    env.run()
    assert pol.current_eta() == pytest.approx(0.5)  # the 3- and 2-turn programs above


def test_no_preset_reads_the_true_tool_duration() -> None:
    for name in ("continuum", "continuum_utility", "saga"):
        decisions = []
        for tool_s in (0.0, 1e6):
            pol = make_policy(name, make_cost())
            resume(pol, "qa", *([0.3] * 60 + [5.0] * 60))
            readmit(pol, 4.0)
            r = view("a", 1.0, tool_s=tool_s)
            decisions.append((pol.on_pause(r, state(1.0, [r])), pol.next_decision_at(state(1.0, [r]))))
        assert decisions[0] == decisions[1], name


# ---------- continuum_utility (the paper's rule) ----------
def test_recompute_cost_is_a_lone_prefill_with_causal_attention() -> None:
    pol = ContinuumUtility(make_cost(per_prefill_attn_pair_s=1e-7))
    assert pol.recompute_s(100) == pytest.approx(0.01 + 1e-4 * 100 + 1e-7 * 100 * 101 / 2)
    assert pol.recompute_s(0) == 0.0


def test_argmax_helpers_by_hand() -> None:
    s = np.array([1.0, 2.0])
    assert ecdf_argmax(s, 2.0) == 0.0  # utilities: tau=0 -> 0, tau=1 -> 0.5*2-1 = 0, tau=2 -> 2-2 = 0: ties to 0
    assert ecdf_argmax(s, 4.0) == 2.0  # tau=1 -> 1, tau=2 -> 2
    assert ecdf_argmax(np.array([0.0, 0.0, 3.0]), 1.0) == 0.0  # F(0) = 2/3 already
    assert exp_prior_argmax(1.0, 1.0) == 0.0 and exp_prior_argmax(1.0, math.e) == pytest.approx(1.0)
    assert exp_prior_argmax(2.0, 2 * math.e**2) == pytest.approx(4.0)  # 2 * ln(e^2)


def test_utility_uses_the_exponential_prior_until_100_durations() -> None:
    pol = ContinuumUtility(make_cost(), eta=2.0)
    r = view("a", 0.0, ctx=250)  # R(250) = 0.01 + 0.025 = 0.035 s
    assert pol.on_pause(r, state(0.0)) is KvAction.DISCARD  # B = 0.035 < 1 s (the prior's mean): tau* = 0
    readmit(pol, 1.0, 3.0)  # Qbar = 2 s
    resume(pol, "qa", *[0.2] * 100)  # 100 durations: still the prior
    assert pol.on_pause(r, state(0.0, [r])) is KvAction.PRESERVE
    # B = 2 * 2 + 0.035; tau* = 1 s * ln(B / 1 s)
    assert pol.next_decision_at(state(0.0, [r])) == pytest.approx(math.log(4.035))
    readmit(pol, *[100.0] * 44 + [1.0] * 256)  # Qbar is the mean of the last 256 waits: 1 s
    assert pol.benefit_s(r) == pytest.approx(2 * 1.0 + 0.035)


def test_utility_argmax_on_the_pooled_then_own_cdf() -> None:
    pol = make_policy("continuum_utility", make_cost())  # eta = 1
    readmit(pol, 2.0)  # Qbar = 2 s; with R(250) = 0.035 s, B = 2.035 s
    resume(pol, "math", *[0.5] * 50 + [3.0] * 50)
    resume(pol, "qa", 1.0)  # 101 durations in all, 1 of qa: qa's F is the pooled CDF (50 x 0.5, 1 x 1, 50 x 3)
    # utilities: tau=0 -> 0; 0.5 -> 50/101*2.035 - 0.5 = 0.507; 1 -> 51/101*2.035 - 1 = 0.028; 3 -> 2.035 - 3 < 0
    r = view("a", 0.0, "qa")
    assert pol.on_pause(r, state(0.0, [r])) is KvAction.PRESERVE
    assert pol.next_decision_at(state(0.0, [r])) == pytest.approx(0.5)
    resume(pol, "qa", *[1.5] * 100)  # qa now has 101 durations (1 x 1, 100 x 1.5): its own CDF
    # utilities: 1 -> 1/101*2.035 - 1 < 0; 1.5 -> 2.035 - 1.5 = 0.535 (the pooled CDF would give
    # 1.5 -> 151/201*2.035 - 1.5 = 0.029 and 0.5 -> 50/201*2.035 - 0.5 = 0.006)
    r = view("b", 5.0, "qa")
    assert pol.on_pause(r, state(5.0, [r])) is KvAction.PRESERVE
    assert pol.next_decision_at(state(5.0, [r])) == pytest.approx(5.0 + 1.5)
    # math keeps the pooled CDF (50 x 0.5, 1 x 1, 100 x 1.5, 50 x 3; n = 201): 1.5 wins as computed above
    r = view("c", 5.0, "math")
    assert pol.on_pause(r, state(5.0, [r])) is KvAction.PRESERVE
    assert pol.next_decision_at(state(5.0, [r])) == pytest.approx(5.0 + 1.5)


# ---------- saga ----------
def test_saga_ttl_for_two_durations_under_pressure() -> None:
    pol = make_policy("saga", make_cost())
    resume(pol, "qa", 1.0, 4.0)
    x1, x2 = math.log(1.0), math.log(4.0)
    mu = x1 + 0.2 * (x2 - x1)  # first sample: mu = x1, var = 0; then the EW update with weight 0.2
    var = (1 - 0.2) * (0.0 + 0.2 * (x2 - x1) ** 2)
    m = (0.8 - 0.7) / 0.2  # u = 1 - 20/100 = 0.8
    expected = math.exp(mu + 1.645 * math.sqrt(var)) * (1 - 0.5 * m)
    r = view("a", 3.0, "qa")
    assert pol.on_pause(r, state(3.0, [r], free_gpu=20)) is KvAction.PRESERVE
    assert pol.next_decision_at(state(3.0, [r])) == pytest.approx(3.0 + expected)
    assert pol.plan_step(state(3.0 + expected - 1e-6, [r])).empty
    assert pol.plan_step(state(3.0 + expected, [r])).discard == ("a",)


def test_saga_cold_start_cap_floor_and_pressure_bounds() -> None:
    pol = make_policy("saga", make_cost(), cold_start_s=3.0)
    cases = [(view("a", 0.0, "qa"), state(0.0, free_gpu=50), 3.0),  # unseen: cold start, u = 0.5 -> m = 0
             (view("b", 0.0, "qa"), state(0.0, free_gpu=0), 1.5),  # u = 1 -> m = 1: halved
             (view("c", 0.0, "qa"), state(0.0, free_gpu=0, total_gpu=0), 3.0)]  # capacity unknown: u = 0
    resume(pol, "chatbot", 1000.0)  # exp(log 1000 + 0) = 1000 s, capped at 300 s
    resume(pol, "math", 0.0)  # floored at 1 ms before the log
    cases += [(view("d", 0.0, "chatbot"), state(0.0), 300.0), (view("e", 0.0, "math"), state(0.0), 1e-3)]
    for r, st, ttl in cases:
        assert pol.on_pause(r, st) is KvAction.PRESERVE
        assert pol.next_decision_at(state(0.0, [r])) == pytest.approx(ttl), r.rid
    assert make_policy("saga", make_cost(), cold_start_s=0).on_pause(view("f", 0.0), state(0.0)) is KvAction.DISCARD


# ---------- end to end ----------
def ttl_discards(m: Metrics) -> list[float]:
    """Pin lengths of the pauses whose kept KV was discarded before the tool returned."""
    open_pauses: dict[str, tuple[float, str]] = {}
    out = []
    for t, rid, event, _ in m.events:
        if event.startswith("pause:"):
            open_pauses[rid] = (t, event)
        elif event == "resume":
            open_pauses.pop(rid, None)
        elif event == "discard" and open_pauses.get(rid, (0.0, ""))[1] == "pause:preserve":
            out.append(t - open_pauses[rid][0])
    return out


@pytest.mark.parametrize("policy", ["continuum", "continuum_utility", "saga"])
def test_a_short_simulation_ends_every_request(policy: str) -> None:
    cfg = RunConfig(policy=policy, rate_rps=2.0, duration_s=20.0, seed=1, drain=True, max_requests=30, check=True)
    m = simulate(cfg)
    s = summarize(m)["overall"]
    assert s["num_requests"] == 30 and s["unfinished"] == 0
    assert all(not math.isnan(rec.finish_s) for rec in m.requests.values())
    stepped = summarize(simulate(RunConfig(**{**cfg.to_dict(), "jump": False})))["overall"]
    for k, v in s.items():  # jumping stops at every TTL expiry: the same run as stepping
        w = stepped[k]
        assert (math.isnan(v) and math.isnan(w)) or v == pytest.approx(w, rel=1e-9, abs=1e-9), k
    if policy == "continuum":
        pins = ttl_discards(m)
        assert pins, "no pinned request reached its TTL"
        assert all(2.0 <= p < 2.1 for p in pins)  # dropped by the first step after the 2 s pin ran out


def test_an_expiry_frees_blocks_while_the_engine_idles() -> None:
    cost = make_cost(gpu_kv_blocks=20)  # a's 13 blocks leave too few for b
    specs = [RequestSpec("a", 0.0, 200, (Segment(2, 10.0, 5, "qa"), Segment(2)), "qa"),
             RequestSpec("b", 1.0, 200, (Segment(2),), "qa")]
    m = Metrics(100.0, 20)
    env = simpy.Environment()
    eng = Engine(env, specs, cost, make_policy("continuum", cost), m, "v1", 100.0, drain=True, check=True)
    env.process(eng.run())
    env.run()
    paused_at = next(t for t, rid, e, _ in m.events if rid == "a" and e == "pause:preserve")
    admitted_b = next(t for t, rid, e, _ in m.events if rid == "b" and e == "admit")
    assert admitted_b == pytest.approx(paused_at + 2.0)  # a's pin runs out and b gets its blocks


def test_a_duration_is_learned_as_the_engine_sees_it() -> None:
    """The simulator tells a learning policy a pause's duration from the pause to the step boundary at which
    the engine sees the return, as vLLM's scheduler measures it: with another request decoding, a 0.1 s tool
    is seen at the end of the step that covers its return, so the duration is a little longer than 0.1 s."""
    cost = make_cost()
    pol = make_policy("saga", cost)
    seen: list[Observation] = []
    learn = pol.observe
    pol.observe = lambda obs: (seen.append(obs), learn(obs))  # type: ignore[method-assign]
    specs = [RequestSpec("a", 0.0, 100, (Segment(2, 0.1, 5, "qa"), Segment(2)), "qa"),
             RequestSpec("bg", 0.0, 100, (Segment(60),), "plain")]
    m = Metrics(100.0, 100)
    env = simpy.Environment()
    eng = Engine(env, specs, cost, pol, m, "v1", 100.0, drain=True, jump=False, check=True)
    env.process(eng.run())
    env.run()
    resume = next(o for o in seen if o.event == "resume")
    paused_at = next(t for t, rid, e, _ in m.events if rid == "a" and e.startswith("pause:"))
    step_ends = {round(t + d, 12) for t, d in zip(m.steps["start_s"], m.steps["dur_s"], strict=True)}
    assert resume.value_s == pytest.approx(resume.at_s - paused_at)
    assert 0.1 < resume.value_s < 0.1 + 0.02 and round(resume.at_s, 12) in step_ends
