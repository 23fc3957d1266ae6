"""vLLM's own OffloadingConnector on the CPU build: the stock scheduler side, a torch-copy worker of ours.

vLLM 0.32's native CPU tier does not run on its CPU build: ``CPUOffloadingSpec.get_worker`` raises "CPU
Offloading is currently only supported on CUDA-alike and XPU GPUs" while the worker registers its KV caches,
and its worker (``CPUOffloadingWorker``) asserts ``gpu_tensor.is_cuda or gpu_tensor.is_xpu`` (it copies with
device streams, events and a pointer-batched copy kernel). Everything above the worker is platform-neutral:
``TorchCopyOffloadingSpec`` keeps ``CPUOffloadingSpec``'s scheduler side untouched (``CPUOffloadingManager``:
hash-keyed chunks, LRU eviction, write-through stores of every full block as it is computed — only prompt
blocks with ``offload_prompt_only`` —, asynchronous loads at admission) and replaces only the worker: one host
tensor per canonical KV tensor (num_blocks, page_bytes), copies by ``index_select``/``index_copy_``. Copies
run synchronously inside the step (the swap connector's copies do too on this build), where CUDA overlaps
them with the forward pass on side streams. ``link_bytes_per_s`` (extra config) throttles them as the swap
connector's: a copy lasts at least its bytes / that rate. One block per chunk only.

Selected by ``real.engine`` for a policy whose traits carry a host tier (``cpu_tier_gib``), with
``kv_connector="OffloadingConnector"`` and ``kv_connector_extra_config = {"spec_name":
"TorchCopyOffloadingSpec", "spec_module_path": "real.offload", "cpu_bytes_to_use": ..., "offload_prompt_only":
...}``.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from vllm.v1.kv_offload.base import OffloadingWorker, TransferResult
from vllm.v1.kv_offload.cpu.spec import CPUOffloadingSpec

SPEC_NAME = "TorchCopyOffloadingSpec"
NATIVE_FAILURE = ("vLLM 0.32's CPU build does not run its native OffloadingConnector worker: "
                  "CPUOffloadingSpec.get_worker raises 'CPU Offloading is currently only supported on CUDA-alike "
                  "and XPU GPUs' and CPUOffloadingWorker asserts CUDA/XPU KV tensors")
"""Why the stock worker cannot be used here (measured on the CPU build; see VLLM.md §2.6)."""


class TorchCopyOffloadingWorker(OffloadingWorker):
    """Synchronous host <-> device copies of whole blocks (``blocks_per_chunk == 1``)."""

    def __init__(self, kv_caches: Any, num_cpu_chunks: int, blocks_per_chunk: int,
                 link_bytes_per_s: float = 0.0) -> None:
        if blocks_per_chunk != 1:
            raise ValueError(f"TorchCopyOffloadingSpec copies whole blocks: blocks_per_chunk={blocks_per_chunk}")
        self.dev: list[torch.Tensor] = []
        self.host: list[torch.Tensor] = []
        for t in kv_caches.tensors:
            dev = t.tensor.view(torch.int8).view(-1, t.page_size_bytes)
            self.dev.append(dev)
            self.host.append(torch.zeros((num_cpu_chunks, t.page_size_bytes), dtype=torch.int8))
        self._done: list[TransferResult] = []
        self.link_bytes_per_s = link_bytes_per_s

    def _copy(self, job_id: int, src_ids: Any, dst_ids: Any, to_host: bool) -> bool:
        t0 = time.perf_counter()
        src = torch.from_numpy(src_ids.astype("int64"))
        dst = torch.from_numpy(dst_ids.astype("int64"))
        assert len(src) == len(dst), (len(src), len(dst))
        num_bytes = 0
        for dev, host in zip(self.dev, self.host):
            if to_host:
                host.index_copy_(0, dst, dev.index_select(0, src.to(dev.device)).cpu())
            else:
                dev.index_copy_(0, dst.to(dev.device), host.index_select(0, src).to(dev.device))
            num_bytes += len(src) * dev.shape[1]
        if self.link_bytes_per_s > 0:  # the throttle: the copy lasts at least bytes / rate
            time.sleep(max(num_bytes / self.link_bytes_per_s - (time.perf_counter() - t0), 0.0))
        self._done.append(TransferResult(job_id, True, num_bytes, time.perf_counter() - t0))
        return True

    def submit_store(self, job_id: int, src_spec: Any, dst_spec: Any) -> bool:
        """Device blocks -> host chunks, now."""
        return self._copy(job_id, src_spec.block_ids, dst_spec.block_ids, True)

    def submit_load(self, job_id: int, src_spec: Any, dst_spec: Any) -> bool:
        """Host chunks -> device blocks, now."""
        return self._copy(job_id, src_spec.block_ids, dst_spec.block_ids, False)

    def get_finished(self) -> list[TransferResult]:
        """Every submitted copy (they complete when submitted)."""
        done, self._done = self._done, []
        return done

    def wait(self, job_ids: set[int]) -> None:
        """Nothing is in flight."""


class TorchCopyOffloadingSpec(CPUOffloadingSpec):
    """vLLM's CPU offloading spec with ``TorchCopyOffloadingWorker`` as its worker."""

    def get_worker(self, kv_caches: Any) -> OffloadingWorker:
        """The torch-copy worker (the stock one refuses non-CUDA/XPU platforms)."""
        if not self._worker:
            link = float(self.extra_config.get("link_bytes_per_s", 0.0))
            self._worker = TorchCopyOffloadingWorker(kv_caches, self.num_chunks, self.blocks_per_chunk, link)
        return self._worker
