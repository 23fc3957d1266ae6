"""Profiles and the fitted cost model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import make_cost

from core.cost import (
    PROFILE_DIR,
    BatchShape,
    FittedCostModel,
    ProfileError,
    profile_path,
    warn_out_of_range,
)
from core.engine_keys import ENGINE_KEYS


def test_every_shipped_profile_loads_and_states_its_provenance() -> None:
    names = sorted(p.stem for p in PROFILE_DIR.glob("*.json"))
    for needed in ("a100-gptj-6b-tp1", "a100-vicuna-13b-tp1", "a100-vicuna-13b-tp2", "a100-80gb-gptj-6b-tp1",
                   "a100-80gb-llama3-70b-tp4", "a100-llama3-70b-tp4"):
        assert needed in names
    for name in names:
        m = FittedCostModel.from_profile(PROFILE_DIR / f"{name}.json")
        assert m.gpu_kv_blocks > 0 and m.step_s(BatchShape(8, 8000)) > m.const_s
        prov = json.loads((PROFILE_DIR / f"{name}.json").read_text())["provenance"]
        assert {"step.const_s", "step.per_query_token_s", "link.bytes_per_s", "engine"} <= set(prov)


def test_gptj_a100_numbers_by_hand() -> None:
    m = FittedCostModel.from_profile(profile_path("gptj-6b", "a100", 1))
    # reference line T_fwd(x) = 0.0463 x + 10 ms; T_fwd(384) = 27.78 ms
    assert m.fwd_s(384) == pytest.approx(0.0277792)
    # KV per token: 2 * 28 layers * 16 heads * 256 dims * 2 bytes = 458752 B (0.4375 MiB)
    assert m.kv_bytes_per_token == 458752
    # KV space: 40 GiB * 0.9 - 12.1 GB weights - 1 GiB reserve, in 64-token blocks
    assert m.gpu_kv_blocks == int((40 * 2**30 * 0.9 - 12.1e9 - 2**30) // (458752 * 64))
    # swap budget per saturated step: 27.78 ms * 10 GB/s / 458752 B = 605 tokens (reference: ~605)
    assert m.swap_tokens_in(m.fwd_s(384)) == 605


def test_step_time_terms() -> None:
    m = make_cost(per_decode_ctx_token_s=1e-6, per_prefill_attn_pair_s=1e-9)
    shape = BatchShape(num_decode=4, decode_ctx_tokens=1000, prefill_tokens=10, prefill_attn_pairs=55.0)
    assert m.step_s(shape) == pytest.approx(0.01 + 1e-4 * 14 + 1e-6 * 1000 + 1e-9 * 55)
    assert m.swap_s(500) == pytest.approx(0.5)


def test_out_of_range_warns() -> None:
    m = make_cost(fit_max_query_tokens=100)
    with pytest.warns(RuntimeWarning, match="outside the fitted range"):
        warn_out_of_range(m, BatchShape(prefill_tokens=500))


def test_bad_profiles_are_named(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="shipped"):
        profile_path("gpt5", "a100", 1)
    p = tmp_path / "p.json"
    prof = json.loads(profile_path("gptj-6b", "a100", 1).read_text())
    del prof["step"]["const_s"]
    p.write_text(json.dumps(prof))
    with pytest.raises(ProfileError, match="p.json: missing key 'const_s'"):
        FittedCostModel.from_profile(p)
    for gap, why in ((-0.001, "expected a number >= 0"), (1.0, "exceeds step.const_s")):
        bad = json.loads(profile_path("gptj-6b", "a100", 1).read_text())
        bad["step"]["busy_gap_s"] = gap
        p.write_text(json.dumps(bad))
        with pytest.raises(ProfileError, match=f"p.json: step.busy_gap_s = {gap!r}.*{why}"):
            FittedCostModel.from_profile(p)
    older = json.loads(profile_path("gptj-6b", "a100", 1).read_text())  # measured before step.busy_gap_s existed
    older["provenance"]["fit"] = {"busy_gap_s_added_to_const": 0.0002}
    p.write_text(json.dumps(older))
    assert FittedCostModel.from_profile(p).busy_gap_s == 0.0002
    older["step"]["busy_gap_s"] = 0.0003  # the key, where present, wins
    p.write_text(json.dumps(older))
    assert FittedCostModel.from_profile(p).busy_gap_s == 0.0003
    del older["step"]["busy_gap_s"]
    older["provenance"]["fit"]["busy_gap_s_added_to_const"] = "?"
    p.write_text(json.dumps(older))
    with pytest.raises(ProfileError, match=r"provenance.fit.busy_gap_s_added_to_const = '\?'"):
        FittedCostModel.from_profile(p)
    assert FittedCostModel.from_profile(profile_path("gptj-6b", "a100", 1)).busy_gap_s == 0.0  # a derived profile
    prof = json.loads((PROFILE_DIR / "a100-80gb-llama3-70b-tp4.json").read_text())
    prof["gpu"]["memory_bytes"] = 24 * 2**30  # 35 GB of weights per GPU do not fit
    p.write_text(json.dumps(prof))
    with pytest.raises(ProfileError, match="does not fit"):
        FittedCostModel.from_profile(p)


def _gptj_with(tmp_path: Path, **engine: object) -> Path:
    """The shipped GPT-J profile with its engine table changed (a key set to None is removed)."""
    prof = json.loads(profile_path("gptj-6b", "a100", 1).read_text())
    prof["engine"] = {k: v for k, v in {**prof["engine"], **engine}.items() if v is not None}
    p = tmp_path / "p.json"
    p.write_text(json.dumps(prof))
    return p


@pytest.mark.parametrize("key", ["gpu_memory_utilization", "activation_reserve_bytes", "block_size_tokens",
                                 "token_budget_tokens", "max_num_seqs", "saturation_tokens", "cpu_swap_bytes"])
def test_a_missing_engine_key_is_named(key: str, tmp_path: Path) -> None:
    p = _gptj_with(tmp_path, **{key: None})
    with pytest.raises(ProfileError, match=rf"p.json: missing key 'engine.{key}'"):
        FittedCostModel.from_profile(p)


def test_direct_block_counts_need_no_memory_sizes(tmp_path: Path) -> None:
    p = _gptj_with(tmp_path, gpu_memory_utilization=None, cpu_swap_bytes=None, gpu_kv_blocks=50, cpu_kv_blocks=0)
    m = FittedCostModel.from_profile(p)
    assert (m.gpu_kv_blocks, m.cpu_kv_blocks) == (50, 0)


@pytest.mark.parametrize("engine, message", [
    ({"gpu_kv_blok": 10}, "engine.gpu_kv_blok: unknown engine key"),
    ({"swap_overlap": "no"}, "engine.swap_overlap = 'no': expected true or false"),
    ({"gpu_kv_blocks": 0}, "engine.gpu_kv_blocks = 0: expected an integer > 0"),
    ({"token_budget_tokens": 512.5}, "engine.token_budget_tokens = 512.5"),
    ({"cpu_kv_blocks": -1}, "engine.cpu_kv_blocks = -1: expected an integer >= 0"),
    ({"gpu_memory_utilization": 1.5}, "engine.gpu_memory_utilization = 1.5"),
])
def test_bad_engine_keys_are_named_in_the_profile_and_in_overrides(engine, message, tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match=r"p.json: " + message.replace(".", r"\.")):
        FittedCostModel.from_profile(_gptj_with(tmp_path, **engine))
    with pytest.raises(ProfileError, match=r"\(overrides\): " + message.replace(".", r"\.")):
        FittedCostModel.from_profile(profile_path("gptj-6b", "a100", 1), engine)


def test_engine_keys_cover_every_shipped_profile_and_the_overrides() -> None:
    for path in PROFILE_DIR.glob("*.json"):
        assert set(json.loads(path.read_text())["engine"]) <= set(ENGINE_KEYS), path.name
    m = FittedCostModel.from_profile(profile_path("gptj-6b", "a100", 1),
                                     {"gpu_kv_blocks": 40, "cpu_kv_blocks": 8, "token_budget_tokens": 4096,
                                      "cpu_swap_bytes": 2**30, "swap_overlap": False})
    assert (m.gpu_kv_blocks, m.cpu_kv_blocks, m.token_budget_tokens, m.swap_overlap) == (40, 8, 4096, False)


def test_host_terms_and_the_slope_beyond_s_by_hand() -> None:
    from dataclasses import replace

    from conftest import make_cost

    from core.cost import BatchShape

    cost = replace(make_cost(), host_per_step_s=2e-3, host_per_seq_s=1e-4, excess_query_token_s=5e-5)
    # 3 decoders and 2 prefill chunks of 150 tokens: 303 query tokens, 203 of them beyond S = 100
    b = BatchShape(3, 0, 300, 0.0, 2)
    assert cost.gpu_s(b) == pytest.approx(0.01 + 1e-4 * 303 + 5e-5 * 203)
    assert cost.host_s(b) == pytest.approx(2e-3 + 1e-4 * 5)
    assert cost.step_s(b) == pytest.approx(cost.gpu_s(b) + cost.host_s(b))
    assert cost.fwd_s(50) == pytest.approx(0.015)  # T_fwd of the policy: the reference's line, no host terms


def test_the_per_prefill_chunk_term_by_hand() -> None:
    """A profile's step.per_prefill_seq_s is charged once per request with a prefill chunk, in the forward pass;
    an engine-log step's chunks are its scheduled requests that are not decodes."""
    import json as _json

    from conftest import make_cost

    from core.cost import BatchShape

    cost = make_cost(per_prefill_seq_s=2e-3)
    step = {"num_decode": 2, "decode_ctx_tokens": 40, "prefill_tokens": 40, "prefill_attn_pairs": 0.0,
            "sched": {"d0": 1, "d1": 1, "p": 32, "r": 8}}
    b = BatchShape.of_step(step)
    assert (b.num_decode, b.num_prefill_seqs, b.query_tokens) == (2, 2, 42)
    assert cost.step_s(b) == pytest.approx(0.01 + 1e-4 * 42 + 2 * 2e-3)
    assert cost.step_s(BatchShape(num_decode=3)) == pytest.approx(0.01 + 3e-4)  # decodes pay no chunk cost
    from core.cost import STEP_TERMS
    from core.scale import SCALABLE

    assert set(STEP_TERMS) <= set(SCALABLE)  # profile_scale (and validate's speed scale) reach every term
    path = PROFILE_DIR / "a100-gptj-6b-tp1.json"
    assert "per_prefill_seq_s" not in _json.loads(path.read_text())["step"]
    assert FittedCostModel.from_profile(path).per_prefill_seq_s == 0.0  # a profile without the term: 0


