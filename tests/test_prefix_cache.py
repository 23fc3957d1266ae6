"""The KV manager's prefix cache and host tier, and the vllm_native / vllm_offload policies, on hand-worked
scenarios (test cost: prefill of x tokens 0.01 + 1e-4 x s, a decode step of n requests 0.01 + 1e-4 n s,
16-token blocks, 1 kB of KV per token)."""

from __future__ import annotations

import math

import pytest
import simpy
from conftest import make_cost

from core.config import ConfigError, RunConfig, build_config
from core.metrics import Metrics
from core.policy import make_policy
from core.summary import summarize
from core.types import RequestSpec, Segment
from sim.engine import Engine
from sim.kvmanager import KvManager
from sim.offload import HostTier, host_blocks
from sim.run import load_cost, simulate

GIB_PER_BLOCK = 16 * 1000 / 2**30  # one 16-token block of the test cost, in GiB


def run(specs: list[RequestSpec], policy: str, cost=None, batching: str = "v1", **opts) -> tuple[Metrics, Engine]:
    cost = cost or make_cost()
    m = Metrics(100.0, cost.gpu_kv_blocks)
    env = simpy.Environment()
    eng = Engine(env, specs, cost, make_policy(policy, cost, **opts), m, batching, 100.0, drain=True, check=True)
    env.process(eng.run())
    env.run()
    return m, eng


def test_lru_eviction_order_on_a_six_block_pool() -> None:
    kv = KvManager(6, 0, 16, prefix_caching=True)
    q = kv.cache.queue
    kv.allocate_gpu(3)  # a: 40 tokens computed -> 2 full blocks + 1 partial
    kv.allocate_gpu(2)  # b: 32 tokens computed -> 2 full blocks
    assert list(q.values()) == [1] and kv.gpu_free == 1  # one never-used block left
    kv.free_gpu(3, "a", 2)  # a's partial tail joins the free anonymous run, then a's 2 full blocks
    kv.free_gpu(2, "b", 2)
    assert [(k if isinstance(k, str) else "-", n) for k, n in q.items()] == [("-", 2), ("a", 2), ("b", 2)]
    assert kv.gpu_free == 6 and kv.cached_gpu_blocks == 4  # cached blocks count as free
    kv.allocate_gpu(3)  # pops the 2 anonymous blocks, then a's tail block (a's block 1)
    assert kv.lookup("a", 50) == (1, 0) and kv.lookup("b", 100) == (2, 0)
    kv.allocate_gpu(1)  # a's block 0: a has nothing cached any more
    assert kv.lookup("a", 50) == (0, 0) and list(q.items()) == [("b", 2)]
    assert kv.lookup("b", 32) == (1, 0)  # a hit leaves one token to compute: at most (32 - 1) // 16 blocks
    kv.take_hit("b", 2, 0)  # b is admitted with 33 tokens: both blocks held again
    assert kv.gpu_free == 0 and not q
    kv.check_conservation(6, 0)


def test_host_tier_is_lru_by_request_tail_blocks_first() -> None:
    host = HostTier(10)
    assert host.store("a", 6) == 6 and host.store("b", 3) == 3
    assert host.store("a", 6) == 0  # already resident: nothing copied, a becomes the most recent
    assert host.store("c", 4) == 4  # 3 over: the least recent run (b) loses its 3 blocks
    assert list(host.runs.items()) == [("a", 6), ("c", 4)]
    host.touch("a")
    assert host.store("c", 6) == 2 and list(host.runs.items()) == [("a", 4), ("c", 6)]  # a's tail goes
    assert host.store("d", 15) == 10 and list(host.runs.items()) == [("d", 10)]  # a run never outgrows the tier
    host.check()


A = RequestSpec("a", 0.0, 100, (Segment(3, 1.0, 10, "qa"), Segment(2)), "qa")
B = RequestSpec("b", 0.5, 250, (Segment(2),), "plain")  # 16 blocks; runs and ends while a is paused


