"""InferCept's waste equations (INFERCEPT.md §2.3, §2.10) and its interception-time estimators (§2.8).

Waste is in token-seconds (memory x time divided by the KV bytes per token M, as the reference code does).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from core.cost import CostModel
from core.types import ReqView

ESTIMATORS = ("paper", "elapsed", "oracle")
STABLE_KINDS = frozenset({"math", "qa", "ve"})
"""Augmentations whose durations the paper treats as stable enough to profile (§2.8): calculator, retrieval,
virtual environment. Chatbot, image and TTS pauses (and unknown ones) are estimated by the elapsed time."""


def preserve_waste(t_int_s: float, ctx_tokens: float) -> float:
    """Eq. 2: WastePreserve = T_INT * C (token-seconds)."""
    return t_int_s * ctx_tokens


def discard_waste(cost: CostModel, ctx_tokens: float, other_tokens: float) -> float:
    """Eq. 1: the whole context recomputed in one pass; it and every other running token wait T_fwd(C)."""
    t = cost.fwd_s(ctx_tokens)
    return t * ctx_tokens + t * other_tokens


def chunked_discard_waste(cost: CostModel, ctx_tokens: int, running_query_tokens: int,
                          running_gpu_tokens: int) -> float:
    """Eq. 4 in the discrete form of the released code (INFERCEPT.md §2.10), token-seconds.

    The context is recomputed in chunks of c = max(S - R, 1) tokens piggy-backed on decode iterations of
    T_fwd(S): n = ceil(C/c) - 1 full chunks, whose rebuilt context grows chunk by chunk (first term) and
    each lengthens an iteration by its marginal time a*c for the Rb running tokens (second term), then the
    last chunk of C - n*c tokens (third term). The reference takes the last chunk as C mod c, which is 0
    when C is an exact multiple of c and so drops a whole chunk (WD(C = c) = 0); here it is in (0, c].
    """
    if ctx_tokens <= 0:
        return 0.0
    s = cost.saturation_tokens
    chunk = max(s - running_query_tokens, 1)
    n = max(math.ceil(ctx_tokens / chunk) - 1, 0)
    last = ctx_tokens - n * chunk
    a = cost.fwd_s(1) - cost.fwd_s(0)
    return (cost.fwd_s(s) * chunk * n * (n + 1) / 2 + a * chunk * n * running_gpu_tokens
            + a * last * (running_gpu_tokens + last))


def blocking_swap_waste(cost: CostModel, ctx_tokens: float, batch_tokens: float) -> float:
    """Eq. 3: an unpipelined swap out and back stalls the whole batch's memory for 2 * T_swap(C)."""
    return 2 * cost.swap_s(ctx_tokens) * batch_tokens


def swap_budget_tokens(cost: CostModel, query_tokens: float | None = None) -> int:
    """N: tokens of KV the link moves during one forward pass of ``query_tokens`` query tokens,
    T_swap(N) = T_fwd(B) (§2.5); ``None``: a saturated step, B = S."""
    b = cost.saturation_tokens if query_tokens is None else query_tokens
    return cost.swap_tokens_in(cost.fwd_s(b))


class Estimator:
    """T_INT of Eq. 2 for a paused request, as one of ESTIMATORS:

    - ``paper`` (§2.8): for the stable augmentations (STABLE_KINDS) the type's mean duration minus the
      time already elapsed, never below 0; for the others, and for kinds without a known mean, the elapsed
      time;
    - ``elapsed``: the time elapsed since the pause, for every kind;
    - ``oracle`` (the released code): the true remaining time.
    """

    def __init__(self, name: str, tool_means_s: Mapping[str, float] | None) -> None:
        if name not in ESTIMATORS:
            raise ValueError(f"policy option estimator={name!r}: expected one of {ESTIMATORS}")
        self.name = name
        self.means = {k: float(v) for k, v in (tool_means_s or {}).items() if k in STABLE_KINDS}

    def profiled_mean_s(self, req: ReqView) -> float | None:
        """The profiled mean of ``req``'s tool under the paper's rule, or None (elapsed time used)."""
        if self.name != "paper":
            return None
        return self.means.get(req.tool_kind or req.kind)

    def t_int_s(self, req: ReqView, now_s: float) -> float:
        """The interception time Eq. 2 charges at ``now_s``, seconds."""
        elapsed = max(now_s - req.paused_at_s, 0.0)
        if self.name == "oracle":
            return max(req.tool_s - elapsed, 0.0)
        mean = self.profiled_mean_s(req)
        return elapsed if mean is None else max(mean - elapsed, 0.0)

    def grows(self, req: ReqView) -> bool:
        """True if the estimate grows with time (the elapsed rule); False if it only shrinks."""
        return self.name != "oracle" and self.profiled_mean_s(req) is None
