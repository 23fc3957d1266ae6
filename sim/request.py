"""A request's runtime state inside the simulator: computed tokens catching up to the sequence's tokens."""

from __future__ import annotations

import math

from core.types import RequestSpec, ReqView, Segment, Status


class Req:
    """Mutable runtime state. While the request sits in the DecodeGroup, ``num_tokens``, ``computed``,
    ``gen_in_seg`` and ``gpu_blocks`` are stale: the group holds them as an offset (see sim/decoders.py)."""

    __slots__ = (
        "base",
        "chunk_prompt_tokens",
        "computed",
        "cpu_blocks",
        "ever_computed",
        "g_join",
        "gen_at_join",
        "gen_in_seg",
        "gpu_blocks",
        "held_blocks",
        "in_group",
        "kind",
        "num_tokens",
        "paused_at",
        "queued_at",
        "resumed_at",
        "rid",
        "seg",
        "service_tokens",
        "spec",
        "status",
        "ticket",
        "turn_base",
        "version",
        "view",
        "wait_key",
    )

    def __init__(self, spec: RequestSpec, ticket: int) -> None:
        self.spec, self.rid, self.ticket, self.kind = spec, spec.rid, ticket, spec.kind
        self.seg = 0
        self.num_tokens = spec.prompt_tokens
        # the prompt of the current session chunk: the whole context when the session was last (re)opened
        # (what vLLM's offload_prompt_only lets the host tier store)
        self.chunk_prompt_tokens = spec.prompt_tokens
        self.computed = self.ever_computed = 0
        self.gpu_blocks = self.cpu_blocks = 0
        # GPU blocks held beyond gpu_blocks while a swap runs (engine.swap_holds_blocks): copied out and not
        # yet freed, or allocated for a swap-in and not yet filled (the policy counts only the latter as free)
        self.held_blocks = 0
        self.gen_in_seg = 0
        self.status = Status.WAITING
        self.paused_at = math.nan
        self.queued_at = -1.0  # when it entered the waiting queue, on the order's clock (-1: not in it)
        self.wait_key: tuple[int, float, int] = (0, 0.0, 0)  # its place in the waiting queue (sim/waitqueue.py)
        self.resumed_at = math.nan  # when the engine saw its tool return, while it waits with its KV dropped
        self.service_tokens = 0  # tokens computed for it in its finished turns (PLAS)
        self.turn_base = 0  # computed tokens when the current turn began
        self.in_group = False
        self.base = self.g_join = self.gen_at_join = 0
        self.version = 0
        self.view: ReqView | None = None

    @property
    def segment(self) -> Segment:
        """The segment being generated (or whose interception is running)."""
        return self.spec.segments[self.seg]

    @property
    def pending(self) -> int:
        """Tokens still to compute before the next token can be sampled."""
        return self.num_tokens - self.computed

    @property
    def is_last_segment(self) -> bool:
        """True on the final segment (no interception after it)."""
        return self.seg == len(self.spec.segments) - 1

    def blocks_for(self, tokens: int, block_size: int) -> int:
        """GPU blocks this request must hold to have KV for ``tokens`` tokens, beyond those it holds."""
        n = -(-tokens // block_size) - self.gpu_blocks
        return max(0, n)

    def make_view(self) -> ReqView:
        """The frozen view a policy sees (cached until the request changes)."""
        if self.view is None:
            segs, i = self.spec.segments, self.seg
            seg = segs[i]
            self.view = ReqView(self.rid, self.ticket, self.kind, self.status, self.num_tokens, self.computed,
                                self.gpu_blocks, self.cpu_blocks, self.paused_at, seg.tool_s, seg.kind,
                                seg.gen_tokens, seg.tool_tokens, i, self.gen_in_seg, i == len(segs) - 1)
        return self.view
