"""Golden scenarios worked out by hand with the test cost (prefill of x tokens: 0.01 + 1e-4 x s; a decode
step of n requests: 0.01 + 1e-4 n s; swap: 1 ms per token)."""

from __future__ import annotations

import math

import pytest
import simpy
from conftest import make_cost

from core.config import RunConfig
from core.metrics import Metrics
from core.policy import make_policy
from core.summary import summarize
from core.types import RequestSpec, Segment
from sim.decoders import DecodeGroup
from sim.engine import Engine
from sim.request import Req
from sim.run import load_cost, simulate


def run(specs, policy: str, batching: str = "v1", cost=None, jump: bool = True, **opts) -> Metrics:
    cost = cost or make_cost()
    m = Metrics(100.0, cost.gpu_kv_blocks)
    env = simpy.Environment()
    eng = Engine(env, specs, cost, make_policy(policy, cost, **opts), m, batching, 100.0, drain=True,
                 jump=jump, check=True)
    env.process(eng.run())
    env.run()
    return m


ONE = [RequestSpec("a", 0.0, 100, (Segment(5),), "plain")]
TOOL = [RequestSpec("a", 0.0, 100, (Segment(3, 1.0, 10, "qa"), Segment(2)), "qa")]


@pytest.mark.parametrize("batching", ["v0", "v1"])
def test_single_request_timing(batching: str) -> None:
    m = run(ONE, "discard", batching)
    rec = m.requests["a"]
    assert rec.first_token_s == pytest.approx(0.02)  # prefill of 100 tokens
    assert rec.finish_s == pytest.approx(0.02 + 4 * 0.0101)  # then 4 decode steps of one request
    assert rec.gen_tokens == 5
    assert summarize(m)["overall"]["norm_latency_ms"] == pytest.approx(1000 * 0.0604 / 5)


def test_preserve_resume_computes_only_the_returned_tokens() -> None:
    m = run(TOOL, "preserve")
    rec = m.requests["a"]
    # pause at 0.02 + 2 * 0.0101 = 0.0402, tool returns at 1.0402, then the last token + 10 returned = 11
    assert rec.resume_latency_s == [pytest.approx(0.01 + 11e-4)]
    assert rec.finish_s == pytest.approx(1.0402 + 0.0111 + 0.0101)
    assert rec.recomputed_tokens == 0 and rec.returned_tokens == 10 and rec.gen_tokens == 5


@pytest.mark.parametrize("policy", ["discard", "improved_discard"])
def test_discard_recomputes_the_whole_context(policy: str) -> None:
    m = run(TOOL, policy)
    rec = m.requests["a"]
    # 102 tokens had KV at the pause (prompt 100 + 2 decoded); the resume prefills 100 + 3 + 10 = 113
    assert rec.recomputed_tokens == 102
    assert rec.resume_latency_s == [pytest.approx(0.01 + 113e-4)]
    assert rec.finish_s == pytest.approx(1.0402 + 0.0213 + 0.0101)


@pytest.mark.parametrize(("policy", "resume_s"), [("swap", 0.102), ("swap_blocking", 0.102 + 0.0111)])
def test_swap_moves_the_context_out_and_back(policy: str, resume_s: float) -> None:
    m = run(TOOL, policy)
    rec = m.requests["a"]
    assert rec.swapped_tokens == 102 and rec.recomputed_tokens == 0
    # the swap-in of 102 tokens (0.102 s) rides the resume step (0.0111 s of compute): the paper's swap
    # copies layer by layer beside it (max of the two), swap_blocking waits for the copy, then computes
    assert rec.resume_latency_s == [pytest.approx(resume_s)]
    kinds = [e for _, rid, e, v in m.events if e.startswith("swap")]
    assert kinds == ["swap_out", "swap_in"]


def test_without_overlap_the_link_adds_to_the_step() -> None:
    m = run(TOOL, "swap", cost=make_cost(swap_overlap=False))  # engine.swap_overlap = false (the CPU build)
    assert m.requests["a"].resume_latency_s == [pytest.approx(0.102 + 0.0111)]


