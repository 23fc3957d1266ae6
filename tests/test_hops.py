"""The client's hops in the simulator (engine.client_in_hop_s, client_out_hop_s), against a timeline worked
out by hand: an arrival and a tool's return reach the engine an in-hop late, the client sees output an out-hop
after its step and starts the tool then; what the client sends inside the window counts, output it would see
after the window does not."""

from __future__ import annotations

import math

import pytest
import simpy
from conftest import make_cost

from core.metrics import Metrics
from core.policy import make_policy
from core.summary import summarize
from core.types import Observation, RequestSpec, Segment
from experiments.fidelity import pause_decisions
from real.hops import out_hop_s
from sim.engine import Engine

IN_S, OUT_S = 0.004, 0.002
# a: 10-token prompt, 2 tokens, a 0.5-s tool returning 4 tokens, 1 more token
A = RequestSpec("a", 0.0, 10, (Segment(2, 0.5, 4, "qa"), Segment(1)), "qa")


def run(specs: list[RequestSpec], window_s: float | None, policy_name: str = "preserve",
        hops_s: tuple[float, float] = (IN_S, OUT_S), **options: float) -> tuple[Metrics, Engine, list[Observation]]:
    cost = make_cost(client_in_hop_s=hops_s[0], client_out_hop_s=hops_s[1])  # a step: 10 ms + 0.1 ms per query token
    policy = make_policy(policy_name, cost, **options)
    seen: list[Observation] = []
    learn = policy.observe
    policy.observe = lambda o: (seen.append(o), learn(o))[1]  # type: ignore[method-assign]
    m = Metrics(window_s or 5.0, cost.gpu_kv_blocks)
    env = simpy.Environment()
    eng = Engine(env, specs, cost, policy, m, "v1", window_s or 5.0, drain=window_s is None, check=True)
    env.process(eng.run())
    env.run()
    return m, eng, seen


def test_the_hops_delay_what_each_side_sees() -> None:
    # the engine sees a at 0.004; prefill of 10 tokens (11 ms) to 0.015, the client sees the token at 0.017;
    # a decode (10.1 ms) to 0.0251, the pause; the tool runs from the client's 0.0271 to 0.5271 (the resume);
    # the engine sees it at 0.5311; 5 tokens (the last sampled + 4 returned, 10.5 ms) to 0.5416, the finish,
    # which the client sees at 0.5436
    m, eng, seen = run([A], None)
    events = {e: t for t, _, e, _ in m.events}
    assert events["arrive"] == 0.0 and events["admit"] == pytest.approx(0.004)
    assert events["first_token"] == pytest.approx(0.017)
    assert events["pause:preserve"] == pytest.approx(0.0251) and events["resume"] == pytest.approx(0.5271)
    assert events["finish"] == pytest.approx(0.5436)
    rec = m.requests["a"]
    assert rec.tool_s == pytest.approx(0.502)  # the out-hop is tool time, as the executor's summary counts it
    assert rec.resume_latency_s == pytest.approx([0.5436 - 0.5271])
    (resume,) = [o for o in seen if o.event == "resume"]  # what a policy can learn: out-hop + tool + in-hop
    assert resume.at_s == pytest.approx(0.5311) and resume.value_s == pytest.approx(0.506)
    s = summarize(m)["overall"]
    assert s["norm_latency_ms"] == pytest.approx(1000 * (0.5436 - 0.502) / 7)  # 3 generated + 4 returned
    assert s["ttft_p50_s"] == pytest.approx(0.017)
    assert eng.num_generated == 3 and m.end_s == pytest.approx(0.5436)  # drained: the client's last finish


def test_at_the_window_end_what_the_client_sent_counts_and_what_it_would_see_later_does_not() -> None:
    # a's finish leaves the engine at 0.5416 and would reach the client at 0.5436, after the 0.542-s window:
    # unfinished, its 3 tokens credited; b, sent at 0.541, never reached the engine but arrived
    b = RequestSpec("b", 0.541, 10, (Segment(1),), "plain")
    m, eng, _ = run([A, b], 0.542)
    a_rec, b_rec = m.requests["a"], m.requests["b"]
    assert math.isnan(a_rec.finish_s) and a_rec.gen_tokens == 3 and eng.num_generated == 3
    assert b_rec.arrival_s == 0.541 and b_rec.gen_tokens == 0
    s = summarize(m)["overall"]
    assert s["norm_latency_ms"] == pytest.approx((1000 * (0.542 - 0.502) / 7 + 1000 * (0.542 - 0.541) / 1) / 2)
    assert s["completed_rps"] == 0


@pytest.mark.parametrize(("hops_s", "outcome"), [((0.0, 0.0), "preserved_pauses"), ((IN_S, OUT_S), "discarded_pauses")])
def test_a_pin_that_runs_out_before_the_engine_sees_the_return_is_a_discard(hops_s: tuple[float, float],
                                                                          outcome: str) -> None:
    # continuum pins a's pause (its tool unseen) for 0.504 s. Without hops a pauses at 0.0211 and its tool
    # returns at 0.5211, before the pin ends (0.5251): kept. With them a pauses at 0.0251, the pin ends at
    # 0.5291; the client sends the return at 0.5271, but the idle engine wakes for the expiry at 0.5291 and
    # discards before it sees the return at 0.5311: a discard, in the event log (the discard, then the resume
    # stamped 0.5271) and in the counts, as real.collect counts it
    m, _, _ = run([A], None, "continuum", hops_s, ttl_s=0.504)
    assert pause_decisions(m)[outcome] == 1 and summarize(m)["overall"][outcome] == 1
    moves = [(e, t) for t, _, e, _ in m.events if e in ("discard", "resume")]
    if hops_s[0]:
        assert moves[:2] == [("discard", pytest.approx(0.5291)), ("resume", pytest.approx(0.5271))]


def test_the_out_hop_pairs_each_pause_with_its_chunk_end_and_refuses_logs_that_do_not_pair() -> None:
    engine = [{"e": "pause:preserve", "t": 1.0, "rid": "a"}, {"e": "pause:discard", "t": 3.0, "rid": "a"},
              {"e": "discard", "t": 3.0, "rid": "a"}]
    client = [(1.0009, "chunk_end", "a", 4), (3.0007, "chunk_end", "a", 2), (3.5, "resume", "a", 2)]
    assert out_hop_s(engine, client) == [pytest.approx(0.0009), pytest.approx(0.0007)]
    with pytest.raises(ValueError, match="do not pair up"):  # the first pause missing from the engine log
        out_hop_s(engine[1:], client)
