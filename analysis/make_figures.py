"""`infercept figures SWEEP_DIR... --out DIR`: every figure each sweep folder's tables support.

Each figure function (analysis/fig_*.py) reads a sweep folder's runs tables and raises MissingDataError
when they lack what it draws; here a figure is made for a folder exactly when its tables have its keys.
A folder without runs.parquet is an error. Files are ``<sweep folder name>-<figure>.png`` and ``.pdf``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from analysis import fig_ablation, fig_estimator, fig_rate
from analysis.load import MissingDataError, SweepData, load_sweep_dir

FigureFn = Callable[[SweepData, Path], list[Path]]

FIGURES: tuple[tuple[str, FigureFn], ...] = (
    ("latency", fig_rate.latency),
    ("latency_by_kind", fig_rate.latency_by_kind),
    ("gpu_waste", fig_rate.gpu_waste),
    ("recompute_share", fig_rate.recompute_share),
    ("ttft_throughput", fig_rate.ttft_throughput),
    ("ablation_ladder", fig_ablation.ablation_ladder),
    ("ablation_options", fig_ablation.ablation_options),
    ("estimator", fig_estimator.estimator),
    ("sensitivity", fig_ablation.sensitivity),
)
"""Figure name -> function(sweep data, output folder) -> the files written."""


def make_figures(sweep_dirs: Sequence[Path], out: Path,
                 echo: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> list[Path]:
    """Every figure of ``FIGURES`` that each folder's tables support, into ``out``; return the files.
    ``echo`` is told which figures a folder does not support, and why."""
    loaded = [load_sweep_dir(d) for d in sweep_dirs]  # a folder without runs.parquet fails before any drawing
    names = [d.name for d in loaded]
    if len(set(names)) != len(names):
        raise MissingDataError(f"sweep folders with the same name would overwrite each other's figures: {names}")
    written: list[Path] = []
    for data in loaded:
        for name, fn in FIGURES:
            try:
                written += fn(data, out)
            except MissingDataError as exc:
                echo(f"{data.name}: no {name} figure ({exc})")
    return written
