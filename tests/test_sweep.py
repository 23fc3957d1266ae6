"""Sweeps: the file's errors, stable ids and reuse, failures, knee refinement, the CLI's exit status."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import pytest

from analysis.knees import curves, knee, knee_rows
from core.config import build_config
from experiments import executors, runstore
from experiments.cli import main
from experiments.runid import run_id
from experiments.runstore import read_table
from experiments.sweep import dry_run, run_sweep
from experiments.sweepspec import SweepError, expand, load_sweep

SMALL = """
[sweep]
knee = {{ target_ms = 100, refine = 1, metrics = ["norm_latency_ms"] }}
[base]
duration_s = {duration}
[grid]
policy = ["discard", "infercept"]
rate_rps = {rates}
seed = [0, 1]
"""


def write(tmp_path: Path, text: str, name: str = "s.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize(("text", "named"), [
    ("[grid]\n", "grid: empty"),
    ("[grid]\nrate_rps = 2\n", "grid.rate_rps"),
    ("[grid]\nrate_rps = []\n", "grid.rate_rps"),
    ("[grid]\nrate_rps = [1, -2]\n", "rate_rps = -2.0"),
    ("[grid]\nrate_rps = ['fast']\n", "rate_rps = 'fast'"),
    ("[grid]\nwarp = [1]\n", "grid.warp"),
    ("[base]\ncolour = 'red'\n[grid]\nrate_rps = [1]\n", "base.colour"),
    ("[bases]\n[grid]\nrate_rps = [1]\n", "unknown section 'bases'"),
    ("[sweep]\nknee = { target = 1 }\n[grid]\nrate_rps = [1]\n", "sweep.knee.target"),
    ("[grid]\npolicy = ['discard']\n'policy_options.swap' = [false]\n", "policy_options.swap"),
    ("[grid]\n'engine.block_size' = [16]\n", "engine"),
    ("[grid]\nrate_rps = [1]\n[[variants]]\nbatching = 'v1'\n", "variants[0].name"),
    ("[grid]\nrate_rps = [1]\n[[variants]]\nname = 'a'\nbatching = 'v9'\n", "batching = 'v9'"),
    ("[sweep]\nknee = { metrics = ['speed'] }\n[grid]\nrate_rps = [1]\n", "sweep.knee.metrics"),
    ("[sweep]\nknee = { refine = 1.5 }\n[grid]\nrate_rps = [1]\n", "sweep.knee.refine = 1.5"),
    ("[base]\nworkload = 'nope.txt'\n[grid]\nrate_rps = [1]\n", "workload 'nope.txt'"),
    ("[base]\nprofile = 'missing.json'\n[grid]\nrate_rps = [1]\n", "missing.json"),
    ("[grid]\n'engine.max_num_seqs' = [0]\n", "engine.max_num_seqs"),
])
def test_a_malformed_sweep_file_fails_before_anything_runs_naming_the_file_and_the_key(
        tmp_path: Path, text: str, named: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(SweepError) as err:
        run_sweep(path, tmp_path / "out", jobs=1, progress=False)
    assert str(path) in str(err.value) and named in str(err.value)
    assert not (tmp_path / "out").exists()
    assert main(["sweep", str(path), "--out", str(tmp_path / "out")]) == 2


def test_ids_depend_on_the_configuration_the_profile_content_and_the_revision(tmp_path: Path) -> None:
    cfg = build_config({"rate_rps": 2.0})
    assert run_id(cfg, "r1") == run_id(build_config({"rate_rps": 2}), "r1")
    assert run_id(cfg, "r1") != run_id(cfg, "r2")
    assert run_id(cfg, "r1") != run_id(build_config({"rate_rps": 2.5}), "r1")
    shipped = Path("profiles/a100-gptj-6b-tp1.json").read_text()
    copy, edited = tmp_path / "a.json", tmp_path / "b.json"
    copy.write_text(shipped)
    edited.write_text(shipped.replace('"const_s": 0.01', '"const_s": 0.011'))
    same = run_id(build_config({"rate_rps": 2.0, "profile": str(copy)}), "r1")
    assert same == run_id(cfg, "r1")  # a profile is its content, not its path
    assert run_id(build_config({"rate_rps": 2.0, "profile": str(edited)}), "r1") != same


def test_each_policy_gets_its_share_of_the_options_and_variants_change_several_keys(tmp_path: Path) -> None:
    sweep = load_sweep(write(tmp_path, "[base]\n[base.policy_options]\nestimator = 'oracle'\n[grid]\n"
                             "policy = ['discard', 'infercept']\n[[variants]]\nname = 'v1-short'\n"
                             "batching = 'v1'\nduration_s = 60\n"))
    runs = expand(sweep, "r")
    assert [r.config.policy_options for r in runs] == [{}, {"estimator": "oracle"}]
    assert all(r.config.batching == "v1" and r.config.duration_s == 60 for r in runs)
    assert runs[0].labels["variant"] == "v1-short" and "duration_s" in runs[0].labels


def test_rows_follow_the_files_order_of_variants_and_grid_values(tmp_path: Path) -> None:
    path = write(tmp_path, "[base]\nduration_s = 30\n[grid]\npolicy = ['preserve', 'discard']\n"
                 "rate_rps = [2, 1]\n[[variants]]\nname = 'zeta'\n[[variants]]\nname = 'alpha'\n"
                 "batching = 'v1'\n")
    run_sweep(path, tmp_path / "out", jobs=2, progress=False)
    rows = read_table(tmp_path / "out" / "runs.parquet")
    assert [(r["variant"], r["policy"], r["rate_rps"]) for r in rows] == [
        (v, p, r) for v in ("zeta", "alpha") for p in ("preserve", "discard") for r in (1.0, 2.0)]


def test_adding_a_rate_reuses_every_finished_run_and_refinement_bisects_the_crossing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = run_sweep(write(tmp_path, SMALL.format(duration=120, rates="[1, 5]")), out, jobs=1, progress=False)
    assert first.ran == first.total and not first.failed
    before = {p.name: (p / "summary.json").stat().st_ino for p in (out / "runs").iterdir()}
    second = run_sweep(write(tmp_path, SMALL.format(duration=120, rates="[1, 3, 5]")), out, jobs=1,
                       progress=False)
    assert all((out / "runs" / rid / "summary.json").stat().st_ino == ino for rid, ino in before.items())
    grid_rows = [r for r in read_table(out / "runs.parquet") if r["rate_rps"] in (1.0, 3.0, 5.0)]
    assert len(grid_rows) == 12 and second.reused >= 8
    rows = read_table(out / "runs.parquet")
    # the refinement ran each curve's crossing midpoint at both seeds; the knee is read off the refined curve
    for pts in curves(rows, ["policy", "rate_rps", "seed"], "norm_latency_ms").values():
        crossing = [(a, b) for a, b in itertools.pairwise(pts) if b[1] > 100 >= a[1]]
        if crossing:
            (r0, _), (r1, _) = crossing[0]
            assert r1 - r0 <= 1.0 + 1e-9  # a grid interval of 2 req/s, bisected once
    knees = (out / "knees.csv").read_text().splitlines()
    disc = next(k for k in knees if k.split(",")[1] == "discard").split(",")
    pts = curves([r for r in rows if r["policy"] == "discard"], ["policy", "rate_rps", "seed"],
                 "norm_latency_ms")
    expected = knee(next(iter(pts.values())), 100)
    assert expected is not None and float(disc[4]) == pytest.approx(expected, rel=1e-3)


def test_a_run_that_raises_is_recorded_the_sweep_goes_on_and_retry_runs_it_again(tmp_path: Path) -> None:
    path = write(tmp_path, "[base]\nduration_s = 30\n[grid]\n'engine.gpu_kv_blocks' = [2, 400]\n")
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--quiet", "--jobs", "1"]) == 101
    rows = read_table(out / "runs.parquet")
    assert [r["engine.gpu_kv_blocks"] for r in rows] == [400]
    failed = [p for p in (out / "runs").iterdir() if (p / "error.txt").exists()]
    assert len(failed) == 1 and "needs 12 KV blocks" in (failed[0] / "error.txt").read_text()
    ino = (failed[0] / "error.txt").stat().st_ino
    assert main(["sweep", str(path), "--out", str(out), "--quiet", "--jobs", "1"]) == 101
    assert (failed[0] / "error.txt").stat().st_ino == ino  # not run again
    assert main(["sweep", str(path), "--out", str(out), "--quiet", "--jobs", "1", "--retry-failed"]) == 101
    assert (failed[0] / "error.txt").stat().st_ino != ino  # run again (and failed again)
    assert "1 failed, 0 to run" in dry_run(path, out)


def test_dry_run_counts_done_missing_and_stale_folders(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_sweep(write(tmp_path, SMALL.format(duration=60, rates="[1]")), out, jobs=1, progress=False)
    text = dry_run(write(tmp_path, SMALL.format(duration=60, rates="[1, 2]")), out)
    assert "8 runs known: 4 done, 0 failed, 4 to run" in text
    one = next((out / "runs").iterdir())
    meta = json.loads((one / "run.json").read_text())
    (one / "run.json").write_text(json.dumps({**meta, "revision": "older"}))
    text = dry_run(write(tmp_path, SMALL.format(duration=90, rates="[1]")), out)
    assert "0 done" in text and "1 from another simulator revision, 3 from another profile" in text


def test_two_variants_that_resolve_to_the_same_runs_are_each_refined(tmp_path: Path) -> None:
    path = write(tmp_path, "[sweep]\nknee = { target_ms = 100, refine = 1, metrics = ['norm_latency_ms'] }\n"
                 "[base]\nduration_s = 120\npolicy = 'discard'\n[grid]\nrate_rps = [1, 6]\n"
                 "[[variants]]\nname = 'a'\n[[variants]]\nname = 'b'\n")
    outcome = run_sweep(path, tmp_path / "out", jobs=1, progress=False)
    rows = read_table(tmp_path / "out" / "runs.parquet")
    rates = {v: sorted(r["rate_rps"] for r in rows if r["variant"] == v) for v in ("a", "b")}
    assert rates["a"] == rates["b"] == [1.0, 3.5, 6.0]
    assert outcome.ran == 3 and outcome.reused == 0  # each run once
    knees = [k.split(",") for k in (tmp_path / "out" / "knees.csv").read_text().splitlines()[1:]]
    assert knees[0][4] == knees[1][4]


def test_a_grid_key_some_policies_ignore_gives_each_of_their_runs_once(tmp_path: Path) -> None:
    sweep = load_sweep(write(tmp_path, "[grid]\npolicy = ['discard', 'infercept']\n"
                             "'policy_options.estimator' = ['paper', 'oracle']\n"))
    runs = expand(sweep, "r")
    assert [(r.config.policy, r.labels["policy_options.estimator"]) for r in runs] == [
        ("discard", None), ("infercept", "paper"), ("infercept", "oracle")]


def test_runs_that_differ_but_share_their_labels_are_refused(tmp_path: Path) -> None:
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "trace.csv").write_text(f"num_prefill_tokens,num_decode_tokens\n{10 + len(sub)},5\n"
                                                  if sub == "a" else "num_prefill_tokens,num_decode_tokens\n9,9\n")
    path = write(tmp_path, f"[grid]\nworkload = ['{tmp_path}/a/trace.csv', '{tmp_path}/b/trace.csv']\n")
    with pytest.raises(SweepError, match="same labels"):
        expand(load_sweep(path), "r")


def test_the_knee_interval_is_empty_when_a_seed_never_crosses() -> None:
    rows = [{"policy": "p", "rate_rps": r, "seed": s, "norm_latency_ms": lat}
            for s, curve in ((0, [(1.0, 50.0), (2.0, 90.0)]), (1, [(1.0, 50.0), (2.0, 250.0)]))
            for r, lat in curve]
    (row,) = knee_rows(rows, ["policy", "rate_rps", "seed"], 100.0, ["norm_latency_ms"])
    # the mean goes 50 -> 170: crossing at 1 + 50 / 120; seed 0 never crosses (90 at 2 req/s)
    assert row["knee_rps"] == pytest.approx(1 + 50 / 120) and row["knee_rps_ci95"] is None


REAL_EXECUTE = executors.execute


def _dies_at_rate_3(config: dict) -> dict:
    """Fault injection: the worker process is killed (as by the OOM killer) in the run at 3 req/s."""
    if config["rate_rps"] == 3.0:
        os._exit(9)
    return REAL_EXECUTE(config)


def test_a_worker_that_dies_fails_only_the_runs_in_flight_and_the_sweep_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executors, "execute", _dies_at_rate_3)
    path = write(tmp_path, "[base]\nduration_s = 30\n[grid]\nrate_rps = [1, 2, 3, 4, 5, 6]\n")
    outcome = run_sweep(path, tmp_path / "out", jobs=2, progress=False)
    assert 1 <= len(outcome.failed) <= 2 and outcome.ran == 6  # the dead run and the one beside it
    errors = [(tmp_path / "out" / "runs" / rid / "error.txt").read_text() for rid in outcome.failed]
    assert all("worker process died" in e for e in errors)
    monkeypatch.setattr(executors, "execute", REAL_EXECUTE)
    again = run_sweep(path, tmp_path / "out", jobs=2, progress=False, retry_failed=True)
    assert not again.failed and len(read_table(tmp_path / "out" / "runs.parquet")) == 6


def test_a_second_sweep_into_a_folder_being_written_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "[base]\nduration_s = 30\n[grid]\nrate_rps = [1]\n")
    (tmp_path / "out").mkdir()
    with runstore.locked(tmp_path / "out"), pytest.raises(SweepError, match="another sweep"):
        run_sweep(path, tmp_path / "out", jobs=1, progress=False)
