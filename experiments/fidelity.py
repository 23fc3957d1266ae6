"""The backend-free parts of `infercept validate`: the validation traces, step-time errors by kind of step and
the comparison rows (real runs against simulations). Neither backend is imported: ``experiments.ensemble``
runs the simulator, ``experiments.validation`` the engine.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from core.cost import BatchShape, FittedCostModel
from core.metrics import Metrics
from core.summary import summarize
from core.types import RequestSpec, Segment
from core.workload import make_workload
from experiments.spread import spread

VALIDATED = ("completed_rps", "norm_latency_ms", "norm_latency_p50_ms", "ttft_p50_s", "recomputed_tokens",
             "prefix_hit_tokens", "swapped_tokens", "preserved_pauses", "discarded_pauses", "gpu_waste_pct",
             "recompute_share_pct")
"""The metrics of validation.csv (besides ``step_time_error_median``)."""
TARGET = 0.10
"""The fidelity target: |relative error| of the VERDICT_METRICS."""
VERDICT_METRICS = ("completed_rps", "norm_latency_ms", "preserved_pauses", "discarded_pauses", "swapped_tokens")
"""The metrics the verdict holds to TARGET (counts of decisions only where a backend made >= MIN_DECISIONS)."""
MIN_DECISIONS = 20
"""Fewer pauses of a kind than this in both backends are too few to compare by a relative error; InferCept
must make at least this many of each decision in the constrained scenario."""
STEP_ERROR_GATE = 0.05
"""rel_error (the uncalibrated comparison) enters the verdict for a policy whose cost model misses its steps by
less than this (median); beyond it the machine's speed, not the simulator's dynamics, decides the error."""
DECISIONS = ("preserved_pauses", "discarded_pauses", "swapped_pauses")
"""The pause decisions counted from the event log (``pause_decisions``)."""


@dataclasses.dataclass(frozen=True, slots=True)
class TraceScale:
    """How the default trace shrinks the paper's mixed workload to fit a CPU: token counts and tool times."""

    rate_rps: float = 1.5
    arrivals_s: float = 45.0
    window_s: float = 60.0
    token_scale: float = 0.25
    tool_time_scale: float = 0.2
    seed: int = 0


def scale_trace(specs: list[RequestSpec], token_scale: float, tool_time_scale: float) -> list[RequestSpec]:
    """Every token count times ``token_scale`` (rounded up, at least 1), every tool time times the other."""
    def tok(n: int, minimum: int) -> int:
        return max(math.ceil(n * token_scale), minimum)

    return [dataclasses.replace(s, prompt_tokens=tok(s.prompt_tokens, 1), segments=tuple(
        Segment(tok(g.gen_tokens, 1), g.tool_s * tool_time_scale, tok(g.tool_tokens, 0), g.kind)
        for g in s.segments)) for s in specs]


def default_trace(scale: TraceScale, max_context_tokens: int) -> list[RequestSpec]:
    """The paper's mixed workload, scaled (see TraceScale), capped to the model's context."""
    specs, _ = make_workload("mixed", scale.rate_rps, scale.arrivals_s, scale.seed,
                             int(max_context_tokens / scale.token_scale) - 8)
    return scale_trace(specs, scale.token_scale, scale.tool_time_scale)


def plain(specs: list[RequestSpec]) -> list[RequestSpec]:
    """The same requests without interceptions: one segment of all their generated tokens."""
    return [dataclasses.replace(s, kind="plain",
                                segments=(Segment(sum(g.gen_tokens for g in s.segments)),)) for s in specs]


STEP_KINDS = ("decode 1", "decode 2", "decode 3", "decode 4+", "chunk < 64", "chunk >= 64")
"""Kinds of steps the signed step-time error is broken down by: decode-only steps by batch size, and steps with
a prefill/recompute/resume chunk by its tokens."""


def step_kind(s: dict[str, Any]) -> str:
    """The STEP_KINDS entry of one engine-log step."""
    if s["prefill_tokens"]:
        return "chunk < 64" if s["prefill_tokens"] < 64 else "chunk >= 64"
    return f"decode {s['num_decode']}" if s["num_decode"] < 4 else "decode 4+"


def median_by_kind(errors: np.ndarray, kinds: list[str]) -> dict[str, float]:
    """Median of ``errors`` per STEP_KINDS entry (kinds without steps left out)."""
    k = np.asarray(kinds)
    return {kind: float(np.median(errors[k == kind])) for kind in STEP_KINDS if (k == kind).any()}


def measured_s(s: dict[str, Any]) -> float:
    """A step's measured duration outside the swap connector's copies (what the cost model's step_s prices)."""
    return float(s["t_end"] - s["t0"] - s.get("copy_s", 0.0))


def predicted_s(s: dict[str, Any], cost: FittedCostModel) -> float:
    """The cost model's step_s of the shape the engine ran, less the engine loop's busy gap that its const_s
    counts and an engine log's step does not (``busy_gap_s``); 0 for a step without tokens."""
    shape = BatchShape.of_step(s)
    return cost.step_s(shape) - cost.busy_gap_s if shape.query_tokens else 0.0