@pytest.mark.parametrize(("policy", "same_step"), [("swap", True), ("infercept", False)])
def test_without_overlap_a_whole_swap_in_computes_in_its_step_a_budgeted_one_after(policy: str,
                                                                                   same_step: bool) -> None:
    """As the executor's connector loads them: the swap baseline's whole swap-in is a synchronous load before
    the forward pass of the step that brings it back, which computes the resume (the last sampled token and the
    10 returned ones); InferCept's is an asynchronous load (trait async_swap_in), computed from the next step."""
    m = run(TOOL, policy, cost=make_cost(swap_overlap=False, link_bytes_per_s=1e12))  # a budget for it all
    i = [k for k, (t, n) in enumerate(zip(m.steps["start_s"], m.steps["swap_tokens"])) if t > 1.0 and n][0]
    assert m.steps["swap_tokens"][i] == 102
    assert m.steps["prefill_tokens"][i] == (11 if same_step else 0)  # the last sampled token and 10 returned
    assert m.steps["prefill_tokens"][i + 1] == (0 if same_step else 11)


def test_preemption_under_memory_pressure_takes_the_newest() -> None:
    # 8 blocks of 16 tokens: two requests of 60 tokens (4 blocks each) fill the GPU once they decode
    cost = make_cost(gpu_kv_blocks=8)
    specs = [RequestSpec("old", 0.0, 60, (Segment(10),)), RequestSpec("new", 0.001, 60, (Segment(10),))]
    m = run(specs, "discard", cost=cost)
    events = [(rid, e) for _, rid, e, _ in m.events if e in ("discard", "finish")]
    assert events[0] == ("new", "discard")  # the newest running request is preempted first
    assert {rid for rid, e in events if e == "finish"} == {"old", "new"}


def test_v0_recompute_stalls_decoders_but_v1_mixes() -> None:
    specs = [RequestSpec("long", 0.0, 50, (Segment(40),)), RequestSpec("b", 0.05, 1000, (Segment(2),))]
    v0, v1 = run(specs, "discard", "v0"), run(specs, "discard", "v1")
    n0 = v0.steps["num_decode"]
    pre0 = v0.steps["prefill_tokens"]
    assert all(not (n and p) for n, p in zip(n0, pre0))  # v0: a step prefills or decodes, never both
    assert any(n and p for n, p in zip(v1.steps["num_decode"], v1.steps["prefill_tokens"]))


