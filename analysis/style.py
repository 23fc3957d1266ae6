"""One look for every figure: a colour and marker per policy, and colours for variants and estimators.

A policy keeps its colour and marker in every figure (and in ``infercept compare``'s plot). Styles for systems
that are not simulated yet (Continuum, SAGA, vLLM's native and offloading modes, MARS) are reserved here so
that adding them later changes no other figure.
"""

from __future__ import annotations

POLICY_STYLE: dict[str, dict[str, str]] = {
    "discard": {"color": "#d62728", "marker": "v"},
    "improved_discard": {"color": "#ff7f0e", "marker": "^"},
    "preserve": {"color": "#2ca02c", "marker": "s"},
    "swap": {"color": "#9467bd", "marker": "D"},
    "swap_blocking": {"color": "#8c564b", "marker": "d"},
    "infercept": {"color": "#1f77b4", "marker": "o"},
    # reserved: systems this project may add
    "continuum": {"color": "#e377c2", "marker": "P"},
    "continuum_utility": {"color": "#f7b6d2", "marker": "X"},
    "saga": {"color": "#bcbd22", "marker": "*"},
    "vllm_native": {"color": "#7f7f7f", "marker": "<"},
    "vllm_offload": {"color": "#17becf", "marker": ">"},
    "mars": {"color": "#393b79", "marker": "h"},
}
"""Policy name -> matplotlib ``color`` and ``marker``."""

ESTIMATOR_STYLE: dict[str, dict[str, str]] = {
    "paper": {"color": "#1f77b4", "marker": "o"},
    "elapsed": {"color": "#ff7f0e", "marker": "s"},
    "oracle": {"color": "#2ca02c", "marker": "*"},
}
"""InferCept's interception-duration estimator (``policy_options.estimator``) -> colour and marker."""

VARIANT_COLORS: tuple[str, ...] = (
    "#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666",
    "#1f78b4", "#b2df8a", "#fb9a99", "#cab2d6",
)
"""Colours for variants and other series without a fixed style, taken in order of first appearance."""

NEUTRAL = {"color": "#555555", "marker": "o"}
"""The style of a series that has no fixed style and no index."""

TARGET_LINE: dict[str, str | float] = {"color": "grey", "linestyle": ":", "linewidth": 1.0}
"""The knee target (a horizontal line on latency plots)."""


def policy_style(policy: str) -> dict[str, str]:
    """Colour and marker of ``policy`` (grey circles for an unknown one)."""
    return dict(POLICY_STYLE.get(policy, NEUTRAL))


def series_style(labels: dict[str, object], index: int) -> dict[str, str]:
    """Style of a plotted series from the labels that tell it apart from the others in its panel.

    Only the policy differs: the policy's style. Only the estimator: the estimator's. Otherwise (a variant, a
    grid key) the ``index``-th variant colour, with the policy's marker when the policy is among the labels.
    """
    keys = set(labels)
    if keys <= {"policy"} and "policy" in labels:
        return policy_style(str(labels["policy"]))
    est = labels.get("policy_options.estimator")
    if keys <= {"policy_options.estimator", "policy"} and est in ESTIMATOR_STYLE:
        return dict(ESTIMATOR_STYLE[str(est)])
    style = {"color": VARIANT_COLORS[index % len(VARIANT_COLORS)], "marker": "o"}
    if "policy" in labels:
        style["marker"] = policy_style(str(labels["policy"]))["marker"]
    return style
