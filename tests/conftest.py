"""Shared fixtures: a cost model with round numbers, so expected values can be worked out by hand."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import settings

from core.cost import FittedCostModel

# Property tests: a fixed set of examples by default (CI stays reproducible); HYPOTHESIS_PROFILE=explore searches
# afresh with many more.
settings.register_profile("ci", derandomize=True, max_examples=200)
settings.register_profile("explore", max_examples=3000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

SHARED = Path(__file__).resolve().parents[2] / "shared" / "workloads"
MERGED = SHARED / "merged_exp_uniform.json"
SPLITWISE = SHARED / "splitwise_conv.csv"


def make_cost(**changes: object) -> FittedCostModel:
    """T_fwd(x) = 10 ms + 0.1 ms * x; no context terms; 1 kB of KV per token over a 1 MB/s link
    (1 ms per token); 16-token blocks; S = 100."""
    base = FittedCostModel(
        name="test", const_s=0.01, per_query_token_s=1e-4, per_decode_ctx_token_s=0.0,
        per_prefill_attn_pair_s=0.0, link_bytes_per_s=1e6, kv_bytes_per_token=1000.0, gpu_kv_blocks=100,
        cpu_kv_blocks=100, block_size_tokens=16, token_budget_tokens=2048, max_num_seqs=256,
        saturation_tokens=100, max_context_tokens=2048, fit_max_query_tokens=2048,
        fit_max_decode_ctx_tokens=10**9)
    return replace(base, **changes)


@pytest.fixture
def cost() -> FittedCostModel:
    return make_cost()
