"""The reproduction report: numbers read back from tiny real sweeps, missing sweeps named, same bytes twice."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from analysis.claims import CLAIMS, REASONS, Claim, verdict
from analysis.measures import Finding
from analysis.report import write_report
from experiments.cli import main
from experiments.sweep import run_sweep

E2E = """
[sweep]
knee = { target_ms = 100, refine = 1, metrics = ["norm_latency_ms"] }
[base]
duration_s = 90
[grid]
policy = ["discard", "swap", "infercept"]
rate_rps = [1, 3, 5]
seed = [0, 1]
"""

ESTIMATOR = """
[sweep]
knee = { target_ms = 100, refine = 1, metrics = ["norm_latency_ms"] }
[base]
duration_s = 90
policy = "infercept"
[grid]
"policy_options.estimator" = ["paper", "elapsed", "oracle"]
rate_rps = [2, 4, 6]
seed = [0]
"""


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two tiny sweeps, in folders named as the shipped ones (the report finds its claims by folder name)."""
    root = tmp_path_factory.mktemp("sweeps")
    out = {}
    for name, text in (("e2e_gptj6b", E2E), ("estimator", ESTIMATOR)):
        (root / f"{name}.toml").write_text(text)
        run_sweep(root / f"{name}.toml", root / name, jobs=1, progress=False, echo=lambda s: None)
        out[name] = root / name
    return out


def knees(folder: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((folder / "knees.csv").read_text().splitlines()))


def claim_row(report: str, number: int) -> str:
    return next(line for line in report.splitlines() if line.startswith(f"| {number} | "))


def index(cid: str) -> int:
    return next(i for i, c in enumerate(CLAIMS, 1) if c.cid == cid)


def test_load_gain_row_is_the_knees_csv_ratio(sweeps: dict[str, Path], tmp_path: Path) -> None:
    out = write_report([sweeps["e2e_gptj6b"]], tmp_path / "r.md", tmp_path / "figs")
    row = claim_row(out.read_text(), index("load_gain_6b"))
    ratio = next(float(k["infercept_ratio"]) for k in knees(sweeps["e2e_gptj6b"])
                 if k["policy"] == "discard" and k["metric"] == "norm_latency_ms")
    assert row.split(" | ")[2].startswith(f"{ratio:.2f}×")
    assert "infercept sweep experiments/sweeps/e2e_gptj6b.toml --out docs/results/sweeps/e2e_gptj6b" in row
    assert row.endswith("| agrees |") == (1.6 * 0.85 <= round(ratio, 4) <= 1.6 * 1.15)


def test_estimator_row_is_paper_knee_over_oracle_knee(sweeps: dict[str, Path], tmp_path: Path) -> None:
    out = write_report(list(sweeps.values()), tmp_path / "r.md", tmp_path / "figs")
    by = {k["setup"].rsplit("=", 1)[1]: k for k in knees(sweeps["estimator"])}
    row = claim_row(out.read_text(), index("estimator"))
    if by["paper"]["bound"] == by["oracle"]["bound"] == by["elapsed"]["bound"] == "crossed":
        pct = 100 * float(by["paper"]["knee_rps"]) / float(by["oracle"]["knee_rps"])
        assert f"| {pct:.0f} % (knee " in row
    else:
        assert "knees: paper" in row


def test_missing_sweep_is_listed_not_dropped(sweeps: dict[str, Path], tmp_path: Path) -> None:
    text = write_report([sweeps["e2e_gptj6b"]], tmp_path / "r.md", tmp_path / "figs").read_text()
    assert "not measured (sweep e2e_vicuna13b not given)" in claim_row(text, index("load_gain_13b1"))
    assert "not measured (sweep estimator not given)" in claim_row(text, index("estimator"))
    assert "13B-2: not measured (sweep e2e_vicuna13b_tp2 not given)" in claim_row(text, index("gpu_waste"))
    assert len([line for line in text.splitlines() if line.startswith("| ") and line[2].isdigit()]) == len(CLAIMS)
    assert "Not given: e2e_vicuna13b (`infercept sweep experiments/sweeps/e2e_vicuna13b.toml" in text


def test_same_inputs_same_bytes(sweeps: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "figs").mkdir()
    (tmp_path / "figs" / "e2e_gptj6b-latency_vs_rate.png").write_bytes(b"png")
    first = write_report(list(sweeps.values()), tmp_path / "r.md", tmp_path / "figs").read_bytes()
    second = write_report(list(sweeps.values()), tmp_path / "r.md", tmp_path / "figs").read_bytes()
    assert first == second
    assert b"](figs/e2e_gptj6b-latency_vs_rate.png)" in first
    assert b"estimator-" not in first  # no figure drawn for it, so none linked


def test_cli_report_exit_status(sweeps: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "docs" / "reproduction.md"
    assert main(["report", str(sweeps["e2e_gptj6b"]), "--out", str(out), "--figures", str(tmp_path)]) == 0
    assert out.read_text().startswith("# Reproduction report")
    assert f"`infercept report {sweeps['e2e_gptj6b'].as_posix()} --out {out.as_posix()}" in out.read_text()


def test_reason_only_outside_the_tolerance() -> None:
    claim = Claim("load_gain_6b", "", ("e2e_gptj6b",), (), "", None, reason="load_gain")
    assert verdict(claim, Finding("", ((1.6 * 1.14, 1.6, 1.6),))) == "agrees"
    assert verdict(claim, Finding("", ((1.6 * 0.86, 1.6, 1.6),))) == "agrees"
    lower = verdict(claim, Finding("", ((1.2, 1.6, 1.6),)))
    assert lower == "differs: " + REASONS["load_gain"].format(ours="1.2×", paper="1.6×", direction="lower")
    assert "higher (3×" in verdict(claim, Finding("", ((3.0, 1.6, 2.0),)))
    assert verdict(claim, Finding("no rate", ())) == "—"
