"""The pure parts of `infercept validate`: step-time errors by kind and the simulator ensemble."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest
from conftest import make_cost

from core.types import RequestSpec, Segment
from experiments.ensemble import SPEED_SCALES, simulate_ensemble, simulate_trace
from experiments.fidelity import step_time_errors, summary_of


def _step(num_decode: int, prefill_tokens: int, dur_s: float) -> dict[str, float]:
    return {"num_decode": num_decode, "decode_ctx_tokens": 0, "prefill_tokens": prefill_tokens,
            "prefill_attn_pairs": 0.0, "t0": 1.0, "t_end": 1.0 + dur_s}


def test_step_time_errors_are_signed_and_kinded() -> None:
    cost = make_cost()  # 10 ms + 0.1 ms per query token
    steps = [_step(1, 0, 0.0101), _step(5, 0, 0.0100), _step(0, 30, 0.0130), _step(2, 100, 0.0200),
             _step(0, 0, 0.001)]  # the last ran no tokens: not a step of the model
    err, kinds = step_time_errors(steps, cost)
    assert kinds == ["decode 1", "decode 4+", "chunk < 64", "chunk >= 64"]
    assert err == pytest.approx([0.0, (0.0105 - 0.0100) / 0.0100, 0.0, (0.0202 - 0.0200) / 0.0200])


def _profile(tmp_path: Path) -> str:
    cost = make_cost()
    prof = {"name": "test", "gpu": {"name": "test", "memory_bytes": 1}, "tp": 1,
            "model": {"hf": "t", "num_layers": 1, "num_heads": 1, "num_kv_heads": 1, "head_dim": 1,
                      "dtype_bytes": 2, "weight_bytes": 1, "max_context_tokens": cost.max_context_tokens},
            "engine": {k: v for k, v in asdict(cost).items() if k in (
                "block_size_tokens", "token_budget_tokens", "max_num_seqs", "saturation_tokens", "gpu_kv_blocks",
                "cpu_kv_blocks")} | {"gpu_memory_utilization": 1.0, "activation_reserve_bytes": 0,
                                     "cpu_swap_bytes": 0},
            "step": {k: getattr(cost, k) for k in ("const_s", "per_query_token_s", "per_decode_ctx_token_s",
                                                   "per_prefill_attn_pair_s")},
            "link": {"bytes_per_s": 1e6},
            "fit_range": {"max_query_tokens": 4096, "max_decode_ctx_tokens": 10**6}}
    path = tmp_path / "p.json"
    path.write_text(json.dumps(prof))
    return str(path)


def test_the_ensemble_scales_every_step(tmp_path: Path) -> None:
    one = [RequestSpec("a", 0.0, 100, (Segment(5),))]  # alone: its latency is the sum of its steps
    profile = _profile(tmp_path)
    base = summary_of(simulate_trace("discard", one, profile, 10.0, {}))
    slow = summary_of(simulate_trace("discard", one, profile, 10.0, {}, speed_scale=1.02))
    assert base["norm_latency_ms"] == pytest.approx(1000 * (0.02 + 4 * 0.0101) / 5)
    assert slow["norm_latency_ms"] == pytest.approx(1.02 * base["norm_latency_ms"])
    median, unscaled, norms = simulate_ensemble("discard", one, profile, 10.0, {})
    assert norms == pytest.approx([f * base["norm_latency_ms"] for f in SPEED_SCALES])
    assert median["norm_latency_ms"] == pytest.approx(base["norm_latency_ms"])  # the middle scale is 1
    assert summary_of(unscaled) == base
