"""The knee arithmetic (analysis/knees.py) and the knee benchmark's tables (tiny grids; the real runs are the
shipped sweeps and `make bench`)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from analysis.knees import KNEE_COLUMNS, KNEE_METRICS, crossing_midpoint, knee, knee_bound, knee_rows
from benchmarks import knee as knee_mod


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


def test_knee_rows_ratio_is_infercepts_knee_over_the_policys_in_the_same_setting() -> None:
    curves = {"discard": [(1, 50), (2, 150)], "infercept": [(1, 10), (2, 60), (3, 140)]}
    rows = [{"policy": p, "rate_rps": float(r), "seed": 0, "tp": 1, **{m: float(lat) for m in KNEE_METRICS}}
            for p, c in curves.items() for r, lat in c]
    # a second seed moves discard's crossing: the knee is on the mean, its interval over the seeds' knees
    rows += [{**r, "seed": 1, "norm_latency_ms": r["norm_latency_ms"] + (50.0 if r["policy"] == "discard"
                                                                            else 0.0)} for r in rows]
    labels = ["policy", "tp", "rate_rps", "seed"]
    by = {(r["policy"], r["metric"]): r for r in knee_rows(rows, labels, 100.0)}
    assert by[("discard", "norm_latency_ms")]["knee_rps"] == pytest.approx(1.25)  # mean 75 -> 175
    # the seeds' own knees are 1.5 and 1.0: stdev 0.3536, t(1) = 12.706, half-width 12.706 * 0.3536 / sqrt 2
    assert by[("discard", "norm_latency_ms")]["knee_rps_ci95"] == pytest.approx(12.706 * 0.25)
    assert by[("infercept", "norm_latency_ms")]["knee_rps"] == pytest.approx(2.5)
    assert by[("discard", "norm_latency_p90_ms")]["infercept_ratio"] == pytest.approx(2.5 / 1.5)
    assert by[("infercept", "norm_latency_corrected_ms")]["infercept_ratio"] == pytest.approx(1.0)
    assert by[("discard", "norm_latency_ms")]["seeds"] == 2


def test_knee_main_writes_knees_csv_from_a_sweep(tmp_path: Path) -> None:
    knee_mod.main(["--rates", "1,2", "--seeds", "1", "--duration-s", "60", "--policies", "discard,infercept",
                   "--jobs", "1", "--out", str(tmp_path)])
    with (tmp_path / "knees.csv").open() as f:
        reader = csv.DictReader(f)
        got = list(reader)
    assert tuple(reader.fieldnames or ()) == KNEE_COLUMNS
    assert {(r["policy"], r["metric"]) for r in got} == {(p, m) for p in ("discard", "infercept")
                                                         for m in KNEE_METRICS}
    assert (tmp_path / "summary.csv").exists() and (tmp_path / "runs.parquet").exists()


def test_the_refinement_midpoint_is_the_first_crossing_intervals() -> None:
    pts = [(1.0, 20.0), (1.5, 48.0), (2.0, 405.0), (2.5, 900.0)]
    assert crossing_midpoint(pts, 100.0) == 1.75
    assert crossing_midpoint(pts, 1000.0) is None  # never crosses


def test_policy_facts_are_means_over_seeds(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from benchmarks.policy_facts import COLUMNS, means

    rows = [{"policy": "saga", "rate_rps": 2.0, "seed": s, "kind": "qa", **dict.fromkeys(COLUMNS, 0.0)}
            for s in range(3)] + [{"policy": "continuum", "rate_rps": 2.0, "seed": 0, "kind": "qa",
                                   **dict.fromkeys(COLUMNS, 7.0)}]
    for s, r in enumerate(rows[:3]):
        r["discarded_pauses"], r["gpu_waste_pct"] = 10.0 * s, 1.0 + s  # 0, 10, 20 and 1, 2, 3
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "runs.parquet")
    out = means(tmp_path / "runs.parquet", {"saga"}, {2.0}, by_kind=False)
    assert list(out) == [("saga", 2.0)]
    assert out[("saga", 2.0)]["discarded_pauses"] == 10.0 and out[("saga", 2.0)]["gpu_waste_pct"] == 2.0
    assert out[("saga", 2.0)]["seeds"] == 3
    by_kind = means(tmp_path / "runs.parquet", None, None, by_kind=True)
    assert by_kind[("continuum", 2.0, "qa")]["norm_latency_ms"] == 7.0


def test_verdicts_worst_row_skips_what_the_verdict_does_not_hold() -> None:
    from benchmarks.verdicts import worst

    def row(policy: str, metric: str, real: float, sim: float, err: float, cal: float) -> dict[str, object]:
        return {"policy": policy, "metric": metric, "real": real, "sim": sim, "rel_error": err,
                "rel_error_calibrated": cal}

    rows = [row("swap", "norm_latency_ms", 10, 8.5, -0.15, -0.03), row("swap", "step_time_error_median", 0, 0, 0.08, 0),
            row("infercept", "norm_latency_ms", 10, 10.6, 0.06, 0.04), row("infercept", "step_time_error_median", 0, 0, 0.04, 0),
            row("infercept", "preserved_pauses", 5, 8, 0.6, 0.6),  # under 20 in both: not held
            row("infercept", "gpu_waste_pct", 2, 1, -0.5, -0.5)]  # not a verdict metric
    assert worst(rows, "rel_error_calibrated") == "infercept norm_latency_ms +4.0 %"
    # swap's step-time error (8 %) is over the gate: its uncalibrated latency is not held to the target
    assert worst(rows, "rel_error") == "infercept norm_latency_ms +6.0 %"
    # a NaN error is the worst (the verdict counts it a miss); a policy without a step-time row is not held
    rows += [row("swap", "completed_rps", 1, 1, float("nan"), float("nan")), row("plain", "norm_latency_ms", 1, 2, 1, 0)]
    assert worst(rows, "rel_error_calibrated") == "swap completed_rps +nan %"
    assert worst(rows, "rel_error") == "infercept norm_latency_ms +6.0 %"


def test_verdicts_strictly_counts_unresolved_rows_as_misses() -> None:
    from benchmarks.verdicts import strict_misses
    from experiments.verdict import unresolved, verdict

    kept = {"policy": "infercept", "metric": "preserved_pauses", "real": 26.0, "sim": 31.0, "rel_error": 0.04,
            "rel_error_calibrated": 0.192, "cal_self_miss": 0.26, "cal_lo": 23.0, "cal_hi": 33.0}
    assert verdict([kept]) == [] and len(unresolved([kept])) == 1  # chaotic, in the band
    assert strict_misses([kept]) == ["infercept preserved_pauses +19.2 %"]


def test_linkcheck_counts_whole_blocks_over_the_logged_copy_time(tmp_path: Path) -> None:
    import json

    from conftest import make_cost

    from benchmarks.linkcheck import achieved

    cost = make_cost()
    bs = cost.block_size_tokens
    log = tmp_path / "engine.jsonl"
    recs = [{"e": "swap_out", "t": 1.0, "rid": "a", "v": 2 * bs + 1}, {"e": "step", "copy_s": 0.002},
            {"e": "swap_in", "t": 2.0, "rid": "a", "v": bs}, {"e": "discard", "t": 2.5, "rid": "b", "v": 99},
            {"e": "step", "copy_s": 0.002}, {"e": "step", "copy_s": 0.0}]
    log.write_text("".join(json.dumps(r) + "\n" for r in recs))
    blocks, copy_s, rate = achieved(log, cost)
    assert (blocks, copy_s) == (4, pytest.approx(0.004))  # 3 whole blocks out (the partial third), 1 in
    assert rate == pytest.approx(4 * bs * cost.kv_bytes_per_token / 0.004)


def test_plancheck_counts_planned_swap_outs_carried_out_and_first_plans_of_short_pauses() -> None:
    from benchmarks.plancheck import check

    steps = [{"t_sched": 1.0, "plan": {"out": {"a": 1, "b": 1}, "free_cpu_blocks": 2}},
             {"t_sched": 2.0, "plan": {"out": {"c": 1}, "free_cpu_blocks": 0}}, {"t_sched": 3.0}]
    events = [{"e": "pause:preserve", "t": 0.9, "rid": "a"}, {"e": "swap_out", "t": 1.0, "rid": "a"},
              {"e": "pause:preserve", "t": 1.5, "rid": "c"}, {"e": "pause:preserve", "t": 1.6, "rid": "d"}]
    tool_s = {("a", 0): 0.001, ("c", 0): 0.001, ("d", 0): 5.0}  # d's pause is long: not counted
    # a, b and c planned; only a's copy happened (b's never, c's step logged none); a and c's first plans
    # gave them a swap-out, seeing 2 and 0 free host blocks
    assert check(steps, events, tool_s, 0.025) == (3, 1, 2, 2, 1.0)


def test_keptlean_first_plans_by_estimator_group() -> None:
    from types import SimpleNamespace

    from benchmarks.keptlean import GROUPS, Plan, first_plans, kinds_of

    def spec(kind: str, *seg_kinds: str) -> SimpleNamespace:
        return SimpleNamespace(kind=kind, segments=[SimpleNamespace(kind=k) for k in seg_kinds])

    specs = {"m": spec("math", "math", "", "math", ""), "c": spec("chatbot", "", "tts")}
    pauses = kinds_of([(1.0, "m"), (1.0, "c"), (2.0, "c"), (2.5, "m"), (9.0, "m")], specs)
    # a segment without a kind takes the request's; each pause is its request's next segment's
    assert pauses == [(1.0, "m", "math"), (1.0, "c", "chatbot"), (2.0, "c", "tts"), (2.5, "m", "math"),
                      (9.0, "m", "math")]
    plans = [Plan(0.5, 3, frozenset({"x"}), False),  # before every pause: no one's first plan
             Plan(1.0, 2, frozenset({"c"}), False),  # m and c paused at this instant: c swapped, m not
             Plan(2.0 + 1e-4, 0, frozenset(), False),  # c's second pause, 100 µs later: the host full
             Plan(3.0, 5, frozenset({"m"}), True)]  # m's second, 500 ms later: room, but a swap-in planned
    got = first_plans(pauses, plans)  # m's third pause comes after the last plan: not counted
    mean, elapsed = GROUPS
    assert got == {(mean, "pauses"): 2, (mean, "host full"): 0, (mean, "room"): 1, (mean, "room, swapped"): 0,
                   (mean, "delay us"): 500_000, (elapsed, "pauses"): 2, (elapsed, "host full"): 1,
                   (elapsed, "room"): 1, (elapsed, "room, swapped"): 1, (elapsed, "delay us"): 100}


def test_keptlean_recording_shifts_only_the_policys_clock() -> None:
    from collections import namedtuple
    from types import SimpleNamespace

    from benchmarks.keptlean import Plan, Recording

    state_t = namedtuple("state_t", "now_s free_cpu_blocks")
    seen = []

    class Inner:
        name = "inner"

        def plan_step(self, state: state_t) -> SimpleNamespace:
            seen.append(state)
            return SimpleNamespace(swap_out=(("a", 2), ("b", 1)), swap_in=())

        def next_decision_at(self, state: state_t) -> float:
            return state.now_s + 1.0

    rec = Recording(Inner(), 0.25)
    rec.plan_step(state_t(10.0, 3))
    assert seen == [state_t(10.25, 3)]  # asked as of 0.25 s later, all else as given
    assert rec.plans == [Plan(10.0, 3, frozenset({"a", "b"}), False)]  # recorded at the engine's instant
    assert rec.next_decision_at(state_t(10.0, 3)) == 11.0  # its deadline back on the engine's clock
    assert rec.name == "inner"  # everything else is the policy's


def test_keptlean_engine_setting_checks_the_key_and_value() -> None:
    import argparse

    from benchmarks.keptlean import engine_setting

    assert engine_setting("swap_holds_blocks=false") == ("swap_holds_blocks", False)
    assert engine_setting("client_in_hop_s=0.004") == ("client_in_hop_s", 0.004)
    for bad, says in (("swap_holds_blocks=3", "expected true or false"), ("nope=1", "unknown engine key"),
                      ("swap_holds_blocks", "expected KEY=VALUE")):
        with pytest.raises(argparse.ArgumentTypeError, match=says):
            engine_setting(bad)


def test_chunkfit_recovers_a_per_chunk_cost_the_four_terms_miss() -> None:
    from benchmarks.chunkfit import design, fit, signed_by_kind

    def step(decodes: int, chunk: int) -> dict[str, object]:  # 2 ms per step, 0.1 ms per token, 3 ms per chunk
        q = decodes + chunk
        sched = {f"d{i}": 1 for i in range(decodes)} | ({"p": chunk} if chunk else {})
        return {"num_decode": decodes, "prefill_tokens": chunk, "decode_ctx_tokens": 0, "prefill_attn_pairs": 0.0,
                "sched": sched, "t0": 0.0, "t_end": 0.002 + 1e-4 * q + (0.003 if chunk else 0.0), "copy_s": 0.0}

    steps = [step(d, c) for d in (1, 2, 4, 8) for c in (0, 8, 32, 128, 512)]
    x, y, prefill = design(steps)
    assert list(prefill) == [c for _ in (1, 2, 4, 8) for c in (0, 8, 32, 128, 512)]
    five = fit(x, y, 5)
    assert five == pytest.approx([0.002, 1e-4, 0.0, 0.0, 0.003], abs=1e-9)
    assert signed_by_kind(x, y, prefill, five) == pytest.approx(
        {"decode only": 0.0, "chunk 1-63": 0.0, "chunk 64-255": 0.0, "chunk >= 256": 0.0}, abs=1e-9)
    four = signed_by_kind(x, y, prefill, fit(x, y, 4))
    assert four["chunk 1-63"] < -0.05  # the small chunks' fixed cost is what four terms cannot price


def test_hops_measure_the_in_hop_on_an_idle_engine_and_the_misses_on_a_busy_one() -> None:
    from benchmarks.hops import extra_interception_s, miss_table
    from real.hops import in_hop_s, leads

    # busy: steps every 10 ms (each ends 0.1 ms before the next); a request is seen by a step only if it
    # arrived at least 1.2 ms before its start, and one in five misses it for another reason (blocks)
    steps = [{"t0": 100.0 + 0.01 * k, "t_end": 100.0 + 0.01 * k + 0.0099, "sched": set()} for k in range(100)]
    events, busy_hits = [], {}
    for n in range(80):
        lead_s = 0.0002 + 0.0096 * n / 79  # 0.2-9.8 ms, inside the step before
        t = 0.01 * (n + 1) - lead_s
        rid = f"b{n}"
        events.append((t, rid, "arrive" if n % 2 else "resume"))
        busy_hits[rid] = lead_s >= 0.0012 and n % 5 != 0
        steps[n + 1 if busy_hits[rid] else n + 2]["sched"].add(rid)
    # idle from 1.0 s: each event wakes a step 1.5 ms after the client logged it (the hop)
    for j, t in enumerate((1.2, 1.5, 1.8)):
        events.append((t, f"i{j}", "arrive" if j else "resume"))
        steps.append({"t0": 100.0 + t + 0.0015, "t_end": 100.0 + t + 0.0115, "sched": {f"i{j}"}})
    events.append((0.5, "b0", "pause:preserve"))  # neither an arrival nor a return: left out
    rows = leads(steps, 100.0, events)
    assert len(rows) == 83 and sum(r.idle for r in rows) == 3
    assert all(r.scheduled == busy_hits[rid] for r, (_, rid, _) in zip(rows, events) if not r.idle)
    assert in_hop_s(rows) == [pytest.approx(0.0015)] * 3
    assert in_hop_s(rows, "arrive") == [pytest.approx(0.0015)] * 2
    table = miss_table(rows)
    assert sum(h + m for *_, h, m in table) == 80  # the busy events only
    for lo, hi, h, m in table:
        inside = [n for n in range(80) if lo <= 0.0002 + 0.0096 * n / 79 < hi]
        assert m == sum(not busy_hits[f"b{n}"] for n in inside) and h == len(inside) - m
    # a pause at 1.0 s with a 0.5 s tool, resumed by the client at 1.502 s: 2 ms beyond the tool
    ev = [(1.0, "a", "pause:swap"), (1.502, "a", "resume"),
          (2.0, "a", "pause:preserve"), (2.3015, "a", "resume")]
    assert extra_interception_s(ev, {("a", 0): 0.5, ("a", 1): 0.3}) == [pytest.approx(0.002),
                                                                         pytest.approx(0.0015)]


def test_modes_puts_every_real_run_on_the_reference_profiles_speed(tmp_path: Path) -> None:
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq
    from test_validate import _profile, _step

    from benchmarks.modes import real_runs

    ref = _profile(tmp_path)  # 10 ms + 0.1 ms per query token
    folder = tmp_path / "v"
    (folder / "engine-logs").mkdir(parents=True)
    for k, (speed, norm, preempted) in enumerate(((1.1, 40.0, 2), (0.9, 30.0, 1))):
        run = folder / "runs" / f"preserve-{k}"
        run.mkdir(parents=True)
        (run / "config.toml").write_text("[engine]\n")
        (run / "summary.json").write_text(json.dumps({"overall": {"norm_latency_ms": norm}}))
        events = ["admit"] + ["discard"] * preempted
        pq.write_table(pa.table({"event": events}), run / "events.parquet")
        steps = [_step(1, 0, 0.0101 * speed), _step(0, 30, 0.0130 * speed), _step(0, 0, 0.5)]  # idle: not timed
        (folder / "engine-logs" / f"preserve-{k}.jsonl").write_text(
            "".join(json.dumps({"e": "step", **s}) + "\n" for s in steps))
    rows = real_runs([folder], "preserve", ref)
    flat = "0.0 % / nan, nan"  # one 2-s block; two busy steps are too few for an autocorrelation
    assert rows == [(pytest.approx(0.9), 30.0, 1, "v/preserve-1", flat),
                    (pytest.approx(1.1), 40.0, 2, "v/preserve-0", flat)]
    assert real_runs([folder], "swap", ref) == []
