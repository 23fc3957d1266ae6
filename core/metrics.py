"""What a run records: an event log, per-request records and per-step samples (intervals of identical steps).

Both backends call the same methods, so analysis never knows which produced a run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

STEP_COLUMNS = ("start_s", "count", "dur_s", "fwd_s", "num_decode", "decode_ctx_tokens", "prefill_tokens",
                "recompute_tokens", "swap_tokens", "gpu_used_blocks", "gpu_paused_blocks",
                "cpu_used_blocks", "stall_s", "recompute_s", "waste_block_s", "policy_s")
"""Per-step sample columns. A row covers ``count`` identical steps from ``start_s``; ``dur_s``, ``fwd_s``,
``stall_s``, ``recompute_s`` and ``waste_block_s`` are totals over the row, the rest describe its first step;
``policy_s`` is wall time inside the policy hook (measured by the real executor, 0 in the simulator)."""
INT_STEP_COLUMNS = frozenset(c for c in STEP_COLUMNS if c.endswith(("_tokens", "_blocks")) or c == "count"
                             or c == "num_decode")
"""The step columns that count things (stored as integers)."""


SWAP_STALL = "_swap_stall"
"""Key of ``Metrics.waste_by_kind`` for blocks idle while the link stalls a step (not one kind's doing)."""


@dataclass(slots=True)
class RequestRecord:
    """Everything the summary needs about one request."""

    kind: str
    arrival_s: float
    prompt_tokens: int
    first_token_s: float = math.nan
    finish_s: float = math.nan
    gen_tokens: int = 0
    returned_tokens: int = 0
    tool_s: float = 0.0  # time inside finished interceptions
    paused_at_s: float = math.nan  # start of the interception in progress
    resumed_at_s: float = math.nan
    resume_latency_s: list[float] = field(default_factory=list)
    recomputed_tokens: int = 0
    swapped_tokens: int = 0
    prefix_hit_tokens: int = 0  # tokens whose recompute a GPU prefix-cache hit or a host-tier reload avoided
    # what happened to the KV during the interceptions that returned: kept whole on the GPU, dropped (by the
    # policy, even after a partial swap-out), or moved (partly) to the CPU and not dropped
    preserved_pauses: int = 0
    discarded_pauses: int = 0
    swapped_pauses: int = 0
    pause_kv: str = ""  # the interception in progress: "" (kept so far), "swapped" or "discarded"


class Metrics:
    """Collects a run's records. Times are simulated (or wall-clock, for the real executor) seconds."""

    def __init__(self, duration_s: float, total_gpu_blocks: int) -> None:
        self.duration_s = duration_s
        self.end_s = duration_s
        self.total_gpu_blocks = total_gpu_blocks
        self.requests: dict[str, RequestRecord] = {}
        # the event log as parallel columns (see ``events`` for rows)
        self.event_columns: dict[str, list[Any]] = {"time_s": [], "rid": [], "event": [], "value": []}
        self.step_rows: list[tuple[float, ...]] = []  # one tuple per interval, in STEP_COLUMNS order
        self._steps: dict[str, np.ndarray] = {}
        self.waste_by_kind: dict[str, float] = {}  # block-seconds wasted, by the kind that caused it
        self.recompute_s_by_kind: dict[str, float] = {}
        self.notes: dict[str, float] = {}

    def _event(self, t: float, rid: str, event: str, value: float = 0.0) -> None:
        c = self.event_columns
        c["time_s"].append(t)
        c["rid"].append(rid)
        c["event"].append(event)
        c["value"].append(value)

    @property
    def events(self) -> list[tuple[float, str, str, float]]:
        """The event log as (time, rid, event, value) rows, in the order they were recorded."""
        c = self.event_columns
        return list(zip(c["time_s"], c["rid"], c["event"], c["value"]))

    def arrive(self, t: float, rid: str, kind: str, prompt_tokens: int) -> None:
        """A request arrived."""
        self.requests[rid] = RequestRecord(kind, t, prompt_tokens)
        self._event(t, rid, "arrive", prompt_tokens)

    def admit(self, t: float, rid: str, computed_tokens: int) -> None:
        """A waiting request got a running slot (value: tokens it still has to compute)."""
        self._event(t, rid, "admit", computed_tokens)

    def token(self, t: float, rid: str) -> None:
        """A token was sampled after a prefill (the first ever, or the first after a resume)."""
        rec = self.requests[rid]
        if math.isnan(rec.first_token_s):
            rec.first_token_s = t
            self._event(t, rid, "first_token")
        if not math.isnan(rec.resumed_at_s):
            rec.resume_latency_s.append(t - rec.resumed_at_s)
            rec.resumed_at_s = math.nan

    def pause(self, t: float, rid: str, gen_tokens: int, action: str) -> None:
        """An interception started after ``gen_tokens`` generated tokens of a segment."""
        rec = self.requests[rid]
        rec.gen_tokens += gen_tokens
        rec.paused_at_s = t
        rec.pause_kv = ""
        self._event(t, rid, "pause:" + action, gen_tokens)

    def resume(self, t: float, rid: str, returned_tokens: int) -> None:
        """An interception returned ``returned_tokens`` tokens."""
        rec = self.requests[rid]
        rec.tool_s += t - rec.paused_at_s
        rec.paused_at_s = math.nan
        rec.resumed_at_s = t
        rec.returned_tokens += returned_tokens
        if rec.pause_kv == "discarded":
            rec.discarded_pauses += 1
        elif rec.pause_kv == "swapped":
            rec.swapped_pauses += 1
        else:
            rec.preserved_pauses += 1
        self._event(t, rid, "resume", returned_tokens)

    def swap(self, t: float, rid: str, direction: str, tokens: int) -> None:
        """KV of ``tokens`` tokens moved ("swap_out" or "swap_in")."""
        if direction == "swap_out":
            rec = self.requests[rid]
            rec.swapped_tokens += tokens
            if not math.isnan(rec.paused_at_s) and not rec.pause_kv:
                rec.pause_kv = "swapped"
        self._event(t, rid, direction, tokens)

    def discard(self, t: float, rid: str, tokens: int) -> None:
        """A request's KV (``tokens`` tokens) was dropped: by the policy, or by preemption."""
        rec = self.requests[rid]
        if not math.isnan(rec.paused_at_s):
            rec.pause_kv = "discarded"
        self._event(t, rid, "discard", tokens)

    def recompute(self, t: float, rid: str, tokens: int) -> None:
        """``tokens`` tokens whose KV had existed before were computed again."""
        self.requests[rid].recomputed_tokens += tokens
        self._event(t, rid, "recompute", tokens)

    def prefix_hit(self, t: float, rid: str, gpu_tokens: int, host_tokens: int) -> None:
        """At admission, ``gpu_tokens`` tokens of KV were found in the GPU prefix cache and ``host_tokens``
        more are loaded back from the host tier, instead of being recomputed (events "prefix_hit", "reload")."""
        self.requests[rid].prefix_hit_tokens += gpu_tokens + host_tokens
        if gpu_tokens:
            self._event(t, rid, "prefix_hit", gpu_tokens)
        if host_tokens:
            self._event(t, rid, "reload", host_tokens)

    def finish(self, t: float, rid: str, gen_tokens: int) -> None:
        """The request generated its last ``gen_tokens`` tokens and ended."""
        rec = self.requests[rid]
        rec.gen_tokens += gen_tokens
        rec.finish_s = t
        self._event(t, rid, "finish", gen_tokens)

    def progress(self, rid: str, gen_tokens: int) -> None:
        """At the end of a run: tokens generated in the unfinished segment of an in-flight request."""
        self.requests[rid].gen_tokens += gen_tokens

    def step(self, *row: float) -> None:
        """Record one interval of identical steps: one value per STEP_COLUMNS entry, in that order."""
        self.step_rows.append(row)

    @property
    def steps(self) -> dict[str, np.ndarray]:
        """Per-step samples as columns (STEP_COLUMNS -> float array)."""
        if not self._steps or len(self._steps["start_s"]) != len(self.step_rows):
            table = np.asarray(self.step_rows, dtype=np.float64).reshape(-1, len(STEP_COLUMNS))
            self._steps = {c: table[:, i].copy() for i, c in enumerate(STEP_COLUMNS)}
        return self._steps

    def attribute(self, kind: str, waste_block_s: float = 0.0, recompute_s: float = 0.0) -> None:
        """Charge wasted block-seconds or recompute time to an augmentation kind."""
        if waste_block_s:
            self.waste_by_kind[kind] = self.waste_by_kind.get(kind, 0.0) + waste_block_s
        if recompute_s:
            self.recompute_s_by_kind[kind] = self.recompute_s_by_kind.get(kind, 0.0) + recompute_s
