"""A machine whose speed wanders within a run, as the validation's calibrated re-simulations see it.

A real run's steps miss the cost model, after the run's own fitted scale (``fidelity.speed_scale``), by a
residual that wanders slowly rather than jittering step by step: in the default scenario's preserve runs of
2026-12-07 (``docs/results/wander-modes.md``) the log residuals of consecutive steps correlate at 0.55-0.79,
still at 0.19-0.36 fifty steps apart, and their means over 2-s blocks spread by 3.0-5.6 %. A re-simulation at
one fixed speed leaves that out, and near memory pressure it decides which request is preempted when: on that
trace and profile, preserve's simulated latency at a fixed speed jumps between neighbouring speeds (48.5
ms/token at 1.10, 28.3 at 1.15), while re-simulations whose speed wanders by the runs' own amounts spread over
24.8-48.5 and 26.9-73.6 there.

``wander_blocks`` measures a run's wander: its residuals, less the cost model's median error on each kind of
step, averaged over WANDER_PERIOD_S blocks of the engine's clock. ``WanderingCost`` replays a wander in the
simulator: each block of the simulated clock takes one such factor, drawn with replacement from the run's
own blocks (``draw_wander``), so that a re-simulation's speed wanders by the amounts the run's did, in another
order. The blocks still carry whatever the cost model misses over a block beyond its error by kind (a stretch
of long contexts, say); the spread they give is an upper bound.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import simpy

from core.cost import BatchShape, FittedCostModel
from experiments.fidelity import measured_s, predicted_s, step_kind

WANDER_PERIOD_S = 2.0
"""The block of the engine's clock over which a run's speed is taken as constant (~130 steps here)."""
MIN_BLOCK_STEPS = 20
"""A block with fewer steps with tokens than this (an idle stretch, the window's last moments) is left out."""
WANDER_DRAWS = 4
"""Wandering re-simulations of a real run at each of the ensemble's speed scales (``ensemble.SPEED_SCALES``)."""


def wander_blocks(steps: list[dict[str, Any]], cost: FittedCostModel, scale: float,
                  period_s: float = WANDER_PERIOD_S, min_steps: int = MIN_BLOCK_STEPS) -> np.ndarray:
    """One run's speed per ``period_s`` block of its engine log, relative to the run as a whole: exp of the
    mean over the block's steps of their ``log_residuals`` (the cost model's own error by kind of step taken
    out), centred to a geometric mean of 1 (the run's overall speed is ``scale``'s, to within the blocks'
    spread squared); blocks with fewer than ``min_steps`` steps with tokens are left out (one step's noise
    would set their speed); no block left: [1.0]."""
    busy = [s for s in steps if s["num_decode"] + s["prefill_tokens"]]
    if not busy:
        return np.ones(1)
    t0 = busy[0]["t0"]
    block = np.array([int((s["t0"] - t0) // period_s) for s in busy])
    resid = log_residuals(busy, cost, scale)
    kept = [b for b in np.unique(block) if (block == b).sum() >= min_steps]
    if not kept:
        return np.ones(1)
    means = np.array([resid[block == b].mean() for b in kept])
    return np.exp(means - means.mean())


def log_residuals(steps: list[dict[str, Any]], cost: FittedCostModel, scale: float) -> np.ndarray:
    """log(measured / (``scale`` x predicted)) of every step with tokens, in the log's order, less the median
    of its kind of step (``fidelity.step_kind``): what the cost model misses by the shape of a step is its
    error, not the machine's speed."""
    busy = [s for s in steps if s["num_decode"] + s["prefill_tokens"]]
    resid = np.array([math.log(measured_s(s) / (scale * predicted_s(s, cost))) for s in busy])
    kinds = np.array([step_kind(s) for s in busy])
    for kind in set(kinds):
        resid[kinds == kind] -= np.median(resid[kinds == kind])
    return resid


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