def step_time_errors(steps: list[dict[str, Any]], cost: FittedCostModel,
                     scale: float = 1.0) -> tuple[np.ndarray, list[str]]:
    """(predicted * scale - measured) / measured for every real step with tokens, from the shapes the engine
    ran, and each step's kind (``step_kind``)."""
    out, kinds = [], []
    for s in steps:
        if s["num_decode"] + s["prefill_tokens"] == 0:
            continue
        real = measured_s(s)
        out.append((scale * predicted_s(s, cost) - real) / real)
        kinds.append(step_kind(s))
    return np.asarray(out), kinds


def speed_scale(steps: list[dict[str, Any]], cost: FittedCostModel) -> float:
    """The step-time scale fitted to one run: its steps' summed measured time over the cost model's predicted
    time for the same steps (1 for a run without steps)."""
    pred = sum(predicted_s(s, cost) for s in steps)
    real = sum(measured_s(s) for s in steps if s["num_decode"] + s["prefill_tokens"])
    return real / pred if pred > 0 else 1.0


def request_latency_s(m: Metrics) -> dict[str, float]:
    """Per finished request: time from arrival to finish outside interceptions."""
    return {rid: r.finish_s - r.arrival_s - r.tool_s for rid, r in m.requests.items() if not math.isnan(r.finish_s)}


def rel_error(sim: float, real: float) -> float:
    """(sim - real) / real; 0 when both are 0, inf when only real is."""
    return (sim - real) / real if real else (0.0 if sim == 0 else math.inf)


def compare_rows(policy: str, real: list[dict[str, float]], sim: dict[str, float],
                 calibrated: list[list[dict[str, float]]] | None = None,
                 rng: np.random.Generator | None = None) -> list[dict[str, Any]]:
    """validation.csv rows: median of the real runs against the simulations' median, per metric, and against
    the median of the runs re-simulated at their own fitted step-time scales (``calibrated``: each real run's
    re-simulations' summaries), with the spread of the medians of one re-simulation per real run
    (``experiments.spread``: ``cal_self_miss``, ``cal_lo``, ``cal_hi``; ``rng``, by default one seeded 0, only
    where they are too many to enumerate)."""
    rows = []
    rng = rng if rng is not None else np.random.default_rng(0)
    for metric in VALIDATED:  # a summary without the metric (an older run folder): NaN
        r = float(np.median([x.get(metric, math.nan) for x in real]))
        s = float(sim.get(metric, math.nan))
        groups = [[x.get(metric, math.nan) for x in run] for run in calibrated or ()]
        cal = rel_error(float(np.median([v for g in groups for v in g])), r) if groups else math.nan
        sp = spread(groups, TARGET, rng)
        rows.append({"policy": policy, "metric": metric, "real": r, "sim": s, "rel_error": rel_error(s, r),
                     "rel_error_calibrated": cal, "cal_self_miss": sp.self_miss, "cal_lo": sp.lo, "cal_hi": sp.hi})
    return rows


def step_error_row(policy: str, errors: np.ndarray, calibrated: np.ndarray, measured: np.ndarray,
                   predicted: np.ndarray) -> dict[str, Any]:
    """The ``step_time_error_median`` row: median measured and predicted step time (s) of the runs' own steps,
    the median absolute relative error of the cost model on them, and the same after each run's fitted scale."""
    def med(x: np.ndarray) -> float:
        return float(np.median(x)) if x.size else math.nan

    return {"policy": policy, "metric": "step_time_error_median", "real": med(measured), "sim": med(predicted),
            "rel_error": med(np.abs(errors)), "rel_error_calibrated": med(np.abs(calibrated))}


def pause_decisions(m: Metrics) -> dict[str, float]:
    """Pauses that ended in a resume, by what happened to their KV in between: ``preserved_pauses`` (it stayed
    whole on the GPU), ``discarded_pauses`` (dropped, whatever was swapped first), ``swapped_pauses`` (some of it
    moved to the host, none dropped). From the event log, so the same for both backends."""
    out = dict.fromkeys(DECISIONS, 0.0)
    seen: dict[str, set[str]] = {}
    for _, rid, event, _ in m.events:
        if event.startswith("pause:"):
            seen[rid] = set()
        elif event in ("discard", "swap_out") and rid in seen:
            seen[rid].add(event)
        elif event == "resume" and rid in seen:
            moved = seen.pop(rid)
            key = "discarded" if "discard" in moved else "swapped" if moved else "preserved"
            out[f"{key}_pauses"] += 1
    return out


def summary_of(m: Metrics) -> dict[str, float]:
    """The overall summary row of a run, with the pause decisions (``pause_decisions``) where the summary does not
    count them itself."""
    return {**pause_decisions(m), **summarize(m)["overall"]}
