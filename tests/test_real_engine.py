"""The policies inside the real vLLM engine (CPU build, tiny random-weight Llama): tokens, blocks, pressure."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("vllm")

from real_support import BLOCK_TOKENS, run_real, tiny_model, tiny_profile

from core.queue_order import MARS_STARVATION_STEPS, PLAS
from core.types import RequestSpec, Segment

POLICIES = ("preserve", "discard", "improved_discard", "swap", "infercept")
RECENT = {"vllm_native": {}, "continuum": {"ttl_s": 0.2}, "mars": {}}  # policy -> options
TRACE = [
    RequestSpec("a", 0.0, 600, (Segment(8, 0.6, 30, "qa"), Segment(8, 0.4, 10, "qa"), Segment(8)), "qa"),
    RequestSpec("b", 0.05, 300, (Segment(16, 0.5, 20, "math"), Segment(16)), "math"),
    RequestSpec("bg", 0.1, 300, (Segment(120),), "plain"),
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    folder = tmp_path_factory.mktemp("real")
    model, profile = tiny_model(folder), tiny_profile(folder)
    runs = {p: run_real(model, profile, p, TRACE, folder / f"{p}.jsonl") for p in POLICIES}
    for p, options in RECENT.items():
        runs[p] = run_real(model, profile, p, TRACE, folder / f"{p}.jsonl", policy_options=options)
    return runs


def _pauses(run: object) -> list[dict]:
    return [e for e in run.events if e["e"].startswith("pause:")]  # type: ignore[attr-defined]


def _admissions(run: object, rid: str) -> list[tuple[int, int]]:
    """(computed tokens at admission, tokens scheduled in that step) for each admission of ``rid``."""
    return [(s["new"][rid], s["sched"][rid]) for s in run.steps if rid in s["new"]]  # type: ignore[attr-defined]


def _paused_blocks_between(run: object, t_from: float, t_to: float) -> list[int]:
    return [s["gpu_paused_blocks"] for s in run.steps if t_from < s["t0"] < t_to]  # type: ignore[attr-defined]


def test_intercepted_tokens_identical_under_every_policy(runs: dict) -> None:
    ref = runs["preserve"].tokens
    for rid, segs in (("a", 24), ("b", 32)):
        assert len(ref[rid]) == segs
        for p in (*POLICIES, *RECENT):
            assert runs[p].tokens[rid] == ref[rid], f"{p} changed {rid}'s greedy tokens"


def test_preserve_holds_blocks_and_resume_computes_only_returned(runs: dict) -> None:
    run = runs["preserve"]
    first = _pauses(run)[0]
    assert first["rid"] == "a" and first["e"] == "pause:preserve" and first["v"] == 600 + 8 - 1
    resume = next(s["t0"] for s in run.steps if "a" in s["new"] and s["new"]["a"] > 0)
    held = _paused_blocks_between(run, first["t"], resume)
    assert held and min(held) >= math.ceil(607 / BLOCK_TOKENS)
    # first admission: the prompt; each resume: context kept, only [last token] + returned computed
    assert _admissions(run, "a") == [(0, 256), (607, 31), (645, 11)]
    assert run.metrics.requests["a"].recomputed_tokens == 0


def test_discard_frees_blocks_and_recomputes_whole_context(runs: dict) -> None:
    for policy in ("discard", "improved_discard"):
        run = runs[policy]
        kinds = [e["e"] for e in run.events if e["rid"] == "a"]
        assert kinds.count("discard") == 2 and "pause:discard" in kinds
        dropped = next(e["t"] for e in run.events if e["e"] == "discard" and e["rid"] == "a")
        resume = next(s["t0"] for s in run.steps if "a" in s["new"] and s["t0"] > dropped)
        # once discarded, a's 19 blocks are not held (only b's 10 may be, before b's own discard)
        held = _paused_blocks_between(run, dropped, resume)
        assert held and max(held) < math.ceil(607 / BLOCK_TOKENS) and min(held) == 0
        adm = _admissions(run, "a")
        assert [c for c, _ in adm] == [0, 0, 0], "a discarded request restarts from zero computed tokens"
        # recomputed = the contexts dropped (607 and 645 tokens), not served from the prefix cache
        assert run.metrics.requests["a"].recomputed_tokens == 607 + 645
        assert run.metrics.requests["b"].recomputed_tokens == 315


def test_swap_frees_device_blocks_and_restores_them(runs: dict) -> None:
    run = runs["swap"]
    outs = [e for e in run.events if e["e"] == "swap_out" and e["rid"] == "a"]
    ins = [e for e in run.events if e["e"] == "swap_in" and e["rid"] == "a"]
    assert [e["v"] for e in outs] == [607, 645] and [e["v"] for e in ins] == [607, 645]
    later = _paused_blocks_between(run, outs[0]["t"] + 0.05, ins[0]["t"])
    assert later and max(later) < math.ceil(607 / BLOCK_TOKENS) and min(later) == 0
    assert max(s["cpu_used_blocks"] for s in run.steps) >= math.ceil(607 / BLOCK_TOKENS)
    # resumes are admitted with the swapped context as computed, scheduling only the new tokens
    assert _admissions(run, "a")[1:] == [(607, 31), (645, 11)]
    assert run.metrics.requests["a"].swapped_tokens == 607 + 645


def test_infercept_uses_the_shared_min_waste_policy(runs: dict) -> None:
    run = runs["infercept"]
    acted = {e["e"] for e in run.events if e["rid"] in ("a", "b")}
    # plenty of link budget in the profile: min-waste swaps the paused contexts out instead of keeping them
    assert "swap_out" in acted and "swap_in" in acted
    assert run.metrics.requests["a"].recomputed_tokens == 0


def test_mars_decides_every_pause_and_ranks_with_the_turns_hints(runs: dict) -> None:
    """Each of MARS's pauses gets one of the three actions, applied as the simulator applies it (a swap moves
    the whole context, a discard recomputes it); its queue scored each turn from the driver's hints."""
    run = runs["mars"]
    pauses = [e["e"] for e in _pauses(run)]
    assert len(pauses) == 3 and set(pauses) <= {"pause:preserve", "pause:discard", "pause:swap"}
    a = run.metrics.requests["a"]
    assert a.preserved_pauses + a.discarded_pauses + a.swapped_pauses == 2


