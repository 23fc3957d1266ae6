"""Knee bar figures from a sweep with variants: the ablation ladder, the one-option-at-a-time variants, and
the sensitivity of discard's and InferCept's knees to the profile's terms.

Knees are those of analysis/knees.py (mean normalized latency crossing the sweep's ``[sweep.knee]`` target),
computed from runs.parquet; bars are in the order variants first appear there, one panel per hardware setup.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.patches import Rectangle

from analysis.load import (
    KNEE_METRIC,
    Knee,
    MissingDataError,
    SweepData,
    as_data,
    curve_knees,
    describe,
    distinguishing,
    hardware,
    knee_target,
    require,
)
from analysis.plot import knee_bars, legend, panels, save
from analysis.style import VARIANT_COLORS, policy_style

LADDER = re.compile(r"^ladder-(?P<setup>.+?)-(?P<step>\d+[a-z]?)-(?P<name>.+)$")
"""A ladder variant's name: ``ladder-<setup>-<step>-<what the step adds>`` (a step such as 5b: a variant of 5)."""
OPTION_PREFIX = "option-"
OPTION_REFERENCE = "option-full"
NEEDED = ("variant", "policy", "rate_rps", "seed", KNEE_METRIC)


def _variants(data: SweepData, figure: str, keep: Any, what: str) -> list[dict[str, Any]]:
    require(data.rows, NEEDED, figure, "runs.parquet", data.folder)
    rows = [r for r in data.rows if keep(str(r["variant"]))]
    if not rows:
        names = ", ".join(dict.fromkeys(str(r["variant"]) for r in data.rows))
        raise MissingDataError(f"{figure}: runs.parquet in {data.folder} has no {what} variant "
                               f"(its variants: {names})")
    return rows


def _by_hardware(knees: Sequence[Knee]) -> dict[str, list[Knee]]:
    out: dict[str, list[Knee]] = {}
    for k in knees:
        out.setdefault(hardware(k.labels), []).append(k)
    return out


def _names(knees: Sequence[Knee], short: Any) -> list[str]:
    """Bar names: the variant's (shortened), and any label that tells apart curves of the same variant."""
    extra = [e for e in distinguishing([k.labels for k in knees], ("kind",)) if e != "variant"]
    return [short(str(k.labels["variant"])) + "".join(f"\n{e.split('.')[-1]}={k.labels.get(e)}" for e in extra)
            for k in knees]


def _ladder_name(variant: str) -> str:
    m = LADDER.match(variant)
    return f"{m['step']}. {m['name']}" if m else variant


def _title(rows: Sequence[dict[str, Any]], hw: str) -> str:
    return textwrap.fill(describe([r for r in rows if hardware(r) == hw]), 58)


def ablation_ladder(sweep: SweepData | str | Path, out_dir: Path) -> list[Path]:
    """Knee rate (req/s) after each cumulative step of the ablation ladder (``ladder-*`` variants), one bar
    per step coloured by the step's policy, one panel per setup."""
    data = as_data(sweep)
    rows = _variants(data, "ablation_ladder", lambda v: v.startswith("ladder-"), "'ladder-*'")
    target = knee_target(data, "ablation_ladder")
    groups = _by_hardware(curve_knees(rows, target))
    fig, axes = panels(len(groups), width_in=max(4.2, 0.6 * max(len(g) for g in groups.values())), ncols=2)
    for ax, (hw, knees) in zip(axes, groups.items()):
        colors = [policy_style(str(k.labels["policy"]))["color"] for k in knees]
        knee_bars(ax, knees, _names(knees, _ladder_name), colors, target)
        ax.set_title(_title(rows, hw), fontsize=8)
    fig.suptitle(f"{data.name}: ablation ladder (each step adds one mechanism)", fontsize=10)
    return save(fig, out_dir, f"{data.name}-ablation_ladder")


