"""The simulator's side of `infercept validate`: the trace simulated with the real engine's settings, over an
ensemble of step-time scales (SPEED_SCALES), so that a chaotic run is compared by its median."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import simpy

from core.config import build_config
from core.cost import STEP_TERMS
from core.metrics import Metrics
from core.types import RequestSpec
from experiments.fidelity import summary_of
from experiments.wander import WANDER_DRAWS, WanderingCost, draw_wander

SPEED_SCALES = (0.98, 0.99, 1.0, 1.01, 1.02)
"""The simulator ensemble: every step-time coefficient scaled by each of these. Near memory pressure a run's
latency is chaotic in the step time (preserve's norm_latency_ms at scales 0.97-1.03: 29, 30, 40, 41, 29, 31,
33 ms), while the engine's own speed varies by 2-4 % between profiles measured minutes apart; the median of
the ensemble is set against the median of the real repeats."""


def simulate_trace(policy: str, specs: list[RequestSpec], profile: str, window_s: float,
                   engine: dict[str, Any], speed_scale: float = 1.0, wander: np.ndarray | None = None) -> Metrics:
    """The simulator on ``specs`` with the real engine's settings, every step ``speed_scale`` times as long,
    and ``wander[i]`` times that again in the i-th block of the clock (``experiments.wander``; stepping every
    step, without decode jumps); the policy decides with the profile as measured, as the real engine's policy
    did. The policy's mean interception times per kind are the trace's own (``workload`` is not a
    generator's)."""
    from sim.run import load_cost, simulate

    cfg = build_config({"policy": policy, "profile": profile, "batching": "v1", "duration_s": window_s,
                        "engine": engine, "workload": "trace", "jump": wander is None})
    measured = load_cost(cfg)
    cost = dataclasses.replace(measured, **{k: getattr(measured, k) * speed_scale for k in STEP_TERMS})
    if wander is None:
        return simulate(cfg, specs=specs, cost=cost, policy_cost=measured)
    env = simpy.Environment()
    return simulate(cfg, specs=specs, cost=WanderingCost(cost, wander, env),  # type: ignore[arg-type]
                    policy_cost=measured, env=env)


def median_summary(sums: list[dict[str, float]]) -> dict[str, float]:
    """Metric-wise median of several runs' summaries."""
    return {k: float(np.median([x[k] for x in sums])) for k in sums[0]}


def simulate_ensemble(policy: str, specs: list[RequestSpec], profile: str | list[str], window_s: float,
                      engine: dict[str, Any]) -> tuple[dict[str, float], Metrics, list[float]]:
    """(metric-wise median summary over SPEED_SCALES, the unscaled run, every run's norm_latency_ms). Several
    profiles (one measured before each round of real runs): the ensemble of each, pooled."""
    profiles = [profile] if isinstance(profile, str) else profile
    runs = [simulate_trace(policy, specs, p, window_s, engine, f) for p in profiles for f in SPEED_SCALES]
    sums = [summary_of(m) for m in runs]
    return median_summary(sums), runs[SPEED_SCALES.index(1.0)], [x["norm_latency_ms"] for x in sums]


def simulate_calibrated(policy: str, specs: list[RequestSpec], runs: list[tuple[str, float]], window_s: float,
                        engine: dict[str, Any], wanders: list[np.ndarray] | None = None
                        ) -> list[list[dict[str, float]]]:
    """The dynamics alone: each real run re-simulated with its profile and every step-time coefficient scaled
    by the run's own fitted scale (``fidelity.speed_scale``: measured over predicted time of its steps), so
    that the machine's speed during the run is the simulator's; as the uncalibrated column, each at the
    ensemble's scales around it (fitted scale x SPEED_SCALES), so that a chaotic run is compared by its
    neighbourhood, not by one draw. Per real run, its neighbourhood's summaries (``fidelity.compare_rows``
    takes the median of all and their spread). ``runs``: (profile, scale) per real run. ``wanders``: per real
    run, its speed's blocks (``wander.wander_blocks``): each re-simulation's speed then wanders as the run's
    did, WANDER_DRAWS draws at each scale, blocks drawn with replacement (seeded by the run's place in
    ``runs``, the scale's in SPEED_SCALES and the draw's)."""
    if wanders is None:
        return [[summary_of(simulate_trace(policy, specs, p, window_s, engine, f * s)) for s in SPEED_SCALES]
                for p, f in runs]
    return [[summary_of(simulate_trace(policy, specs, p, window_s, engine, f * s,
                                       draw_wander(wanders[k], window_s, np.random.default_rng([k, j, d]))))
             for j, s in enumerate(SPEED_SCALES) for d in range(WANDER_DRAWS)] for k, (p, f) in enumerate(runs)]
