"""Workload generation, loading, capping and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import MERGED, SPLITWISE

from core.trace_io import WorkloadError, load_plain_csv, load_templates, read_jsonl, text_tokens, write_jsonl
from core.types import KINDS, RequestSpec, Segment
from core.workload import KIND_STATS, cap_context, make_workload, poisson_arrivals

needs_data = pytest.mark.skipif(not MERGED.exists(), reason="../shared/workloads not present")


def test_same_seed_same_trace_and_poisson_rate() -> None:
    a, _ = make_workload("mixed", 2.0, 1800, seed=7)
    b, _ = make_workload("mixed", 2.0, 1800, seed=7)
    c, _ = make_workload("mixed", 2.0, 1800, seed=8)
    assert a == b and a != c
    assert all(0 <= r.arrival_s < 1800 for r in a)
    assert len(a) == pytest.approx(3600, rel=0.06)  # Poisson count: sd = 60
    gaps = np.diff([r.arrival_s for r in a])
    assert gaps.mean() == pytest.approx(0.5, rel=0.06) and gaps.std() == pytest.approx(0.5, rel=0.1)


def test_mixed_shares_follow_the_evaluation_file() -> None:
    specs, _ = make_workload("mixed", 10.0, 1000, seed=1)
    kinds = [s.kind for s in specs]
    for k in KINDS:
        assert kinds.count(k) / len(kinds) == pytest.approx(KIND_STATS[k].share, abs=0.015), k


@needs_data
@pytest.mark.parametrize("kind", KINDS)
def test_generator_statistics_match_the_file(kind: str) -> None:
    templates, _ = load_templates(MERGED)
    real = [t for t in templates if t.kind == kind]
    synth, _ = make_workload(kind, 20.0, 200, seed=2)

    def stats(prompts, segs_list):
        ints = np.mean([len(s) - 1 for s in segs_list])
        gen = np.mean([g.gen_tokens for s in segs_list for g in s])
        tool = [g.tool_s for s in segs_list for g in s[:-1]]
        ret = [g.tool_tokens for s in segs_list for g in s[:-1]]
        return ints, np.mean(prompts), gen, np.mean(tool), np.mean(ret)

    want = stats([t.prompt_tokens for t in real], [t.segments for t in real])
    got = stats([s.prompt_tokens for s in synth], [s.segments for s in synth])
    for name, w, g in zip(("interceptions", "prompt", "gen", "tool_s", "returned"), want, got):
        assert g == pytest.approx(w, rel=0.25, abs=1e-4), f"{kind} {name}: file {w:.4g}, generator {g:.4g}"


@needs_data
def test_infercept_json_loader() -> None:
    templates, artifacts = load_templates(MERGED)
    assert len(templates) == 397
    counts = {k: sum(t.kind == k for t in templates) for k in KINDS}
    assert counts == {"math": 99, "qa": 49, "ve": 54, "chatbot": 65, "image": 65, "tts": 65}
    assert artifacts["zero_api_time"] == 15
    first = json.loads(MERGED.read_text())["37"][0]  # a text segment: ceil(chars / 4)
    t37 = next(t for t in templates if t.key == "37")
    assert t37.prompt_tokens == -(-len(first["prompt"]) // 4)
    specs, notes = make_workload(str(MERGED), 1.0, 300, seed=0, max_context_tokens=2048)
    assert max(s.total_tokens for s in specs) <= 2048 and notes["zero_api_time"] == 15


def test_loader_handles_artifacts_and_names_bad_fields(tmp_path: Path) -> None:
    good = {"x": [{"prompt_tokens": 10, "completion_tokens": 5, "api_time": 0, "api_token_length": -2},
                  {"prompt_tokens": 15, "completion_tokens": 3}]}
    p = tmp_path / "w.json"
    p.write_text(json.dumps(good))
    (t,), art = load_templates(p)
    assert t.segments[0] == Segment(5, 0.0, 0, "math") and art == {"negative_api_token_length": 1,
                                                                     "zero_api_time": 1}
    p.write_text(json.dumps({"x": [{"prompt_tokens": 10, "api_time": 1}, {"completion_tokens": 1}]}))
    with pytest.raises(WorkloadError, match=r"request 'x', segment 0: missing field 'completion_tokens'"):
        load_templates(p)
    p.write_text("{not json")
    with pytest.raises(WorkloadError, match="w.json"):
        load_templates(p)
    assert text_tokens("") == 1 and text_tokens("abcde") == 2


def test_cap_context() -> None:
    spec = RequestSpec("r", 0.0, 1990, (Segment(4, 0.1, 20, "ve"), Segment(4, 0.1, 30, "ve"), Segment(40)), "ve")
    capped = cap_context(spec, 2048)
    # 1990 + 4 + 20 = 2014; + 4 = 2018; returned 30 fills to 2048: the request ends at that interception
    assert capped.segments == (Segment(4, 0.1, 20, "ve"), Segment(4))
    assert capped.total_tokens <= 2048
    long = cap_context(RequestSpec("p", 0.0, 5000, (Segment(100),)), 2048)
    assert long.prompt_tokens == 2047 and long.segments == (Segment(1),)
    short = RequestSpec("s", 0.0, 10, (Segment(5),))
    assert cap_context(short, 2048) is short


def test_jsonl_roundtrip_and_errors(tmp_path: Path) -> None:
    specs, _ = make_workload("chatbot", 1.0, 30, seed=3)
    path = tmp_path / "t.jsonl"
    write_jsonl(path, specs)
    assert read_jsonl(path) == specs
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind
    lines = path.read_text().splitlines()
    bad = json.loads(lines[1])
    bad["prompt_tokens"] = 0
    path.write_text("\n".join([lines[0], json.dumps(bad)]) + "\n")
    with pytest.raises(WorkloadError, match=r"t.jsonl:2: prompt_tokens = 0: must be >= 1"):
        read_jsonl(path)
    path.write_text(lines[0] + "\n{oops\n")
    with pytest.raises(WorkloadError, match=r"t.jsonl:2: not JSON"):
        read_jsonl(path)
    with pytest.raises(WorkloadError, match="missing.jsonl"):
        make_workload(str(tmp_path / "missing.jsonl"), 1.0, 1.0, 0)


def test_plain_csv(tmp_path: Path) -> None:
    p = tmp_path / "c.csv"
    p.write_text("arrived_at,num_prefill_tokens,num_decode_tokens\n0,100,10\n1,3000,5\n")
    assert load_plain_csv(p) == [(100, 10), (3000, 5)]
    specs, notes = make_workload(str(p), 5.0, 10.0, seed=0, max_context_tokens=2048)
    assert specs[0].prompt_tokens == 100 and specs[1].prompt_tokens == 2047 and notes["capped_requests"] >= 1
    p.write_text("arrived_at,num_prefill_tokens,num_decode_tokens\n0,100,0\n")
    with pytest.raises(WorkloadError, match=r"c.csv:2: num_decode_tokens = '0'"):
        load_plain_csv(p)
    p.write_text("a,b\n1,2\n")
    with pytest.raises(WorkloadError, match="missing column"):
        load_plain_csv(p)


@pytest.mark.parametrize("segment, message", [
    ({"prompt_tokens": 10, "completion_tokens": "abc", "api_time": 1, "api_token_length": 2},
     "segment 0: completion_tokens = 'abc': expected a whole number"),
    ({"prompt_tokens": 10.5, "completion_tokens": 3, "api_time": 1, "api_token_length": 2},
     "segment 0: prompt_tokens = 10.5"),
    ({"prompt_tokens": 10, "completion_tokens": 3, "api_time": "slow", "api_token_length": 2},
     "segment 0: api_time = 'slow': expected a finite number"),
    ({"prompt_tokens": 10, "completion_tokens": 3, "api_time": 1, "api_token_length": None},
     "segment 0: api_token_length = None"),
    ({"prompt": "hi", "completion": 7, "api_time": 1, "api_token": "x"}, "segment 0: completion = 7"),
    ({"prompt": "hi", "completion": "ok", "api_time": 1}, "segment 0: missing field 'api_token'"),
])
def test_infercept_json_bad_field_is_named(segment, message, tmp_path: Path) -> None:
    p = tmp_path / "w.json"
    p.write_text(json.dumps({"x": [segment, {"prompt_tokens": 1, "completion_tokens": 1}]}))
    with pytest.raises(WorkloadError) as err:
        load_templates(p)
    assert f"request 'x', {message}" in str(err.value)


_ROW = {"rid": "a", "arrival_s": 0.5, "kind": "plain", "prompt_tokens": 10,
        "segments": [{"gen_tokens": 3, "tool_s": 1.0, "tool_tokens": 2, "kind": ""}, {"gen_tokens": 4}]}
_DROP = object()


@pytest.mark.parametrize("change, message", [
    ({"prompt_tokens": "ten"}, "t.jsonl:1: prompt_tokens = 'ten': expected a whole number"),
    ({"arrival_s": None}, "t.jsonl:1: arrival_s = None: expected a finite number"),
    ({"rid": None}, "t.jsonl:1: rid = None"),
    ({"rid": _DROP}, "t.jsonl:1: missing field 'rid'"),
    ({"segments": [{"gen_tokens": 2.5}]}, "t.jsonl:1, segment 0: gen_tokens = 2.5"),
    ({"segments": [{"gen_tokens": 2, "tool_s": "x", "tool_tokens": 1}, {"gen_tokens": 1}]},
     "t.jsonl:1, segment 0: tool_s = 'x'"),
    ({"segments": [{"gen_tokens": 2, "tool_tokens": -1}, {"gen_tokens": 1}]},
     "t.jsonl:1, segment 0: tool_tokens = -1: must be >= 0"),
    ({"segments": [{"gen_tokens": 2, "tool_s": 1.0}]}, "t.jsonl:1, segment 0: tool_s = 1.0, tool_tokens = 0"),
    ({"segments": "none"}, "t.jsonl:1: segments: expected a list"),
    ({"kind": "poetry"}, "t.jsonl:1: kind = 'poetry'"),
])
def test_jsonl_bad_field_is_named(change, message, tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({k: v for k, v in {**_ROW, **change}.items() if v is not _DROP}) + "\n")
    with pytest.raises(WorkloadError) as err:
        read_jsonl(path)
    assert message in str(err.value)


@pytest.mark.parametrize("row, message", [
    ("0,abc,10", "c.csv:2: num_prefill_tokens = 'abc': expected a whole number >= 1"),
    ("0,100,inf", "c.csv:2: num_decode_tokens = 'inf'"),
    ("0,100,2.5", "c.csv:2: num_decode_tokens = '2.5'"),
    ("0,100", "c.csv:2: num_decode_tokens = None"),
])
def test_plain_csv_bad_cell_names_the_column(row, message, tmp_path: Path) -> None:
    p = tmp_path / "c.csv"
    p.write_text(f"arrived_at,num_prefill_tokens,num_decode_tokens\n{row}\n")
    with pytest.raises(WorkloadError) as err:
        load_plain_csv(p)
    assert message in str(err.value)


@pytest.mark.skipif(not SPLITWISE.exists(), reason="../shared/workloads not present")
def test_splitwise_first_rows_in_order() -> None:
    specs, _ = make_workload(str(SPLITWISE), 2.0, 100.0, seed=0, max_requests=50)
    rows = load_plain_csv(SPLITWISE)
    assert [(s.prompt_tokens, s.segments[0].gen_tokens) for s in specs] == rows[:50]


def test_poisson_arrivals_rejects_bad_rate() -> None:
    with pytest.raises(WorkloadError, match="rate"):
        poisson_arrivals(0.0, 10.0, np.random.default_rng(0))
