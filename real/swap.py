"""A request-keyed KV swap connector: copies exactly the blocks the policy names, host <-> device.

Scheduler side (in the engine-core process, driven by ``real.scheduler``): ``reserve`` host slots,
``queue_out`` block copies into them. When a swapped request is admitted again, vLLM asks
``get_num_new_matched_tokens`` and we claim its swapped tokens as an external hit:

- whole (``chunked_in`` off: the swap baseline): a synchronous hit, so the copy back lands before the forward
  pass of the admission step (``update_state_after_alloc`` maps the slots onto the new blocks);
- budgeted (``chunked_in`` on: InferCept): an asynchronous load. vLLM allocates the blocks and parks the
  request in WAITING_FOR_REMOTE_KVS; every step copies the blocks the policy's plan granted it (``grant``),
  and the worker reports the load finished (``get_finished``) in the step that copied the last of them, so
  the request computes from the next step on.

A plan's swap-outs (``plan_out``, budgeted chunks) take their host slots when the step's copies are handed
to the worker, after that step's swap-ins gave back the slots they read, as the simulator's plan does (a
step's swap-outs may use the host blocks its swap-ins free, INFERCEPT.md §2.5): the worker copies the
swap-ins first. A pause's whole swap-out takes its slots at once (``reserve``; too few: the KV is dropped).

Worker side (``real.swap_worker``): ``start_load_kv`` runs the step's copies with ``index_select``/
``index_copy_`` on every layer's KV tensor (the block dimension is the one whose size is the number of blocks).
``link_bytes_per_s`` throttles the copies: each copy is made to last at least its bytes / that rate (a sleep
after it), so a fast host link can stand in for a GPU's slower one relative to its step time. The time spent
copying in a step goes back to the scheduler in the worker metadata (``last_copy_s``). Only the CPU path is
tested.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vllm.distributed.kv_transfer.kv_connector.v1.base import KVConnectorBase_V1

from real.swap_worker import SwapMeta, SwapWorker, SwapWorkerMeta


@dataclass
class Load:
    """A budgeted swap-in in progress: device blocks in block order, their host slots, blocks copied."""

    dev: list[int]
    slots: list[int]
    tokens: int
    done: int = 0


class InterceptSwapConnector(SwapWorker, KVConnectorBase_V1):
    """Moves paused requests' KV to host memory and back (see the module docstring)."""

    def __init__(self, vllm_config: Any, role: Any, kv_cache_config: Any = None) -> None:
        super().__init__(vllm_config=vllm_config, role=role, kv_cache_config=kv_cache_config)
        extra = vllm_config.kv_transfer_config.kv_connector_extra_config
        self.num_host_blocks = int(extra["host_blocks"])
        self.link_bytes_per_s = float(extra.get("link_bytes_per_s", 0.0))  # 0: as fast as the copy path
        self.block_size = vllm_config.cache_config.block_size
        self.chunked_in = False  # set by the scheduler: budgeted swap-ins (async loads) instead of whole ones
        # scheduler side
        self._free_slots = list(range(self.num_host_blocks - 1, -1, -1))
        self._swapped: dict[str, tuple[list[int], int]] = {}  # rid -> (slots in block order, tokens)
        self._release: list[int] = []
        self._meta = SwapMeta()
        self.claimed: dict[str, int] = {}  # rid -> tokens loaded at its last admission (read by the scheduler)
        self._loading: dict[str, Load] = {}
        self._grants: dict[str, int] = {}
        self._outs: dict[str, list[int]] = {}  # rid -> device blocks its plan swap-out copies this step
        self.out_done: dict[str, list[int]] = {}  # rid -> host slots its plan swap-out took in this step
        self.moved_in: dict[str, tuple[int, int]] = {}  # rid -> (blocks before, after) copied in by this step
        self.last_copy_s = 0.0  # seconds the worker spent copying in the last step (read by the scheduler)
        self.init_worker()

    # ---------------------------------------------------------------- scheduler side
    def host_free_blocks(self) -> int:
        """Host slots neither reserved nor promised to a plan's swap-out not built yet (what a second plan
        before the same step may count on)."""
        return max(len(self._free_slots) - sum(len(dev) for dev in self._outs.values()), 0)

    def reserve(self, num_blocks: int) -> list[int] | None:
        """Check-and-take ``num_blocks`` host slots; None if there are not enough."""
        if num_blocks > len(self._free_slots):
            return None
        return [self._free_slots.pop() for _ in range(num_blocks)]

    def queue_out(self, device_blocks: list[int], slots: list[int]) -> None:
        """Copy ``device_blocks`` into ``slots`` in the next step (before the forward pass)."""
        self._meta.out_dev.extend(device_blocks)
        self._meta.out_host.extend(slots)

    def plan_out(self, rid: str, device_blocks: list[int]) -> None:
        """A plan's swap-out of ``device_blocks`` in the step being scheduled: its host slots are taken (for
        the first blocks that fit) once this step's swap-ins have given theirs back; ``out_done`` tells which
        request got how many. A second plan before the step (one applied between steps, then the step's)
        extends the first."""
        self._outs.setdefault(rid, []).extend(device_blocks)

    def pending_out(self, rid: str) -> int:
        """Device blocks of ``rid`` that a plan swap-out not built yet will copy."""
        return len(self._outs.get(rid, ()))

    def cancel_out(self, rid: str) -> None:
        """Drop ``rid``'s plan swap-out not built yet (after a plan applied between steps it resumed, or a
        later plan discarded it)."""
        self._outs.pop(rid, None)

    def set_swapped(self, rid: str, slots: list[int], num_tokens: int) -> None:
        """Record that ``rid``'s first ``num_tokens`` tokens live in ``slots`` (block order)."""
        self._swapped[rid] = (slots, num_tokens)

    def release(self, rid: str, slots: list[int] | None = None) -> None:
        """Give back the slots of ``rid`` (and any extra ``slots`` of a cancelled swap-out)."""
        ent = self._swapped.pop(rid, None)
        self._free_slots.extend(slots or ())
        if ent:
            self._free_slots.extend(ent[0])

    def grant(self, rid: str, num_blocks: int) -> None:
        """Budgeted swap-in: copy up to ``num_blocks`` more blocks of ``rid`` in the step being scheduled
        (if vLLM admits it in that step, or has already)."""
        self._grants[rid] = self._grants.get(rid, 0) + num_blocks

    def load_progress(self, rid: str) -> tuple[int, int] | None:
        """(blocks copied back, blocks to copy) of a budgeted swap-in in progress, else None."""
        ld = self._loading.get(rid)
        return None if ld is None else (ld.done, len(ld.dev))

    def get_num_new_matched_tokens(self, request: Any, num_computed_tokens: int) -> tuple[int, bool]:
        """A swapped request's tokens are an external hit (never the whole request): loaded synchronously,
        or asynchronously in budgeted chunks with ``chunked_in``."""
        ent = self._swapped.get(request.request_id)
        if ent is None:
            return 0, False
        tokens = max(min(ent[1], request.num_tokens - 1) - num_computed_tokens, 0)
        return tokens, self.chunked_in and tokens > 0

    def update_state_after_alloc(self, request: Any, blocks: Any, num_external_tokens: int) -> None:
        """Map the host slots onto the blocks vLLM just allocated: copied back in this step (whole), or over
        the steps that grant them (budgeted). Slots free after the step that reads them."""
        ent = self._swapped.pop(request.request_id, None)
        if ent is None:
            return
        slots, _ = ent
        n = -(-num_external_tokens // self.block_size)
        self._release.extend(slots[n:])
        dev = list(blocks.get_block_ids()[0][:n])
        self.claimed[request.request_id] = num_external_tokens
        if self.chunked_in and n:
            self._loading[request.request_id] = Load(dev, slots[:n], num_external_tokens)
            return
        self._release.extend(slots[:n])
        self._meta.in_dev.extend(dev)
        self._meta.in_host.extend(slots[:n])

    def build_connector_meta(self, scheduler_output: Any) -> SwapMeta:
        """Hand this step's copies to the worker (budgeted swap-ins: the granted blocks); slots read by its
        swap-ins are reusable afterwards."""
        meta, self._meta = self._meta, SwapMeta()
        self.moved_in = {}
        for rid, ld in list(self._loading.items()):
            k = min(self._grants.get(rid, 0), len(ld.dev) - ld.done)
            if k:
                meta.in_dev.extend(ld.dev[ld.done:ld.done + k])
                meta.in_host.extend(ld.slots[ld.done:ld.done + k])
                self._release.extend(ld.slots[ld.done:ld.done + k])  # read before this step's swap-outs write
                self.moved_in[rid] = (ld.done, ld.done + k)
                ld.done += k
            if ld.done == len(ld.dev):
                meta.loaded.append(rid)
                del self._loading[rid]
        self._grants = {}
        self._free_slots.extend(self._release)
        self._release = []
        self.out_done = {}
        for rid, dev in self._outs.items():  # the first blocks that fit (a swap-in counted on may not have run)
            slots = self.reserve(min(len(dev), len(self._free_slots)))
            if slots:
                meta.out_dev.extend(dev[:len(slots)])
                meta.out_host.extend(slots)
                self.out_done[rid] = slots
        self._outs = {}
        return meta

    def update_connector_output(self, connector_output: Any) -> None:
        """The worker's copy time of the step just run."""
        meta = connector_output.kv_connector_worker_meta
        self.last_copy_s = meta.copy_s if isinstance(meta, SwapWorkerMeta) else 0.0

    def request_finished(self, request: Any, block_ids: Any) -> tuple[bool, None]:
        """A finished or aborted request gives its host slots back (and drops a swap-out not built yet);
        vLLM frees its device blocks."""
        self.cancel_out(request.request_id)
        self.release(request.request_id)
        ld = self._loading.pop(request.request_id, None)
        if ld is not None:  # the slots of its chunks copied back are free already
            self._free_slots.extend(ld.slots[ld.done:])
        return False, None

    def has_pending_push_work(self) -> bool:
        """Keep the engine stepping while swap-outs are queued."""
        return bool(self._meta.out_dev or self._outs)
