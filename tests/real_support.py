"""Helpers of the real-engine tests: the tiny random-weight model, a cost profile for it, and one run."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from core.cost import FittedCostModel
from core.types import RequestSpec
from real.collect import build_metrics, read_engine_log
from real.driver import replay
from real.engine import EngineSettings
from real.model import SIZES, write_model

BLOCK_TOKENS = 32


def tiny_model(folder: Path) -> str:
    """The 4-layer random-weight Llama the tests serve (float32, written once per session)."""
    return str(write_model(folder / "llama-tiny", SIZES["tiny"]))


def tiny_profile(folder: Path, link_bytes_per_s: float = 5e9, name: str = "tiny-profile.json") -> str:
    """A cost profile for the tiny model (round numbers: InferCept's policy input, not a measurement)."""
    size = SIZES["tiny"]
    prof = {
        "name": "test-llama-tiny-tp1", "gpu": {"name": "test", "memory_bytes": 2**30},
        "model": {"num_layers": size.num_layers, "num_heads": size.num_heads, "num_kv_heads": size.num_kv_heads,
                  "head_dim": size.head_dim, "dtype_bytes": 4, "weight_bytes": 4 * size.num_params,
                  "max_context_tokens": size.max_context_tokens},
        "tp": 1,
        "engine": {"gpu_memory_utilization": 1.0, "activation_reserve_bytes": 0, "block_size_tokens": BLOCK_TOKENS,
                   "token_budget_tokens": 256, "max_num_seqs": 256, "saturation_tokens": 256,
                   "cpu_swap_bytes": 0, "gpu_kv_blocks": 128, "cpu_kv_blocks": 128},
        "step": {"const_s": 0.005, "per_query_token_s": 1e-4, "per_decode_ctx_token_s": 1e-6,
                 "per_prefill_attn_pair_s": 1e-7},
        "link": {"bytes_per_s": link_bytes_per_s}, "fit_range": {"max_query_tokens": 256, "max_decode_ctx_tokens": 10**6},
    }
    path = folder / name
    path.write_text(json.dumps(prof))
    return str(path)


@dataclasses.dataclass
class RealRun:
    """What one real run left: output tokens, Metrics, engine step records and KV events."""

    tokens: dict[str, list[int]]
    metrics: Any
    steps: list[dict[str, Any]]
    events: list[dict[str, Any]]


def run_real(model_dir: str, profile: str, policy: str, specs: list[RequestSpec], log: Path,
             kv_blocks: int = 128, budget: int = 256, host_blocks: int = 128, link_bytes_per_s: float = 0.0,
             policy_options: dict[str, Any] | None = None, max_num_seqs: int = 256) -> RealRun:
    """Replay ``specs`` to the end on the tiny model under ``policy`` with ``policy_options`` (swap connector
    for swap and infercept, its copies throttled to ``link_bytes_per_s`` if given)."""
    overrides = {"gpu_kv_blocks": kv_blocks, "cpu_kv_blocks": host_blocks, "swap_overlap": False}
    s = EngineSettings(model_dir, policy=policy, profile=profile, kv_blocks=kv_blocks,
                       host_blocks=host_blocks if policy in ("swap", "infercept", "mars") else 0, token_budget_tokens=budget,
                       max_context_tokens=(kv_blocks - 1) * BLOCK_TOKENS, log_path=str(log),
                       profile_overrides=overrides, link_bytes_per_s=link_bytes_per_s,
                       policy_options=dict(policy_options or {}), max_num_seqs=max_num_seqs)
    t0, client = replay(s, specs, float("inf"), SIZES["tiny"].vocab)
    m, steps = build_metrics(specs, t0, client, log, float("inf"), kv_blocks,
                             FittedCostModel.from_profile(profile, overrides))
    _, events = read_engine_log(log)
    return RealRun(client.tokens, m, steps, events)
