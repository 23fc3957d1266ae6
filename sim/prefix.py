"""vLLM v1's prefix cache over the GPU blocks nobody holds: freed full blocks keep their identity and stay
reusable until an allocation evicts them, least recently freed first.

vLLM keeps every unheld block in one free-block queue (``FreeKVCacheBlockQueue``). A request's blocks are
freed in reverse order, so its last block joins the queue first and is evicted first, its first block last;
an allocation pops blocks from the front and drops the cached content of what it pops; a prefix hit takes
the hit blocks out of the queue again. A block's identity is its content hash. In these workloads no two
requests share a prefix, so the identity is (request id, block index), and the cached blocks of one request
are always a leading run [0, k): eviction eats a run from its tail, a hit takes it from its head.

The queue is kept as runs, oldest first: one entry per request with cached blocks (key: its rid, value: k)
and entries of anonymous free blocks (key: an int; never-used blocks, partial tail blocks, blocks freed by a
swap-out), each at the place its blocks were freed.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any


class PrefixCache:
    """The free-block queue as runs; ``num_cached + num_anonymous`` is the pool's free block count."""

    def __init__(self, free_blocks: int) -> None:
        self.queue: OrderedDict[str | int, int] = OrderedDict()  # run key -> blocks, front = evicted first
        self.num_cached = 0  # free blocks that still carry a request's content
        self.num_anonymous = 0  # free blocks without content
        self._next_key = 0
        self.put_anonymous(free_blocks)

    @property
    def num_free(self) -> int:
        """Blocks in the queue (what allocations may take)."""
        return self.num_cached + self.num_anonymous

    def cached_blocks(self, rid: str) -> int:
        """Leading blocks of ``rid`` still cached (0 if none): a hit can cover at most these."""
        return self.queue.get(rid, 0)

    def put_anonymous(self, n: int) -> None:
        """``n`` blocks without content join the back of the queue."""
        if n <= 0:
            return
        q = self.queue
        if q:
            last = next(reversed(q))
            if type(last) is int:  # merge with the anonymous run already at the back
                q[last] += n
                self.num_anonymous += n
                return
        q[self._new_key()] = n
        self.num_anonymous += n

    def put(self, rid: str, cached: int, anonymous: int) -> None:
        """Request ``rid`` frees its blocks: the ``anonymous`` ones (the partial tail, past its full blocks)
        join the back first, then its ``cached`` full leading blocks, so that they are evicted last."""
        self.put_anonymous(anonymous)
        if cached > 0:
            assert rid not in self.queue, f"{rid}: freed blocks while some were still cached"
            self.queue[rid] = cached
            self.num_cached += cached

    def evict(self, n: int) -> None:
        """An allocation pops ``n`` blocks from the front; cached ones lose their content (a request's run
        shrinks from its tail)."""
        assert 0 <= n <= self.num_free, f"evict {n} of {self.num_free} free blocks"
        for key, took in shrink_oldest(self.queue, n):
            if type(key) is int:
                self.num_anonymous -= took
            else:
                self.num_cached -= took

    def take(self, rid: str, n: int) -> None:
        """A hit: the first ``n`` blocks of ``rid``'s run leave the queue (their request holds them again).
        Blocks of the run past ``n`` can no longer be reached by a prefix; they turn anonymous at the front.
        (A run never outgrows its request's context, so that does not happen in these workloads.)"""
        have = self.queue.pop(rid)
        assert 0 < n <= have, f"{rid}: hit of {n} blocks, {have} cached"
        self.num_cached -= have
        if have > n:
            key = self._new_key()
            self.queue[key] = have - n
            self.queue.move_to_end(key, last=False)
            self.num_anonymous += have - n

    def recount(self) -> tuple[int, int]:
        """(cached, anonymous) blocks counted run by run (for conservation checks)."""
        cached = anonymous = 0
        for key, n in self.queue.items():
            assert n > 0, f"empty run {key!r} in the free-block queue"
            if type(key) is int:
                anonymous += n
            else:
                cached += n
        return cached, anonymous

    def _new_key(self) -> int:
        self._next_key += 1
        return self._next_key


def shrink_oldest(runs: OrderedDict[Any, int], n: int) -> list[tuple[Any, int]]:
    """Take ``n`` blocks from the oldest runs of ``runs`` (key -> run length, oldest first), each from its
    tail, dropping runs that empty; return (key, blocks taken) per run touched."""
    taken = []
    while n:
        key = next(iter(runs))
        have = runs[key]
        took = min(have, n)
        if took == have:
            del runs[key]
        else:
            runs[key] = have - took
        taken.append((key, took))
        n -= took
    return taken
