"""engine.swap_holds_blocks (vLLM 0.32's KV connector, as the real executor runs it), worked out by hand with the
test cost (a step of n query tokens: 0.01 + 1e-4 n s; the link: 1 ms per token; 16-token blocks; copies charged
in full, engine.swap_overlap = false, as `infercept validate` simulates).

InferCept alone on the engine: its per-step budget is T_fwd(0) = 10 ms of link, under a block, so one block
a step. The request pauses at 0.0402 s with 102 tokens of KV in 7 blocks. Block by block, the swap-out copies
the partial last block (6 tokens, 6 ms) first and then one full block (16 ms) a step; held, it copies from the
first block, as the executor's connector does: six full blocks, then the partial one."""

from __future__ import annotations

import pytest
import simpy
from conftest import make_cost
from test_engine import run

from core.metrics import Metrics
from core.policy import make_policy
from core.types import RequestSpec, Segment, Status, StepPlan
from sim.engine import Engine
from sim.request import Req

CHUNK_STARTS = {False: [0.0402, 0.0462, 0.0622, 0.0782, 0.0942, 0.1102, 0.1262],  # the seven swap-out steps
                True: [0.0402, 0.0562, 0.0722, 0.0882, 0.1042, 0.1202, 0.1362]}


def _tool(tool_s: float) -> list[RequestSpec]:
    return [RequestSpec("a", 0.0, 100, (Segment(3, tool_s, 10, "qa"), Segment(2)), "qa")]


def _gpu_used_at(m, starts: list[float]) -> list[int]:
    at = {round(t, 4): int(g) for t, g in zip(m.steps["start_s"], m.steps["gpu_used_blocks"])}
    return [at[round(t, 4)] for t in starts]


@pytest.mark.parametrize("holds", [False, True])
def test_a_swap_out_holds_its_blocks_until_its_last_copy(holds: bool) -> None:
    m = run(_tool(1.0), "infercept", cost=make_cost(swap_overlap=False, swap_holds_blocks=holds))
    # block by block, each step's copy frees its block; held, all 7 stay taken through the step that copies
    # the last (vLLM frees them after it)
    starts = CHUNK_STARTS[holds]
    assert _gpu_used_at(m, starts) == ([7] * 7 if holds else [6, 5, 4, 3, 2, 1, 0])
    paused = {round(t, 4): int(b) for t, b in zip(m.steps["start_s"], m.steps["gpu_paused_blocks"])}
    assert [paused[t] for t in starts] == _gpu_used_at(m, starts)  # held blocks are idle memory
    out = [v for _, _, e, v in m.events if e == "swap_out"]
    assert out == ([16] * 6 + [6] if holds else [6] + [16] * 6)
    # the swap-in (from 1.0402, one block a step): held, all 7 blocks are allocated with the first
    swap_in = [1.0402, 1.0562, 1.0722, 1.0882, 1.1042, 1.1202, 1.1362]
    assert _gpu_used_at(m, swap_in) == ([7] * 7 if holds else [1, 2, 3, 4, 5, 6, 7])
    rec = m.requests["a"]
    # held, the connector copies whole blocks: the 6-token block costs a full block's 16 ms on the link
    back_s = 7 * 0.016 if holds else 6 * 0.016 + 0.006
    assert rec.swapped_tokens == 102 and rec.resume_latency_s == [pytest.approx(back_s + 0.0111)]


@pytest.mark.parametrize("holds", [False, True])
def test_a_resume_during_the_swap_out(holds: bool) -> None:
    # the tool returns at 0.0902, during the fourth copy step: four chunks are on the host when the engine
    # sees it, 6 + 3 x 16 = 54 tokens at 0.0942 (block by block), 4 x 16 = 64 at 0.1042 (held, first blocks)
    m = run(_tool(0.05), "infercept", cost=make_cost(swap_overlap=False, swap_holds_blocks=holds))
    rec = m.requests["a"]
    events = [e for _, _, e, _ in m.events if e.startswith("swap")]
    assert rec.swapped_tokens == (64 if holds else 54)
    if holds:  # the copy is cancelled: its host blocks are freed, the KV on the GPU is used as it is
        assert events == ["swap_out"] * 4
        assert rec.resume_latency_s == [pytest.approx(0.014 + 0.01 + 11e-4)]  # next boundary, then 11 tokens
        assert max(m.steps["cpu_used_blocks"][m.steps["start_s"] >= 0.094]) == 0
    else:  # the four copied blocks come back one a step, the 6-token one last
        assert events == ["swap_out"] * 4 + ["swap_in"] * 4
        assert rec.resume_latency_s == [pytest.approx(0.004 + 3 * 0.016 + 0.006 + 0.0111)]


