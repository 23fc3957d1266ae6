"""Estimator vs oracle: InferCept with each interception-duration estimator (``policy_options.estimator``):
latency against rate, and the knee rate per estimator; one row of two panels per setup."""

from __future__ import annotations

import textwrap
from pathlib import Path

from analysis.load import (
    KNEE_METRIC,
    SETUP_KEYS,
    MissingDataError,
    SweepData,
    as_data,
    curve_knees,
    describe,
    group_curves,
    knee_target,
    require,
    split,
)
from analysis.plot import draw_curves, knee_bars, legend, panels, save, target_line
from analysis.style import ESTIMATOR_STYLE, VARIANT_COLORS

ESTIMATOR = "policy_options.estimator"


def estimator(sweep: SweepData | str | Path, out_dir: Path) -> list[Path]:
    """Left: mean normalized latency (ms/token, log) against rate per estimator, 95 % bands and the knee
    target. Right: each estimator's knee rate (req/s) with its 95 % interval over seeds."""
    data = as_data(sweep)
    require(data.rows, (ESTIMATOR, "policy", "rate_rps", "seed", KNEE_METRIC), "estimator", "runs.parquet",
            data.folder)
    # a variant that sets the estimator is drawn as that estimator (its name would only repeat it)
    rows = [{k: v for k, v in r.items() if k != "variant"} for r in data.rows if r[ESTIMATOR] is not None]
    if len({r[ESTIMATOR] for r in rows}) < 2:
        raise MissingDataError(f"estimator: runs.parquet in {data.folder} has fewer than two values of "
                               f"{ESTIMATOR!r} to compare")
    target = knee_target(data, "estimator")
    groups = split(rows, [k for k in SETUP_KEYS if k in rows[0]])
    fig, axes = panels(2 * len(groups), ncols=2)
    for i, group in enumerate(groups.values()):
        ax, kax = axes[2 * i], axes[2 * i + 1]
        draw_curves(ax, group_curves(group, KNEE_METRIC), skip=SETUP_KEYS, log_y=True)
        target_line(ax, target)
        ax.set_xlabel("request rate (req/s)")
        ax.set_ylabel("normalized latency (ms/token)")
        ax.set_title(textwrap.fill(describe(group), 58), fontsize=8)
        knees = curve_knees(group, target)
        names = [" · ".join(str(k.labels[c]) for c in (ESTIMATOR, "policy") if k.labels.get(c) is not None)
                 if len({str(x.labels["policy"]) for x in knees}) > 1 else str(k.labels[ESTIMATOR])
                 for k in knees]
        colors = [ESTIMATOR_STYLE.get(str(k.labels[ESTIMATOR]), {"color": VARIANT_COLORS[j % len(VARIANT_COLORS)]})["color"]
                  for j, k in enumerate(knees)]
        knee_bars(kax, knees, names, colors, target)
        kax.set_title("knee rate per estimator", fontsize=8)
    fig.suptitle(f"{data.name}: InferCept's interception-duration estimators vs the oracle", fontsize=10)
    legend(fig, axes)
    return save(fig, out_dir, f"{data.name}-estimator")
