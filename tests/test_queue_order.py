"""Queue orders (policy_options.queue_order): PLAS levels, the simulator's WaitQueue, program order end to end."""

from __future__ import annotations

import pytest
from conftest import make_cost
from test_engine import run

from core.config import ConfigError, check_policy_options
from core.policy import make_policy
from core.queue_order import PLAS, keeps_ticket_on_resume, plas_level, queue_key
from core.types import RequestSpec, Segment
from sim.request import Req
from sim.waitqueue import WaitQueue, queue_placement


def test_plas_levels_are_geometric() -> None:
    q = PLAS.quantum_tokens  # 2048: level 0 below it, then [q, 2q) -> 1, [2q, 4q) -> 2, ...
    assert [plas_level(n) for n in (0, q - 1, q, 2 * q - 1, 2 * q, 4 * q - 1, 4 * q)] == [0, 0, 1, 1, 2, 2, 3]
    assert plas_level(10**9) == PLAS.levels - 1  # capped
    assert queue_key("plas", 7, 3 * q) == (2, 0.0, 7) and queue_key("plas", 7, 3 * q, starved=True) == (-1, 0.0, 7)
    assert queue_key("arrival", 7, 3 * q) == queue_key("program", 7, 0) == (0, 0.0, 7)
    assert queue_key("mars", 7, 3 * q, score=2.5) == (0, 2.5, 7)  # by score; service plays no part
    assert queue_key("mars", 7, 0, starved=True, score=2.5) == (-1, 2.5, 7)


def test_which_orders_keep_the_first_ticket() -> None:
    assert not keeps_ticket_on_resume("arrival", resume_to_front=False)  # vLLM's discard: to the back
    assert keeps_ticket_on_resume("arrival", resume_to_front=True)
    assert keeps_ticket_on_resume("program", resume_to_front=False)  # program FCFS overrides it
    assert keeps_ticket_on_resume("plas", resume_to_front=False)


def _req(rid: str, ticket: int, service_tokens: int) -> Req:
    r = Req(RequestSpec(rid, 0.0, 10, (Segment(1),)), ticket)
    r.service_tokens = service_tokens
    return r


def test_plas_serves_least_attained_service_first_and_promotes_the_starved() -> None:
    wq = WaitQueue("plas")
    old = _req("old", 0, 5000)  # level 2
    wq.add(old, 0.0)
    wq.add(_req("mid", 1, 3000), 1.0)  # level 1
    wq.add(_req("new", 2, 0), 2.0)  # level 0
    assert [r.rid for r in wq] == ["new", "mid", "old"]
    wq.promote_starved(PLAS.starvation_s - 0.5)  # nobody has waited starvation_s yet
    assert wq.head().rid == "new"
    wq.promote_starved(PLAS.starvation_s + 0.5)  # "old" (queued at 0) has: ahead of every level
    assert [r.rid for r in wq] == ["old", "new", "mid"]
    assert wq.pop_head().rid == "old" and len(wq) == 2
    wq.promote_starved(PLAS.starvation_s + 1.0)  # "mid" (queued at 1) too
    assert [r.rid for r in wq] == ["mid", "new"]


def test_arrival_order_is_by_ticket() -> None:
    wq = WaitQueue("arrival")
    for rid, ticket in (("b", 3), ("a", 1), ("c", 5)):
        wq.add(_req(rid, ticket, 10**6 if rid == "a" else 0), 0.0)
    assert [r.rid for r in wq] == ["a", "b", "c"]


@pytest.mark.parametrize(("order", "expected"), [("arrival", ["q2", "q1", "a", "c"]),
                                                  ("program", ["a", "q2", "c", "q1"])])
