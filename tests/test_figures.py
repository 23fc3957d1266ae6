"""Figures from real (tiny) sweeps: every figure writes PNG and PDF, errors name what is missing, the bands
are the seeds' 95 % intervals, the knees are knees.csv's, and the same data gives the same bytes."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

from analysis import fig_ablation, fig_estimator, fig_rate
from analysis.knees import ci95
from analysis.load import MissingDataError, curve_knees, group_curves, load_sweep_dir
from analysis.make_figures import FIGURES, make_figures
from analysis.plot import draw_curves, panels
from analysis.style import POLICY_STYLE, series_style
from core.policy import POLICIES
from experiments.cli import main
from experiments.runstore import read_table
from experiments.sweep import run_sweep

HEAD = "[base]\nduration_s = 60\n[grid]\nrate_rps = [2, 4]\n"
SWEEPS = {
    "e2e": '[sweep]\nknee = { target_ms = 100, refine = 1 }\n' + HEAD
           + 'policy = ["discard", "infercept"]\nseed = [0, 1]\n',
    "abl": '[sweep]\nknee = { target_ms = 100 }\n' + HEAD + 'seed = [0, 1]\n'
           + "".join(f'[[variants]]\nname = "{n}"\npolicy = "{p}"\n{extra}'
                     for n, p, extra in (("ladder-gptj6b-1-discard", "discard", ""),
                                         ("ladder-gptj6b-2-min_waste", "infercept", ""),
                                         ("option-full", "infercept", ""),
                                         ("option-no-swap", "infercept", '"policy_options.swap" = false\n'))),
    "est": '[sweep]\nknee = { target_ms = 100 }\n' + HEAD.replace("[grid]", 'policy = "infercept"\n[grid]')
           + '"policy_options.estimator" = ["paper", "oracle"]\nseed = [0]\n',
    "sens": '[sweep]\nknee = { target_ms = 100 }\n' + HEAD + 'policy = ["discard", "infercept"]\nseed = [0]\n'
            + '[[variants]]\nname = "base"\n[[variants]]\nname = "link-0.8"\n'
            + '"profile_scale.link_bytes_per_s" = 0.8\n',
}


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The four tiny sweeps above, run once for the module (a few seconds)."""
    root = tmp_path_factory.mktemp("sweeps")
    out = {}
    for name, text in SWEEPS.items():
        (root / f"{name}.toml").write_text(text)
        out[name] = root / name
        outcome = run_sweep(root / f"{name}.toml", out[name], jobs=1, progress=False, echo=lambda s: None)
        assert not outcome.failed
    return out


CASES = [(fig_rate.latency, "e2e"), (fig_rate.latency_by_kind, "e2e"), (fig_rate.gpu_waste, "e2e"),
         (fig_rate.recompute_share, "e2e"), (fig_rate.ttft_throughput, "e2e"),
         (fig_ablation.ablation_ladder, "abl"), (fig_ablation.ablation_options, "abl"),
         (fig_estimator.estimator, "est"), (fig_ablation.sensitivity, "sens")]


@pytest.mark.parametrize(("fn", "sweep"), CASES, ids=[f.__name__ for f, _ in CASES])
def test_every_figure_writes_png_and_pdf(fn, sweep, sweeps, tmp_path):
    paths = fn(sweeps[sweep], tmp_path)
    assert [p.suffix for p in paths] == [".png", ".pdf"]
    assert paths[0].name == f"{sweep}-{fn.__name__}.png"
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths[0].stat().st_size > 5_000
    assert paths[1].read_bytes()[:5] == b"%PDF-" and paths[1].stat().st_size > 1_000


def test_every_registered_figure_is_tested():
    assert {fn for _, fn in FIGURES} == {fn for fn, _ in CASES}
    assert [name for name, _ in FIGURES] == [fn.__name__ for name, fn in FIGURES]


def test_missing_column_names_the_column_and_the_folder(sweeps, tmp_path):
    with pytest.raises(MissingDataError, match=r"ablation_ladder: runs\.parquet in .*e2e lacks column 'variant'"):
        fig_ablation.ablation_ladder(sweeps["e2e"], tmp_path)
    with pytest.raises(MissingDataError, match="lacks column 'policy_options.estimator'"):
        fig_estimator.estimator(sweeps["e2e"], tmp_path)
    assert isinstance(MissingDataError("x"), ValueError)
    assert not list(tmp_path.iterdir())


