"""The validation's verdict: which comparison rows (``experiments.fidelity.compare_rows``) it holds to the
fidelity target, and what it calls a miss, unresolved, or a pass.

A row is held to TARGET (``rel_error_calibrated``; ``rel_error`` too where the policy's cost model misses its
steps by less than STEP_ERROR_GATE). A held error beyond TARGET is a miss, unless a median of as many runs as
the real ones cannot resolve TARGET on that row (``experiments.spread``: more than RESOLVABLE of the calibrated
simulations' own such medians miss their median by more) and the real median lies within TARGET of the band
of those medians: then it is within the target of a median chaos alone could give, and the row is unresolved —
not a pass. The validation passes when nothing misses and nothing is unresolved.
"""

from __future__ import annotations

import math
from typing import Any

from experiments.fidelity import MIN_DECISIONS, STEP_ERROR_GATE, TARGET, VERDICT_METRICS
from experiments.spread import RESOLVABLE


def resolvable(row: dict[str, Any]) -> bool:
    """Whether a median of as many runs as the real ones can resolve TARGET on this row: at most RESOLVABLE of
    the calibrated simulations' own such medians miss their median by more than it (``experiments.spread``; a
    row without that column, from an older validation.csv, is)."""
    return not row.get("cal_self_miss", math.nan) > RESOLVABLE


def held_errors(rows: list[dict[str, Any]]) -> list[tuple[dict[str, Any], str, float]]:
    """(row, column, error) for every error the verdict holds to TARGET: each VERDICT_METRICS row's
    ``rel_error_calibrated``, and its ``rel_error`` where the policy's cost model misses its steps by less than
    STEP_ERROR_GATE; decision counts below MIN_DECISIONS in both backends are not held."""
    step_err = {r["policy"]: r["rel_error"] for r in rows if r["metric"] == "step_time_error_median"}
    held = []
    for r in rows:
        if r["metric"] not in VERDICT_METRICS:
            continue
        if r["metric"].endswith("_pauses") and max(r["real"], r["sim"]) < MIN_DECISIONS:
            continue
        held.append((r, "rel_error_calibrated", r["rel_error_calibrated"]))
        if step_err.get(r["policy"], math.inf) < STEP_ERROR_GATE:
            held.append((r, "rel_error", r["rel_error"]))
    return held


def judged(row: dict[str, Any], err: float) -> str:
    """A held error: "ok" within TARGET; beyond it, "unresolved" where the row is not ``resolvable`` and its
    real median lies within TARGET of the band of the calibrated simulations' own medians (``cal_lo``..
    ``cal_hi``: within the target of a median chaos alone could give), else "miss" (NaN included)."""
    if abs(err) <= TARGET:
        return "ok"
    if not resolvable(row) and row["cal_lo"] * (1 - TARGET) <= row["real"] <= row["cal_hi"] * (1 + TARGET):
        return "unresolved"
    return "miss"


def verdict(rows: list[dict[str, Any]], decisions: dict[str, float] | None = None) -> list[str]:
    """What misses the fidelity target (empty: no miss): every error ``held_errors`` holds that ``judged``
    calls a miss. ``decisions``: InferCept's real pause decisions, each of which must reach MIN_DECISIONS
    (constrained). The validation passes when nothing misses and nothing is ``unresolved``."""
    misses = []
    for r, name, err in held_errors(rows):
        if judged(r, err) == "miss":
            band = "" if resolvable(r) else (f" and more than {100 * TARGET:g} % outside the simulator's own band "
                                             f"{r['cal_lo']:.4g}-{r['cal_hi']:.4g} (real {r['real']:.4g})")
            misses.append(f"{r['policy']} {r['metric']}: {name} {100 * err:+.1f} %{band}")
    for key, n in (decisions or {}).items():
        if n < MIN_DECISIONS:
            misses.append(f"infercept made {n:g} {key} (fewer than {MIN_DECISIONS})")
    return misses


def unresolved(rows: list[dict[str, Any]]) -> list[str]:
    """The held errors beyond TARGET that the real runs' median cannot resolve (``judged``): neither a pass
    nor a miss."""
    return [f"{r['policy']} {r['metric']}: {name} {100 * err:+.1f} % ({100 * r['cal_self_miss']:.0f} % of the "
            f"simulator's own medians miss by more than {100 * TARGET:g} %; real {r['real']:.4g}, their band "
            f"{r['cal_lo']:.4g}-{r['cal_hi']:.4g})" for r, name, err in held_errors(rows)
            if judged(r, err) == "unresolved"]


def verdict_word(misses: list[str], open_rows: list[str]) -> str:
    """FAIL (something misses), UNRESOLVED (nothing misses, some row is unresolved) or PASS."""
    return "FAIL" if misses else "UNRESOLVED" if open_rows else "PASS"
