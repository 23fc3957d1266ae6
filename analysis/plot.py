"""Drawing helpers shared by the figure modules: panels, curves with bands, knee bars, reproducible files."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from analysis.load import Curve, Knee, distinguishing
from analysis.style import TARGET_LINE, series_style

PNG_METADATA = {"Software": None}
PDF_METADATA = {"Creator": None, "Producer": None, "CreationDate": None}
"""File metadata left out, so that the same data gives the same bytes."""


def panels(n: int, width_in: float = 4.2, height_in: float = 3.2, ncols: int = 3) -> tuple[Figure, list[Axes]]:
    """A figure with ``n`` panels, at most ``ncols`` per row, laid out without overlaps."""
    cols = max(1, min(n, ncols))
    rows = max(1, math.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(width_in * cols + 1.6, height_in * rows + 0.5), dpi=110,
                             squeeze=False, layout="constrained")
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def series_label(labels: dict[str, Any], keys: Sequence[str]) -> str:
    """A legend entry: the values of ``keys`` (``key=value`` for grid keys, bare for policy and variant)."""
    bare = ("policy", "variant", "kind", "workload")
    parts = [str(labels.get(k)) if k in bare else f"{k.split('.')[-1]}={labels.get(k)}" for k in keys]
    return " · ".join(parts) or str(labels.get("policy", ""))


def draw_curves(ax: Axes, curves: Sequence[Curve], skip: Sequence[str] = (), log_y: bool = False) -> None:
    """Each curve's mean (line and markers) and 95 % band over seeds; the legend names what differs.

    On a log axis the band's lower edge is floored at a tenth of the mean (a band reaching zero)."""
    keys = distinguishing([c.labels for c in curves], skip) or ["policy"]
    for i, c in enumerate(curves):
        labels = {k: c.labels.get(k) for k in keys}
        style = series_style(labels, i)
        lo = [m - h for m, h in zip(c.mean, c.ci95)]
        if log_y:
            lo = [max(v, m / 10) for v, m in zip(lo, c.mean)]
        hi = [m + h for m, h in zip(c.mean, c.ci95)]
        ax.fill_between(c.rates_rps, lo, hi, color=style["color"], alpha=0.18, linewidth=0)
        ax.plot(c.rates_rps, c.mean, label=series_label(c.labels, keys), markersize=4, linewidth=1.3,
                color=style["color"], marker=style["marker"])
    if log_y:
        ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)


def target_line(ax: Axes, target_ms: float | None) -> None:
    """The knee target as a dotted horizontal line (nothing when the sweep has none)."""
    if target_ms:
        ax.axhline(target_ms, label=f"target {target_ms:g} ms/token", color=TARGET_LINE["color"],
                   linestyle=TARGET_LINE["linestyle"], linewidth=float(TARGET_LINE["linewidth"]))


def legend(fig: Figure, axes: Sequence[Axes]) -> None:
    """One legend for the whole figure, outside on the right: every distinct entry of its panels."""
    entries: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    if entries:
        fig.legend(list(entries.values()), list(entries), loc="outside right upper", fontsize=7)
        fig.set_figwidth(fig.get_figwidth() + 0.3 + 0.06 * max(len(label) for label in entries))


def knee_bars(ax: Axes, knees: Sequence[Knee], names: Sequence[str], colors: Sequence[str],
              target_ms: float, positions: Sequence[float] | None = None, width: float = 0.8) -> None:
    """One bar per knee (req/s) with its 95 % interval over seeds. A curve that never crossed the target
    gets a hatched bar at its highest rate marked ">"; one above the target at its lowest rate, "<="."""
    xs = list(positions) if positions is not None else list(range(len(knees)))
    for x, k, color in zip(xs, knees, colors):
        crossed = k.knee_rps is not None and k.bound == "crossed"
        height = k.knee_rps if k.knee_rps is not None else k.max_rate_rps
        ax.bar(x, height, width, color=color, hatch=None if crossed else "//", edgecolor="black",
               linewidth=0.5, capsize=3,  # the interval's lower arm stops at zero
               yerr=[[min(k.ci95_rps, height)], [k.ci95_rps]] if crossed and k.ci95_rps else None)
        mark = {"never_crossed": f">{height:.3g}", "above_at_first_rate": f"<={height:.3g}"}.get(
            k.bound, f"{height:.3g}")
        top = height + ((k.ci95_rps or 0.0) if crossed else 0.0)
        ax.annotate(mark, (x, top), xytext=(0, 2), textcoords="offset points", ha="center", fontsize=7)
    if positions is None:
        ax.set_xticks(xs, names, rotation=30, ha="right", fontsize=7)
    ax.set_ylabel(f"knee rate at {target_ms:g} ms/token (req/s)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.margins(y=0.12)


def save(fig: Figure, out_dir: Path, stem: str) -> list[Path]:
    """Write ``stem``.png and ``stem``.pdf into ``out_dir`` (created) without time stamps; close the figure."""
    out_dir.mkdir(parents=True, exist_ok=True)
    png, pdf = out_dir / f"{stem}.png", out_dir / f"{stem}.pdf"
    fig.savefig(png, metadata=PNG_METADATA)
    fig.set_layout_engine("none")  # keep the layout just computed: the PDF needs no second pass
    fig.savefig(pdf, metadata=PDF_METADATA)
    plt.close(fig)
    return [png, pdf]
