"""The KV manager: the GPU and CPU-swap block pool, the GPU prefix cache and the host tier, with check/act
pairs and one conservation check.

The engine holds one as ``pool``. With the prefix cache and the host tier off (the default) it is the plain
counting pool of sim/kv.py and costs nothing more than one test per allocation. With the cache on, blocks that
a request frees keep their identity in the free-block queue (sim/prefix.py): they still count as free, and an
allocation evicts the least recently freed of them. The host tier (sim/offload.py) is separate host memory,
not the swap space.
"""

from __future__ import annotations

from sim.kv import KvPool
from sim.offload import HostTier
from sim.prefix import PrefixCache


class KvManager(KvPool):
    """GPU blocks are either held by requests or free; free ones are anonymous or cached (evictable):
    anonymous + cached + held == capacity."""

    def __init__(self, gpu_blocks: int, cpu_blocks: int, block_size_tokens: int, prefix_caching: bool = False,
                 host_blocks: int = 0) -> None:
        super().__init__(gpu_blocks, cpu_blocks)
        self.bs = block_size_tokens
        self.cache = PrefixCache(gpu_blocks) if prefix_caching else None
        self.host = HostTier(host_blocks) if host_blocks > 0 else None

    def allocate_gpu(self, n: int) -> None:
        """Take ``n`` free GPU blocks (check with can_allocate_gpu first); with the cache on, the least
        recently freed blocks are taken and their cached content evicted."""
        assert 0 <= n <= self.gpu_free, f"GPU allocate {n} with {self.gpu_free} free"
        self.gpu_free -= n
        if self.cache is not None and n:
            self.cache.evict(n)

    def free_gpu(self, n: int, rid: str = "", cached_blocks: int = 0) -> None:
        """Give back ``n`` GPU blocks of request ``rid``; with the cache on, its first ``cached_blocks``
        (full blocks of computed tokens) stay cached, the rest are freed without content."""
        assert n >= 0 and self.gpu_free + n <= self.gpu_total, f"GPU free {n}: over capacity"
        self.gpu_free += n
        if self.cache is not None:
            self.cache.put(rid, cached_blocks, n - cached_blocks)

    # ---------- prefix hits: lookup (check) and take (act) ----------
    def lookup(self, rid: str, num_tokens: int) -> tuple[int, int]:
        """Leading blocks a request with nothing computed may reuse at admission: (GPU prefix-cache hits,
        blocks then loaded from the host tier). As vLLM, a hit covers whole full blocks from the start of
        the context, at most (num_tokens - 1) // block size of them (one token is always computed), and
        only as far as the leading run of cached blocks goes; the host continues where the GPU stops."""
        cap = (num_tokens - 1) // self.bs
        gpu = min(self.cache.cached_blocks(rid), cap) if self.cache is not None else 0
        host = max(min(self.host.stored_blocks(rid), cap) - gpu, 0) if self.host is not None else 0
        return gpu, host

    def take_hit(self, rid: str, gpu_blocks: int, host_blocks: int) -> None:
        """Act on a lookup: the GPU hit blocks leave the free queue (held again), then blocks for the host
        loads are allocated (which may evict other requests' cached blocks, never these)."""
        if gpu_blocks:
            assert self.cache is not None and gpu_blocks <= self.gpu_free
            self.cache.take(rid, gpu_blocks)
            self.gpu_free -= gpu_blocks
        if host_blocks:
            assert self.host is not None
            self.allocate_gpu(host_blocks)
            self.host.touch(rid)
            self.host.reloaded_tokens += host_blocks * self.bs

    @property
    def cached_gpu_blocks(self) -> int:
        """Free GPU blocks that still hold a request's content (0 with the cache off)."""
        return self.cache.num_cached if self.cache is not None else 0

    def check_conservation(self, gpu_held: int, cpu_held: int) -> None:
        """Assert held + free == capacity on the GPU and the CPU swap space, with free GPU blocks =
        anonymous + cached (recounted run by run), and the host tier's runs within its capacity."""
        super().check_conservation(gpu_held, cpu_held)
        if self.cache is not None:
            cached, anonymous = self.cache.recount()
            assert (cached, anonymous) == (self.cache.num_cached, self.cache.num_anonymous), "cache counts drifted"
            assert anonymous + cached + gpu_held == self.gpu_total, (
                f"GPU blocks: {anonymous} free + {cached} cached + {gpu_held} held != {self.gpu_total}")
        if self.host is not None:
            self.host.check()
