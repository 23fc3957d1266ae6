"""The machine's wandering speed in the validation's calibrated re-simulations (experiments/wander.py)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import simpy
from conftest import make_cost
from test_validate import _profile

from core.cost import BatchShape
from core.types import RequestSpec, Segment
from experiments.ensemble import SPEED_SCALES, simulate_calibrated, simulate_trace
from experiments.fidelity import summary_of
from experiments.wander import WANDER_DRAWS, WanderingCost, autocorrelation, draw_wander, wander_blocks


def _step(t0: float, dur_s: float, prefill_tokens: int = 0) -> dict[str, float]:
    return {"num_decode": 0 if prefill_tokens else 1, "decode_ctx_tokens": 0, "prefill_tokens": prefill_tokens,
            "prefill_attn_pairs": 0.0, "t0": t0, "t_end": t0 + dur_s, "sched": {"d": 1}}


def test_a_runs_wander_is_its_speed_per_block_with_the_models_error_by_kind_taken_out() -> None:
    """Decode steps 1.2x then 0.8x as long as predicted (10.1 ms), 30-token chunks always 1.5x (13 ms): the
    chunks' 1.5 is the cost model's error on that kind, not the machine's speed, and leaves the wander."""
    cost = make_cost()
    steps = [_step(10.0, 1.2 * 0.0101), _step(11.0, 1.5 * 0.013, 30), _step(11.5, 1.2 * 0.0101),  # block 0
             {**_step(12.0, 0.5), "num_decode": 0},  # no tokens: not a step of the model
             _step(12.5, 0.8 * 0.0101), _step(13.0, 1.5 * 0.013, 30),  # block 1 (from the first busy step)
             _step(16.1, 0.8 * 0.0101)]  # block 3, one step: left out below two
    d = (math.log(1.2) - math.log(0.8)) / 2  # decode residuals +-d about their kind's median; chunks' 0
    block0, block1 = 2 * d / 3, -d / 2
    centre = (block0 + block1) / 2
    expected = [math.exp(block0 - centre), math.exp(block1 - centre)]
    assert wander_blocks(steps, cost, 1.0, min_steps=2) == pytest.approx(expected)
    assert wander_blocks(steps, cost, 2.0, min_steps=2) == pytest.approx(expected)  # the run's scale cancels
    assert wander_blocks(steps, cost, 1.0) == pytest.approx([1.0])  # every block under MIN_BLOCK_STEPS
    assert wander_blocks([], cost, 1.0) == pytest.approx([1.0])
    assert autocorrelation(np.array([1.0, -1.0] * 5), 1) == pytest.approx(-1.0)
    assert autocorrelation(np.array([1.0, -1.0] * 5), 2) == pytest.approx(1.0)


def test_a_wander_is_drawn_from_the_runs_own_blocks() -> None:
    blocks = np.array([0.9, 1.0, 1.2])
    drawn = draw_wander(blocks, 60.0, np.random.default_rng(5))
    assert len(drawn) == 31  # one per 2-s block of the window, and one beyond
    assert list(drawn) == list(draw_wander(blocks, 60.0, np.random.default_rng(5)))  # seeded


def test_a_wandering_cost_model_follows_the_simulated_clock() -> None:
    env = simpy.Environment()
    base = make_cost()
    cost = WanderingCost(base, np.array([1.0, 2.0]), env)
    shape = BatchShape(num_decode=1)
    assert cost.step_s(shape) == pytest.approx(0.0101)  # block 0: [0, 2) s
    env.run(until=2.5)
    assert cost.step_s(shape) == pytest.approx(0.0202)
    assert cost.gpu_s(shape) == pytest.approx(2 * base.gpu_s(shape))
    assert cost.host_s(shape) == pytest.approx(2 * base.host_s(shape))
    env.run(until=50.0)
    assert cost.step_s(shape) == pytest.approx(0.0202)  # beyond its blocks: the last one's speed
    assert cost.swap_s(100) == base.swap_s(100)  # the link is not the machine's step
    assert cost.block_size_tokens == base.block_size_tokens


def test_a_request_alone_slows_down_when_its_block_does(tmp_path: Path) -> None:
    """Prefill 20 ms, then one-request decode steps of 10.1 ms while a step starts before 2 s (steps 1 to
    197: the 197th starts at 0.02 + 196 x 0.0101 = 1.9996 s), then 20.2 ms: the 299 decode steps end at
    0.02 + 197 x 0.0101 + 102 x 0.0202 s."""
    one = [RequestSpec("a", 0.0, 100, (Segment(300),))]
    m = simulate_trace("discard", one, _profile(tmp_path), 10.0, {}, wander=np.array([1.0, 2.0]))
    assert m.requests["a"].finish_s == pytest.approx(0.02 + 197 * 0.0101 + 102 * 0.0202)
    fixed = simulate_trace("discard", one, _profile(tmp_path), 10.0, {}, speed_scale=1.5)
    constant = simulate_trace("discard", one, _profile(tmp_path), 10.0, {}, wander=np.array([1.5]))
    assert summary_of(constant)["norm_latency_ms"] == pytest.approx(summary_of(fixed)["norm_latency_ms"])


def test_calibrated_wandering_resimulations_are_seeded(tmp_path: Path) -> None:
    one = [RequestSpec("a", 0.0, 100, (Segment(300),))]
    blocks = [np.array([0.8, 1.25]), np.array([1.0])]
    runs = [(_profile(tmp_path), 1.0), (_profile(tmp_path), 1.1)]
    first = simulate_calibrated("discard", one, runs, 10.0, {}, blocks)
    assert [len(r) for r in first] == [len(SPEED_SCALES) * WANDER_DRAWS] * 2
    assert first == simulate_calibrated("discard", one, runs, 10.0, {}, blocks)  # same seeds, same results
    lat = [[x["norm_latency_ms"] for x in r] for r in first]
    assert len(set(np.round(lat[0], 9))) > len(SPEED_SCALES)  # the first run's draws differ at each scale
    base = summary_of(simulate_trace("discard", one, _profile(tmp_path), 10.0, {}))["norm_latency_ms"]
    assert lat[1] == pytest.approx([1.1 * s * base for s in SPEED_SCALES for _ in range(WANDER_DRAWS)])
