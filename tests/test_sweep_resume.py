"""A sweep killed with SIGKILL and restarted gives the uninterrupted sweep's runs.parquet, running no finished
run again; the Ray executor gives the local executor's runs.parquet (a real local Ray, no mock)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from experiments.sweep import run_sweep

SWEEP = """
[base]
duration_s = {duration}
[grid]
policy = ["discard", "preserve", "infercept"]
rate_rps = [1.5, 2.5, 3.5]
seed = [0, 1]
"""


def _finished(out: Path) -> dict[str, int]:
    runs = out / "runs"
    return {p.name: (p / "summary.json").stat().st_ino for p in runs.iterdir()
            if not p.name.startswith(".") and (p / "summary.json").exists()} if runs.exists() else {}


def test_a_sweep_killed_with_sigkill_resumes_to_the_same_runs_table(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(SWEEP.format(duration=240))
    cmd = [sys.executable, "-m", "experiments.cli", "sweep", str(path), "--out", str(tmp_path / "killed"),
           "--jobs", "2", "--quiet"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    while len(_finished(tmp_path / "killed")) < 2 and proc.poll() is None:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its workers, wherever they are
    proc.wait()
    before = _finished(tmp_path / "killed")
    assert 2 <= len(before) < 18, "the sweep must be killed partway"
    assert not (tmp_path / "killed" / "runs.parquet").exists()
    resumed = run_sweep(path, tmp_path / "killed", jobs=2, progress=False)
    after = _finished(tmp_path / "killed")
    assert all(after[rid] == ino for rid, ino in before.items())  # no finished run ran again
    assert resumed.ran == 18 - len(before) and resumed.reused == len(before)
    assert not [p for p in (tmp_path / "killed" / "runs").iterdir() if p.name.startswith(".")]
    run_sweep(path, tmp_path / "whole", jobs=1, progress=False)
    assert (tmp_path / "killed" / "runs.parquet").read_bytes() == (tmp_path / "whole" / "runs.parquet").read_bytes()
    assert ((tmp_path / "killed" / "runs_by_kind.parquet").read_bytes()
            == (tmp_path / "whole" / "runs_by_kind.parquet").read_bytes())


def test_the_ray_executor_gives_the_local_executors_runs_table(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(SWEEP.format(duration=60))
    ray_out = run_sweep(path, tmp_path / "ray", jobs=2, executor="ray", progress=False)
    assert ray_out.ran == 18 and not ray_out.failed
    run_sweep(path, tmp_path / "local", jobs=2, progress=False)
    assert (tmp_path / "ray" / "runs.parquet").read_bytes() == (tmp_path / "local" / "runs.parquet").read_bytes()
