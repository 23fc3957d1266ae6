"""From a run's records to the metrics users compare (names as in the README's glossary)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from core.metrics import Metrics, RequestRecord

METRICS = ("norm_latency_ms", "norm_latency_p50_ms", "norm_latency_p90_ms", "norm_latency_p99_ms",
           "norm_latency_corrected_ms", "norm_latency_corrected_p50_ms", "norm_latency_corrected_p90_ms",
           "norm_latency_corrected_p99_ms", "completed_rps", "unfinished", "tokens_per_s", "ttft_p50_s",
           "ttft_p99_s", "resume_latency_p50_s", "gpu_waste_pct", "recompute_share_pct", "swapped_tokens",
           "recomputed_tokens", "prefix_hit_tokens", "preserved_pauses", "discarded_pauses", "swapped_pauses",
           "num_requests")
"""Summary columns, in order."""


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else math.nan


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def _request_metrics(recs: list[RequestRecord], end_s: float, window_s: float) -> dict[str, float]:
    """Request-level metrics over ``recs``; unfinished requests end at ``end_s`` (paper's metric)."""
    norm, corrected, ttft, resume = [], [], [], []
    finished = gen_total = 0
    for r in recs:
        done = not math.isnan(r.finish_s)
        end = r.finish_s if done else end_s
        tool = r.tool_s + (end - r.paused_at_s if not math.isnan(r.paused_at_s) else 0.0)
        busy = end - r.arrival_s - tool
        norm.append(1000 * busy / max(r.gen_tokens + r.returned_tokens, 1))
        if done:
            finished += 1
            corrected.append(1000 * busy / max(r.gen_tokens, 1))
        if not math.isnan(r.first_token_s):
            ttft.append(r.first_token_s - r.arrival_s)
        resume.extend(r.resume_latency_s)
        gen_total += r.gen_tokens
    return {
        "norm_latency_ms": _mean(norm), "norm_latency_p50_ms": _pct(norm, 50),
        "norm_latency_p90_ms": _pct(norm, 90), "norm_latency_p99_ms": _pct(norm, 99),
        "norm_latency_corrected_ms": _mean(corrected), "norm_latency_corrected_p50_ms": _pct(corrected, 50),
        "norm_latency_corrected_p90_ms": _pct(corrected, 90), "norm_latency_corrected_p99_ms": _pct(corrected, 99),
        "completed_rps": finished / window_s, "unfinished": float(len(recs) - finished),
        "tokens_per_s": gen_total / end_s if end_s > 0 else math.nan,
        "ttft_p50_s": _pct(ttft, 50), "ttft_p99_s": _pct(ttft, 99), "resume_latency_p50_s": _pct(resume, 50),
        "swapped_tokens": float(sum(r.swapped_tokens for r in recs)),
        "recomputed_tokens": float(sum(r.recomputed_tokens for r in recs)),
        "prefix_hit_tokens": float(sum(r.prefix_hit_tokens for r in recs)),
        "preserved_pauses": float(sum(r.preserved_pauses for r in recs)),
        "discarded_pauses": float(sum(r.discarded_pauses for r in recs)),
        "swapped_pauses": float(sum(r.swapped_pauses for r in recs)),
        "num_requests": float(len(recs)),
    }


def summarize(m: Metrics) -> dict[str, Any]:
    """{"overall": {metric: value}, "by_kind": {kind: {metric: value}}} for a finished run."""
    block_s = m.total_gpu_blocks * m.end_s
    fwd_s = float(m.steps["fwd_s"].sum())
    waste = float(sum(m.waste_by_kind.values()))  # paused blocks (over all time) + stalled + recomputing
    recompute_s = float(m.steps["recompute_s"].sum())
    recs = list(m.requests.values())
    overall = _request_metrics(recs, m.end_s, m.duration_s)
    overall["gpu_waste_pct"] = 100 * waste / block_s if block_s else math.nan
    overall["recompute_share_pct"] = 100 * recompute_s / fwd_s if fwd_s else 0.0
    by_kind = {}
    for kind in sorted({r.kind for r in recs}):
        row = _request_metrics([r for r in recs if r.kind == kind], m.end_s, m.duration_s)
        row["gpu_waste_pct"] = 100 * m.waste_by_kind.get(kind, 0.0) / block_s if block_s else math.nan
        row["recompute_share_pct"] = 100 * m.recompute_s_by_kind.get(kind, 0.0) / fwd_s if fwd_s else 0.0
        by_kind[kind] = {k: row[k] for k in METRICS}
    return {"overall": {k: overall[k] for k in METRICS}, "by_kind": by_kind}