def test_decode_group_block_arithmetic_matches_brute_force() -> None:
    g = DecodeGroup(16)
    reqs = []
    for i, n in enumerate([1, 15, 16, 17, 33, 40]):
        r = Req(RequestSpec(f"r{i}", 0.0, n, (Segment(1000),)), i)
        r.computed, r.gpu_blocks, r.num_tokens = n, -(-n // 16), n + 1
        g.join(r)
        reqs.append(r)
    for k in range(70):
        # blocks after k steps cover computed + k tokens, i.e. ceil((computed + k) / 16)
        brute = sum(-(-(r.computed + k) // 16) - -(-r.computed // 16) for r in reqs)
        assert g.blocks_needed(k) == brute, k
    for free in range(30):
        k = g.max_steps_within(free)
        assert g.blocks_needed(k) <= free < g.blocks_needed(k + 1)


@pytest.mark.parametrize("policy", ["discard", "improved_discard", "preserve", "swap", "infercept", "mars"])
@pytest.mark.parametrize("batching", ["v0", "v1"])
def test_jumping_and_stepping_give_the_same_summary(policy: str, batching: str) -> None:
    # a small KV space (about 180 blocks) so that preemption and memory pressure happen within the minute
    cfg = RunConfig(policy=policy, rate_rps=2.5, duration_s=60.0, seed=3, batching=batching, jump=True,
                    engine={"gpu_memory_utilization": 0.42})
    jumped = simulate(cfg)
    stepped = simulate(RunConfig(**{**cfg.to_dict(), "jump": False}))
    a, b = summarize(jumped), summarize(stepped)
    assert sum(jumped.steps["count"]) == sum(stepped.steps["count"])
    assert any(e == "discard" for _, _, e, _ in stepped.events) or policy == "infercept"  # pressure happened
    assert len(jumped.steps["count"]) < len(stepped.steps["count"])  # the jump did skip work
    for k, v in a["overall"].items():
        w = b["overall"][k]
        assert (math.isnan(v) and math.isnan(w)) or v == pytest.approx(w, rel=1e-9, abs=1e-9), k


def test_infercept_options_are_the_ablation() -> None:
    base = RunConfig(policy="infercept", rate_rps=2.0, duration_s=60.0, seed=1)
    full = summarize(simulate(base))["overall"]
    no_swap = summarize(simulate(RunConfig(**{**base.to_dict(), "policy_options": {"swap": False}})))["overall"]
    assert full["swapped_tokens"] > 0 and no_swap["swapped_tokens"] == 0
    no_chunk = simulate(RunConfig(**{**base.to_dict(), "policy_options": {"chunk_fill": False}}))
    s = 384  # GPT-J profile's saturation point
    # chunked recomputation off changes only that: a recompute runs whole (steps past S), and the batching
    # stays chunk-and-fill (decodes and prefill chunks in one step), unlike the run's v0 batching
    assert max(no_chunk.steps["prefill_tokens"]) > s >= max(simulate(base).steps["prefill_tokens"])
    assert any(n and p for n, p in zip(no_chunk.steps["num_decode"], no_chunk.steps["prefill_tokens"]))
    oracle = summarize(simulate(RunConfig(**{**base.to_dict(), "policy_options": {"estimator": "oracle"}})))
    assert oracle["overall"] != full


def test_per_kind_metrics_add_up() -> None:
    s = summarize(simulate(RunConfig(policy="discard", rate_rps=2.0, duration_s=60.0, seed=2)))
    kinds = s["by_kind"]
    assert set(kinds) <= {"math", "qa", "ve", "chatbot", "image", "tts"} and len(kinds) >= 4
    assert sum(k["num_requests"] for k in kinds.values()) == s["overall"]["num_requests"]
    assert sum(k["recomputed_tokens"] for k in kinds.values()) == s["overall"]["recomputed_tokens"]
    assert sum(k["gpu_waste_pct"] for k in kinds.values()) == pytest.approx(s["overall"]["gpu_waste_pct"])
    assert sum(k["recompute_share_pct"] for k in kinds.values()) == pytest.approx(s["overall"]["recompute_share_pct"])


def test_leaving_the_fitted_range_warns() -> None:
    cost = make_cost(fit_max_query_tokens=50)
    with pytest.warns(RuntimeWarning, match="outside the fitted range"):
        run(ONE, "discard", cost=cost)


def test_stops_at_the_end_of_the_window_and_counts_unfinished() -> None:
    m = simulate(RunConfig(policy="preserve", rate_rps=2.0, duration_s=30.0, seed=5))
    assert m.end_s == 30.0
    assert max(s + d for s, d in zip(m.steps["start_s"], m.steps["dur_s"])) <= 30.0
    s = summarize(m)["overall"]
    assert s["unfinished"] > 0 and s["completed_rps"] == pytest.approx((s["num_requests"] - s["unfinished"]) / 30)


def test_admission_leaves_the_blocks_a_swapped_request_needs() -> None:
    # regression: a request preempted to make room was re-admitted into the blocks a half swapped-in request
    # needed, forever (found by the property test)
    from core.types import Status

    cost = make_cost(gpu_kv_blocks=30)
    env = simpy.Environment()
    specs = [RequestSpec("back", 0.0, 100, (Segment(5),)), RequestSpec("new", 0.0, 100, (Segment(5),))]
    eng = Engine(env, specs, cost, make_policy("infercept", cost), Metrics(10.0, 30), "v1", 10.0, drain=True)
    back = Req(specs[0], 0)
    back.status, back.gpu_blocks, back.cpu_blocks, back.computed = Status.SWAPPED, 0, 1, 16
    eng.swapped["back"] = back
    eng.pool.allocate_cpu(1)
    eng.pool.allocate_gpu(23)  # 7 blocks free: "new" needs 7 for 100 tokens, "back" needs 1
    eng.arrive(specs[1], 0.0)
    step = eng._form(0.0)
    assert step.chunks == [] and eng.waiting  # not admitted: only 6 blocks are not reserved
    eng.pool.free_gpu(1)
    assert [r.rid for r, _ in eng._form(0.0).chunks] == ["new"]


def _engine(policy: str, specs: list[RequestSpec], **cost_changes: object) -> Engine:
    cost = make_cost(gpu_kv_blocks=30, **cost_changes)
    return Engine(simpy.Environment(), specs, cost, make_policy(policy, cost), Metrics(10.0, 30), "v1", 10.0,
                  drain=True)


def test_v1_admits_a_request_only_if_its_whole_sequence_fits() -> None:
    # vLLM v1 (scheduler_reserve_full_isl): the first 64-token chunk needs 4 blocks, the whole 100 tokens 7
    specs = [RequestSpec("a", 0.0, 100, (Segment(5),))]
    eng = _engine("discard", specs, token_budget_tokens=64)
    eng.pool.allocate_gpu(25)
    eng.arrive(specs[0], 0.0)
    assert eng._form(0.0).chunks == [] and eng.waiting
    eng.pool.free_gpu(2)  # 7 free
    assert [(r.rid, q) for r, q in eng._form(0.0).chunks] == [("a", 64)]
    assert eng.pool.gpu_free == 3  # only the chunk's blocks are taken


def test_v1_resumed_request_holding_its_kv_goes_first() -> None:
    from core.types import Status

    specs = [RequestSpec("held", 0.0, 64, (Segment(1, 1.0, 20, "qa"), Segment(2)), "qa"),
             RequestSpec("new", 0.0, 16, (Segment(2),))]
    eng = _engine("preserve", specs)
    held = Req(specs[0], 0)  # resumed: 64 tokens of KV in 4 blocks, then the last token and 20 returned
    held.status, held.gpu_blocks, held.computed, held.num_tokens, held.seg = Status.WAITING, 4, 64, 85, 1
    eng.holding.append(held)
    eng.pool.allocate_gpu(29)  # 1 free: "new" would fit, "held" needs 2 more for 85 tokens
    eng.arrive(specs[1], 0.0)
    assert eng._form(0.0).chunks == [] and eng.waiting  # nothing overtakes the request holding its KV
    eng.pool.free_gpu(2)
    assert [(r.rid, q) for r, q in eng._form(0.0).chunks] == [("held", 21), ("new", 16)]


@pytest.mark.parametrize(("policy", "queue"), [("preserve", ["old", "held", "new"]),
                                               ("vllm_native", ["old", "new", "held"])])
def test_a_holding_request_preempted_to_break_a_deadlock_is_requeued_as_a_resume(policy: str,
                                                                                 queue: list[str]) -> None:
    """vLLM never preempts a resumed request holding its KV; the executor's deadlock breaker requeues it as a
    resumed discard (real/actions.py ``_ic_unblock``): by its ticket where the policy keeps it (preserve),
    at the back with a new one where it does not (vllm_native), not at the front as a preempted running one."""
    from core.types import Status

    specs = [RequestSpec("held", 0.0, 64, (Segment(1, 1.0, 20, "qa"), Segment(2)), "qa"),
             RequestSpec("new", 0.0, 16, (Segment(2),))]
    eng = _engine(policy, specs)
    eng.arrive(specs[1], 0.0)  # ticket 0
    eng.waiting.add(Req(RequestSpec("old", 0.0, 16, (Segment(2),)), -2), 0.0)  # the first ticket of all
    held = Req(specs[0], -1)  # arrived between them; resumed with 64 tokens of KV in 4 blocks
    held.status, held.gpu_blocks, held.computed, held.num_tokens, held.seg = Status.WAITING, 4, 64, 85, 1
    eng.m.arrive(0.0, "held", "qa", 64)
    eng.pool.allocate_gpu(4)
    eng.holding.append(held)
    eng.preempt(held, 0.5)
    assert [r.rid for r in eng.waiting] == queue and eng.pool.gpu_free == 30


def test_v1_admits_nothing_in_a_step_that_preempts() -> None:
    specs = [RequestSpec("a", 0.0, 32, (Segment(10),)), RequestSpec("b", 0.0, 40, (Segment(10),)),
             RequestSpec("r", 0.0, 10, (Segment(2),))]
    eng = _engine("discard", specs[:2])
    eng.arrive(specs[0], 0.0)
    eng.arrive(specs[1], 0.0)
    first = eng._form(0.0)  # both prefill: a takes 2 blocks, b 3
    eng._complete(first, 1, 0.05)
    eng.pool.allocate_gpu(eng.pool.gpu_free)  # the KV cache is full; a's next token needs a third block
    eng.waiting.add(Req(specs[2], -1), 0.05)  # a 1-block request ahead of both in the queue
    step = eng._form(0.05)
    assert step.preempted and [(r.rid, q) for r, q in step.chunks] == []  # b went; its 3 blocks freed 2 spare
    # b is queued at the front, as vLLM prepends a preempted request, and heads the queue from then on: it needs
    # 3 blocks (41 tokens), 2 are free, and FCFS admits nobody behind a head that does not fit
    assert [r.rid for r in eng.waiting] == ["b", "r"] and eng.pool.gpu_free == 2
    assert [(r.rid, q) for r, q in eng._form(0.06).chunks] == [] and eng.waiting.head().rid == "b"


@pytest.mark.parametrize("budget", ["step", "saturated"])
def test_swap_outs_use_the_cpu_blocks_swap_ins_free_when_the_host_is_full(budget: str) -> None:
    # ~3 GB of host swap (a few hundred blocks) and a multi-block budget: the host fills up, and a step's
    # swap-outs then rely on the blocks its swap-ins free (the plan counts them; apply must honour it)
    cfg = RunConfig(policy="infercept", rate_rps=4.0, duration_s=60.0, seed=0,
                    policy_options={"budget": budget}, engine={"cpu_swap_bytes": 3_000_000_000})
    m = simulate(cfg)
    cpu = m.steps["cpu_used_blocks"]
    assert max(cpu) == load_cost(cfg).cpu_kv_blocks  # the host pool was full
    assert summarize(m)["overall"]["swapped_tokens"] > 0


def test_a_chunk_all_recomputed_is_charged_its_chunk_cost() -> None:
    """Recompute time is the step's time less that of the same step without the recomputed tokens: a prefill
    chunk made only of recomputed tokens takes its per-chunk cost with it, so beside one decoder it costs
    100 tokens * 0.1 ms + 5 ms per chunk = 15 ms (steps of 100-token chunks, 10 ms + 0.1 ms/token)."""
    cost = make_cost(per_prefill_seq_s=0.005, token_budget_tokens=101)
    specs = [RequestSpec("b", 0.0, 10, (Segment(400),)),
             RequestSpec("a", 0.0, 300, (Segment(5, 1.0, 10, "qa"), Segment(2)), "qa")]
    m = run(specs, "discard", cost=cost, jump=False)
    rows = [dict(zip(m.steps, row)) for row in zip(*m.steps.values())]
    whole = [r for r in rows if r["recompute_tokens"] == r["prefill_tokens"] == 100 and r["num_decode"] == 1]
    assert len(whole) == 3  # a's 300-token prompt again after its pause, in three chunks, beside b's decode
    for r in whole:
        assert r["fwd_s"] == pytest.approx(0.01 + 1e-4 * 101 + 0.005)
        assert r["recompute_s"] == pytest.approx(0.015)
    # the chunk that ends the recompute carries new tokens too: it stays, its cost is not the recompute's
    (part,) = [r for r in rows if 0 < r["recompute_tokens"] < r["prefill_tokens"]]
    assert part["recompute_s"] == pytest.approx(1e-4 * part["recompute_tokens"])


def test_outputs_come_before_the_engine_loops_gap_and_the_next_plan_after_it() -> None:
    """step.busy_gap_s = 1 ms of const_s's 10: a step's tokens, pause and finish come 1 ms before its end;
    the plan at its end sees the pause 1 ms old (the engine's policy hook runs after that gap), not 0 ms."""
    cost = make_cost(busy_gap_s=0.001)
    m = run(TOOL, "preserve", cost=cost)
    rec = m.requests["a"]
    assert rec.first_token_s == pytest.approx(0.02 - 0.001)
    # the pause at 0.0402 - 0.001; the tool's 1 s from there; the resume's step (11 tokens) and one decode
    # step, the last token 1 ms before its end
    assert rec.finish_s == pytest.approx(0.0392 + 1.0 + 0.0111 + 0.0101 - 0.001)
    assert m.end_s == pytest.approx(rec.finish_s)  # a drained run ends at the client's last finish

    class Seen:
        """InferCept, recording how old each paused request is at every plan."""

        def __init__(self, policy):
            self.policy, self.ages_s = policy, []

        def plan_step(self, state):
            self.ages_s += [state.now_s - r.paused_at_s for r in state.paused]
            return self.policy.plan_step(state)

        def __getattr__(self, name):
            return getattr(self.policy, name)

    seen = Seen(make_policy("infercept", cost))
    env = simpy.Environment()
    eng = Engine(env, TOOL, cost, seen, Metrics(100.0, cost.gpu_kv_blocks), "v1", 100.0, drain=True, check=True)
    env.process(eng.run())
    env.run()
    assert seen.ages_s and seen.ages_s[0] == pytest.approx(0.001)