@pytest.mark.parametrize("holds", [False, True])
def test_a_swap_in_waits_for_the_blocks_a_swap_out_holds(holds: bool) -> None:
    # 9 GPU blocks. "b" (7 blocks) swaps out by 0.1422 (held, whole blocks on the link: 0.1522) and its tool
    # returns at 0.2402; "c" (100 tokens, 7 blocks) is admitted then, pauses 40 ms later and swaps out a block
    # a step. Block by block, c has copied 6 blocks after the step from 0.2524.
    cost = make_cost(swap_overlap=False, swap_holds_blocks=holds, gpu_kv_blocks=9)
    specs = [RequestSpec("b", 0.0, 100, (Segment(3, 0.2, 10, "qa"), Segment(2)), "qa"),
             RequestSpec("c", 0.13, 100, (Segment(3, 1.0, 10, "qa"), Segment(2)), "qa")]
    m = run(specs, "infercept", cost=cost)
    first_in = min(t for t, rid, e, _ in m.events if rid == "b" and e == "swap_in")
    c_out = [t for t, rid, e, _ in m.events if rid == "c" and e == "swap_out"]
    if not holds:  # block by block: 8 blocks are free after 6 copies, so b's swap-in takes the next budget
        assert first_in == pytest.approx(0.2684) and len(c_out) == 6
    else:  # c's copies: six full blocks from 0.1924, then the partial one at 0.2884 (a whole block's 16 ms);
        # c holds all 7 until that step is over: the policy sees 2 free blocks, lets c finish, and b comes back
        # after it
        assert c_out[-1] == pytest.approx(0.2884) and len(c_out) == 7
        assert first_in == pytest.approx(0.2884 + 0.016)
        assert not [e for _, rid, e, _ in m.events if rid == "c" and e == "discard"]


@pytest.mark.parametrize("holds", [False, True])
def test_a_swap_at_the_pause_holds_its_blocks_through_the_step_that_copies_it(holds: bool) -> None:
    # the swap baseline moves all 7 blocks at the pause (0.0402); the copy is charged to the next step
    m = run(_tool(1.0), "swap", cost=make_cost(swap_overlap=False, swap_holds_blocks=holds))
    copy = list(m.steps["swap_tokens"]).index(102)
    assert m.steps["start_s"][copy] == pytest.approx(0.0402)
    assert int(m.steps["gpu_used_blocks"][copy]) == (7 if holds else 0)


@pytest.mark.parametrize("holds", [False, True])
def test_a_plan_the_pools_cannot_honour_is_skipped_only_with_held_blocks(holds: bool) -> None:
    # "back" is resumed with 3 blocks on the host and none on the GPU, which has 2 free; "p" is paused with
    # 2 blocks and the host is full. The plan swaps back in a block of "back" and out 1 block of "p" into the
    # host block that swap-in frees (§2.5). Block by block both are done; held, vLLM would not admit "back"
    # (all 3 of its blocks are taken with the first), the executor drops the grant and then finds no host
    # slot for "p": nothing moves, and nothing fails.
    cost = make_cost(gpu_kv_blocks=10, cpu_kv_blocks=3, swap_holds_blocks=holds)
    specs = [RequestSpec("back", 0.0, 40, (Segment(5),)), RequestSpec("p", 0.0, 30, (Segment(3, 1.0), Segment(1)))]
    eng = Engine(simpy.Environment(), specs, cost, make_policy("infercept", cost), Metrics(10.0, 10), "v1", 10.0,
                 drain=True)
    back, p = Req(specs[0], 0), Req(specs[1], 1)
    back.status, back.cpu_blocks, back.computed = Status.SWAPPED, 3, 40
    p.status, p.gpu_blocks, p.computed = Status.PAUSED, 2, 32
    eng.swapped["back"], eng.paused["p"] = back, p
    for r in (back, p):
        eng.m.arrive(0.0, r.rid, r.kind, r.spec.prompt_tokens)
    eng.pool.allocate_cpu(3)
    eng.pool.allocate_gpu(8)  # p's 2 and 6 others': 2 free
    plan = StepPlan(swap_out=(("p", 1),), swap_in=(("back", 1),))
    moved = eng.apply(plan, 0.0)
    if holds:
        assert moved == 0 and (back.cpu_blocks, p.gpu_blocks, eng.pool.gpu_free, eng.pool.cpu_free) == (3, 2, 2, 0)
    else:  # 16 tokens each way
        assert moved == 32 and (back.cpu_blocks, p.gpu_blocks, eng.pool.gpu_free, eng.pool.cpu_free) == (2, 1, 2, 0)
