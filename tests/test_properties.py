"""Properties over random small workloads, every policy and both batching modes, in drain mode and with a
window (block checks on every step): every request finishes (drain), every sampled token is credited to its
request (both), blocks are conserved, counts stay non-negative, time never goes back, identical seeds give
identical summaries; with and without the client's hops. CPU swap spaces are drawn small and link speeds so
that InferCept's per-step budget is several blocks, so full host pools and multi-block swaps are exercised."""

from __future__ import annotations

import itertools
import math

import pytest
import simpy
from conftest import make_cost
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from core.metrics import Metrics
from core.policy import POLICIES, make_policy
from core.summary import summarize
from core.types import RequestSpec, Segment
from sim.engine import Engine

segment = st.builds(Segment, gen_tokens=st.integers(1, 40), tool_s=st.floats(0, 2.0),
                    tool_tokens=st.integers(0, 30), kind=st.just("qa"))


@st.composite
def workloads(draw: st.DrawFn) -> list[RequestSpec]:
    n = draw(st.integers(1, 12))
    specs = []
    for i in range(n):
        segs = draw(st.lists(segment, min_size=1, max_size=4))
        segs[-1] = Segment(segs[-1].gen_tokens)
        specs.append(RequestSpec(f"r{i}", draw(st.floats(0, 3.0)), draw(st.integers(1, 300)), tuple(segs), "qa"))
    return sorted(specs, key=lambda s: s.arrival_s)


def simulate_specs(specs: list[RequestSpec], policy: str, batching: str, gpu_blocks: int, cpu_blocks: int = 40,
                   link_bytes_per_s: float = 1e6, window_s: float | None = None,
                   overlap: bool = True, holds: bool = False,
                   hops_s: tuple[float, float] = (0.0, 0.0), gap_s: float = 0.0) -> tuple[Metrics, Engine]:
    cost = make_cost(gpu_kv_blocks=gpu_blocks, cpu_kv_blocks=cpu_blocks, link_bytes_per_s=link_bytes_per_s,
                     swap_overlap=overlap, swap_holds_blocks=holds, client_in_hop_s=hops_s[0],
                     client_out_hop_s=hops_s[1], busy_gap_s=gap_s)
    m = Metrics(window_s or 5.0, gpu_blocks)
    env = simpy.Environment()
    eng = Engine(env, specs, cost, make_policy(policy, cost), m, batching, window_s or 5.0,
                 drain=window_s is None, check=True)
    env.process(eng.run())
    env.run()
    return m, eng


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow],
          phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink])
@given(specs=workloads(), policy=st.sampled_from(sorted(POLICIES)), batching=st.sampled_from(["v0", "v1"]),
       gpu_blocks=st.integers(30, 120), cpu_blocks=st.integers(0, 40),
       link_bytes_per_s=st.sampled_from([1e6, 2e7, 2e8]), window_s=st.sampled_from([None, 0.5, 2.0]),
       overlap=st.booleans(), holds=st.booleans(),
       hops_s=st.sampled_from([(0.0, 0.0), (0.002, 0.001), (0.05, 0.3)]),
       gap_s=st.sampled_from([0.0, 0.001, 0.01]))  # the engine loop's gap: none, some, all of const_s
