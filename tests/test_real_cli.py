"""`infercept profile` and `infercept validate` on the real engine; bad traces and a dying engine."""

from __future__ import annotations

import csv
import json
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("vllm")

from real_support import tiny_model

from core.cost import FittedCostModel
from core.trace_io import WorkloadError, write_jsonl
from core.types import RequestSpec, Segment
from experiments.cli import main
from real.driver import RealRunError, check_trace, replay
from real.engine import EngineSettings
from real.model import SIZES
from real.profile import grid

SMALL = [
    RequestSpec("a", 0.0, 200, (Segment(8, 0.5, 30, "qa"), Segment(8, 0.3, 10, "qa"), Segment(8)), "qa"),
    RequestSpec("b", 0.1, 120, (Segment(16, 0.4, 20, "math"), Segment(16)), "math"),
    RequestSpec("c", 0.3, 300, (Segment(12, 0.6, 20, "math"), Segment(10)), "math"),
]


def test_profile_then_validate_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the random-weight checkpoint goes to results/models here
    assert main(["profile", "--model", "tiny", "--out", "prof", "--kv-blocks", "128", "--token-budget", "256"]) == 0
    (path,) = Path("prof").glob("*.json")
    prof = json.loads(path.read_text())
    cost = FittedCostModel.from_profile(path)
    # vLLM keeps one of the 128 blocks as its null block
    assert cost.gpu_kv_blocks == 127 and cost.block_size_tokens == 32 and cost.token_budget_tokens == 256
    assert prof["step"]["per_query_token_s"] > 0
    assert prof["provenance"]["vllm_version"] == "0.32.0" and prof["provenance"]["fit"]["num_steps"] > 50
    pauses = [r for phase in grid(SIZES["tiny"], 128 * 32, 256) for r in phase if len(r.segments) > 1]
    assert prof["provenance"]["client_engine_lag_s"]["samples"] == len(pauses) >= 18  # every resume phase ran

    write_jsonl(tmp_path / "small.jsonl", SMALL)
    assert main(["validate", str(tmp_path / "small.jsonl"), "--model", "tiny", "--profile", str(path),
                 "--out", "val", "--policies", "discard,swap", "--window-s", "6", "--kv-blocks", "64",
                 "--token-budget", "256"]) == 0
    rows = list(csv.DictReader(Path("val/validation.csv").read_text().splitlines()))
    assert {r["policy"] for r in rows} == {"discard", "swap", "plain"}
    assert {r["metric"] for r in rows} == {"completed_rps", "norm_latency_ms", "norm_latency_p50_ms", "ttft_p50_s",
                                           "recomputed_tokens", "swapped_tokens", "gpu_waste_pct",
                                           "recompute_share_pct"}
    by = {(r["policy"], r["metric"]): r for r in rows}
    # every request finishes inside the window, in both worlds: 3 requests / 6 s
    assert float(by["discard", "completed_rps"]["real"]) == pytest.approx(0.5)
    assert float(by["discard", "completed_rps"]["sim"]) == pytest.approx(0.5)
    # the same contexts are dropped and recomputed, or moved, in the engine and in the simulator
    assert float(by["discard", "recomputed_tokens"]["real"]) == float(by["discard", "recomputed_tokens"]["sim"]) > 0
    assert float(by["swap", "swapped_tokens"]["real"]) == float(by["swap", "swapped_tokens"]["sim"]) > 0
    report = Path("val/report.md").read_text()
    assert report.count("| discard |") == 10  # eight metrics, the step-time row, the step-time-by-kind row
    assert "| decode 1 |" in report
    assert Path("val/latency_scatter.png").stat().st_size > 1000
    assert (Path("val/runs/swap-0") / "steps.parquet").exists()


def test_trace_beyond_context_or_with_bad_counts_is_rejected_before_the_engine(tmp_path: Path) -> None:
    long = [RequestSpec("too-long", 0.0, 4000, (Segment(200),))]
    with pytest.raises(WorkloadError, match="too-long.*exceed"):
        check_trace(long, 4096)
    bad = [RequestSpec("neg", 0.0, 10, (Segment(0),))]
    with pytest.raises(WorkloadError, match="neg"):
        check_trace(bad, 4096)
    write_jsonl(tmp_path / "t.jsonl", long)
    assert main(["validate", str(tmp_path / "t.jsonl"), "--model", "tiny", "--out", str(tmp_path / "v"),
                 "--kv-blocks", "64"]) == 2
    # rejected before any engine started: no profile was measured (none was given) and nothing ran
    assert not list((tmp_path / "v").glob("**/*.json")) and not (tmp_path / "v" / "runs").exists()


def test_engine_death_mid_run_is_a_clear_error(tmp_path: Path) -> None:
    import psutil

    model = tiny_model(tmp_path)
    specs = [RequestSpec(f"r{i}", 0.2 * i, 100, (Segment(400),)) for i in range(20)]
    s = EngineSettings(model, policy="discard", kv_blocks=128, max_context_tokens=2048,
                       log_path=str(tmp_path / "e.jsonl"))

    def kill_engine() -> None:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if (tmp_path / "e.jsonl").exists() and (tmp_path / "e.jsonl").stat().st_size > 0:
                for child in psutil.Process().children(recursive=True):
                    child.kill()
                return
            time.sleep(0.2)

    threading.Thread(target=kill_engine, daemon=True).start()
    with pytest.raises(RealRunError):
        replay(s, specs, float("inf"), SIZES["tiny"].vocab)
