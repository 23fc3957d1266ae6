"""Configuration, the `infercept` command and run folders."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from core.config import ConfigError, build_config, load_config, options_by_policy
from core.policy import PAPER_POLICIES, RECENT_POLICIES
from core.summary import METRICS
from experiments.cli import _policies, main


def test_overrides_and_errors(tmp_path: Path) -> None:
    cfg = build_config({"policy": "infercept"}, ["rate_rps=2", "policy_options.estimator=oracle", "workload=qa"])
    assert (cfg.rate_rps, cfg.policy_options, cfg.workload) == (2.0, {"estimator": "oracle"}, "qa")
    with pytest.raises(ConfigError, match="unknown config key 'ratee'"):
        build_config({"ratee": 1})
    with pytest.raises(ConfigError, match="rate_rps = 'fast': expected a float"):
        build_config(None, ["rate_rps=fast"])
    with pytest.raises(ConfigError, match="batching = 'v7'"):
        build_config({"batching": "v7"})
    p = tmp_path / "c.toml"
    p.write_text("policy = 'preserve'\nrate_rps = -1\n")
    with pytest.raises(ConfigError, match=r"c.toml: rate_rps = -1.0: must be a positive number"):
        load_config(p)


@pytest.mark.parametrize("overrides, message", [
    (["engine.gpu_kv_blok=100"], "engine.gpu_kv_blok: unknown engine key; accepted: gpu_memory_utilization"),
    (["engine.swap_overlap=yes"], "engine.swap_overlap = 'yes': expected true or false"),
    (["engine.token_budget_tokens=0"], "engine.token_budget_tokens = 0: expected an integer > 0"),
    (["policy_options.estimatr=oracle"], "policy_options.estimatr: policy 'infercept' has no option 'estimatr'"),
    (["policy=discard", "policy_options.swap=false"], "policy_options.swap: policy 'discard' has no option"),
    (["policy_options.swap=yes"], "policy_options.swap = 'yes': policy 'infercept' expects true or false"),
    (["policy_options.estimator=Oracle"], "policy_options.estimator = 'Oracle': policy 'infercept' expects one of"),
    (["policy_options.budget=3"], "policy_options.budget = 3"),
    (["tp=0"], "tp = 0: must be >= 1"),
])
def test_bad_engine_keys_and_policy_options_are_named(overrides, message) -> None:
    with pytest.raises(ConfigError) as err:
        build_config(None, overrides)
    assert message in str(err.value)


def test_good_engine_keys_and_options_pass() -> None:
    cfg = build_config(None, ["engine.swap_overlap=false", "engine.gpu_kv_blocks=100", "policy_options.swap=false",
                              "policy_options.budget=saturated", "policy_options.estimator=elapsed"])
    assert cfg.engine == {"swap_overlap": False, "gpu_kv_blocks": 100}


def test_compare_options_go_to_the_policies_that_accept_them() -> None:
    assert _policies("all") == list(PAPER_POLICIES)
    assert _policies("swap_blocking,infercept,swap_blocking") == ["swap_blocking", "infercept"]
    assert _policies("discard,recent") == ["discard", *RECENT_POLICIES]
    assert _policies("all,every") == [*PAPER_POLICIES, *RECENT_POLICIES]
    shares = options_by_policy(["discard", "infercept"], {"estimator": "oracle"})
    assert shares == {"discard": {}, "infercept": {"estimator": "oracle"}}
    with pytest.raises(ConfigError, match=r"policy_options.estimator: no selected policy \(discard, swap\)"):
        options_by_policy(["discard", "swap"], {"estimator": "oracle"})
    with pytest.raises(ConfigError, match=r"policy_options.swap = 'yes'"):
        options_by_policy(["discard", "infercept"], {"swap": "yes"})


def test_compare_runs_baselines_beside_an_infercept_option(tmp_path: Path) -> None:
    assert main(["compare", "--policies", "discard,swap_blocking,infercept", "--set", "policy_options.estimator=oracle",
                 "--rates", "1", "--duration-s", "10", "--jobs", "1", "--out", str(tmp_path / "c")]) == 0
    rows = list(csv.DictReader((tmp_path / "c" / "summary.csv").open()))
    assert [r["policy"] for r in rows] == ["discard", "swap_blocking", "infercept"]


def test_compare_is_byte_identical_and_has_the_columns(tmp_path: Path) -> None:
    args = ["compare", "--rates", "1,2", "--duration-s", "40", "--seeds", "2"]
    assert main(args + ["--jobs", "1", "--out", str(tmp_path / "a")]) == 0
    assert main(args + ["--jobs", "2", "--out", str(tmp_path / "b")]) == 0  # parallel workers, same bytes
    a, b = (tmp_path / "a" / "summary.csv").read_bytes(), (tmp_path / "b" / "summary.csv").read_bytes()
    assert a == b
    rows = list(csv.DictReader((tmp_path / "a" / "summary.csv").open()))
    assert len(rows) == 10 and {"policy", "rate", *METRICS} <= set(rows[0])
    assert {r["policy"] for r in rows} == {"discard", "improved_discard", "preserve", "swap", "infercept"}
    assert (tmp_path / "a" / "latency_vs_rate.png").stat().st_size > 10_000
    kinds = list(csv.DictReader((tmp_path / "a" / "summary_by_kind.csv").open()))
    assert {r["kind"] for r in kinds} <= {"math", "qa", "ve", "chatbot", "image", "tts"} and kinds


def test_run_writes_a_complete_run_folder(tmp_path: Path) -> None:
    cfg = tmp_path / "run.toml"
    cfg.write_text("policy = 'infercept'\nrate_rps = 1.5\nduration_s = 30.0\n[policy_options]\nestimator = 'oracle'\n")
    out = tmp_path / "run"
    assert main(["run", str(cfg), "--set", "seed=4", "--out", str(out), "--trace"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["config.toml", "events.parquet", "requests.parquet",
                                                      "steps.parquet", "summary.json", "trace.json"]
    config = (out / "config.toml").read_text()
    assert "seed = 4" in config and "git_revision" in config and "profile_name = \"a100-gptj-6b-tp1\"" in config
    summary = json.loads((out / "summary.json").read_text())
    assert summary["overall"]["num_requests"] == pq.read_table(out / "requests.parquet").num_rows
    assert pq.read_table(out / "steps.parquet").num_rows > 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_trace_then_replay(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    assert main(["trace", "--workload", "qa", "--rate", "1", "--duration-s", "20", "--out", str(trace)]) == 0
    assert main(["compare", "--workload", str(trace), "--rates", "1", "--duration-s", "20", "--policies",
                 "discard,infercept", "--jobs", "1", "--out", str(tmp_path / "c")]) == 0
    rows = list(csv.DictReader((tmp_path / "c" / "summary.csv").open()))
    n = len(trace.read_text().splitlines())
    assert [float(r["num_requests"]) for r in rows] == [n, n]


@pytest.mark.parametrize("args, message", [
    (["compare", "--rates", "1,x"], "--rates '1,x'"),
    (["compare", "--policies", "lru"], "unknown policy 'lru'"),
    (["compare", "--model", "gpt5"], "no profile for model=gpt5"),
    (["compare", "--workload", "nope.txt", "--rates", "1"], "workload 'nope.txt'"),
    (["run", "--set", "policy=lru"], "policy = 'lru'"),
    (["run", "--set", "policy=discard", "--set", "engine.token_budget_tokens=512"], "token_budget_tokens = 512"),
    (["run", "--set", "duration_s=5", "--set", "engine.gpu_kv_blok=10"], "engine.gpu_kv_blok: unknown engine key"),
    (["run", "--set", "duration_s=5", "--set", "policy_options.swap=yes"], "policy_options.swap = 'yes'"),
    (["run", "--set", "duration_s=5", "--set", "policy_options.estimatr=oracle"], "policy_options.estimatr"),
    (["compare", "--rates", "1", "--duration-s", "5", "--set", "engine.swap_overlap=2"], "engine.swap_overlap = 2"),
    (["compare", "--rates", "1", "--duration-s", "5", "--policies", "discard,preserve", "--set",
      "policy_options.estimator=oracle"], "policy_options.estimator: no selected policy (discard, preserve)"),
])
def test_bad_arguments_exit_2_with_a_clear_message(args, message, capsys, tmp_path: Path) -> None:
    assert main(args + ["--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # (after `run`'s progress line, if any)
    assert last.startswith("infercept: error: ") and message in last and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_core_imports_no_backend() -> None:
    code = ("import sys, pkgutil, importlib, core\n"
            "for m in pkgutil.iter_modules(core.__path__): importlib.import_module('core.' + m.name)\n"
            "bad = [m for m in ('simpy', 'vllm', 'torch') if m in sys.modules]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_chrome_trace_is_valid(tmp_path: Path) -> None:
    out = tmp_path / "r"
    assert main(["run", "--set", "duration_s=20", "--set", "policy=swap", "--out", str(out), "--trace"]) == 0
    trace = json.loads((out / "trace.json").read_text())
    names = {e["name"].split()[0] for e in trace["traceEvents"]}
    assert {"process_name", "tool", "swap_out"} <= names
    assert all(e["dur"] >= 0 for e in trace["traceEvents"] if e.get("ph") == "X")
