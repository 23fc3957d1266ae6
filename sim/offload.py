"""The host tier of vLLM's native OffloadingConnector (CPU offload): full blocks written through to host
memory as they are computed, LRU eviction, reloads instead of recompute at admission.

What vLLM 0.32 does, as modelled here (VLLM.md §2.6):
- every request's full blocks are copied to the host as they are computed (write-through), except that with
  ``offload_prompt_only`` (vLLM's default) only blocks inside the prompt of the request's current session
  chunk are (the chunk's own generated tokens become prompt when the session is reopened after a pause);
- blocks already on the host are not copied again; a full host evicts the least recently used blocks;
- at admission of a request with nothing computed, the leading blocks missing on the GPU (prefix-cache hits
  come first) but present on the host are loaded back over the link instead of recomputed.

As for the GPU cache (sim/prefix.py) a block's identity is (request id, block index), and a request's host
blocks are a leading run [0, h). Runs are kept least recently used first; a store or a load makes a run the
most recent; eviction takes the tail blocks of the oldest run first (vLLM re-ranks a request's keys tail
first when it finishes, so its leading blocks go last).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterable
from typing import TYPE_CHECKING

from sim.prefix import shrink_oldest

if TYPE_CHECKING:
    from core.cost import FittedCostModel
    from sim.request import Req


def host_blocks(cost: FittedCostModel, gib: float) -> int:
    """KV blocks in ``gib`` GiB of host memory per GPU, whole blocks, as ``cpu_swap_bytes`` -> ``cpu_kv_blocks``
    (the tolerance keeps a size given as ``n`` blocks' GiB at ``n`` blocks)."""
    return math.floor(gib * 2**30 / (cost.kv_bytes_per_token * cost.block_size_tokens) * (1 + 1e-12))


class HostTier:
    """Host KV blocks by request, ``capacity_blocks`` in all."""

    def __init__(self, capacity_blocks: int) -> None:
        self.capacity_blocks = capacity_blocks
        self.runs: OrderedDict[str, int] = OrderedDict()  # rid -> leading blocks stored; front = LRU
        self.used_blocks = 0
        self.stored_tokens = 0  # written through over the link so far (for the run's notes)
        self.reloaded_tokens = 0  # loaded back over the link so far

    def stored_blocks(self, rid: str) -> int:
        """Leading blocks of ``rid`` on the host (0 if none)."""
        return self.runs.get(rid, 0)

    def can_store(self, rid: str, upto_blocks: int) -> int:
        """How many of blocks [stored, upto_blocks) of ``rid`` a store would copy: all of them, unless the
        run would outgrow the whole tier (then as many as fit once every other run is evicted)."""
        have = self.runs.get(rid, 0)
        return max(min(upto_blocks, self.capacity_blocks) - have, 0)

    def store(self, rid: str, upto_blocks: int) -> int:
        """Make blocks [0, upto_blocks) of ``rid`` resident, evicting least recently used blocks of other
        requests; return the blocks copied (see can_store). The run becomes the most recent."""
        runs = self.runs
        have = runs.get(rid, 0)
        if have:
            runs.move_to_end(rid)
        new = self.can_store(rid, upto_blocks)
        if new == 0:
            return 0
        over = self.used_blocks + new - self.capacity_blocks
        if over > 0:  # the oldest runs give up their tail blocks (never rid's own: it is the newest)
            for key, took in shrink_oldest(runs, over):
                assert key != rid, "host tier evicting the run it stores into"
                self.used_blocks -= took
        runs[rid] = have + new
        self.used_blocks += new
        return new

    def touch(self, rid: str) -> None:
        """A load read ``rid``'s run: it becomes the most recent."""
        if rid in self.runs:
            self.runs.move_to_end(rid)

    def check(self) -> None:
        """Assert that the runs add up to the used blocks and fit the tier."""
        assert all(n > 0 for n in self.runs.values()), "empty run on the host tier"
        assert sum(self.runs.values()) == self.used_blocks <= self.capacity_blocks, (
            f"host tier: {sum(self.runs.values())} in runs, {self.used_blocks} used of {self.capacity_blocks}")


def store_chunks(host: HostTier, chunks: Iterable[tuple[Req, int]], block_size: int, prompt_only: bool) -> int:
    """Write through the full blocks a step's chunks complete; return the tokens copied over the link.
    A request's storable prefix is its computed tokens after the step, capped at the prompt of its current
    session chunk when ``prompt_only``; blocks already on the host (or GPU hits missing there) are topped up
    from where its host run ends."""
    tokens = 0
    for r, q in chunks:
        upto = r.computed + q
        if prompt_only and upto > r.chunk_prompt_tokens:
            upto = r.chunk_prompt_tokens
        if upto >= block_size:
            tokens += host.store(r.rid, upto // block_size) * block_size
    host.stored_tokens += tokens
    return tokens