def test_a_preempted_request_goes_to_the_front_under_arrival_order(order: str, expected: list[str]) -> None:
    """vLLM queues a recompute-preempted request at the front of its FCFS queue (v1's prepend_request, 0.2's
    waiting.insert(0, ...)), so the last preempted is served first; an ordered queue (program, plas, mars)
    puts it back by its key, as the real executor's does."""
    wq = WaitQueue(order)
    wq.add(_req("c", 5, 0), 0.0)
    wq.add(_req("a", 1, 0), 0.0)
    wq.add(_req("q1", 7, 0), 1.0, preempted=True)
    wq.add(_req("q2", 3, 0), 2.0, preempted=True)
    assert [r.rid for r in wq] == expected
    # resumes that keep their tickets go before the first later ticket, as the executor inserts them into
    # vLLM's deque: ahead of a preempted request with a later ticket (b before q1, z before q2)
    wq.add(_req("b", 4, 0), 3.0)
    wq.add(_req("z", 2, 0), 3.0)
    assert [r.rid for r in wq] == {"arrival": ["z", "q2", "b", "q1", "a", "c"],
                                   "program": ["a", "z", "q2", "b", "c", "q1"]}[order]



@pytest.mark.parametrize(("placement", "expected"), [("deque", ["z", "q2", "b", "q1", "a", "c", "n"]),
                                                      ("deque_v0", ["z", "b", "q2", "q1", "a", "c", "n"]),
                                                      ("sorted", ["a", "z", "q2", "b", "c", "q1", "n"])])
def test_where_each_engine_queues_a_resume_and_a_preemption(placement: str, expected: list[str]) -> None:
    """The reference's engines (v0 runs): its bench scripts patch vLLM 0.2's resume of a discarded request to
    ``waiting.insert(0, ...)`` for ImprovedDiscard, so a resume that keeps its ticket goes to the very front
    (the last resumed first), and a preemption too; InferCept's own scheduler re-sorts its queue by arrival
    every step, preemptions included. A resume with a new ticket (vLLM's discard) goes to the back in all."""
    wq = WaitQueue("arrival", placement=placement)
    wq.add(_req("c", 5, 0), 0.0)
    wq.add(_req("a", 1, 0), 0.0)
    wq.add(_req("q1", 7, 0), 1.0, preempted=True)
    wq.add(_req("q2", 3, 0), 2.0, preempted=True)
    wq.add(_req("b", 4, 0), 3.0, kept_ticket=True)
    wq.add(_req("z", 2, 0), 3.0, kept_ticket=True)
    wq.add(_req("n", 9, 0), 4.0)
    assert [r.rid for r in wq] == expected


@pytest.mark.parametrize(("policy", "batching", "placement"), [
    ("infercept", "v0", "sorted"), ("infercept", "v1", "deque"), ("improved_discard", "v0", "deque_v0"),
    ("discard", "v1", "deque"), ("vllm_native", "v0", "deque"), ("swap", "v0", "deque_v0")])
def test_which_placement_each_engine_uses(policy: str, batching: str, placement: str) -> None:
    """The engine's queue: InferCept's own scheduler in a v0 run, vLLM 0.2 for a v0 baseline, vLLM v1 for
    every v1 run and for policies that always batch as v1 (vllm_native)."""
    import simpy

    from core.metrics import Metrics
    from sim.engine import Engine

    cost = make_cost()
    engine = Engine(simpy.Environment(), [], cost, make_policy(policy, cost), Metrics(1.0, cost.gpu_kv_blocks),
                    batching, 1.0, drain=True)
    assert engine.waiting.placement == placement
    assert [queue_placement(mode, "v0") for mode in ("fill", "v0", "v1")] == ["sorted", "deque_v0", "deque"]
    assert [queue_placement(mode, "v1") for mode in ("fill", "v0", "v1")] == ["deque", "deque_v0", "deque"]
    with pytest.raises(ValueError, match="queue placement 'lifo'"):
        WaitQueue("arrival", placement="lifo")


# one slot; "a" then "d" pause (their KV discarded) and return while "b" holds the slot: the reference's
# ImprovedDiscard (v0) serves the last resumed ("d") first, the executor's deque (v1) the earlier ticket ("a");
# vLLM's discard gives each a new ticket as it returns, so "a" in both; swap, with no host blocks, discards
TWO_RESUMES = [RequestSpec("a", 0.0, 100, (Segment(3, 1.0, 10, "qa"), Segment(2)), "qa"),
               RequestSpec("d", 0.05, 100, (Segment(3, 1.0, 10, "qa"), Segment(2)), "qa"),
               RequestSpec("b", 0.5, 100, (Segment(100),))]


