"""The pure parts of `infercept validate`: step-time errors by kind, the simulator ensemble, the calibration,
pause decisions, the verdict and the constrained scenario's link."""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from conftest import make_cost

from core.cost import PROFILE_DIR, BatchShape, FittedCostModel
from core.metrics import Metrics
from core.types import RequestSpec, Segment
from core.waste import swap_budget_tokens
from experiments.ensemble import (
    SPEED_SCALES,
    median_summary,
    simulate_calibrated,
    simulate_ensemble,
    simulate_trace,
)
from experiments.fidelity import (
    MIN_DECISIONS,
    TraceScale,
    compare_rows,
    default_trace,
    pause_decisions,
    speed_scale,
    step_time_errors,
    summary_of,
)
from experiments.scenarios import REFERENCE_GPU_PROFILE, SCENARIOS, gpu_ratio_link, with_link
from experiments.spread import median_draws, repeats_to_resolve, spread
from experiments.validation import validation_cases
from experiments.validation_case import Compared, more_rounds, why_more
from experiments.verdict import held_columns, unresolved, verdict, verdict_word


def _step(num_decode: int, prefill_tokens: int, dur_s: float) -> dict[str, float]:
    return {"num_decode": num_decode, "decode_ctx_tokens": 0, "prefill_tokens": prefill_tokens,
            "prefill_attn_pairs": 0.0, "t0": 1.0, "t_end": 1.0 + dur_s,
            "sched": {f"d{i}": 1 for i in range(num_decode)} | ({"p": prefill_tokens} if prefill_tokens else {})}


def test_step_time_errors_are_signed_and_kinded() -> None:
    cost = make_cost()  # 10 ms + 0.1 ms per query token
    steps = [_step(1, 0, 0.0101), _step(5, 0, 0.0100), _step(0, 30, 0.0130), _step(2, 100, 0.0200),
             _step(0, 0, 0.001)]  # the last ran no tokens: not a step of the model
    err, kinds = step_time_errors(steps, cost)
    assert kinds == ["decode 1", "decode 4+", "chunk < 64", "chunk >= 64"]
    assert err == pytest.approx([0.0, (0.0105 - 0.0100) / 0.0100, 0.0, (0.0202 - 0.0200) / 0.0200])


def _profile(tmp_path: Path, **step: float) -> str:
    """A profile file of make_cost's numbers; ``step``: further step terms."""
    cost = make_cost()
    prof = {"name": "test", "gpu": {"name": "test", "memory_bytes": 1}, "tp": 1,
            "model": {"hf": "t", "num_layers": 1, "num_heads": 1, "num_kv_heads": 1, "head_dim": 1,
                      "dtype_bytes": 2, "weight_bytes": 1, "max_context_tokens": cost.max_context_tokens},
            "engine": {k: v for k, v in asdict(cost).items() if k in (
                "block_size_tokens", "token_budget_tokens", "max_num_seqs", "saturation_tokens", "gpu_kv_blocks",
                "cpu_kv_blocks")} | {"gpu_memory_utilization": 1.0, "activation_reserve_bytes": 0,
                                     "cpu_swap_bytes": 0},
            "step": {k: getattr(cost, k) for k in ("const_s", "per_query_token_s", "per_decode_ctx_token_s",
                                                   "per_prefill_attn_pair_s")} | step,
            "link": {"bytes_per_s": 1e6},
            "fit_range": {"max_query_tokens": 4096, "max_decode_ctx_tokens": 10**6}}
    path = tmp_path / "p.json"
    path.write_text(json.dumps(prof))
    return str(path)