def test_the_profile_fit_recovers_a_per_chunk_cost() -> None:
    """fit_steps on steps made from known coefficients (2 ms, 0.1 ms per query token, 1 us per decode context
    token, 10 ns per prefill attention pair, 3 ms per prefill chunk) returns them."""
    from real.profile import TERMS, fit_steps

    def step(decodes: int, ctx: int, chunks: tuple[int, ...]) -> dict[str, object]:
        q = decodes + sum(chunks)
        pairs = sum(c * (ctx + (c + 1) / 2) for c in chunks)  # each chunk over ctx tokens computed before it
        dur = 0.002 + 1e-4 * q + 1e-6 * decodes * ctx + 1e-8 * pairs + 3e-3 * len(chunks)
        sched = {f"d{i}": 1 for i in range(decodes)} | {f"p{i}": c for i, c in enumerate(chunks)}
        return {"num_decode": decodes, "decode_ctx_tokens": decodes * ctx, "prefill_tokens": sum(chunks),
                "prefill_attn_pairs": pairs, "sched": sched, "t0": 0.0, "t_end": dur}

    steps = [step(d, ctx, c) for d in (0, 1, 4, 16) for ctx in (64, 1024) for c in ((), (8,), (32, 256), (512,))
             if d or c]
    coef, stats = fit_steps(steps)
    assert list(coef) == list(TERMS)
    assert [coef[t] for t in TERMS] == pytest.approx([0.002, 1e-4, 1e-6, 1e-8, 3e-3], rel=1e-6)
    assert stats["median_rel_error"] == pytest.approx(0.0, abs=1e-9)
