"""The benchmark scripts' knee arithmetic and output tables (tiny grids; the real runs are `make bench`)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from benchmarks import ablation
from benchmarks import knee as knee_mod
from benchmarks.knee import KNEE_COLUMNS, KNEE_METRICS, knee, knee_bound, knee_rows
from core.config import build_config
from core.policy import check_options


def test_knee_interpolates_first_crossing() -> None:
    pts = [(3.0, 80.0), (1.0, 10.0), (2.0, 40.0), (4.0, 180.0), (5.0, 50.0), (6.0, 500.0)]  # unsorted
    assert knee(pts, 100.0) == pytest.approx(3.2)  # 80 -> 180 between 3 and 4: 20/100 of the way
    assert knee_bound(pts, 100.0) == "crossed"
    # exactly on the target is not above it: the crossing is the next segment's start
    assert knee([(1.0, 50.0), (2.0, 100.0), (3.0, 200.0)], 100.0) == pytest.approx(2.0)


def test_knee_never_crosses() -> None:
    pts = [(1.0, 10.0), (2.0, 20.0), (3.0, 99.9)]
    assert knee(pts, 100.0) is None
    assert knee_bound(pts, 100.0) == "never_crossed"
    assert knee([], 100.0) is None
    assert knee_bound([], 100.0) == "no_points"


def test_knee_above_at_first_rate() -> None:
    pts = [(2.0, 300.0), (1.0, 150.0)]
    assert knee(pts, 100.0) == 1.0
    assert knee_bound(pts, 100.0) == "above_at_first_rate"


def test_knee_skips_nan_points() -> None:
    assert knee([(1.0, math.nan), (2.0, 50.0), (3.0, 150.0)], 100.0) == pytest.approx(2.5)


def test_knee_rows_ratio_is_infercepts_knee_over_the_policys() -> None:
    curves = {"discard": [(1, 50), (2, 150)], "infercept": [(1, 10), (2, 60), (3, 140)]}
    rows = [{"policy": p, "rate": r, **{m: lat for m in KNEE_METRICS}}
            for p, c in curves.items() for r, lat in c]
    by = {(r["policy"], r["metric"]): r for r in knee_rows(rows, ["discard", "infercept"], 100.0, "s", 60, 1)}
    assert by[("discard", "norm_latency_ms")]["knee_rps"] == pytest.approx(1.5)
    assert by[("infercept", "norm_latency_ms")]["knee_rps"] == pytest.approx(2.5)
    assert by[("discard", "norm_latency_p90_ms")]["infercept_ratio"] == pytest.approx(2.5 / 1.5)
    assert by[("infercept", "norm_latency_corrected_ms")]["infercept_ratio"] == pytest.approx(1.0)


def test_knee_main_writes_knees_csv(tmp_path: Path) -> None:
    knee_mod.main(["--rates", "1,2", "--seeds", "1", "--duration-s", "60", "--policies", "discard,infercept",
                   "--jobs", "1", "--out", str(tmp_path)])
    with (tmp_path / "knees.csv").open() as f:
        reader = csv.DictReader(f)
        got = list(reader)
    assert tuple(reader.fieldnames or ()) == KNEE_COLUMNS
    assert {"setup", "policy", "metric", "target_ms", "knee_rps", "infercept_ratio"} <= set(KNEE_COLUMNS)
    assert {(r["policy"], r["metric"]) for r in got} == {(p, m) for p in ("discard", "infercept")
                                                         for m in KNEE_METRICS}
    assert (tmp_path / "summary.csv").exists()
    assert not [p for p in tmp_path.iterdir() if p.is_dir()]  # tables only, no run folders


def test_ablation_variants_change_one_known_option() -> None:
    for name, (sets, _) in ablation.VARIANTS.items():
        assert len(sets) == (0 if name == "full" else 1), name
        check_options("infercept", build_config({"policy": "infercept"}, sets).policy_options)


def test_ablation_table(tmp_path: Path) -> None:
    # a real (tiny) run: two variants, two rates, a 60 s window
    ablation.main(["--rates", "2,6", "--seeds", "1", "--duration-s", "60", "--variants", "full,no-swap",
                   "--refine", "0", "--target-ms", "30", "--jobs", "1", "--out", str(tmp_path)])
    with (tmp_path / "ablation.csv").open() as f:
        got = {r["variant"]: r for r in csv.DictReader(f)}
    assert set(got) == {"full", "no-swap"} and got["no-swap"]["changed"] == "swap=false"
    with (tmp_path / "ablation_summary.csv").open() as f:
        summary = list(csv.DictReader(f))
    for variant, row in got.items():  # each knee is the crossing of that variant's own curve
        pts = [(float(r["rate"]), float(r["norm_latency_ms"])) for r in summary if r["variant"] == variant]
        expected = knee(pts, 30.0)
        assert (row["knee_mean_rps"] == "") if expected is None else float(row["knee_mean_rps"]) == pytest.approx(
            expected, rel=1e-3)


def test_brackets_are_the_crossing_intervals_midpoints() -> None:
    from benchmarks.knee import brackets

    rows = [{"policy": "p", "rate": r, **{m: lat for m in KNEE_METRICS}} for r, lat in
            [(1.0, 20.0), (1.5, 48.0), (2.0, 405.0), (2.5, 900.0)]]
    assert brackets(rows, "p", 100.0) == {1.75}
    assert brackets(rows, "p", 1000.0) == set()  # never crosses
