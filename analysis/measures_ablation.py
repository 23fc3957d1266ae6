"""How the ablation's and the estimator's claims (analysis/claims.py) are measured from the sweeps."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

from analysis import measures as m


def ladder(data: m.SweepData, setup: str) -> list[tuple[int, str, list[dict[str, Any]]]]:
    """The cumulative ablation ladder of ``setup``: (step, technique, rows) from variants
    ``ladder-<setup>-<step>-<technique>``, steps ascending."""
    steps = []
    for name in dict.fromkeys(r.get("variant") for r in data.rows):
        parts = str(name).split("-", 3)
        if len(parts) == 4 and parts[0] == "ladder" and parts[1] == setup and parts[2].isdigit():
            steps.append((int(parts[2]), parts[3], m.select(data.rows, variant=name)))
    return sorted(steps, key=lambda s: s[0])


def ladder_rate(steps: list[tuple[int, str, list[dict[str, Any]]]], target_ms: float) -> float:
    """The highest rate every step ran at below the first step's (vLLM's) knee: the paper's 2 req/s was a
    rate its vLLM sustained, and past a knee every latency ratio explodes."""
    common = sorted(set.intersection(*({r for r, _ in m.points(rows)} for _, _, rows in steps)))
    k, _ = m.knee_of(steps[0][2], target_ms)
    below = [r for r in common if k is None or r < k]
    return below[-1] if below else math.nan


def _ladder_at(sweeps: m.Sweeps, metric: str) -> tuple[list[tuple[int, str, float]], float]:
    steps = ladder(sweeps["ablation"], m.LADDER_SETUP)
    rate = ladder_rate(steps, sweeps["ablation"].target_ms) if steps else math.nan
    return [(n, tech, m.at(rows, rate, metric)) for n, tech, rows in steps], rate


def ablation_ladder(paper: tuple[float, ...]) -> Callable[[m.Sweeps], m.Finding]:
    """Each ladder step's change of normalized latency from the previous step (+ = lower latency)."""
    def measure(sweeps: m.Sweeps) -> m.Finding:
        lat, rate = _ladder_at(sweeps, "norm_latency_ms")
        if len(lat) < 2:
            return m.Finding(f"no ladder-{m.LADDER_SETUP}-* variants in sweep ablation")
        changes = [100 * (a[2] - b[2]) / a[2] for a, b in itertools.pairwise(lat)]
        text = ", ".join(f"{b[1]} {c:+.1f} %" for b, c in zip(lat[1:], changes))
        # the first step's sign is unclear in the extraction (its magnitude is checked); the others are gains
        checks = [(abs(c) if i == 0 else c, p, p) for i, (c, p) in enumerate(zip(changes, paper))]
        return m.Finding(f"at {rate:g} req/s: {text}", tuple(checks))
    return measure


def ablation_waste(sweeps: m.Sweeps) -> m.Finding:
    """GPU waste of the ladder's first and last steps."""
    waste, rate = _ladder_at(sweeps, "gpu_waste_pct")
    if len(waste) < 2:
        return m.Finding(f"no ladder-{m.LADDER_SETUP}-* variants in sweep ablation")
    first, last = waste[0], waste[-1]
    return m.Finding(f"{first[1]} {first[2]:.2f} % → {last[1]} {last[2]:.2f} % at {rate:g} req/s",
                     ((first[2], 25.0, 27.0), (last[2], 0.69, 0.69)))


def chunked_recompute(sweeps: m.Sweeps) -> m.Finding:
    """Reduction of GPU waste from ladder step 2 (improved discard) to step 3 (chunked recomputation)."""
    waste, rate = _ladder_at(sweeps, "gpu_waste_pct")
    by = {n: (tech, w) for n, tech, w in waste}
    if 2 not in by or 3 not in by or not by[2][1]:
        return m.Finding(f"no ladder-{m.LADDER_SETUP}-2/-3 variants with waste in sweep ablation")
    cut = 100 * (by[2][1] - by[3][1]) / by[2][1]
    return m.Finding(f"{cut:.0f} % less ({by[2][1]:.2f} % → {by[3][1]:.2f} %) at {rate:g} req/s",
                     ((cut, 50.0, 100.0),))


def estimator(sweeps: m.Sweeps) -> m.Finding:
    """Knee with the paper's (and the elapsed) estimator over the oracle's, as a percentage."""
    data = sweeps["estimator"]
    knees = {e: m.knee_of(m.select(data.rows, **{"policy_options.estimator": e}), data.target_ms)
             for e in ("paper", "elapsed", "oracle")}
    oracle = knees["oracle"][0]
    if oracle is None or knees["paper"][0] is None or any(b != "crossed" for _, b in knees.values()):
        return m.Finding("knees: " + ", ".join(f"{e} {k if k is None else f'{k:.2f}'} ({b})"
                                               for e, (k, b) in knees.items()))
    pct = {e: 100 * k / oracle for e, (k, _) in knees.items() if k is not None}
    return m.Finding(f"{pct['paper']:.0f} % (knee {knees['paper'][0]:.2f} vs oracle {oracle:.2f} req/s; elapsed "
                     f"{pct.get('elapsed', math.nan):.0f} %)", ((pct["paper"], 93.0, 93.0),))
