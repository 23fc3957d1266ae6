"""The simulator's side of `infercept validate`: the trace simulated with the real engine's settings, over an
ensemble of step-time scales (SPEED_SCALES), so that a chaotic run is compared by its median."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from core.config import build_config
from core.metrics import Metrics
from core.types import RequestSpec
from experiments.fidelity import summary_of

SPEED_SCALES = (0.98, 0.99, 1.0, 1.01, 1.02)
"""The simulator ensemble: every step-time coefficient scaled by each of these. Near memory pressure a run's
latency is chaotic in the step time (preserve's norm_latency_ms at scales 0.97-1.03: 29, 30, 40, 41, 29, 31,
33 ms), while the engine's own speed varies by 2-4 % between profiles measured minutes apart; the median of
the ensemble is set against the median of the real repeats."""


def simulate_trace(policy: str, specs: list[RequestSpec], profile: str, window_s: float,
                   engine: dict[str, Any], speed_scale: float = 1.0) -> Metrics:
    """The simulator on ``specs`` with the real engine's settings, every step ``speed_scale`` times as long."""
    from sim.run import load_cost, simulate

    cfg = build_config({"policy": policy, "profile": profile, "batching": "v1", "duration_s": window_s,
                        "engine": engine})
    cost = load_cost(cfg)
    cost = dataclasses.replace(cost, **{k: getattr(cost, k) * speed_scale for k in
                                        ("const_s", "per_query_token_s", "per_decode_ctx_token_s",
                                         "per_prefill_attn_pair_s")})
    return simulate(cfg, specs=specs, cost=cost)


def simulate_ensemble(policy: str, specs: list[RequestSpec], profile: str, window_s: float,
                      engine: dict[str, Any]) -> tuple[dict[str, float], Metrics, list[float]]:
    """(metric-wise median summary over SPEED_SCALES, the unscaled run, every run's norm_latency_ms)."""
    runs = [simulate_trace(policy, specs, profile, window_s, engine, f) for f in SPEED_SCALES]
    sums = [summary_of(m) for m in runs]
    median = {k: float(np.median([x[k] for x in sums])) for k in sums[0]}
    return median, runs[SPEED_SCALES.index(1.0)], [x["norm_latency_ms"] for x in sums]
