"""Online statistics of interception durations for the TTL policies (core/ttl.py), learned only from what
``Policy.observe`` reports: each tool's measured durations and the queueing delays of readmitted requests.

- ``DurationHistory``: every observed duration, per tool and pooled, kept sorted (empirical CDFs, running
  means);
- ``EwLogNormal``: an exponentially weighted log-normal fit per tool (SAGA);
- ``RecentMean``: the mean of the last n values (Continuum's average queueing delay);
- ``ecdf_argmax`` / ``exp_prior_argmax``: Continuum's tau* = argmax_tau F(tau) * benefit - tau, under an
  empirical CDF or an exponential prior.

Plain mutable classes (runtime state of one policy object); no clock, no I/O.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
from numpy.typing import NDArray

MIN_DURATION_S = 1e-3
"""Durations are floored here before a logarithm (a zero-length interception has no log-normal density)."""


def _clean(duration_s: float) -> float | None:
    """A measured duration made usable: negative clamped to 0; NaN or infinite dropped (None)."""
    return max(float(duration_s), 0.0) if math.isfinite(duration_s) else None


class DurationHistory:
    """All observed durations (s), sorted, per tool label and pooled over every tool."""

    def __init__(self) -> None:
        self.by_tool: dict[str, NDArray[np.float64]] = {}
        self.pooled: NDArray[np.float64] = np.empty(0)
        self.sum_by_tool_s: dict[str, float] = {}

    def add(self, tool: str, duration_s: float) -> None:
        """Record one measured duration of ``tool`` (non-finite values are ignored)."""
        d = _clean(duration_s)
        if d is None:
            return
        mine = self.by_tool.get(tool, np.empty(0))
        self.by_tool[tool] = np.insert(mine, np.searchsorted(mine, d, side="right"), d)
        self.pooled = np.insert(self.pooled, np.searchsorted(self.pooled, d, side="right"), d)
        self.sum_by_tool_s[tool] = self.sum_by_tool_s.get(tool, 0.0) + d

    def count(self, tool: str) -> int:
        """How many durations of ``tool`` were observed."""
        return len(self.by_tool.get(tool, ()))

    @property
    def num_total(self) -> int:
        """How many durations were observed over all tools."""
        return len(self.pooled)

    def mean_s(self, tool: str) -> float | None:
        """The running mean duration of ``tool`` (s), None before its first observation."""
        n = self.count(tool)
        return self.sum_by_tool_s[tool] / n if n else None

    def sorted_s(self, tool: str) -> NDArray[np.float64]:
        """The sorted durations of ``tool`` (s); empty if unseen."""
        return self.by_tool.get(tool, np.empty(0))


class EwLogNormal:
    """Per tool, an exponentially weighted fit of mu and sigma^2 of log(duration), newest weight ``alpha``.

    First sample x = log(max(d, 1 ms)): mu = x, var = 0. Every later one (West 1979 / Finch 2009 form):
    delta = x - mu; mu += alpha * delta; var = (1 - alpha) * (var + alpha * delta^2)."""

    def __init__(self, alpha: float) -> None:
        assert 0 < alpha <= 1
        self.alpha = alpha
        self.fit: dict[str, tuple[float, float]] = {}  # tool -> (mu, var) of log seconds

    def add(self, tool: str, duration_s: float) -> None:
        """Fold one measured duration of ``tool`` into its fit (non-finite values are ignored)."""
        d = _clean(duration_s)
        if d is None:
            return
        x = math.log(max(d, MIN_DURATION_S))
        if tool not in self.fit:
            self.fit[tool] = (x, 0.0)
            return
        mu, var = self.fit[tool]
        delta = x - mu
        self.fit[tool] = (mu + self.alpha * delta, (1 - self.alpha) * (var + self.alpha * delta * delta))

    def quantile_s(self, tool: str, z: float) -> float | None:
        """exp(mu + z * sigma) of ``tool``'s fit (s), None before its first sample."""
        if tool not in self.fit:
            return None
        mu, var = self.fit[tool]
        return math.exp(mu + z * math.sqrt(var))


class RecentMean:
    """The mean of the last ``window`` values added (0 before any)."""

    def __init__(self, window: int) -> None:
        self.values: deque[float] = deque(maxlen=window)

    def add(self, value: float) -> None:
        """Add one value (non-finite values are ignored, negative ones clamped to 0)."""
        v = _clean(value)
        if v is not None:
            self.values.append(v)

    @property
    def mean(self) -> float:
        """The mean of the values in the window; 0.0 if there are none."""
        return math.fsum(self.values) / len(self.values) if self.values else 0.0


class TurnCorrelation:
    """Pearson correlation of (k, N - k) over finished programs: a program of N turns gives the pairs
    (k, N - k) for k = 1..N-1 (turns done at each of its pauses, turns still to come)."""

    def __init__(self) -> None:
        self.n = 0
        self.sx = self.sy = self.sxx = self.syy = self.sxy = 0.0

    def add_program(self, turns: int) -> None:
        """Add a finished program of ``turns`` turns (fewer than 2: no pause, no pair)."""
        for k in range(1, turns):
            x, y = float(k), float(turns - k)
            self.n += 1
            self.sx, self.sy = self.sx + x, self.sy + y
            self.sxx, self.syy, self.sxy = self.sxx + x * x, self.syy + y * y, self.sxy + x * y

    def corr(self) -> float | None:
        """The correlation, or None while it is undefined (under 2 pairs, or a constant coordinate)."""
        if self.n < 2:
            return None
        vx = self.sxx - self.sx * self.sx / self.n
        vy = self.syy - self.sy * self.sy / self.n
        if vx <= 1e-12 or vy <= 1e-12:
            return None
        return (self.sxy - self.sx * self.sy / self.n) / math.sqrt(vx * vy)


def ecdf_argmax(sorted_s: NDArray[np.float64], benefit_s: float) -> float:
    """argmax over tau in {0} U samples of F(tau) * benefit_s - tau (s), F the empirical CDF of the sorted
    samples ``sorted_s`` (F(tau) = share of samples <= tau). F is a step function rising only at samples, so
    this is also the argmax over every tau >= 0. Ties go to the smallest tau; no samples gives 0."""
    n = len(sorted_s)
    if n == 0:
        return 0.0
    f = np.searchsorted(sorted_s, sorted_s, side="right") / n
    utility = f * benefit_s - sorted_s
    best = int(np.argmax(utility))  # first maximum: the smallest tau among ties (the samples are sorted)
    at_zero = np.searchsorted(sorted_s, 0.0, side="right") / n * benefit_s
    return 0.0 if at_zero >= utility[best] else float(sorted_s[best])


def exp_prior_argmax(mean_s: float, benefit_s: float) -> float:
    """argmax over every tau >= 0 of (1 - exp(-tau / mean_s)) * benefit_s - tau (s), in closed form: the
    derivative (benefit_s / mean_s) * exp(-tau / mean_s) - 1 vanishes at tau = mean_s * ln(benefit_s / mean_s),
    a maximum with positive utility when benefit_s > mean_s; otherwise the utility never rises above its
    value 0 at tau = 0."""
    assert mean_s > 0
    return mean_s * math.log(benefit_s / mean_s) if benefit_s > mean_s else 0.0
