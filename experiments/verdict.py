"""The validation's verdict: which comparison rows (``experiments.fidelity.compare_rows``) it holds to the
fidelity target, and what it calls a miss, unresolved, or a pass.

A row is held to TARGET (``rel_error_calibrated``; ``rel_error`` too where the policy's cost model misses its
steps by less than STEP_ERROR_GATE). On a resolvable row a held error beyond TARGET is a miss. A row is not
resolvable when a median of as many runs as the real ones cannot resolve TARGET on it (``experiments.spread``:
more than RESOLVABLE of the calibrated simulations' own such medians miss their median by more): there an
error within TARGET is luck, not evidence, and an error beyond it may be chaos, so the row is unresolved —
neither a pass nor a miss — unless its error is beyond TARGET and its real median lies more than TARGET
outside the band of those medians, which chaos does not explain: a miss. The verdict is PASS only when every
held row is resolvable and within TARGET, so that it does not hang on which way chaos fell.
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


def held_columns(rows: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    """Per (policy, metric) the verdict holds (``held_errors``): "calibrated", or "both" where ``rel_error``
    is held too; rows it does not hold are absent."""
    held: dict[tuple[str, str], str] = {}
    for r, _, _ in held_errors(rows):
        key = (r["policy"], r["metric"])
        held[key] = "both" if key in held else "calibrated"
    return held


def judged(row: dict[str, Any], err: float) -> str:
    """A held error: on a ``resolvable`` row "ok" within TARGET, else "miss" (NaN included); on a row that is
    not, "unresolved", unless the error is beyond TARGET and the real median lies more than TARGET outside the
    band of the calibrated simulations' own medians (``cal_lo``..``cal_hi``): "miss"."""
    within = abs(err) <= TARGET
    if resolvable(row):
        return "ok" if within else "miss"
    in_band = row["cal_lo"] * (1 - TARGET) <= row["real"] <= row["cal_hi"] * (1 + TARGET)
    return "unresolved" if within or in_band else "miss"


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
    """The held errors on rows the real runs' median cannot resolve that are not misses (``judged``): neither
    a pass nor a miss, whichever side of TARGET they fell."""
    return [f"{r['policy']} {r['metric']}: {name} {100 * err:+.1f} % ({100 * r['cal_self_miss']:.0f} % of the "
            f"simulator's own medians miss by more than {100 * TARGET:g} %; real {r['real']:.4g}, their band "
            f"{r['cal_lo']:.4g}-{r['cal_hi']:.4g})" for r, name, err in held_errors(rows)
            if judged(r, err) == "unresolved"]


def verdict_word(misses: list[str], open_rows: list[str]) -> str:
    """FAIL (something misses), UNRESOLVED (nothing misses, some row is unresolved) or PASS."""
    return "FAIL" if misses else "UNRESOLVED" if open_rows else "PASS"
