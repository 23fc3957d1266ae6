"""A machine whose speed wanders within a run, as the validation's calibrated re-simulations see it.

A real run's steps miss the cost model, after the run's own fitted scale (``fidelity.speed_scale``), by a
residual that wanders slowly rather than jittering step by step: in the default scenario's runs of
2026-12-07 the log residuals of consecutive steps correlate at 0.5-0.8, still at 0.1-0.4 fifty steps apart,
and their means over 200 steps spread by 3-6 % (-14 to +15 % at the extremes). A re-simulation at one fixed
speed leaves that out, and near memory pressure it decides which request is preempted when: on one trace and
profile, preserve's simulated latency at a fitted scale of 1.15 was 28 ms/token at four of the ensemble's five
fixed speeds, and 50-71 ms/token in 6 of 12 re-simulations whose speed wandered by a run's own amounts.

``wander_blocks`` measures a run's wander: its residuals' means over WANDER_PERIOD_S blocks of the engine's
clock. ``WanderingCost`` replays a wander in the simulator: each block of the simulated clock takes one such
factor, drawn with replacement from the run's own blocks (``draw_wander``), so that a re-simulation's speed
wanders by the amounts the run's did, in another order. The blocks also carry whatever the cost model misses
systematically over a block (a stretch of long prefills, say); the spread they give is an upper bound.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import simpy

from core.cost import BatchShape, FittedCostModel
from experiments.fidelity import measured_s, predicted_s

WANDER_PERIOD_S = 2.0
"""The block of the engine's clock over which a run's speed is taken as constant (~130 steps here)."""
WANDER_DRAWS = 4
"""Wandering re-simulations of a real run at each of the ensemble's speed scales (``ensemble.SPEED_SCALES``)."""


def wander_blocks(steps: list[dict[str, Any]], cost: FittedCostModel, scale: float,
                  period_s: float = WANDER_PERIOD_S) -> np.ndarray:
    """One run's speed per ``period_s`` block of its engine log, relative to the run as a whole: exp of the
    mean of log(measured / (``scale`` x predicted)) over the steps with tokens that start in each block,
    centred to a geometric mean of 1 (the run's overall speed is ``scale``'s); blocks without such steps are
    left out; no block: [1.0]."""
    busy = [s for s in steps if s["num_decode"] + s["prefill_tokens"]]
    if not busy:
        return np.ones(1)
    t0 = busy[0]["t0"]
    block = np.array([int((s["t0"] - t0) // period_s) for s in busy])
    resid = log_residuals(busy, cost, scale)
    means = np.array([resid[block == b].mean() for b in np.unique(block)])
    return np.exp(means - means.mean())


def log_residuals(steps: list[dict[str, Any]], cost: FittedCostModel, scale: float) -> np.ndarray:
    """log(measured / (``scale`` x predicted)) of every step with tokens, in the log's order."""
    return np.array([math.log(measured_s(s) / (scale * predicted_s(s, cost))) for s in steps
                     if s["num_decode"] + s["prefill_tokens"]])


def autocorrelation(x: np.ndarray, lag: int) -> float:
    """The correlation of ``x`` with itself ``lag`` places later (NaN when too short)."""
    return float(np.corrcoef(x[:-lag], x[lag:])[0, 1]) if len(x) > lag + 1 else math.nan


def draw_wander(blocks: np.ndarray, window_s: float, rng: np.random.Generator,
                period_s: float = WANDER_PERIOD_S) -> np.ndarray:
    """Factors for every ``period_s`` block of a ``window_s`` window, drawn with replacement from ``blocks``."""
    return rng.choice(np.asarray(blocks, dtype=float), size=int(window_s // period_s) + 1)


@dataclasses.dataclass(frozen=True, slots=True)
class WanderingCost:
    """``base``'s cost model, whose steps (forward pass and host work) take ``factors[i]`` times as long in the
    i-th ``period_s`` of ``env``'s clock (the last factor beyond them); copies keep ``base``'s link. For the
    simulator without decode jumps (``RunConfig.jump = False``), whose every step asks its duration."""

    base: FittedCostModel
    factors: np.ndarray
    env: simpy.Environment
    period_s: float = WANDER_PERIOD_S

    def _factor(self) -> float:
        return float(self.factors[min(int(self.env.now // self.period_s), len(self.factors) - 1)])

    def step_s(self, batch: BatchShape) -> float:
        """``base.step_s`` at the current block's speed."""
        return self.base.step_s(batch) * self._factor()

    def gpu_s(self, batch: BatchShape) -> float:
        """``base.gpu_s`` at the current block's speed."""
        return self.base.gpu_s(batch) * self._factor()

    def host_s(self, batch: BatchShape) -> float:
        """``base.host_s`` at the current block's speed."""
        return self.base.host_s(batch) * self._factor()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.base, name)
