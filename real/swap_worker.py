"""The worker side of the swap connector (real/swap.py): the host copy of every layer's KV and each step's
copies, swap-ins first (a step's swap-outs may write the host slots its swap-ins read), timed and throttled to
``link_bytes_per_s``. On CUDA the swap-ins go to a side stream from pinned host memory and the forward pass
waits for them; the swap-outs are copied synchronously (the host thread waits for each device-to-host copy
before scattering it into the host slots), so they do not overlap the forward pass. The CUDA path has not run."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch
from vllm.distributed.kv_transfer.kv_connector.v1.base import KVConnectorMetadata, KVConnectorWorkerMetadata


@dataclass
class SwapMeta(KVConnectorMetadata):
    """One step's copies: parallel lists of device block ids and host slots."""

    out_dev: list[int] = field(default_factory=list)
    out_host: list[int] = field(default_factory=list)
    in_dev: list[int] = field(default_factory=list)
    in_host: list[int] = field(default_factory=list)
    loaded: list[str] = field(default_factory=list)  # budgeted loads whose last blocks this step copies


@dataclass
class SwapWorkerMeta(KVConnectorWorkerMetadata):
    """Worker -> scheduler, per step: seconds spent copying (throttle included)."""

    copy_s: float = 0.0

    def aggregate(self, other: KVConnectorWorkerMetadata) -> KVConnectorWorkerMetadata:
        """Workers copy in parallel: the step waits for the slowest."""
        return SwapWorkerMeta(max(self.copy_s, getattr(other, "copy_s", 0.0)))


class SwapWorker:
    """Worker-side state and hooks of the connector (a mixin; the connector sets ``num_host_blocks``,
    ``link_bytes_per_s`` and ``_kv_cache_config``, and calls ``init_worker``)."""

    num_host_blocks: int
    link_bytes_per_s: float
    _kv_cache_config: Any
    _get_connector_metadata: Any  # KVConnectorBase_V1's

    def init_worker(self) -> None:
        """Empty worker state (the host tensors are made in ``register_kv_caches``)."""
        self._layers: list[tuple[torch.Tensor, int]] = []
        self._host: list[torch.Tensor] = []
        self._stream: Any = None
        self._block_bytes = 0
        self._copy_s = 0.0
        self._finished_in: set[str] = set()

    def register_kv_caches(self, kv_caches: dict[str, torch.Tensor]) -> None:
        """Allocate one host tensor per layer, shaped like the layer's KV with ``host_blocks`` blocks."""
        num_blocks = self._kv_cache_config.num_blocks
        for name, t in kv_caches.items():
            # the first dimension of size num_blocks (CPU: (blocks, heads, block, 2*hd); CUDA flash-attn:
            # (2, blocks, block, heads, hd)); a later one of the same size is a coincidence of the head shape
            dims = [d for d, s in enumerate(t.shape) if s == num_blocks]
            if not dims:
                raise RuntimeError(f"swap connector: cannot find the block dimension of {name} {tuple(t.shape)}")
            shape = list(t.shape)
            shape[dims[0]] = self.num_host_blocks
            self._layers.append((t, dims[0]))
            self._host.append(torch.empty(shape, dtype=t.dtype, device="cpu", pin_memory=t.is_cuda))
            self._block_bytes += t.numel() * t.element_size() // num_blocks
        if self._layers and self._layers[0][0].is_cuda:
            self._stream = torch.cuda.Stream()

    def _copy(self, dev_ids: list[int], host_ids: list[int], to_host: bool) -> None:
        t0 = time.perf_counter()
        host = torch.tensor(host_ids)
        for (t, d), h in zip(self._layers, self._host):
            dev = torch.tensor(dev_ids, device=t.device)
            if to_host:  # synchronous: index_copy_ reads the host copy at once
                h.index_copy_(d, host, t.index_select(d, dev).to("cpu"))
            else:
                t.index_copy_(d, dev, h.index_select(d, host).to(t.device, non_blocking=t.is_cuda))
        if self.link_bytes_per_s > 0:  # the throttle: the copy lasts at least bytes / rate
            time.sleep(max(len(dev_ids) * self._block_bytes / self.link_bytes_per_s - (time.perf_counter() - t0),
                           0.0))
        self._copy_s += time.perf_counter() - t0

    def start_load_kv(self, forward_context: Any, **kwargs: Any) -> None:
        """Run this step's swap-ins, then its swap-outs (which may write the host slots the swap-ins read);
        swap-ins complete before returning."""
        meta = self._get_connector_metadata()
        assert isinstance(meta, SwapMeta)
        self._finished_in.update(meta.loaded)
        if self._stream is None:
            if meta.in_dev:
                self._copy(meta.in_dev, meta.in_host, False)
            if meta.out_dev:
                self._copy(meta.out_dev, meta.out_host, True)
            return
        self._stream.wait_stream(torch.cuda.current_stream())
        if meta.in_dev:
            with torch.cuda.stream(self._stream):
                self._copy(meta.in_dev, meta.in_host, False)
            torch.cuda.current_stream().wait_stream(self._stream)  # the forward waits for the swap-ins only
        if meta.out_dev:
            with torch.cuda.stream(self._stream):
                self._copy(meta.out_dev, meta.out_host, True)

    def get_finished(self, finished_req_ids: set[str]) -> tuple[set[str] | None, set[str] | None]:
        """Budgeted swap-ins whose last blocks this step copied: their requests may compute next step."""
        done, self._finished_in = self._finished_in, set()
        return None, done or None

    def build_connector_worker_meta(self) -> SwapWorkerMeta:
        """This step's copy time, for the scheduler's step log."""
        meta, self._copy_s = SwapWorkerMeta(self._copy_s), 0.0
        return meta

    def wait_for_layer_load(self, layer_name: str) -> None:
        """Loads are done in start_load_kv."""

    def save_kv_layer(self, layer_name: str, kv_layer: Any, attn_metadata: Any, **kwargs: Any) -> None:
        """Nothing is saved layer by layer."""

    def wait_for_save(self) -> None:
        """On CUDA: the step's swap-outs must finish before the scheduler frees their blocks."""
        if self._stream is not None:
            self._stream.synchronize()
