"""How far the median of a validation's few real runs can fall from the simulator's median by chaos alone.

A validation compares the median of ``k`` real runs (``--repeats``) with the median of the simulations. Some
metrics are chaotic at the scale of one run: which of InferCept's 0.1-20 ms pauses is kept rather than
swapped hangs on whether the 16-block host has a block free at that step, so one run's kept-pause count moves
by 15 % or more between simulations that differ by 1 % in speed. A median of three such runs then misses the
simulator's own median by more than 10 % in a quarter to a half of the cases, so a 10 % target cannot tell a
correct simulator from a wrong one there.

``spread`` measures that from the calibrated simulations themselves: each real run is re-simulated at its own
fitted speed times each of the ensemble's scales, its speed wandering within the run as the run's own did
(``experiments.wander``; its neighbourhood); a median of ``k`` runs takes one
simulation from each run's neighbourhood. Of those medians: the share that misses the median of all the
simulations by more than the target (``self_miss``), and their central 95 % (``lo``, ``hi``).
``experiments.verdict`` holds a row whose ``self_miss`` exceeds RESOLVABLE as unresolved, neither passed nor
missed, unless its error is beyond the target and its real median more than the target outside that band.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

RESOLVABLE = 0.05
"""A row is resolvable when at most this share of the simulator's own medians of ``k`` runs miss its median
by more than the target."""
BAND_PCT = (2.5, 97.5)
"""The band of an unresolvable row: these percentiles of the simulator's own medians of ``k`` runs."""
MAX_DRAWS = 1_000_000
"""Every combination (one simulation per run) is enumerated up to this many; beyond, this many are drawn."""


@dataclasses.dataclass(frozen=True, slots=True)
class Spread:
    """The simulator's own medians of ``k`` runs: their share beyond the target, and their central band."""

    self_miss: float
    lo: float
    hi: float


def median_draws(groups: Sequence[Sequence[float]], rng: np.random.Generator,
                 max_draws: int | None = None) -> np.ndarray:
    """Medians of one value from each group: every combination once where there are at most ``max_draws``
    (default MAX_DRAWS) of them (exact; ``rng`` unused), else that many combinations drawn from ``rng``."""
    arrays = [np.asarray(g, dtype=float) for g in groups]
    limit = MAX_DRAWS if max_draws is None else max_draws
    if math.prod(len(a) for a in arrays) <= limit:
        cols = [c.ravel() for c in np.meshgrid(*arrays, indexing="ij")]
    else:
        cols = [a[rng.integers(0, len(a), limit)] for a in arrays]
    return np.median(np.stack(cols), axis=0)


def spread(groups: Sequence[Sequence[float]], target: float, rng: np.random.Generator,
           max_draws: int | None = None) -> Spread:
    """``Spread`` of the medians of one value per group (each real run's calibrated simulations) against the
    median of all the values (NaN if a group is empty, a value is NaN or there are no groups). A median of 0
    is missed by any non-zero median."""
    if not groups or any(len(g) == 0 for g in groups):
        return Spread(math.nan, math.nan, math.nan)
    pooled = np.concatenate([np.asarray(g, dtype=float) for g in groups])
    if np.isnan(pooled).any():
        return Spread(math.nan, math.nan, math.nan)
    m = float(np.median(pooled))
    meds = median_draws(groups, rng, max_draws)
    off = np.abs(meds - m) > target * abs(m) if m else meds != 0
    lo, hi = np.percentile(meds, BAND_PCT)
    return Spread(float(np.mean(off)), float(lo), float(hi))


def repeats_to_resolve(values: Sequence[float], target: float, rng: np.random.Generator, most: int = 31,
                       draws: int = 20_000) -> int | None:
    """The fewest real runs (odd, up to ``most``) whose median would miss the median of ``values`` by more than
    ``target`` in at most RESOLVABLE of the cases, each run drawn from ``values`` (``draws`` draws per count
    of runs); None if even ``most`` would not."""
    for k in range(1, most + 1, 2):
        if spread([values] * k, target, rng, draws).self_miss <= RESOLVABLE:
            return k
    return None
