"""The host link as the swap connector drives it: its own copy routine (``SwapWorker._copy``: per layer,
index_select, a device<->host transfer, index_copy_) timed on KV tensors of the engine's layout and size,
moving as many blocks per step as swaps do (1 to 16), both ways.

A bulk copy of one layer's blocks measured 6-8 GB/s on the 2-core CPU build while the engine's own copies
ran at about 3 GB/s (the connector's logged copy time over the blocks it moved): the bulk copy stayed in
the processor's cache, and skipped the per-layer and per-call costs the connector pays on every copy.
"""

from __future__ import annotations

import statistics
from types import SimpleNamespace
from typing import Any

from real.model import ModelSize

BLOCKS_PER_COPY = (1, 2, 4, 8, 16)
"""Blocks moved per timed copy: a pause's KV, whole or in budgeted chunks, spans about this range."""


def link_rate(size: ModelSize, block_tokens: int, device_blocks: int, device: str, dtype_bytes: int,
              threads: int | None = None, seed: int = 0, repeats: int = 7) -> dict[str, float]:
    """Bytes/s of the swap connector's copies, ``out`` (device to host), ``in`` and ``both`` (all the bytes
    over all the time): per size in BLOCKS_PER_COPY, the median of ``repeats`` timed copies of random blocks
    after one untimed copy, summed over the sizes. ``threads``: torch's threads while timing (the CPU build's
    worker copies with its own, fewer than the machine's cores: ``real.engine.worker_threads``)."""
    import torch

    from real.swap_worker import SwapWorker

    dtype = torch.float32 if dtype_bytes == 4 else torch.bfloat16
    gen = torch.Generator().manual_seed(seed)
    shape = (device_blocks, size.num_kv_heads, block_tokens, 2 * size.head_dim)  # the CPU build's layout
    w = SwapWorker()
    w.num_host_blocks, w.link_bytes_per_s = device_blocks, 0.0
    w._kv_cache_config = SimpleNamespace(num_blocks=device_blocks)
    w.init_worker()
    w.register_kv_caches({f"layer{i}": torch.randn(shape, generator=gen).to(dtype).to(device)
                          for i in range(size.num_layers)})
    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    try:
        moved, spent = _time_copies(w, device_blocks, device, gen, repeats)
    finally:
        torch.set_num_threads(before)
    return {"out": moved["out"] / spent["out"], "in": moved["in"] / spent["in"],
            "both": (moved["out"] + moved["in"]) / (spent["out"] + spent["in"])}


def _time_copies(w: Any, device_blocks: int, device: str, gen: Any,
                 repeats: int) -> tuple[dict[str, int], dict[str, float]]:
    """(bytes moved, seconds) per direction: for each size, its bytes and its median copy time."""
    import torch

    moved = {"out": 0, "in": 0}
    spent = {"out": 0.0, "in": 0.0}
    for n in (n for n in BLOCKS_PER_COPY if n <= device_blocks):
        for way in ("out", "in"):
            times = []
            for rep in range(repeats + 1):
                dev = torch.randperm(device_blocks, generator=gen)[:n].tolist()
                host = torch.randperm(device_blocks, generator=gen)[:n].tolist()
                w._copy_s = 0.0
                w._copy(dev, host, to_host=way == "out")
                if device != "cpu":
                    torch.cuda.synchronize()
                if rep:
                    times.append(w._copy_s)
            moved[way] += n * w._block_bytes
            spent[way] += statistics.median(times)
    return moved, spent
