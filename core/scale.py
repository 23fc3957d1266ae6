"""Scaling a profile's numbers by factors: the sensitivity of a result to the profile's uncertain terms.

``RunConfig.profile_scale`` maps a cost-model field to a positive factor (``link_bytes_per_s = 1.2``: a link
20 % faster); integer fields (KV blocks, batch size) are rounded, and stay at least 1.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from core.cost import FittedCostModel

SCALABLE = {
    "const_s": "the forward pass's constant per step",
    "per_query_token_s": "the forward pass's cost per query token",
    "per_decode_ctx_token_s": "the cost per decode context token (attention reads)",
    "per_prefill_attn_pair_s": "the cost per prefill query-key pair",
    "per_prefill_seq_s": "the cost per request with a prefill chunk in the step",
    "excess_query_token_s": "the extra cost per query token beyond S",
    "host_per_step_s": "the engine's host time per step",
    "host_per_seq_s": "the engine's host time per scheduled request",
    "link_bytes_per_s": "the host-device link bandwidth",
    "gpu_kv_blocks": "the GPU KV capacity",
    "cpu_kv_blocks": "the host KV capacity",
    "max_num_seqs": "the most requests in one batch",
}
"""Field -> what it is; the keys ``profile_scale`` accepts."""


def scale_problem(factors: Mapping[str, Any]) -> str | None:
    """A message naming the first unknown key or non-positive factor of ``profile_scale``, else None."""
    for key, value in factors.items():
        if key not in SCALABLE:
            return f"profile_scale.{key}: unknown; expected keys from {sorted(SCALABLE)}"
        if isinstance(value, bool) or not isinstance(value, int | float) or not (
                value > 0 and math.isfinite(value)):
            return f"profile_scale.{key} = {value!r}: expected a positive number (a factor)"
    return None


def scale_cost(cost: FittedCostModel, factors: Mapping[str, float]) -> FittedCostModel:
    """``cost`` with each named field multiplied by its factor (integers rounded, at least 1)."""
    changes: dict[str, Any] = {}
    for key, factor in factors.items():
        value = getattr(cost, key)
        changes[key] = max(round(value * factor), 1) if isinstance(value, int) else value * factor
    return dataclasses.replace(cost, **changes)