def test_mars_ranks_vllms_waiting_queue(tmp_path: Path) -> None:
    """A 2400-token prompt takes the whole 256-token budget for 9 steps; a long and then a short request arrive
    meanwhile. vLLM's FCFS (discard) gives the leftover budget to the long one first; MARS's queue, ranked by
    each request's memory x time, to the short one."""
    model, profile = tiny_model(tmp_path), tiny_profile(tmp_path)
    trace = [RequestSpec("hog", 0.0, 2400, (Segment(4),)), RequestSpec("long", 0.01, 1200, (Segment(4),)),
             RequestSpec("short", 0.02, 40, (Segment(4),))]
    order = {}
    for policy in ("discard", "mars"):
        run = run_real(model, profile, policy, trace, tmp_path / f"{policy}.jsonl")
        admitted = [next(i for i, s in enumerate(run.steps) if rid in s["new"]) for rid in ("hog", "long", "short")]
        assert admitted[0] < min(admitted[1:]), "the others arrived while the hog prefilled"
        # admission order: by step, then by vLLM's order within the step (it schedules the queue's head first)
        order[policy] = sorted(("long", "short"), key=lambda rid: next(
            (i, list(s["new"]).index(rid)) for i, s in enumerate(run.steps) if rid in s["new"]))
    assert order == {"discard": ["long", "short"], "mars": ["short", "long"]}


def test_policy_hook_is_timed(runs: dict) -> None:
    steps = runs["infercept"].metrics.steps
    assert steps["policy_s"].sum() > 0
    assert steps["policy_s"].sum() < steps["dur_s"].sum()


