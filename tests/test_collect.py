"""A real step record becomes the simulator's step row: stall, recompute time and waste by the same formula
as ``sim/engine.py``'s ``_record`` (worked by hand; no engine needed)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import make_cost

from core.metrics import STEP_COLUMNS, SWAP_STALL
from core.types import RequestSpec, Segment
from real.collect import build_metrics, step_waste
from real.driver import ClientLog

STEP = {"e": "step", "t0": 100.0, "t_sched": 100.001, "t_exec": 100.002, "t_out": 100.02, "t_end": 100.025,
        "num_decode": 2, "decode_ctx_tokens": 300, "prefill_tokens": 100, "prefill_attn_pairs": 0.0,
        "recompute_tokens": 60, "recompute_attn_pairs": 0.0, "recompute_blocks": 8, "recompute": {"a": 60},
        "swap_tokens": 32, "gpu_used_blocks": 40, "gpu_paused_blocks": 10,
        "gpu_paused_blocks_by_kind": {"qa": 6, "math": 4}, "gpu_loading_blocks": 5, "cpu_used_blocks": 3,
        "copy_s": 0.005, "sched": {"d1": 1, "d2": 1, "a": 100}, "new": {},
        # when it ends, the math pause's swap-out has freed its 4 blocks and a new qa pause idles 2 more
        "gpu_paused_blocks_after": 8, "gpu_paused_blocks_after_by_kind": {"qa": 8}}
# the cost model: 10 ms + 0.1 ms per query token; the step has 102 query tokens, 60 of them recomputed
REDO_S = 0.020 * (0.0202 - 0.0142) / 0.0202  # the recomputed share of the measured 20 ms outside the copy
RUNNING = 40 - 10  # used, less the idle blocks (paused ones, and here 5 allocated to a swap-in in progress)
BUSY = (RUNNING - 8) * REDO_S + 8 * 0.025 + (RUNNING - 8) * 0.005  # recompute and copy stall
WASTE = 10 * 0.025 + BUSY


def test_step_waste_is_the_simulators_formula() -> None:
    w = step_waste(STEP, make_cost())
    assert w.stall_s == pytest.approx(0.005)
    assert w.recompute_s == pytest.approx(REDO_S)
    assert w.waste_block_s == pytest.approx(WASTE)
    assert w.paused_by_kind == pytest.approx({"qa": 6 * 0.025, "math": 4 * 0.025})
    # a step without recompute or copy: only the paused blocks
    quiet = step_waste({**STEP, "recompute_tokens": 0, "recompute": {}, "copy_s": 0.0}, make_cost())
    assert (quiet.recompute_s, quiet.waste_block_s) == (0.0, pytest.approx(10 * 0.025))


def test_a_chunk_all_recomputed_takes_its_chunk_cost_along() -> None:
    """As in the simulator: with 2 ms per prefill chunk, removing a's 60 recomputed tokens of its 100-token chunk
    leaves the chunk (and its cost), removing all 100 removes it."""
    cost = make_cost(per_prefill_seq_s=0.002)
    full = 0.01 + 1e-4 * 102 + 0.002
    assert step_waste(STEP, cost).recompute_s == pytest.approx(0.020 * (full - (0.01 + 1e-4 * 42 + 0.002)) / full)
    whole = {**STEP, "recompute_tokens": 100, "recompute": {"a": 100}}
    assert step_waste(whole, cost).recompute_s == pytest.approx(0.020 * (full - (0.01 + 1e-4 * 2)) / full)


def test_metrics_rows_and_attribution_add_up(tmp_path: Path) -> None:
    log = tmp_path / "engine.jsonl"
    log.write_text(json.dumps(STEP) + "\n")
    specs = [RequestSpec("a", 0.0, 10, (Segment(5),), "qa")]
    client = ClientLog(events=[(100.0, "arrive", "a", 10)])
    m, _ = build_metrics(specs, 99.0, client, log, 10.0, 63, make_cost())
    row = dict(zip(STEP_COLUMNS, m.step_rows[0]))
    assert row["dur_s"] == pytest.approx(0.025) and row["stall_s"] == pytest.approx(0.005)
    assert row["fwd_s"] == pytest.approx(0.020) and row["recompute_s"] == pytest.approx(REDO_S)
    # the blocks idle during the step (1 s into the run) are charged for it, those idle when it ends from its
    # end to the window end (10 s): the engine ran no other step, and the simulator integrates idle blocks over
    # idle time too; the 4 blocks the step's swap-out freed are not charged over the gap
    idle = 10 * 0.025 + 8 * (9.0 - 0.025)
    assert row["waste_block_s"] == pytest.approx(idle + BUSY)
    # by kind: the paused blocks to their kinds, the recompute to a's kind, the copy stall to no kind
    assert sum(m.waste_by_kind.values()) == pytest.approx(idle + BUSY)
    assert m.waste_by_kind[SWAP_STALL] == pytest.approx((RUNNING - 8) * 0.005)
    assert m.waste_by_kind["math"] == pytest.approx(4 * 0.025)
    assert m.waste_by_kind["qa"] == pytest.approx(6 * 0.025 + 8 * (9.0 - 0.025) + (RUNNING - 8) * REDO_S + 8 * 0.025)
    assert m.recompute_s_by_kind == pytest.approx({"qa": REDO_S})


def test_blocks_discarded_while_the_engine_idles_stop_counting_at_the_discard() -> None:
    """A TTL that ran out while nothing ran is logged at its expiry (t = 101.0, inside the idle gap after the
    step): its 2 blocks (40 tokens) are charged from the step until the expiry, not until the next step at
    102.0; a discard before the step's snapshot (the step's own hook) or at the next step is not refunded, and
    one inside the step (100.01) only from the step's end (its blocks were charged for the step)."""
    from real.collect import freed_in_gap

    discards = [{"e": "discard", "t": 100.001, "rid": "b", "v": 64}, {"e": "discard", "t": 101.0, "rid": "a", "v": 40},
                {"e": "discard", "t": 102.0, "rid": "b", "v": 64}]
    freed = freed_in_gap(STEP, 102.0, discards, [e["t"] for e in discards], 32, {"a": "qa", "b": "math"})
    assert freed == {"qa": pytest.approx(2 * 1.0)}
    inside = [{"e": "discard", "t": 100.01, "rid": "b", "v": 64}]
    freed = freed_in_gap(STEP, 102.0, inside, [100.01], 32, {"b": "math"})
    assert freed == {"math": pytest.approx(2 * (102.0 - 100.025))}