def test_native_resume_recomputes_only_what_was_evicted() -> None:
    # a pauses at 0.0402 with 102 tokens computed: 6 full blocks stay cached, its partial 7th is freed. On a
    # 20-block GPU b's 16 blocks take the 14 free ones and a's last 2 cached blocks, so a resumes with 113
    # tokens on a hit of its first 4 blocks: 64 tokens; it recomputes 102 - 64 = 38 and prefills 49
    m, _ = run([A, B], "vllm_native", make_cost(gpu_kv_blocks=20))
    rec = m.requests["a"]
    assert (rec.prefix_hit_tokens, rec.recomputed_tokens) == (64, 38)
    assert rec.resume_latency_s == [pytest.approx(0.01 + 49e-4)]
    assert (1.0402, "a", "prefix_hit", 64) in m.events
    # with no pressure the whole cached run is hit: 96 tokens, 6 recomputed, 17 prefilled
    m, _ = run([A], "vllm_native")
    assert (m.requests["a"].prefix_hit_tokens, m.requests["a"].recomputed_tokens) == (96, 6)
    assert m.requests["a"].resume_latency_s == [pytest.approx(0.01 + 17e-4)]


def test_engine_prefix_caching_makes_any_discard_lazy() -> None:
    plain, _ = run([A], "discard")
    cached, _ = run([A], "discard", make_cost(prefix_caching=True))
    assert plain.requests["a"].recomputed_tokens == 102 and plain.requests["a"].prefix_hit_tokens == 0
    assert (cached.requests["a"].prefix_hit_tokens, cached.requests["a"].recomputed_tokens) == (96, 6)


def test_offload_reloads_what_the_gpu_cache_lost() -> None:
    # a's 6 prompt blocks are written through at its prefill, b's 15 at its own; a 20-block host tier then
    # drops a's last block (the least recent run, tail first). At the resume the GPU hits 4 blocks and the
    # host loads block 4 (16 tokens over a 1e8 B/s link: 0.16 ms, a step of its own: loads are
    # asynchronous), so a recomputes 102 - 80 = 22 and prefills 33 tokens in the next step, whose store of
    # a's blocks 5-6 hides behind it
    cost = make_cost(gpu_kv_blocks=20, link_bytes_per_s=1e8)
    m, eng = run([A, B], "vllm_offload", cost, cpu_tier_gib=20 * GIB_PER_BLOCK)
    rec = m.requests["a"]
    assert (rec.prefix_hit_tokens, rec.recomputed_tokens) == (80, 22)
    assert [(e, v) for t, rid, e, v in m.events if rid == "a" and e in ("prefix_hit", "reload")] == [
        ("prefix_hit", 64), ("reload", 16)]
    assert rec.resume_latency_s == [pytest.approx(16e-5 + 0.01 + 33e-4)]
    assert m.notes["host_stored_tokens"] == 96 + 240 + 32 and m.notes["host_reloaded_tokens"] == 16
    assert list(eng.pool.host.runs.items()) == [("b", 13), ("a", 7)]  # a's resume stored 2 more, b gave 2
    native, _ = run([A, B], "vllm_native", make_cost(gpu_kv_blocks=20))
    assert rec.resume_latency_s[0] < native.requests["a"].resume_latency_s[0]


def test_write_through_stores_take_link_time() -> None:
    # at 1 ms per token the prefill's store of a's 6 prompt blocks (96 ms) outlasts its 20 ms forward pass,
    # which waits for it; the resume hits all 6 blocks on the GPU and its prefill of 17 tokens (11.7 ms)
    # waits for the store of block 6 (16 ms)
    m, _ = run([A], "vllm_offload", cpu_tier_gib=100 * GIB_PER_BLOCK)
    rec = m.requests["a"]
    assert rec.first_token_s == pytest.approx(0.096)
    assert rec.resume_latency_s == [pytest.approx(0.016)] and rec.prefix_hit_tokens == 96
    assert m.steps["stall_s"].sum() == pytest.approx((0.096 - 0.02) + (0.016 - 0.0117))


def test_offload_prompt_only_decides_what_decoding_stores() -> None:
    spec = [RequestSpec("a", 0.0, 94, (Segment(5, 1.0, 10, "qa"), Segment(10)), "qa")]
    # prompt only: 5 blocks at the prefill (80 tokens), block 5 when the reopened prompt (109 tokens) is
    # computed; every token: block 5 as decoding fills it, and block 6 while the last segment decodes
    only, _ = run(spec, "vllm_offload", cpu_tier_gib=100 * GIB_PER_BLOCK)
    every, eng = run(spec, "vllm_offload", cpu_tier_gib=100 * GIB_PER_BLOCK, offload_prompt_only=False)
    assert only.notes["host_stored_tokens"] == 96 and every.notes["host_stored_tokens"] == 112
    assert eng.pool.host.runs["a"] == 7