def test_memory_pressure_discard_and_swap_give_others_more_concurrency(tmp_path: Path) -> None:
    """40 blocks of 32 tokens: under preserve two paused 284-token contexts pin 18 of them, so three 400-token
    requests cannot all run; with discard, swap or vllm_offload they can. Concurrency = decoders per step
    while the paused requests are away (steps that schedule a w-request and no p-request). vllm_offload: the
    w-requests evict the p-requests' freed blocks from the GPU prefix cache, so their 8 full prompt blocks
    come back from vLLM's OffloadingConnector tier (real.offload's worker on this build), whole and exact."""
    model, profile = tiny_model(tmp_path), tiny_profile(tmp_path)
    trace = [RequestSpec(f"p{i}", 0.0, 280, (Segment(4, 2.0, 8, "qa"), Segment(4)), "qa") for i in range(2)]
    trace += [RequestSpec(f"w{i}", 0.3, 200, (Segment(200),)) for i in range(3)]
    conc, runs = {}, {}
    for policy in ("preserve", "discard", "swap", "vllm_offload"):
        run = runs[policy] = run_real(model, profile, policy, trace, tmp_path / f"{policy}.jsonl", kv_blocks=40)
        window = [s["num_decode"] for s in run.steps
                  if any(r.startswith("w") for r in s["sched"]) and not any(r.startswith("p") for r in s["sched"])]
        conc[policy] = sum(window) / len(window)
        assert all(r.finish_s > 0 for r in run.metrics.requests.values())
    for policy in ("discard", "swap", "vllm_offload"):
        assert conc[policy] > 1.3 * conc["preserve"], conc
    offload = runs["vllm_offload"]
    assert sum(e["v"] for e in offload.events if e["e"] == "reload") > 0  # from the host tier, not the GPU
    for rid in ("p0", "p1"):
        rec = offload.metrics.requests[rid]
        # 283 tokens at the pause: 8 full prompt blocks found (GPU cache or host tier), the tail recomputed
        assert (rec.prefix_hit_tokens, rec.recomputed_tokens) == (256, 27), rid
        assert offload.tokens[rid] == runs["preserve"].tokens[rid]


def test_resumed_requests_holding_every_block_do_not_wait_forever(tmp_path: Path) -> None:
    """Under preserve, three paused 183-token contexts hold 18 of 19 blocks; each resume appends 64 tokens and
    needs 2 more. Once two have resumed and nothing runs, vLLM alone would wait forever; as the simulator, the
    executor recompute-preempts the newest of them (p1), the oldest runs, and every request ends with the
    tokens it gets with blocks to spare."""
    model, profile = tiny_model(tmp_path), tiny_profile(tmp_path)
    trace = [RequestSpec(f"p{i}", 0.0, 180, (Segment(4, 0.3 + 0.1 * i, 64, "qa"), Segment(4)), "qa") for i in range(3)]
    run = run_real(model, profile, "preserve", trace, tmp_path / "tight.jsonl", kv_blocks=20)
    roomy = run_real(model, profile, "preserve", trace, tmp_path / "roomy.jsonl", kv_blocks=64)
    assert all(r.finish_s > 0 for r in run.metrics.requests.values())
    assert run.tokens == roomy.tokens
    dropped = [(e["rid"], e["v"]) for e in run.events if e["e"] == "discard"]
    assert dropped == [("p1", 183)]  # its KV: the 180-token prompt and 3 of its 4 decoded tokens
    assert not [e for e in roomy.events if e["e"] == "discard"]


def test_a_pause_on_an_idle_engine_is_still_decided(tmp_path: Path) -> None:
    """Alone in the engine, a paused request leaves nothing to schedule; the policy must still act on it."""
    model, profile = tiny_model(tmp_path), tiny_profile(tmp_path)
    run = run_real(model, profile, "swap", TRACE[:1], tmp_path / "swap.jsonl")
    moves = [(e["e"], e["v"]) for e in run.events if e["e"] in ("swap_out", "swap_in")]
    assert moves == [("swap_out", 607), ("swap_in", 607), ("swap_out", 645), ("swap_in", 645)]
    assert len(run.tokens["a"]) == 24
    # the step that ends a's turn leaves its 19 blocks idle; the next one copies them out and frees them, so
    # none stays idle over the engine's idle gap that follows (what real.collect charges over the gap)
    i = next(i for i, s in enumerate(run.steps) if s["swap_tokens"])
    blocks = math.ceil(607 / BLOCK_TOKENS)
    assert run.steps[i - 1]["gpu_paused_blocks"] == 0 and run.steps[i - 1]["gpu_paused_blocks_after"] == blocks
    assert run.steps[i]["gpu_paused_blocks"] == blocks and run.steps[i]["gpu_paused_blocks_after"] == 0
    # so a's waste is a few steps' worth of its blocks, not its blocks over its tools' 0.6 s and 0.4 s
    assert run.metrics.waste_by_kind["qa"] < 0.2 * blocks * 0.6