def test_the_window_end_credits_the_tokens_of_segments_in_progress(tmp_path: Path) -> None:
    """As the simulator does (issue 8, item 1): a request still generating at the window's end is credited the
    tokens the client received of its running segment, before the end only; one paused at the end was credited
    its segment at the pause, once; a finished one its tokens at the finish."""
    log = tmp_path / "engine.jsonl"
    log.write_text(json.dumps({"t": 101.0, "e": "pause:preserve", "rid": "b", "v": 4}) + "\n"
                   + json.dumps({"t": 102.002, "e": "seen", "rid": "b", "v": 0}) + "\n"
                   + json.dumps({"t": 103.0, "e": "pause:preserve", "rid": "b", "v": 3}) + "\n"
                   + json.dumps({"t": 103.1, "e": "pause:preserve", "rid": "d", "v": 4}) + "\n")
    specs = [RequestSpec("a", 0.0, 10, (Segment(50),)),
             RequestSpec("b", 0.0, 10, (Segment(4, 1.0, 2, "qa"), Segment(3, 5.0, 2, "qa"), Segment(9))),
             RequestSpec("c", 0.0, 10, (Segment(3),)),
             RequestSpec("d", 0.0, 10, (Segment(4, 1.0, 2, "qa"), Segment(5)))]
    ev = [(100.0, "arrive", r, 10) for r in "abcd"]
    ev += [(100.1 + 0.1 * i, "token", "a", 1) for i in range(30)]  # 30 tokens by 103.0, 10 more after the end
    ev += [(103.5, "token", "a", 10)]
    ev += [(100.5, "token", "b", 1), (100.9, "token", "b", 3), (101.01, "chunk_end", "b", 4),
           (102.0, "resume", "b", 2), (102.5, "token", "b", 3), (103.01, "chunk_end", "b", 3)]
    ev += [(100.2, "token", "c", 2), (100.3, "token", "c", 1), (100.3, "finish", "c", 3)]
    # d paused in the engine at 3.1 s; the client saw its last tokens and the segment's end after the window
    ev += [(101.0, "token", "d", 4), (103.25, "chunk_end", "d", 4)]
    m, _ = build_metrics(specs, 100.0, ClientLog(events=sorted(ev)), log, 3.2, 63, make_cost())
    assert m.requests["a"].gen_tokens == 30  # running at the end: what arrived before it
    assert m.requests["b"].gen_tokens == 4 + 3  # paused at the end (at 3.0 s): its two segments, once each
    assert m.requests["c"].gen_tokens == 3
    assert m.requests["d"].gen_tokens == 4  # its pause credited the segment; the window's end adds nothing
    # every delta is a token event: only the first after a resume measures the resume's latency
    assert m.requests["b"].resume_latency_s == [pytest.approx(0.5)]
    assert m.requests["a"].first_token_s == pytest.approx(0.1)


