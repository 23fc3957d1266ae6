"""How far the median of a validation's few real runs can fall from the simulator's median by chaos alone.

A validation compares the median of ``k`` real runs (``--repeats``) with the median of the simulations. Some
metrics are chaotic at the scale of one run: which of InferCept's 0.1-20 ms pauses is kept rather than
swapped hangs on whether the 16-block host has a block free at that step, so one run's kept-pause count moves
by about 15 % between runs that differ by 1 % in speed. A median of three such runs misses the true median by
more than 10 % in a third to a half of the draws, so a 10 % target cannot tell a correct simulator from a
wrong one there.

``spread`` measures that from the calibrated simulations themselves (each real run re-simulated at its own
fitted speed, times each of the ensemble's scales): the medians of ``k`` of them drawn with replacement — their
share that misses the simulations' median by more than the target (``self_miss``), and their central 95 %
(``lo``, ``hi``). A row whose ``self_miss`` is at most RESOLVABLE is held to the target; another is held to
that band: its real median must lie where the median of ``k`` runs of the simulator itself lies 95 % of the
time (``experiments.fidelity.verdict``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

RESOLVABLE = 0.05
"""A row is held to the fidelity target when at most this share of the simulator's own medians of ``k`` runs
miss its median by more than the target."""
BAND_PCT = (2.5, 97.5)
"""The band an unresolvable row's real median must lie in: these percentiles of the medians of ``k``."""
MAX_DRAWS = 1_000_000
"""Every ordered draw of ``k`` is enumerated up to this many; beyond, this many are drawn from the rng."""


@dataclasses.dataclass(frozen=True, slots=True)
class Spread:
    """The simulator's own medians of ``k`` runs: their share beyond the target, and their central band."""

    self_miss: float
    lo: float
    hi: float


def median_draws(values: Sequence[float], k: int, rng: np.random.Generator) -> np.ndarray:
    """Medians of ``k`` of ``values`` drawn with replacement: every ordered draw once where there are at most
    MAX_DRAWS of them (exact; ``rng`` unused), else MAX_DRAWS draws from ``rng``."""
    v = np.asarray(values, dtype=float)
    n = len(v)
    if n**k <= MAX_DRAWS:
        idx = np.indices((n,) * k).reshape(k, -1).T
    else:
        idx = rng.integers(0, n, size=(MAX_DRAWS, k))
    return np.median(v[idx], axis=1)


def spread(values: Sequence[float], k: int, target: float, rng: np.random.Generator) -> Spread:
    """``Spread`` of the medians of ``k`` of ``values`` against the median of all ``values`` (NaN if any
    value is NaN or there are none). A median of 0 is missed by any non-zero median."""
    v = np.asarray(values, dtype=float)
    if not v.size or k < 1 or np.isnan(v).any():
        return Spread(math.nan, math.nan, math.nan)
    m = float(np.median(v))
    meds = median_draws(v, k, rng)
    off = np.abs(meds - m) > target * abs(m) if m else meds != 0
    lo, hi = np.percentile(meds, BAND_PCT)
    return Spread(float(np.mean(off)), float(lo), float(hi))