def test_an_idle_engine_keeps_copying_a_budgeted_swap_out(tmp_path: Path) -> None:
    """Alone, a's 19 blocks leave over a 100 MB/s link in InferCept's budget of a few blocks a step, with
    nothing else to run: the engine keeps stepping while the plan copies (the simulator's copy-only steps),
    so all of a's KV is out during its 0.6 s pause and comes back after it, not the first chunk only."""
    model, link = tiny_model(tmp_path), 1e8
    profile = tiny_profile(tmp_path, link_bytes_per_s=link, name="slow-link.json")
    run = run_real(model, profile, "infercept", TRACE[:1], tmp_path / "ic.jsonl", link_bytes_per_s=link)
    evs = [e for e in run.events if e["rid"] == "a"]
    pauses = [i for i, e in enumerate(evs) if e["e"].startswith("pause:")]
    turn = evs[pauses[0] + 1:pauses[1]]  # from a's first pause to its second
    outs = [e["v"] for e in turn if e["e"] == "swap_out"]
    ins = [e for e in turn if e["e"] == "swap_in"]
    assert len(outs) > 2 and sum(outs) == 607 and sum(e["v"] for e in ins) == 607, (outs, ins)
    copying_out = [s for s in run.steps if s["swap_tokens"] and evs[pauses[0]]["t"] < s["t_sched"] < ins[0]["t"]]
    assert len(copying_out) == len(outs)
    assert all(s["num_decode"] == 0 and s["prefill_tokens"] == 0 for s in copying_out)  # nothing else ran
    assert all(s["plan"]["out"].get("a", 0) >= 1 for s in copying_out)  # the plan each step logs
    # once all is out it stops: no empty step while a waits for its tool
    empty = [s for s in run.steps if evs[pauses[0]]["t"] < s["t_sched"] < ins[0]["t"]
             and not (s["swap_tokens"] or s["num_decode"] or s["prefill_tokens"])]
    assert len(empty) <= 1, empty
    assert len(run.tokens["a"]) == 24


def test_budgeted_swaps_over_a_throttled_link_and_a_full_host(runs: dict, tmp_path: Path) -> None:
    """InferCept with a 100 MB/s link (its profile and the connector's throttle): a step's budget is a few
    blocks, so a's 19-block context leaves, and comes back after the resume, in chunks over several steps;
    every copy lasts at least its bytes / rate and is its step's stall. The swap baseline with 12 host
    blocks drops what does not fit (a, 19 blocks) and swaps what does (b, 10), as the simulator does."""
    model, link = tiny_model(tmp_path), 1e8
    profile = tiny_profile(tmp_path, link_bytes_per_s=link, name="slow-link.json")
    run = run_real(model, profile, "infercept", TRACE, tmp_path / "ic.jsonl", link_bytes_per_s=link)
    outs = [e["v"] for e in run.events if e["e"] == "swap_out" and e["rid"] == "a"]
    ins = [e["v"] for e in run.events if e["e"] == "swap_in" and e["rid"] == "a"]
    assert len(outs) > 2 and sum(outs) >= 607 and len(ins) > 2 and sum(ins) >= 607, (outs, ins)
    assert run.tokens["a"] == runs["preserve"].tokens["a"] and run.tokens["b"] == runs["preserve"].tokens["b"]
    block_bytes = 8192 * BLOCK_TOKENS  # tiny: 2 * 4 layers * 4 KV heads * 64 * 4 bytes per token
    copying = [s for s in run.steps if s["swap_tokens"]]
    assert copying and all(s["copy_s"] >= math.ceil(s["swap_tokens"] / BLOCK_TOKENS) * block_bytes / link
                           for s in copying)
    rows = run.metrics.steps
    assert rows["stall_s"].sum() == pytest.approx(sum(s["copy_s"] for s in run.steps))
    assert rows["fwd_s"] == pytest.approx(rows["dur_s"] - rows["stall_s"])

    full = run_real(model, profile, "swap", TRACE, tmp_path / "swap.jsonl", host_blocks=12)
    a = [e["e"] for e in full.events if e["rid"] == "a" and e["e"] in ("pause:swap", "discard", "swap_out")]
    assert a == ["pause:swap", "discard", "pause:swap", "discard"]
    assert [e["v"] for e in full.events if e["rid"] == "b" and e["e"] == "swap_out"] == [315]
    assert full.metrics.requests["a"].recomputed_tokens == 607 + 645
    assert full.tokens["a"] == runs["preserve"].tokens["a"]