def test_a_pause_ends_when_the_engine_sees_the_return(tmp_path: Path) -> None:
    """The client sends b's return at 1.0 s; the engine discards b's KV at 1.001 s (its pin ran out) and sees
    the return at 1.003 s: a discarded pause, as the simulator counts it, with the tool time the client's
    (0.5 s from the engine's pause). c's return is sent at 1.9 s and seen after the 2-s window: resumed at the
    client's time, as the simulator's last look at the window's returns does. A log without 'seen' events is
    refused."""
    log = tmp_path / "engine.jsonl"
    rows = [{"t": 100.5, "e": "pause:preserve", "rid": "b", "v": 4}, {"t": 101.001, "e": "discard", "rid": "b", "v": 5},
            {"t": 101.003, "e": "seen", "rid": "b", "v": 0}, {"t": 101.5, "e": "pause:preserve", "rid": "c", "v": 4},
            {"t": 102.01, "e": "seen", "rid": "c", "v": 0}]
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    specs = [RequestSpec(r, 0.0, 10, (Segment(4, 0.5, 2, "qa"), Segment(3)), "qa") for r in "bc"]
    ev = [(100.0, "arrive", "b", 10), (100.0, "arrive", "c", 10), (100.4, "token", "b", 4),
          (100.51, "chunk_end", "b", 4), (101.0, "resume", "b", 2), (101.4, "token", "c", 4),
          (101.51, "chunk_end", "c", 4), (101.9, "resume", "c", 2)]
    m, _ = build_metrics(specs, 100.0, ClientLog(events=sorted(ev)), log, 2.0, 63, make_cost())
    b, c = m.requests["b"], m.requests["c"]
    assert (b.discarded_pauses, b.preserved_pauses) == (1, 0) and b.tool_s == pytest.approx(0.5)
    assert c.preserved_pauses == 1 and c.tool_s == pytest.approx(0.4) and math.isnan(c.paused_at_s)
    log.write_text("".join(json.dumps(r) + "\n" for r in rows if r["e"] != "seen"))
    with pytest.raises(ValueError, match="no 'seen' events"):
        build_metrics(specs, 100.0, ClientLog(events=sorted(ev)), log, 2.0, 63, make_cost())
