"""The host link as the swap connector drives it: its own copy routine (``SwapWorker._copy``: per layer,
index_select, a device<->host transfer, index_copy_) timed on KV tensors of the engine's layout and size (the
device's blocks and the host's slots), moving as many blocks per copy as swaps do (1 to 16), both ways.

Until 2026-12-06 the profile timed one bulk copy of one layer's 64 blocks (the fastest of 5, the slower
direction): 6-8 GB/s on the 2-core CPU build, and 0.6-1.9 GB/s in some rounds' first profile, while the
connector's own copies in the validation runs ran at 2.7-3.1 GB/s (their logged copy time over the blocks they
moved). The bulk copy stayed in the processor's cache and skipped the per-layer and per-call costs the
connector pays on every copy.
"""

from __future__ import annotations

import statistics
import time
from types import SimpleNamespace

from real.model import ModelSize

BLOCKS_PER_COPY = (1, 2, 4, 8, 16)
"""Blocks moved per timed copy: a pause's KV, whole or in budgeted chunks, spans about this range."""


def pooled_rates(times_s: dict[tuple[str, int], list[float]], block_bytes: int) -> dict[str, float]:
    """Bytes/s ``out`` (device to host), ``in`` and ``both``: per (direction, blocks) the median of its timed
    copies; a direction's rate is all its bytes over all those medians' time, ``both`` pools the directions."""
    moved = {"out": 0, "in": 0}
    spent = {"out": 0.0, "in": 0.0}
    for (way, n), ts in times_s.items():
        moved[way] += n * block_bytes
        spent[way] += statistics.median(ts)
    return {"out": moved["out"] / spent["out"], "in": moved["in"] / spent["in"],
            "both": (moved["out"] + moved["in"]) / (spent["out"] + spent["in"])}


def link_rate(size: ModelSize, block_tokens: int, device_blocks: int, host_blocks: int, device: str,
              dtype_bytes: int, threads: int | None = None, seed: int = 0, repeats: int = 7) -> dict[str, float]:
    """``pooled_rates`` of the swap connector's copies of random blocks, ``repeats`` timed copies per size in
    BLOCKS_PER_COPY and direction after one untimed one, each timed until the device is done. ``threads``:
    torch's threads while timing (the CPU build's worker copies with its own, fewer than the machine's cores:
    ``real.engine.worker_threads``)."""
    import torch

    from real.swap_worker import SwapWorker

    dtype = torch.float32 if dtype_bytes == 4 else torch.bfloat16
    gen = torch.Generator().manual_seed(seed)
    # the CPU build's layout, and flash-attention's on CUDA (real.swap_worker finds the block dimension)
    shape = ((device_blocks, size.num_kv_heads, block_tokens, 2 * size.head_dim) if device == "cpu" else
             (2, device_blocks, block_tokens, size.num_kv_heads, size.head_dim))
    w = SwapWorker()
    w.num_host_blocks, w.link_bytes_per_s = host_blocks, 0.0
    w._kv_cache_config = SimpleNamespace(num_blocks=device_blocks)
    w.init_worker()
    w.register_kv_caches({f"layer{i}": torch.randn(shape, generator=gen).to(dtype).to(device)
                          for i in range(size.num_layers)})
    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    times: dict[tuple[str, int], list[float]] = {}
    try:
        for n in (n for n in BLOCKS_PER_COPY if n <= min(device_blocks, host_blocks)):
            for way in ("out", "in"):
                for rep in range(repeats + 1):
                    dev = torch.randperm(device_blocks, generator=gen)[:n].tolist()
                    host = torch.randperm(host_blocks, generator=gen)[:n].tolist()
                    t0 = time.perf_counter()
                    w._copy(dev, host, to_host=way == "out")
                    if device != "cpu":
                        torch.cuda.synchronize()
                    if rep:
                        times.setdefault((way, n), []).append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(before)
    return pooled_rates(times, w._block_bytes)