def test_the_ensemble_scales_every_step(tmp_path: Path) -> None:
    one = [RequestSpec("a", 0.0, 100, (Segment(5),))]  # alone: its latency is the sum of its steps
    profile = _profile(tmp_path, per_prefill_seq_s=0.002)  # the prompt's step: 20 ms + 2 ms for its chunk
    base = summary_of(simulate_trace("discard", one, profile, 10.0, {}))
    slow = summary_of(simulate_trace("discard", one, profile, 10.0, {}, speed_scale=1.02))
    assert base["norm_latency_ms"] == pytest.approx(1000 * (0.022 + 4 * 0.0101) / 5)
    assert slow["norm_latency_ms"] == pytest.approx(1.02 * base["norm_latency_ms"])
    median, unscaled, norms = simulate_ensemble("discard", one, profile, 10.0, {})
    assert norms == pytest.approx([f * base["norm_latency_ms"] for f in SPEED_SCALES])
    assert median["norm_latency_ms"] == pytest.approx(base["norm_latency_ms"])  # the middle scale is 1
    assert summary_of(unscaled) == base


def test_the_calibrated_column_is_the_median_over_each_runs_neighbourhood(tmp_path: Path) -> None:
    one = [RequestSpec("a", 0.0, 100, (Segment(5),))]  # alone: its latency is proportional to the step time
    profile = _profile(tmp_path)
    base = summary_of(simulate_trace("discard", one, profile, 10.0, {}))["norm_latency_ms"]
    # runs fitted at 1.1, 1.3 and 1.2: 15 simulations at 1.1 x 0.98 ... 1.3 x 1.02; their median is 1.2 x 1.0
    runs = simulate_calibrated("discard", one, [(profile, 1.1), (profile, 1.3), (profile, 1.2)], 10.0, {})
    assert [[x["norm_latency_ms"] for x in run] for run in runs] == [
        pytest.approx([f * s * base for s in SPEED_SCALES]) for f in (1.1, 1.3, 1.2)]  # each run's neighbours
    cal = median_summary([x for run in runs for x in run])
    assert cal["norm_latency_ms"] == pytest.approx(1.2 * base)
    # two runs at 1.1 and 1.3: the median of their ten neighbours, (1.1 x 1.02 + 1.3 x 0.98) / 2, not the
    # mean of the two draws (1.2)
    two = median_summary([x for run in simulate_calibrated("discard", one, [(profile, 1.1), (profile, 1.3)], 10.0, {})
                          for x in run])
    assert two["norm_latency_ms"] == pytest.approx((1.1 * 1.02 + 1.3 * 0.98) / 2 * base)
    assert two["norm_latency_ms"] != pytest.approx(1.2 * base)


def test_a_rescaled_simulation_keeps_the_policys_cost_model(tmp_path: Path) -> None:
    """The real policy decided with the profile as measured; a re-simulation at a fitted speed slows the
    engine's clock only, not the budget the policy sizes from T_fwd."""
    prof = json.loads(Path(_profile(tmp_path)).read_text())
    kv = FittedCostModel.from_profile(_profile(tmp_path)).kv_bytes_per_token
    prof["link"]["bytes_per_s"] = 1600 * kv  # 1600 tokens/s: an idle step (T_fwd(0) = 10 ms) moves 16 tokens
    path = tmp_path / "slow-link.json"
    path.write_text(json.dumps(prof))
    # 100 tokens computed when it pauses (7 blocks), for 1 s, with nothing else to run
    one = [RequestSpec("a", 0.0, 100, (Segment(1, 1.0, 1, "chatbot"), Segment(1)))]
    for scale in (1.0, 2.0):  # at x2 the policy would size 32 tokens (2 blocks) from the slowed cost
        m = simulate_trace("infercept", one, str(path), 10.0, {}, speed_scale=scale)
        outs = [v for _, rid, e, v in m.events if e == "swap_out"]
        assert len(outs) == 7 and sum(outs) == 100  # N = T_fwd(0) x 1600 tokens/s = 16 tokens: a block a step


