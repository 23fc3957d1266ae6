"""Closed-form sums for jumping over identical decode steps: step j of a jump lasts a + b*j seconds."""

from __future__ import annotations

import math


def total_s(a: float, b: float, k: int) -> float:
    """Summed duration of k steps lasting a, a + b, a + 2b, ..."""
    return k * a + b * k * (k - 1) / 2


def first_k_reaching(a: float, b: float, span_s: float, strict: bool = False) -> int:
    """Smallest k >= 1 whose summed duration reaches span_s (exceeds it if ``strict``): the root of the
    quadratic, then corrected by one step either way against rounding."""
    if span_s <= 0:
        return 1
    if b > 0:
        half = a - b / 2
        k = math.ceil((-half + math.sqrt(half * half + 2 * b * span_s)) / b)
    else:
        k = math.ceil(span_s / a)
    k = max(k, 1)

    def ok(j: int) -> bool:
        t = total_s(a, b, j)
        return t > span_s if strict else t >= span_s

    while k > 1 and ok(k - 1):
        k -= 1
    while not ok(k):
        k += 1
    return k