def ablation_options(sweep: SweepData | str | Path, out_dir: Path) -> list[Path]:
    """Knee rate (req/s) of InferCept with one option changed at a time (``option-*`` variants); the dashed
    line is ``option-full``'s knee."""
    data = as_data(sweep)
    rows = _variants(data, "ablation_options", lambda v: v.startswith(OPTION_PREFIX), f"'{OPTION_PREFIX}*'")
    target = knee_target(data, "ablation_options")
    groups = _by_hardware(curve_knees(rows, target))
    fig, axes = panels(len(groups), width_in=max(4.2, 0.6 * max(len(g) for g in groups.values())), ncols=2)
    for ax, (hw, knees) in zip(axes, groups.items()):
        colors = [VARIANT_COLORS[i % len(VARIANT_COLORS)] for i in range(len(knees))]
        knee_bars(ax, knees, _names(knees, lambda v: v.removeprefix(OPTION_PREFIX)), colors, target)
        full = [k.knee_rps for k in knees if k.labels["variant"] == OPTION_REFERENCE]
        if full and full[0] is not None:
            ax.axhline(full[0], color="black", linestyle="--", linewidth=0.8,
                       label=f"{OPTION_REFERENCE} knee")
        ax.set_title(_title(rows, hw), fontsize=8)
    fig.suptitle(f"{data.name}: InferCept with one option changed at a time", fontsize=10)
    legend(fig, axes)
    return save(fig, out_dir, f"{data.name}-ablation_options")


SENSITIVITY_POLICIES = ("discard", "infercept")


def _pairs(knees: Sequence[Knee]) -> dict[str, dict[str, Knee]]:
    """Variant -> policy -> knee, for the variants that have both policies."""
    by: dict[str, dict[str, Knee]] = {}
    for k in knees:
        by.setdefault(str(k.labels["variant"]), {})[str(k.labels["policy"])] = k
    return {v: p for v, p in by.items() if all(x in p for x in SENSITIVITY_POLICIES)}


def ratio(pair: dict[str, Knee]) -> tuple[float | None, bool]:
    """InferCept's knee over discard's, and whether both knees are interpolated crossings (else a bound)."""
    ic, d = pair["infercept"], pair["discard"]
    exact = ic.bound == "crossed" and d.bound == "crossed"
    a = ic.knee_rps if ic.knee_rps is not None else ic.max_rate_rps
    b = d.knee_rps if d.knee_rps is not None else d.max_rate_rps
    return (a / b if b else None), exact


def sensitivity(sweep: SweepData | str | Path, out_dir: Path) -> list[Path]:
    """Per variant: the knees of discard and InferCept (req/s) side by side, and InferCept's knee over
    discard's (hatched where a knee is only a bound); one row of two panels per setup."""
    data = as_data(sweep)
    rows = _variants(data, "sensitivity", lambda v: True, "")
    target = knee_target(data, "sensitivity")
    groups = {hw: _pairs(ks) for hw, ks in _by_hardware(curve_knees(rows, target)).items()}
    groups = {hw: p for hw, p in groups.items() if p}
    if not groups:
        raise MissingDataError(f"sensitivity: runs.parquet in {data.folder} has no variant with runs of both "
                               f"{' and '.join(SENSITIVITY_POLICIES)}")
    n = max(len(p) for p in groups.values())
    fig, axes = panels(2 * len(groups), width_in=max(4.2, 0.55 * n), ncols=2)
    for i, (hw, pairs) in enumerate(groups.items()):
        ax, rax = axes[2 * i], axes[2 * i + 1]
        names = list(pairs)
        for j, policy in enumerate(SENSITIVITY_POLICIES):
            knees = [pairs[v][policy] for v in names]
            xs = [x + (j - 0.5) * 0.4 for x in range(len(names))]
            knee_bars(ax, knees, names, [policy_style(policy)["color"]] * len(knees), target, xs, 0.4)
            ax.add_artist(Rectangle((0, 0), 0, 0, color=policy_style(policy)["color"], label=policy))
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=7)
        ax.set_title(_title(rows, hw), fontsize=8)
        ratios = [ratio(pairs[v]) for v in names]
        for x, (r, exact) in enumerate(ratios):
            if r is not None:
                rax.bar(x, r, 0.6, color=policy_style("infercept")["color"], hatch=None if exact else "//",
                        edgecolor="black", linewidth=0.5)
                rax.annotate(f"{r:.2f}x", (x, r), xytext=(0, 2), textcoords="offset points", ha="center",
                             fontsize=7)
        rax.axhline(1.0, color="grey", linewidth=0.8)
        rax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=7)
        rax.set_ylabel("knee ratio, InferCept / discard")
        rax.set_title("InferCept's knee over discard's", fontsize=8)
        rax.grid(True, axis="y", alpha=0.3)
    fig.suptitle(f"{data.name}: sensitivity of the knees to the profile", fontsize=10)
    legend(fig, axes)
    return save(fig, out_dir, f"{data.name}-sensitivity")