def test_calibration_scale_and_errors() -> None:
    cost = make_cost()
    steps = [_step(1, 0, 0.0101 * 1.1), _step(0, 30, 0.0130 * 1.1), _step(0, 0, 0.5)]  # 10 % slower machine
    assert speed_scale(steps, cost) == pytest.approx(1.1)
    err, _ = step_time_errors(steps, cost, scale=1.1)
    assert err == pytest.approx([0.0, 0.0])
    # the swap connector's copy time is not the cost model's: it is taken out of the measured step
    copied = {**_step(1, 0, 0.0101 + 0.004), "copy_s": 0.004}
    assert step_time_errors([copied], cost)[0] == pytest.approx([0.0])


def test_calibration_takes_the_busy_gap_out_of_the_prediction() -> None:
    """A measured profile's const_s counts the engine loop's gap between steps (step.busy_gap_s); an engine
    log's step does not. A run on the profiled machine, each step its prediction less that gap, is at scale 1
    and without error; before, the gap read as a machine 2-4 % faster than profiled."""
    cost = make_cost(busy_gap_s=0.0003)  # of const_s's 10 ms
    steps = [_step(1, 0, 0.0101 - 0.0003), _step(0, 30, 0.0130 - 0.0003)]
    assert speed_scale(steps, cost) == pytest.approx(1.0)
    assert step_time_errors(steps, cost)[0] == pytest.approx([0.0, 0.0])


def test_pause_decisions_from_the_event_log() -> None:
    m = Metrics(10.0, 63)
    for rid in "abcd":
        m.arrive(0.0, rid, "qa", 10)
    m.discard(0.5, "a", 10)  # a preemption outside any pause is not a decision
    for rid in "abcd":
        m.pause(1.0, rid, 5, "preserve")
    m.swap(1.1, "b", "swap_out", 32)
    m.swap(1.2, "c", "swap_out", 32)
    m.discard(1.3, "c", 64)  # swapped in part, then dropped: a discard
    for rid in "abc":
        m.resume(2.0, rid, 3)  # d is still paused at the end: not counted
    assert pause_decisions(m) == {"preserved_pauses": 1, "discarded_pauses": 1, "swapped_pauses": 1}


def _row(policy: str, metric: str, real: float, sim: float, cal: float) -> dict[str, object]:
    return {"policy": policy, "metric": metric, "real": real, "sim": sim, "rel_error": (sim - real) / real,
            "rel_error_calibrated": cal}


def test_verdict_gates_rel_error_on_the_step_time_error() -> None:
    rows = [_row("swap", "norm_latency_ms", 10.0, 12.0, 0.05), _row("swap", "step_time_error_median", 1, 1, 0)]
    rows[1]["rel_error"] = 0.08  # the cost model misses the steps by 8 %: only the calibrated error counts
    assert verdict(rows) == []
    rows[1]["rel_error"] = 0.03  # by 3 %: the plain error must be within the target too
    assert verdict(rows) == ["swap norm_latency_ms: rel_error +20.0 %"]
    few = [_row("preserve", "discarded_pauses", 3.0, 6.0, 1.0)]  # too few pauses to compare by a ratio
    assert verdict(few) == []
    assert verdict([], {"preserved_pauses": 25, "discarded_pauses": 19, "swapped_pauses": 40}) == [
        "infercept made 19 discarded_pauses (fewer than 20)"]
    nan = [_row("discard", "completed_rps", 1.0, 1.0, math.nan)]
    assert verdict(nan) == ["discard completed_rps: rel_error_calibrated +nan %"]
    # the report's "held" column: both errors of swap's latency (step-time error 3 %), the calibrated one of a
    # NaN row, neither of a step-time row nor of too few pauses
    assert held_columns(rows + few + nan) == {("swap", "norm_latency_ms"): "both",
                                              ("discard", "completed_rps"): "calibrated"}
    rows[1]["rel_error"] = 0.08
    assert held_columns(rows) == {("swap", "norm_latency_ms"): "calibrated"}