@pytest.mark.parametrize(("policy", "batching", "first"), [("improved_discard", "v0", "d"),
                                                            ("improved_discard", "v1", "a"),
                                                            ("discard", "v0", "a"), ("discard", "v1", "a"),
                                                            ("swap", "v0", "d"), ("swap", "v1", "a")])
def test_the_reference_improved_discard_serves_the_last_resumed_first(policy: str, batching: str,
                                                                       first: str) -> None:
    """A discarded request's resume that keeps its ticket goes to the very front in v0 (the reference's
    ``insert(0)`` patch), by its ticket in v1; vLLM's discard gives it a new ticket in both. Swap with no host
    blocks falls back to such a discard, and the patch stayed in place for the reference's swap runs."""
    m = run(TWO_RESUMES, policy, batching, cost=make_cost(max_num_seqs=1, cpu_kv_blocks=0))
    assert m.requests["b"].finish_s < min(m.requests[r].finish_s for r in ("a", "d"))  # both waited for "b"
    assert all(m.requests[r].discarded_pauses == 1 and m.requests[r].swapped_tokens == 0 for r in ("a", "d"))
    assert min(("a", "d"), key=lambda rid: m.requests[rid].finish_s) == first

# one slot; "a" pauses (its KV discarded), "b" occupies the slot, "c" arrives and waits; "a" returns at about
# 1.04 s while "c" waits: by arrival (vLLM's discard) "a" queues behind "c", by program order ahead of it
SERIAL = [RequestSpec("a", 0.0, 100, (Segment(3, 1.0, 10, "qa"), Segment(2)), "qa"),
          RequestSpec("b", 0.5, 100, (Segment(100),)),
          RequestSpec("c", 0.9, 100, (Segment(5),))]


# plas: "a" has 103 tokens of service (its first turn), "c" none: both on level 0 (below 2048 tokens), where
# the first ticket decides
@pytest.mark.parametrize(("order", "first"), [("arrival", "c"), ("program", "a"), ("plas", "a")])
def test_program_order_serves_a_resumed_turn_by_its_request_arrival(order: str, first: str) -> None:
    m = run(SERIAL, "discard", cost=make_cost(max_num_seqs=1), queue_order=order)
    done = sorted(("a", "c"), key=lambda rid: m.requests[rid].finish_s)
    assert done[0] == first
    assert all(m.requests[rid].finish_s > 0 for rid in ("a", "b", "c"))


def test_queue_order_is_an_option_of_every_policy_and_checked() -> None:
    cost = make_cost()
    assert make_policy("preserve", cost, queue_order="plas").traits.queue_order == "plas"
    assert make_policy("infercept", cost).traits.queue_order == "arrival"
    with pytest.raises(ValueError, match="queue_order='lifo'"):
        make_policy("discard", cost, queue_order="lifo")
    with pytest.raises(ConfigError, match="policy_options.queue_order = 'lifo'"):
        check_policy_options("swap", {"queue_order": "lifo"})


def test_plas_jumps_stop_at_a_promotion() -> None:
    """Past the knee requests wait 30 s and PLAS promotes them; a jump over steady decoding must stop at the
    promotion (it did not: discard at 3 req/s for 300 s finished 1.357 req/s jumping, 1.367 stepping)."""
    from core.config import RunConfig
    from core.summary import summarize
    from sim.run import simulate

    cfg = RunConfig(policy="discard", rate_rps=3.0, duration_s=300.0, seed=3,
                    policy_options={"queue_order": "plas"})
    jumped = summarize(simulate(cfg))["overall"]
    stepped = summarize(simulate(RunConfig(**{**cfg.to_dict(), "jump": False})))["overall"]
    assert jumped["unfinished"] > 0  # past the knee: starvation matters here
    for k, v in jumped.items():
        assert v == pytest.approx(stepped[k], rel=1e-9, abs=1e-9), k