def test_invariants(specs: list[RequestSpec], policy: str, batching: str, gpu_blocks: int, cpu_blocks: int,
                    link_bytes_per_s: float, window_s: float | None, overlap: bool, holds: bool,
                    hops_s: tuple[float, float], gap_s: float) -> None:
    gpu_blocks = max(gpu_blocks, max(-(-s.total_tokens // 16) for s in specs))  # every request fits alone
    # check=True asserts block conservation on every step
    m, eng = simulate_specs(specs, policy, batching, gpu_blocks, cpu_blocks, link_bytes_per_s, window_s, overlap,
                            holds, hops_s, gap_s)
    assert sum(rec.gen_tokens for rec in m.requests.values()) == eng.num_generated, "tokens not conserved"
    for s in specs:
        rec = m.requests.get(s.rid)
        if window_s is not None:
            assert rec is not None or s.arrival_s >= window_s, f"{s.rid} arrived but was not recorded"
            continue
        assert rec is not None and not math.isnan(rec.finish_s), f"{s.rid} did not finish"
        assert rec.gen_tokens == sum(seg.gen_tokens for seg in s.segments)
        assert rec.returned_tokens == sum(seg.tool_tokens for seg in s.segments)
        assert rec.finish_s >= s.arrival_s and rec.recomputed_tokens >= 0
    starts = m.steps["start_s"]
    assert all(b >= a for a, b in itertools.pairwise(starts)), "time went backwards"
    assert all(d >= 0 for d in m.steps["dur_s"]) and all(c >= 1 for c in m.steps["count"])
    last: dict[tuple[str, bool], float] = {}
    for t, rid, event, _ in m.events:  # each request's own events are in time order on each side of the hops
        side = (rid, event in CLIENT_EVENTS)
        assert t >= last.get(side, 0.0), f"{rid}: {event} at {t} before {last[side]}"
        last[side] = t
    # a request swapped back in is never preempted in that same step (its blocks and its returned tokens'
    # were left free by the plan)
    swapped_in = {(rid, t) for t, rid, e, _ in m.events if e == "swap_in"}
    assert not [(rid, t) for t, rid, e, _ in m.events if e == "discard" and (rid, t) in swapped_in]
    for col in ("gpu_used_blocks", "cpu_used_blocks", "gpu_paused_blocks"):
        assert min(m.steps[col], default=0) >= 0
    again, _ = simulate_specs(specs, policy, batching, gpu_blocks, cpu_blocks, link_bytes_per_s, window_s, overlap,
                              holds, hops_s, gap_s)
    assert summarize(m) == summarize(again)


CLIENT_EVENTS = ("arrive", "resume", "first_token", "finish")
"""Events stamped with the client's time (the engine logs the others at its own, a hop apart)."""


def test_a_request_larger_than_the_gpu_is_named() -> None:
    big = [RequestSpec("huge", 0.0, 500, (Segment(10),), "qa")]
    with pytest.raises(ValueError, match="request huge needs 32 KV blocks"):
        simulate_specs(big, "discard", "v0", 30)


CACHED_POLICIES = ["vllm_native", "vllm_offload", "discard", "improved_discard", "preserve", "swap", "infercept"]


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow],
          phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink])
@given(specs=workloads(), policy=st.sampled_from(CACHED_POLICIES), batching=st.sampled_from(["v0", "v1"]),
       gpu_blocks=st.integers(30, 120), tier_blocks=st.integers(0, 60), prompt_only=st.booleans(),
       link_bytes_per_s=st.sampled_from([1e6, 2e7, 2e8]), window_s=st.sampled_from([None, 0.5, 2.0]),
       overlap=st.booleans())
def test_invariants_with_the_prefix_cache(specs: list[RequestSpec], policy: str, batching: str, gpu_blocks: int,
                                          tier_blocks: int, prompt_only: bool, link_bytes_per_s: float,
                                          window_s: float | None, overlap: bool) -> None:
    """The vLLM policies (small host tiers, both offload_prompt_only settings) and every other policy with
    engine.prefix_caching on: every request ends (drain), tokens are credited, and the KV manager's blocks
    (anonymous + cached + held, host runs) are conserved on every step (check mode)."""
    gpu_blocks = max(gpu_blocks, max(-(-s.total_tokens // 16) for s in specs))
    cost = make_cost(gpu_kv_blocks=gpu_blocks, cpu_kv_blocks=20, link_bytes_per_s=link_bytes_per_s,
                     swap_overlap=overlap, prefix_caching=True)
    opts = ({"cpu_tier_gib": tier_blocks * 16 * 1000 / 2**30, "offload_prompt_only": prompt_only}
            if policy == "vllm_offload" else {})
    m = Metrics(window_s or 5.0, gpu_blocks)
    eng = Engine(simpy.Environment(), specs, cost, make_policy(policy, cost, **opts), m, batching,
                 window_s or 5.0, drain=window_s is None, check=True)
    eng.env.process(eng.run())
    eng.env.run()
    assert sum(rec.gen_tokens for rec in m.requests.values()) == eng.num_generated, "tokens not conserved"
    for s in specs:
        rec = m.requests.get(s.rid)
        if window_s is None:
            assert rec is not None and not math.isnan(rec.finish_s), f"{s.rid} did not finish"
        if rec is not None:
            assert rec.prefix_hit_tokens % 16 == 0 and rec.prefix_hit_tokens >= 0
    assert eng.pool.host is None or eng.pool.host.used_blocks <= tier_blocks
