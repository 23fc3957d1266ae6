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

VALIDATED = ("completed_rps", "norm_latency_ms", "norm_latency_p50_ms", "ttft_p50_s", "recomputed_tokens",
             "swapped_tokens", "gpu_waste_pct", "recompute_share_pct")


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


def step_time_errors(steps: list[dict[str, Any]], cost: FittedCostModel) -> tuple[np.ndarray, list[str]]:
    """(predicted - measured) / measured for every real step with tokens, from the shapes the engine ran, and
    each step's kind (``step_kind``)."""
    out, kinds = [], []
    for s in steps:
        shape = BatchShape(s["num_decode"], s["decode_ctx_tokens"], s["prefill_tokens"], s["prefill_attn_pairs"])
        if shape.query_tokens == 0:
            continue
        real = s["t_end"] - s["t0"]
        out.append((cost.step_s(shape) - real) / real)
        kinds.append(step_kind(s))
    return np.asarray(out), kinds


def request_latency_s(m: Metrics) -> dict[str, float]:
    """Per finished request: time from arrival to finish outside interceptions."""
    return {rid: r.finish_s - r.arrival_s - r.tool_s for rid, r in m.requests.items() if not math.isnan(r.finish_s)}


def compare_rows(policy: str, real: list[dict[str, float]], sim: dict[str, float]) -> list[dict[str, Any]]:
    """validation.csv rows: median of the real runs against the simulation, per metric."""
    rows = []
    for metric in VALIDATED:
        r = float(np.median([x[metric] for x in real]))
        s = float(sim[metric])
        err = (s - r) / r if r else (0.0 if s == 0 else math.inf)
        rows.append({"policy": policy, "metric": metric, "real": r, "sim": s, "rel_error": err})
    return rows


def summary_of(m: Metrics) -> dict[str, float]:
    """The overall summary row of a run."""
    return summarize(m)["overall"]