def test_variants_without_the_figures_keys_are_named(sweeps, tmp_path):
    with pytest.raises(MissingDataError, match=r"no 'ladder-\*' variant \(its variants: base, link-0.8\)"):
        fig_ablation.ablation_ladder(sweeps["sens"], tmp_path)
    with pytest.raises(MissingDataError, match="no variant with runs of both discard and infercept"):
        fig_ablation.sensitivity(sweeps["abl"], tmp_path)


def test_a_folder_without_runs_parquet_is_an_error_naming_it(sweeps, tmp_path):
    empty = tmp_path / "not_a_sweep"
    empty.mkdir()
    with pytest.raises(MissingDataError, match=f"{empty}: no runs.parquet"):
        make_figures([sweeps["e2e"], empty], tmp_path / "figs")
    assert not (tmp_path / "figs").exists()  # nothing drawn before the check
    assert main(["figures", str(empty), "--out", str(tmp_path / "figs")]) == 2


def test_cli_figures_draws_what_each_table_supports(sweeps, tmp_path, capsys):
    assert main(["figures", str(sweeps["abl"]), "--out", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    names = {p.name for p in tmp_path.iterdir()}
    assert {f"abl-{f}.{ext}" for f in ("latency", "gpu_waste", "ablation_ladder", "ablation_options")
            for ext in ("png", "pdf")} <= names
    assert "abl-estimator.png" not in names and "abl-sensitivity.png" not in names
    assert (tmp_path / "abl-ablation_ladder.png").stat().st_size > 5_000
    assert f"wrote {tmp_path / 'abl-latency.png'}" in out
    assert "abl: no sensitivity figure" in err and "both discard and infercept" in err


def test_band_is_the_seeds_95_percent_interval(sweeps):
    rows = read_table(sweeps["e2e"] / "runs.parquet")
    mine = [r["norm_latency_ms"] for r in rows if r["policy"] == "discard" and r["rate_rps"] == 4.0]
    assert len(mine) == 2
    by_hand = 12.706 * abs(mine[0] - mine[1]) / math.sqrt(2) / math.sqrt(2)  # t(1) * stdev / sqrt(n)
    curve = next(c for c in group_curves(rows, "norm_latency_ms") if c.labels["policy"] == "discard")
    i = curve.rates_rps.index(4.0)
    assert curve.mean[i] == pytest.approx(statistics.fmean(mine))
    assert curve.ci95[i] == pytest.approx(by_hand) == pytest.approx(ci95(mine))
    assert by_hand > 0
    # and the drawn band spans exactly mean +- that half-width
    fig, (ax,) = panels(1)
    draw_curves(ax, [curve])
    band = ax.collections[0].get_paths()[0].vertices
    plt.close(fig)
    at = sorted(y for x, y in band if x == pytest.approx(4.0))
    assert at[0] == pytest.approx(curve.mean[i] - by_hand) and at[-1] == pytest.approx(curve.mean[i] + by_hand)


def test_knees_are_those_of_knees_csv(sweeps):
    data = load_sweep_dir(sweeps["e2e"])
    assert data.target_ms == 100.0
    csv_rows = [r for r in read_table_csv(sweeps["e2e"] / "knees.csv") if r["metric"] == "norm_latency_ms"]
    knees = {k.labels["policy"]: k for k in curve_knees(data.rows, data.target_ms)}
    assert len(csv_rows) == len(knees) == 2
    for r in csv_rows:
        k = knees[r["policy"]]
        assert k.bound == r["bound"]
        assert (k.knee_rps is None) == (r["knee_rps"] == "")
        if k.knee_rps is not None:
            assert float(f"{k.knee_rps:.4g}") == float(r["knee_rps"])
        if k.ci95_rps is None:
            assert r["knee_rps_ci95"] == ""
        else:
            assert float(f"{k.ci95_rps:.4g}") == float(r["knee_rps_ci95"])


def read_table_csv(path: Path) -> list[dict[str, str]]:
    import csv

    with open(path) as f:
        return list(csv.DictReader(f))


def test_same_data_same_bytes(sweeps, tmp_path):
    a = fig_rate.latency(sweeps["e2e"], tmp_path / "a")
    b = fig_rate.latency(sweeps["e2e"], tmp_path / "b")
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]


def test_every_policy_has_its_own_style():
    assert set(POLICIES) <= set(POLICY_STYLE)
    looks = [(s["color"], s["marker"]) for s in POLICY_STYLE.values()]
    assert len(set(looks)) == len(looks)
    assert series_style({"policy": "swap_blocking"}, 5) == POLICY_STYLE["swap_blocking"]
    assert series_style({"policy_options.estimator": "oracle"}, 0)["marker"] == "*"
    assert series_style({"variant": "x", "policy": "discard"}, 1)["marker"] == POLICY_STYLE["discard"]["marker"]
