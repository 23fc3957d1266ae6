"""KV block accounting for the GPU and the CPU swap space, with check/act pairs."""

from __future__ import annotations


class KvPool:
    """Free-block counters of one GPU (per TP shard: all shards move in lockstep) and its CPU swap space."""

    def __init__(self, gpu_blocks: int, cpu_blocks: int) -> None:
        self.gpu_total, self.cpu_total = gpu_blocks, cpu_blocks
        self.gpu_free, self.cpu_free = gpu_blocks, cpu_blocks

    def can_allocate_gpu(self, n: int) -> bool:
        """True if ``n`` GPU blocks are free."""
        return n <= self.gpu_free

    def allocate_gpu(self, n: int) -> None:
        """Take ``n`` GPU blocks (check with can_allocate_gpu first)."""
        assert 0 <= n <= self.gpu_free, f"GPU allocate {n} with {self.gpu_free} free"
        self.gpu_free -= n

    def free_gpu(self, n: int) -> None:
        """Give back ``n`` GPU blocks."""
        assert n >= 0 and self.gpu_free + n <= self.gpu_total, f"GPU free {n}: over capacity"
        self.gpu_free += n

    def can_allocate_cpu(self, n: int) -> bool:
        """True if ``n`` CPU blocks are free."""
        return n <= self.cpu_free

    def allocate_cpu(self, n: int) -> None:
        """Take ``n`` CPU blocks (check with can_allocate_cpu first)."""
        assert 0 <= n <= self.cpu_free, f"CPU allocate {n} with {self.cpu_free} free"
        self.cpu_free -= n

    def free_cpu(self, n: int) -> None:
        """Give back ``n`` CPU blocks."""
        assert n >= 0 and self.cpu_free + n <= self.cpu_total, f"CPU free {n}: over capacity"
        self.cpu_free += n

    @property
    def gpu_used(self) -> int:
        """GPU blocks held by requests."""
        return self.gpu_total - self.gpu_free

    @property
    def cpu_used(self) -> int:
        """CPU blocks held by requests."""
        return self.cpu_total - self.cpu_free

    def check_conservation(self, gpu_held: int, cpu_held: int) -> None:
        """Assert that the blocks requests hold plus the free blocks equal the capacity."""
        assert gpu_held + self.gpu_free == self.gpu_total, f"GPU blocks: {gpu_held} held + {self.gpu_free} free"
        assert cpu_held + self.cpu_free == self.cpu_total, f"CPU blocks: {cpu_held} held + {self.cpu_free} free"