def test_vllm_native_resumes_from_the_prefix_cache(runs: dict) -> None:
    """vllm_native discards at the pause with vLLM's prefix cache on: the freed full blocks are still cached
    at the resume (128 blocks, nothing evicts them), so only the partial tail block is recomputed."""
    run, discard = runs["vllm_native"], runs["discard"]
    assert [e["e"] for e in _pauses(run) if e["rid"] == "a"] == ["pause:discard", "pause:discard"]
    # a's contexts of 607 and 645 tokens: 18 and 20 full blocks found, 31 and 5 tokens recomputed
    assert [c for c, _ in _admissions(run, "a")] == [0, 576, 640]
    a = run.metrics.requests["a"]
    assert a.prefix_hit_tokens == 576 + 640 and a.recomputed_tokens == 31 + 5
    assert a.recomputed_tokens < discard.metrics.requests["a"].recomputed_tokens
    assert discard.metrics.requests["a"].prefix_hit_tokens == 0  # the cache is off for discard
    hits = [e["v"] for e in run.events if e["e"] == "prefix_hit" and e["rid"] == "a"]
    assert hits == [576, 640]


def test_continuum_ttl_expiry_discards_and_learns_durations(runs: dict) -> None:
    """continuum with a 0.2 s TTL: a's first qa pause (tool unseen) is pinned, then discarded when the TTL runs
    out (before the tool returns at 0.6 s); by its second pause the policy has observed qa's measured 0.6 s
    (> the TTL) and discards at once. b's math pause (0.5 s, unseen) is pinned, then discarded."""
    run = runs["continuum"]
    a = [e for e in run.events if e["rid"] == "a" and (e["e"].startswith("pause:") or e["e"] == "discard")]
    assert [e["e"] for e in a] == ["pause:preserve", "discard", "pause:discard", "discard"]
    assert a[1]["t"] - a[0]["t"] >= 0.2  # pinned for its TTL, not dropped at the pause
    b = [e["e"] for e in run.events if e["rid"] == "b" and (e["e"].startswith("pause:") or e["e"] == "discard")]
    assert b == ["pause:preserve", "discard"]
    recs = run.metrics.requests
    assert (recs["a"].discarded_pauses, recs["b"].discarded_pauses) == (2, 1)  # dropped before the returns
    assert recs["a"].recomputed_tokens == 607 + 645


def test_program_order_puts_a_resumed_discard_ahead_of_a_later_arrival(tmp_path: Path) -> None:
    """Two sequence slots: bg decodes long, a pauses (its session keeps the other slot), w arrives and waits.
    When a's tool returns, a (discarded, queue_order program) re-enters by its first ticket, ahead of w; with
    vLLM's order it would queue behind w."""
    model, profile = tiny_model(tmp_path), tiny_profile(tmp_path)
    trace = [RequestSpec("a", 0.0, 100, (Segment(4, 0.5, 10, "qa"), Segment(4)), "qa"),
             RequestSpec("bg", 0.0, 100, (Segment(1500),)),
             RequestSpec("w", 0.2, 100, (Segment(4),))]
    run = run_real(model, profile, "discard", trace, tmp_path / "program.jsonl", max_num_seqs=2,
                   policy_options={"queue_order": "program"})

    def at(rid: str, event: str) -> list[float]:
        return [t for t, r, ev, _ in run.metrics.events if r == rid and ev == event]

    (resume_a,), (admit_w,) = at("a", "resume"), at("w", "admit")
    assert at("w", "arrive")[0] < resume_a < admit_w  # w was waiting when a's tool returned
    assert at("a", "admit")[1] < admit_w, "the resumed discard must be admitted before the later arrival"
    assert run.metrics.requests["a"].recomputed_tokens == 103  # its context was dropped and recomputed


def _fake(rid: str, ticket: int) -> SimpleNamespace:
    return SimpleNamespace(request_id=rid, sampling_params=SimpleNamespace(extra_args={"infercept": {"ticket": ticket}}))