def test_vllm_native_is_never_worse_than_discard_under_the_same_batching() -> None:
    specs = [RequestSpec(f"r{i}", 0.05 * i, 200 + 30 * i, (Segment(4, 0.3, 20, "qa"), Segment(6, 0.2, 5, "qa"),
                                                               Segment(3)), "qa") for i in range(6)]
    cost = make_cost(gpu_kv_blocks=100)  # tight enough that some cached blocks are evicted before their resume
    native = summarize(run(specs, "vllm_native", cost)[0])["overall"]
    discard = summarize(run(specs, "discard", cost)[0])["overall"]
    assert native["prefix_hit_tokens"] > 0 and discard["prefix_hit_tokens"] == 0
    assert 0 < native["recomputed_tokens"] < discard["recomputed_tokens"]
    assert native["norm_latency_ms"] <= discard["norm_latency_ms"]


def test_policies_force_their_traits_and_the_tier_defaults_to_the_swap_space() -> None:
    cost = make_cost(cpu_kv_blocks=37)
    off = make_policy("vllm_offload", cost)
    assert off.traits.prefix_caching and off.traits.batching == "v1" and off.traits.offload_prompt_only
    assert host_blocks(cost, off.traits.cpu_tier_gib) == 37
    gptj = load_cost(build_config())
    assert host_blocks(gptj, make_policy("vllm_offload", gptj).traits.cpu_tier_gib) == gptj.cpu_kv_blocks
    assert make_policy("vllm_native", cost).traits.cpu_tier_gib == 0.0
    # v1 whatever the run's batching says: a v0 run of vllm_native mixes decodes and prefills
    specs = [RequestSpec("long", 0.0, 50, (Segment(40),)), RequestSpec("b", 0.05, 1000, (Segment(2),))]
    m, _ = run(specs, "vllm_native", batching="v0")
    assert any(n and p for n, p in zip(m.steps["num_decode"], m.steps["prefill_tokens"]))
    with pytest.raises(ValueError, match="cpu_tier_gib"):
        make_policy("vllm_offload", cost, cpu_tier_gib=-1.0)


def test_prefix_caching_is_an_engine_key() -> None:
    assert build_config(overrides=["engine.prefix_caching=true"]).engine == {"prefix_caching": True}
    assert load_cost(build_config(overrides=["engine.prefix_caching=true"])).prefix_caching
    with pytest.raises(ConfigError, match="engine.prefix_caching = 1: expected true or false"):
        build_config(overrides=["engine.prefix_caching=1"])
    with pytest.raises(ConfigError, match="engine.prefix_cache: unknown engine key"):
        build_config(overrides=["engine.prefix_cache=true"])
    with pytest.raises(ConfigError, match="offload_prompt_only"):
        build_config(overrides=["policy=vllm_offload", "policy_options.offload_prompt_only=1"])


def test_summary_has_prefix_hits_per_kind() -> None:
    m, _ = run([A, B], "vllm_native", make_cost(gpu_kv_blocks=20))
    s = summarize(m)
    assert s["overall"]["prefix_hit_tokens"] == 64
    assert s["by_kind"]["qa"]["prefix_hit_tokens"] == 64 and s["by_kind"]["plain"]["prefix_hit_tokens"] == 0
    assert not math.isnan(s["overall"]["norm_latency_ms"])


@pytest.mark.parametrize(("policy", "options"), [
    ("vllm_native", {}), ("vllm_offload", {}), ("vllm_offload", {"offload_prompt_only": False}),
    ("vllm_offload", {"cpu_tier_gib": 0.5})])  # 0.5 GiB: 18 blocks of GPT-J, a host tier that evicts
def test_jumping_and_stepping_give_the_same_summary(policy: str, options: dict) -> None:
    # a small KV space (about 180 blocks) so that cached blocks are evicted within the minute
    cfg = RunConfig(policy=policy, rate_rps=2.5, duration_s=60.0, seed=3, policy_options=options,
                    engine={"gpu_memory_utilization": 0.42})
    jumped = simulate(cfg)
    stepped = simulate(RunConfig(**{**cfg.to_dict(), "jump": False}))
    assert len(jumped.steps["count"]) < len(stepped.steps["count"])
    assert sum(jumped.steps["count"]) == sum(stepped.steps["count"])
    assert {k: v for k, v in jumped.notes.items() if k != "step_rows"} == {
        k: v for k, v in stepped.notes.items() if k != "step_rows"}
    a, b = summarize(jumped)["overall"], summarize(stepped)["overall"]
    assert a["prefix_hit_tokens"] > 0
    for k, v in a.items():
        assert (math.isnan(v) and math.isnan(b[k])) or v == pytest.approx(b[k], rel=1e-9, abs=1e-9), k