def test_the_spread_of_a_median_of_k_runs_by_hand(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    one = spread([[1.0, 2.0, 3.0]], 0.10, rng)  # one run: each value is a median; 1 and 3 miss 2 by > 10 %
    assert one.self_miss == pytest.approx(2 / 3)
    assert (one.lo, one.hi) == pytest.approx((1.05, 2.95))  # np.percentile's 2.5 and 97.5, linear
    # three runs, one simulation from each (8 combinations); all values' median 10; the median of three is 13
    # only when both of the first two runs give 13: 2 of the 8
    three = [[10.0, 13.0], [10.0, 13.0], [10.0, 10.0]]
    assert spread(three, 0.10, rng).self_miss == pytest.approx(2 / 8)
    assert spread([[10.0, 13.0], [10.0, 10.0], [10.0, 10.0]], 0.10, rng).self_miss == 0.0  # one outlier run
    assert spread([[0.0, 0.0, 0.0, 1.0]], 0.10, rng).self_miss == pytest.approx(1 / 4)  # non-zero misses 0
    assert math.isnan(spread([[1.0, math.nan]], 0.10, rng).self_miss)
    assert math.isnan(spread([[1.0], []], 0.10, rng).self_miss)
    # beyond MAX_DRAWS combinations, that many are drawn: reproducible, and near the exact share
    five = [[10.0, 13.0, 10.0, 13.0, 10.0]] * 3  # P(median 13) = 3 (2/5)^2 (3/5) + (2/5)^3 = 0.352
    assert spread(five, 0.10, rng).self_miss == pytest.approx(0.352)
    monkeypatch.setattr("experiments.spread.MAX_DRAWS", 100)  # 125 combinations: 100 drawn
    draws = [median_draws(five, np.random.default_rng(7)) for _ in range(2)]
    assert len(draws[0]) == 100 and list(draws[0]) == list(draws[1])
    assert abs(float(np.mean(draws[0] == 13.0)) - 0.352) < 0.15


def test_repeats_to_resolve_by_the_binomial() -> None:
    # one run in five gives 13 (p = 0.2): a median of k misses 10 when more than half do; k = 5: 0.058 > 5 %,
    # k = 7: 35 p^4 q^3 + 21 p^5 q^2 + 7 p^6 q + p^7 = 0.033
    values = [10.0, 10.0, 10.0, 10.0, 13.0]
    assert repeats_to_resolve(values, 0.10, np.random.default_rng(0)) == 7
    assert repeats_to_resolve(values, 0.10, np.random.default_rng(0), most=5) is None


def test_compare_rows_spread_is_one_simulation_per_real_run() -> None:
    real = [{"preserved_pauses": x} for x in (12.0, 11.0, 10.0)]
    cal = [[{"preserved_pauses": x} for x in run] for run in ([10.0, 13.0], [10.0, 13.0], [10.0, 10.0])]
    row = next(r for r in compare_rows("infercept", real, {"preserved_pauses": 10.0}, cal)
               if r["metric"] == "preserved_pauses")
    assert row["rel_error_calibrated"] == pytest.approx((10 - 11) / 11)  # the median of all six: 10
    assert row["cal_self_miss"] == pytest.approx(2 / 8)
    assert (row["cal_lo"], row["cal_hi"]) == (10.0, 13.0)


def test_an_unresolvable_row_is_neither_a_pass_nor_a_miss() -> None:
    def row(real: float, cal: float, chaos: float) -> dict[str, object]:
        return {**_row("infercept", "preserved_pauses", real, 24.0, cal), "cal_self_miss": chaos,
                "cal_lo": 21.0, "cal_hi": 31.0}

    step = {**_row("infercept", "step_time_error_median", 1, 1, 0), "rel_error": 0.01}  # rel_error held too
    chaotic = [row(30.0, -0.2, 0.46), step]  # beyond 10 % by both errors, in the band
    assert verdict(chaotic) == []
    assert unresolved(chaotic) == [
        "infercept preserved_pauses: rel_error_calibrated -20.0 % (46 % of the simulator's own medians miss by "
        "more than 10 %; real 30, their band 21-31)",
        "infercept preserved_pauses: rel_error -20.0 % (46 % of the simulator's own medians miss by more than "
        "10 %; real 30, their band 21-31)"]
    assert verdict_word(verdict(chaotic), unresolved(chaotic)) == "UNRESOLVED"
    assert verdict([row(34.0, -0.2, 0.46)]) == []  # beyond the band, but within 10 % of it (31 x 1.1 = 34.1)
    out = [row(35.0, -0.229, 0.46)]  # more than 10 % beyond: a lean chaos does not explain
    assert verdict(out) == ["infercept preserved_pauses: rel_error_calibrated -22.9 % and more than 10 % outside "
                            "the simulator's own band 21-31 (real 35)"]
    assert unresolved(out) == [] and verdict_word(verdict(out), []) == "FAIL"
    assert verdict([row(30.0, -0.2, 0.04)]) == [  # resolvable: the target itself, band or not
        "infercept preserved_pauses: rel_error_calibrated -20.0 %"]
    within = [row(25.0, -0.04, 0.46)]  # within 10 % on a row a median of 3 cannot resolve: luck, not a pass
    assert verdict(within) == [] and unresolved(within) == [
        "infercept preserved_pauses: rel_error_calibrated -4.0 % (46 % of the simulator's own medians miss by "
        "more than 10 %; real 25, their band 21-31)"]
    assert verdict_word(verdict(within), unresolved(within)) == "UNRESOLVED"
    resolved = [row(25.0, -0.04, 0.04)]
    assert verdict_word(verdict(resolved), unresolved(resolved)) == "PASS"
    edge = [row(25.0, -0.04, 0.05)]  # exactly RESOLVABLE: resolvable
    assert verdict_word(verdict(edge), unresolved(edge)) == "PASS"
    far = [{**row(40.0, -0.08, 0.46), "cal_lo": 21.0, "cal_hi": 31.0}]  # within 10 %, 40 > 31 x 1.1: still luck
    assert verdict(far) == [] and len(unresolved(far)) == 1


def test_the_verdict_passes_nothing_the_strict_rule_fails() -> None:
    from benchmarks.verdicts import strict_misses

    for real in (15.0, 25.0, 30.0, 40.0):
        for err in (-0.3, -0.1, -0.04, 0.0, 0.06, 0.11, float("nan")):
            for chaos in (0.0, 0.05, 0.06, 0.5, float("nan")):
                rows = [{**_row("infercept", "preserved_pauses", real, 24.0, err), "cal_self_miss": chaos,
                         "cal_lo": 21.0, "cal_hi": 31.0}]
                word = verdict_word(verdict(rows), unresolved(rows))
                assert (word == "PASS") == (not strict_misses(rows) and not chaos > 0.05), (real, err, chaos)


def test_until_resolved_runs_more_rounds_of_the_unresolved_cases_only() -> None:
    def case(policy: str, err: float, chaos: float, band: tuple[float, float] = (30.0, 50.0)) -> Compared:
        row = {**_row(policy, "norm_latency_ms", 40.0, 40.0, err), "cal_self_miss": chaos, "cal_lo": band[0],
               "cal_hi": band[1]}
        return Compared([row], {}, ([], []), {})

    compared = {"preserve": case("preserve", -0.2, 0.3),  # chaotic, real inside the band: unresolved
                "infercept": case("infercept", 0.05, 0.3),  # chaotic and within 10 %: unresolved too (luck)
                "swap": case("swap", -0.02, 0.0),  # resolvable: settled
                "discard": case("discard", -0.5, 0.0)}  # resolvable and 50 % off: a miss, settled
    runs = {"preserve": 3, "infercept": 5, "swap": 3, "discard": 3}
    assert more_rounds(compared, runs, 5) == ["preserve"]  # infercept already has 5 runs
    assert more_rounds(compared, runs, 7) == ["preserve", "infercept"]
    assert more_rounds(compared, runs, 0) == []  # off
    # the report says why each further round ran: the case's runs so far and its unresolved held rows (the
    # calibrated error; no step-time error row, so rel_error is not held)
    assert why_more(compared, ["preserve"], runs) == [(
        "preserve after 3 runs: preserve norm_latency_ms: rel_error_calibrated -20.0 % (30 % of the simulator's "
        "own medians miss by more than 10 %; real 40, their band 30-50)")]
    compared["preserve"] = case("preserve", -0.5, 0.3, (15.0, 25.0))  # real 40 > 1.1 x 25: a miss, settled
    assert more_rounds(compared, runs, 7) == ["infercept"]
    assert why_more(compared, ["preserve"], runs) == ["preserve after 3 runs: no held row unresolved"]


def test_constrained_link_keeps_a_gpus_ratio_of_copy_to_step_time() -> None:
    cpu = FittedCostModel.from_profile(PROFILE_DIR / "cpu2-llama-small-tp1.json")
    gpu = FittedCostModel.from_profile(REFERENCE_GPU_PROFILE)
    link = gpu_ratio_link(cpu, 0.25)
    slow = dataclasses.replace(cpu, link_bytes_per_s=link)
    # a 1000-token GPT-J context and its 250-token counterpart of the scaled trace: as many one-request steps
    one = BatchShape(num_decode=1)
    assert slow.swap_s(250) / slow.step_s(one) == pytest.approx(gpu.swap_s(1000) / gpu.step_s(one))
    assert 60e6 < link < 90e6  # the README's ~78 MB/s
    budget = swap_budget_tokens(slow, 64) // slow.block_size_tokens
    assert 2 <= budget <= 10, budget  # a few blocks in a 64-token step


def test_with_link_changes_only_the_link(tmp_path: Path) -> None:
    src = PROFILE_DIR / "cpu2-llama-small-tp1.json"
    out = with_link(src, 5e7, tmp_path / "p.json")
    a, b = json.loads(src.read_text()), json.loads(out.read_text())
    assert b["link"] == {"bytes_per_s": 5e7} and a["step"] == b["step"] and a["engine"] == b["engine"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_infercept_must_choose_in_the_constrained_scenario(seed: int, tmp_path: Path) -> None:
    """A short simulation of the constrained scenario (the default trace and the held-out one, the measured CPU
    profile with the throttled link, 16 host blocks): InferCept preserves, discards and swaps, >= 20 each."""
    base = PROFILE_DIR / "cpu2-llama-small-tp1.json"
    scale = TraceScale(seed=seed)
    link = gpu_ratio_link(FittedCostModel.from_profile(base), scale.token_scale)
    profile = str(with_link(base, link, tmp_path / "constrained.json"))
    engine = {"gpu_kv_blocks": 63, "cpu_kv_blocks": SCENARIOS["constrained"].host_blocks,
              "token_budget_tokens": 512, "saturation_tokens": 512, "swap_overlap": False}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # contexts a little past the profile's fitted range
        m = simulate_trace("infercept", default_trace(scale, 4096), profile, scale.window_s, engine)
    counts = summary_of(m)
    assert min(counts[k] for k in ("preserved_pauses", "discarded_pauses", "swapped_pauses")) >= MIN_DECISIONS, counts


def test_validate_runs_the_plain_trace_unless_told_not_to() -> None:
    trace = [RequestSpec("a", 0.0, 100, (Segment(8, 0.5, 30, "qa"), Segment(12)), "qa")]
    assert validation_cases(("infercept",), trace, False) == [("infercept", "infercept", trace)]
    cases = validation_cases(("swap", "infercept"), trace, True)
    assert [c[:2] for c in cases] == [("swap", "swap"), ("infercept", "infercept"), ("plain", "discard")]
    assert cases[2][2] == [RequestSpec("a", 0.0, 100, (Segment(20),), "plain")]  # the 8 + 12 tokens, no pause
