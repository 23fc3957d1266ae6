"""One case of `infercept validate` compared with its simulations (``compare_case``), and which cases
``--until-resolved`` runs again (``more_rounds``)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from core.cost import FittedCostModel
from core.types import RequestSpec


class Compared(NamedTuple):
    """One case's comparison: its validation.csv rows, the report's extras, the scatter's latencies and
    InferCept's real decisions (constrained; else empty)."""

    rows: list[dict[str, Any]]
    extra: dict[str, Any]
    scatter: tuple[list[float], list[float]]
    decisions: dict[str, float]


def more_rounds(compared: dict[str, Compared], runs: dict[str, int], most: int) -> list[str]:
    """The cases another round runs under ``--until-resolved most``: those with fewer than ``most`` runs and a
    held row the verdict calls unresolved (``experiments.verdict.unresolved``: the simulator's own medians of
    as many runs spread beyond the target, and the real median not outside their band by more). A case whose
    held rows are all settled, within the target or missed, runs no more; a case that runs again has every
    row recomputed over all its runs."""
    from experiments.verdict import unresolved

    return [label for label, c in compared.items() if runs[label] < most and unresolved(c.rows)]


def why_more(compared: dict[str, Compared], todo: list[str], runs: dict[str, int]) -> list[str]:
    """Why each case in ``todo`` runs another round: its runs so far and its unresolved held rows."""
    from experiments.verdict import unresolved

    return [f"{label} after {runs[label]} runs: " + ("; ".join(unresolved(compared[label].rows))
                                                      or "no held row unresolved") for label in todo]


def compare_case(v: Any, case: tuple[str, str, list[RequestSpec]],
                 done: list[tuple[int, Any, list[dict[str, Any]]]], profiles: list[Path]) -> Compared:
    """The real runs of one case (``done``: (round, Metrics, engine steps) per run) against its simulations
    (``sim``: the ensemble with the profiles of the rounds it ran in; calibrated: each run at its own fitted
    scale); ``v``: the ``experiments.validation.Validation``."""
    from experiments.ensemble import simulate_calibrated, simulate_ensemble
    from experiments.fidelity import (
        DECISIONS,
        compare_rows,
        median_by_kind,
        predicted_s,
        request_latency_s,
        speed_scale,
        step_error_row,
        step_time_errors,
        summary_of,
    )
    from experiments.wander import wander_blocks

    label, policy, specs = case
    costs = [FittedCostModel.from_profile(p, v.engine) for p in profiles]
    reals = [summary_of(m) for _, m, _ in done]
    scales = [speed_scale(steps, costs[k]) for k, _, steps in done]
    used = sorted({k for k, _, _ in done})
    sim_median, sim, sim_norms = simulate_ensemble(policy, specs, [str(profiles[k]) for k in used], v.window_s,
                                                   v.engine)
    wanders = [wander_blocks(steps, costs[k], f) for (k, _, steps), f in zip(done, scales)]
    cal = simulate_calibrated(policy, specs, [(str(profiles[k]), f) for (k, _, _), f in zip(done, scales)],
                              v.window_s, v.engine, wanders)
    rows = compare_rows(label, reals, sim_median, cal)
    errs = [step_time_errors(steps, costs[k]) for k, _, steps in done]
    cal_errs = [step_time_errors(steps, costs[k], f)[0] for (k, _, steps), f in zip(done, scales)]
    busy = [(k, s) for k, _, steps in done for s in steps if s["num_decode"] + s["prefill_tokens"]]
    measured = np.array([s["t_end"] - s["t0"] - s.get("copy_s", 0.0) for _, s in busy])
    predicted = np.array([predicted_s(s, costs[k]) for k, s in busy])
    signed = np.concatenate([e for e, _ in errs])
    rows.append(step_error_row(label, signed, np.concatenate(cal_errs), measured, predicted))
    ms = [m for _, m, _ in done]
    hook = [float(m.steps["policy_s"].sum()) / max(float(m.steps["dur_s"].sum()), 1e-12) for m in ms]
    full = 0.95 * v.engine["gpu_kv_blocks"]
    pressure = [float(np.mean(m.steps["gpu_used_blocks"] >= full)) if m.step_rows else 0.0 for m in ms]
    e = np.abs(signed)
    extra = {"runs": len(done),
             "step_err_median": float(np.median(e)) if e.size else math.nan,
             "step_err_p90": float(np.percentile(e, 90)) if e.size else math.nan,
             "step_err_signed_by_kind": median_by_kind(signed, [k for _, ks in errs for k in ks]),
             "speed_scales": scales,
             "wander_pct": [100 * float(np.std(np.log(w))) for w in wanders],
             "hook_share": float(np.median(hook)), "steps_kv_full": float(np.median(pressure)),
             "real_norm_min": min(x["norm_latency_ms"] for x in reals),
             "real_norm_max": max(x["norm_latency_ms"] for x in reals),
             "sim_norm_min": min(sim_norms), "sim_norm_max": max(sim_norms)}
    decisions = ({k: float(np.median([x[k] for x in reals])) for k in DECISIONS}
                 if label == "infercept" and v.scenario.throttled else {})
    rl, sl = request_latency_s(ms[0]), request_latency_s(sim)
    both = sorted(set(rl) & set(sl))
    return Compared(rows, extra, ([rl[r] for r in both], [sl[r] for r in both]), decisions)