def test_ordered_waiting_queue_program_plas_mars() -> None:
    """real.queues keeps vLLM's waiting deque in queue_key order: program by first ticket (preemptions
    included), PLAS by service level then ticket, and a request waiting PLAS.starvation_s ahead of every level;
    MARS by score, a request waiting MARS_STARVATION_STEPS steps ahead of the others."""
    from real.queues import OrderedWaiting

    q = OrderedWaiting("program", lambda rid: 0, lambda: 0.0)
    for rid, ticket in (("d", 4), ("b", 2)):
        q.add_request(_fake(rid, ticket))
    q.prepend_request(_fake("c", 3))  # vLLM's preemption: by key, not to the front
    assert [r.request_id for r in q] == ["b", "c", "d"]

    clock = [0.0]
    service = {"old": 10 * PLAS.quantum_tokens}
    q = OrderedWaiting("plas", lambda rid: service.get(rid, 0), lambda: clock[0])
    q.add_request(_fake("old", 0))
    clock[0] = 1.0
    q.add_request(_fake("new", 5))
    q.prepend_request(_fake("pre", 3))
    assert [r.request_id for r in q] == ["pre", "new", "old"]  # level 0 before old's level, then tickets
    clock[0] = PLAS.starvation_s - 0.5
    q.promote_starved()
    assert [r.request_id for r in q] == ["pre", "new", "old"]
    clock[0] = PLAS.starvation_s
    q.promote_starved()  # old has waited starvation_s: ahead of every level
    assert [r.request_id for r in q] == ["old", "pre", "new"]
    assert q.popleft().request_id == "old"
    q.forget("old")
    assert "old" not in q.starved

    steps = [0]  # MARS: by the policy's score, then ticket; promoted after MARS_STARVATION_STEPS steps
    scores = {"big": 50.0, "small": 2.0, "mid": 9.0}
    q = OrderedWaiting("mars", lambda rid: 0, lambda: steps[0], lambda r: scores[r.request_id])
    q.add_request(_fake("big", 0))
    steps[0] = 5
    q.add_request(_fake("mid", 2))
    q.add_request(_fake("small", 3))
    assert [r.request_id for r in q] == ["small", "mid", "big"]
    steps[0] = MARS_STARVATION_STEPS - 1
    q.promote_starved()
    assert [r.request_id for r in q] == ["small", "mid", "big"]
    steps[0] = MARS_STARVATION_STEPS  # big has waited 100 steps
    q.promote_starved()
    assert [r.request_id for r in q] == ["big", "small", "mid"]
    scores["back"] = 1e9
    q.add_swapped(_fake("back", 7))  # a resume whose KV is on the host: ahead of all, whatever its score
    assert [r.request_id for r in q] == ["back", "big", "small", "mid"]
    q.forget("back")
    assert "back" not in q.swapped_back

    from real.views import wait_view  # what MARS scores: the turn's true lengths from the driver's hints
    hint = {"rid": "t", "ticket": 4, "kind": "qa", "req_kind": "qa", "tool_s": 0.5, "seg": 1, "gen_tokens": 16,
            "tool_tokens": 20, "last": False}
    req = SimpleNamespace(request_id="t", num_tokens=345, num_computed_tokens=0,
                          sampling_params=SimpleNamespace(extra_args={"infercept": hint}))
    v = wait_view(req, 3)
    assert (v.rid, v.ticket, v.tool_kind, v.context_tokens, v.computed_tokens) == ("t", 4, "qa", 345, 0)
    assert (v.seg_gen_tokens, v.seg_tool_tokens, v.segment, v.seg_done_tokens, v.last_segment) == (16, 20, 1, 3, False)


def test_a_resumed_swap_queues_ahead_of_waiting_requests_by_ticket() -> None:
    """A resume whose KV is on the host (queue order arrival: swap, InferCept) goes ahead of every waiting
    request, behind those back the same way with earlier tickets, as the simulator swaps them in before any
    admission; vLLM's own order would put it behind the earlier arrivals that wait."""
    from collections import deque

    from real.scheduler import InterceptMixin
    from real.views import Paused

    def paused(rid: str, ticket: int) -> Paused:
        return Paused(rid, rid, ticket, "qa", "qa", 1.0, 0.0, 64, place="cpu", resumed=True)

    sched = SimpleNamespace(waiting=deque([_fake("b", 1), _fake("w1", 2), _fake("w3", 5)]),
                            ic_paused={"b": paused("b", 1)})
    for rid, ticket in (("d", 4), ("a", 0), ("c", 3)):
        InterceptMixin._ic_insert_swapped(sched, _fake(rid, ticket), ticket)  # type: ignore[arg-type]
        sched.ic_paused[rid] = paused(rid, ticket)
    assert [r.request_id for r in sched.waiting] == ["a", "b", "c", "d", "w1", "w3"]
