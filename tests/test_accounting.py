"""Accounting at the edges: tokens of requests that are not running when the window closes, and the
token-conservation invariant (every token the engine samples is credited to exactly one request)."""

from __future__ import annotations

import pytest
import simpy
from conftest import make_cost

from core.metrics import Metrics
from core.policy import make_policy
from core.summary import summarize
from core.types import RequestSpec, Segment, Status
from sim.engine import Engine


def run_window(specs: list[RequestSpec], policy: str, batching: str, window_s: float, **cost_changes: object):
    cost = make_cost(**cost_changes)
    m = Metrics(window_s, cost.gpu_kv_blocks)
    env = simpy.Environment()
    eng = Engine(env, specs, cost, make_policy(policy, cost), m, batching, window_s, drain=False, check=True)
    env.process(eng.run())
    env.run()
    return m, eng


def test_a_preempted_request_waiting_at_the_window_end_keeps_its_tokens() -> None:
    # Two 300-token decodes (16-token prompts) in 24 blocks of 16 tokens. Prefill of both: 0.0132 s; 176
    # decode steps of two (0.0102 s) compute positions 16..191; the step for position 192 needs a 13th block
    # for each: b (newest) is preempted at t = 1.8084 s with 193 tokens (177 generated) and waits; a decodes
    # alone (0.0101 s a step) and has 68 more steps done by the window end (2.5 s): 245 tokens generated.
    specs = [RequestSpec(rid, 0.0, 16, (Segment(300),), "plain") for rid in ("a", "b")]
    m, eng = run_window(specs, "discard", "v1", 2.5, gpu_kv_blocks=24)
    a, b = m.requests["a"], m.requests["b"]
    assert (a.gen_tokens, b.gen_tokens) == (245, 177)
    s = summarize(m)["overall"]
    assert s["norm_latency_ms"] == pytest.approx((2500 / 245 + 2500 / 177) / 2)  # 12.16, not 1255 as before
    assert s["tokens_per_s"] == pytest.approx((245 + 177) / 2.5)
    assert eng.num_generated == 245 + 177


@pytest.mark.parametrize(("policy", "outcome"), [("discard", "discarded_pauses"), ("preserve", "preserved_pauses"),
                                                 ("swap", "swapped_pauses")])
def test_pause_outcomes_are_counted_per_returned_interception(policy: str, outcome: str) -> None:
    specs = [RequestSpec(f"r{i}", 0.1 * i, 40, (Segment(3, 0.2, 5, "qa"), Segment(2, 0.3, 5, "qa"), Segment(2)),
                         "qa") for i in range(4)]
    m, _ = run_window(specs, policy, "v1", 50.0)
    s = summarize(m)["overall"]
    assert s[outcome] == 8  # 4 requests x 2 interceptions, every one returned
    assert s["preserved_pauses"] + s["discarded_pauses"] + s["swapped_pauses"] == 8


def test_infercept_outcomes_follow_its_plan() -> None:
    # one long chat pause beside a long decode: kept while WP < WD, then discarded (swap off)
    specs = [RequestSpec("a", 0.0, 250, (Segment(2, 5.0, 5, "chatbot"), Segment(2)), "chatbot"),
             RequestSpec("b", 0.0, 10, (Segment(1000),), "plain")]
    cost = make_cost()
    m = Metrics(50.0, cost.gpu_kv_blocks)
    env = simpy.Environment()
    eng = Engine(env, specs, cost, make_policy("infercept", cost, swap=False), m, "v1", 50.0, drain=True)
    env.process(eng.run())
    env.run()
    s = summarize(m)["overall"]
    assert (s["preserved_pauses"], s["discarded_pauses"], s["swapped_pauses"]) == (0, 1, 0)


def test_a_request_arriving_during_the_step_that_overruns_the_window_is_counted() -> None:
    # a's prefill of 2000 tokens (0.21 s) would end past the 0.1 s window, so no step runs; b arrives at 0.05 s,
    # inside the window: both count, unfinished, with the window end as their end
    specs = [RequestSpec("a", 0.0, 2000, (Segment(5),), "plain"), RequestSpec("b", 0.05, 10, (Segment(5),), "plain")]
    m, _ = run_window(specs, "discard", "v1", 0.1, gpu_kv_blocks=200)
    s = summarize(m)["overall"]
    assert (s["num_requests"], s["unfinished"]) == (2, 2)
    assert s["norm_latency_ms"] == pytest.approx((100 + 50) / 2)


def test_blocks_of_a_half_swapped_in_request_are_idle_memory() -> None:
    # a resumed request with 3 blocks on the CPU gets 1 back at t = 1 s; that block holds KV that computes
    # nothing until the other two arrive: 1 block x 1 s of waste by t = 2 s
    cost = make_cost()
    m = Metrics(10.0, cost.gpu_kv_blocks)
    eng = Engine(simpy.Environment(), [], cost, make_policy("infercept", cost), m, "v1", 10.0, drain=True)
    eng.arrive(RequestSpec("a", 0.0, 40, (Segment(2, 1.0, 5, "qa"), Segment(2)), "qa"), 0.0)
    r = eng.waiting.pop_head()
    r.num_tokens, r.computed, r.status, r.paused_at = 42, 41, Status.PAUSED, 0.0
    eng.pool.allocate_cpu(3)
    r.cpu_blocks = 3
    eng.paused["a"] = r
    m.pause(0.0, "a", 2, "swap")
    eng.resume(r, 1.0, 1.0)
    eng.swap_in(r, 1, 1.0)
    assert r.status is Status.SWAPPED and eng.paused_gpu_blocks == 1
    eng.check()
    eng.flush_waste(2.0)
    assert m.waste_by_kind["qa"] == pytest.approx(1.0)
