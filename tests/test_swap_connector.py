"""The swap connector (real/swap.py) on real tensors, both of its sides in one object, without an engine: a
plan's swap-out takes the host slot that the same step's budgeted swap-in reads (the simulator's plan counts
the host blocks a step's swap-ins free for its swap-outs, INFERCEPT.md §2.5), and the worker copies the
swap-in first, so the slot's old contents reach the device before the swap-out overwrites them."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("vllm")

from vllm.distributed.kv_transfer.kv_connector.v1.base import KVConnectorRole  # noqa: E402

from real.swap import InterceptSwapConnector  # noqa: E402

BLOCK = 4  # tokens per block
DEVICE_BLOCKS = 6


def _connector(host_blocks: int) -> tuple[InterceptSwapConnector, torch.Tensor]:
    """A connector over one layer's KV tensor whose block b holds the value b + 1 everywhere."""
    cfg = SimpleNamespace(kv_transfer_config=SimpleNamespace(kv_connector_extra_config={"host_blocks": host_blocks}),
                          cache_config=SimpleNamespace(block_size=BLOCK))
    c = InterceptSwapConnector(cfg, KVConnectorRole.SCHEDULER, SimpleNamespace(num_blocks=DEVICE_BLOCKS))
    kv = torch.arange(1, DEVICE_BLOCKS + 1, dtype=torch.float32).repeat_interleave(BLOCK * 2).reshape(
        DEVICE_BLOCKS, BLOCK, 2)
    c.register_kv_caches({"layer0": kv})
    c.chunked_in = True
    return c, kv


def _step(c: InterceptSwapConnector) -> object:
    """Build the step's metadata and run its copies on the worker side."""
    meta = c.build_connector_meta(None)
    c.bind_connector_metadata(meta)
    c.start_load_kv(None)
    return meta


def _swapped(c: InterceptSwapConnector, rid: str, device_blocks: list[int]) -> list[int]:
    """Swap ``device_blocks`` out whole (a pause's swap) and record them as ``rid``'s swapped KV."""
    slots = c.reserve(len(device_blocks))
    assert slots is not None
    c.queue_out(device_blocks, slots)
    _step(c)
    c.set_swapped(rid, slots, len(device_blocks) * BLOCK)
    return slots


def _admit(c: InterceptSwapConnector, rid: str, device_blocks: list[int]) -> None:
    """vLLM admits ``rid`` again: its swapped tokens are an asynchronous hit loaded into ``device_blocks``."""
    req = SimpleNamespace(request_id=rid, num_tokens=len(device_blocks) * BLOCK + 1)
    tokens, is_async = c.get_num_new_matched_tokens(req, 0)
    assert (tokens, is_async) == (len(device_blocks) * BLOCK, True)
    c.update_state_after_alloc(req, SimpleNamespace(get_block_ids=lambda: (device_blocks,)), tokens)


def test_a_plan_swap_out_reuses_the_slot_a_swap_in_reads_in_the_same_step() -> None:
    c, kv = _connector(host_blocks=2)
    slots = _swapped(c, "a", [0, 1])  # a's blocks (values 1, 2) fill the host
    assert c.host_free_blocks() == 0
    _admit(c, "a", [3, 4])
    c.grant("a", 1)  # a's first block comes back ...
    c.plan_out("b", [5])  # ... and b's block (value 6) leaves into the slot it frees
    meta = _step(c)
    assert meta.in_host == [slots[0]] and meta.out_host == [slots[0]]
    assert c.out_done == {"b": [slots[0]]} and c.load_progress("a") == (1, 2)
    assert torch.all(kv[3] == 1)  # a's first block, read from the slot before b overwrote it
    host = c._host[0]
    assert torch.all(host[slots[0]] == 6) and torch.all(host[slots[1]] == 2)


def test_a_plan_swap_out_takes_the_slots_there_are() -> None:
    """One free slot for two blocks: the first block is copied (as the simulator's held pools copy the first
    blocks that fit), and the slot is promised to it, not free, for a second plan before the step; with no
    free slot, and a grant to a request vLLM has not admitted (which frees nothing), nothing is copied."""
    c, kv = _connector(host_blocks=3)
    _swapped(c, "a", [0, 1])
    c.plan_out("b", [4, 5])
    assert c.host_free_blocks() == 0
    meta = _step(c)
    (slot,) = c.out_done["b"]
    assert meta.out_dev == [4] and torch.all(c._host[0][slot] == 5)
    c.grant("a", 1)
    c.plan_out("x", [3])
    meta = _step(c)
    assert meta.out_dev == [] and meta.in_dev == [] and c.out_done == {}
    assert torch.all(kv[3] == 4)


def test_an_aborted_load_frees_only_the_slots_not_yet_read() -> None:
    c, _ = _connector(host_blocks=3)
    _swapped(c, "a", [0, 1, 2])
    _admit(c, "a", [3, 4, 5])
    c.grant("a", 1)
    _step(c)
    assert c.host_free_blocks() == 1
    c.request_finished(SimpleNamespace(request_id="a"), None)
    assert sorted(c._free_slots) == [0, 1, 2]  # every slot free once, none twice


def test_plans_before_one_step_extend_its_swap_out_and_a_resume_cancels_it() -> None:
    """A plan applied between steps (a due decision caught up at a resume) and the step's own plan both swap
    b out: one reservation for both, in block order; a request that resumed before the step copies nothing."""
    c, _ = _connector(host_blocks=3)
    c.plan_out("b", [4])
    c.plan_out("b", [5])
    assert c.pending_out("b") == 2
    c.plan_out("x", [2])
    c.cancel_out("x")
    meta = _step(c)
    assert meta.out_dev == [4, 5] and list(c.out_done) == ["b"] and c.host_free_blocks() == 1
