"""The waiting queue, ordered by the policy's ``queue_order`` (core/queue_order.py)."""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
from collections.abc import Callable, Iterator

from core.queue_order import patience, queue_key
from sim.request import Req


PLACEMENTS = ("deque", "deque_v0", "sorted")
"""Where ``arrival`` queues a request (``WaitQueue._fcfs_index``): ``deque``, vLLM's FCFS deque as the executor
keeps it (vLLM v1); ``deque_v0``, vLLM 0.2's as the reference's bench scripts leave it (a resume that keeps its
ticket at the front); ``sorted``, InferCept's own scheduler in the reference (every request by its ticket)."""



def queue_placement(mode: str, batching: str) -> str:
    """The PLACEMENTS entry of an engine that batches in ``mode`` ("fill", "v0" or "v1") in a run batched as
    ``batching``: v0 batching is the reference's patched vLLM 0.2, and chunk-and-fill in a v0 run its InferCept
    scheduler, which re-sorts its queue by arrival every step (``scheduler_v2.py``); v1 batching, and chunk-
    and-fill in a v1 run, the executor's vLLM v1 deque."""
    if mode == "fill":
        return "sorted" if batching == "v0" else "deque"
    return "deque_v0" if mode == "v0" else "deque"


class WaitQueue:
    """Waiting requests in queue order: by their queue key, or under ``arrival`` as the engine's FCFS queue holds
    them (``placement``, one of PLACEMENTS). The order's anti-starvation guard (PLAS, MARS) promotes
    those that waited ``patience(order)`` on the order's clock: the simulated time (PLAS), or the engine's
    step count ``steps()`` (MARS, whose keys also carry the policy's ``score`` of the request)."""

    def __init__(self, order: str, score: Callable[[Req], float] | None = None,
                 steps: Callable[[], int] | None = None, placement: str = "deque") -> None:
        if placement not in PLACEMENTS:
            raise ValueError(f"queue placement {placement!r}: expected one of {PLACEMENTS}")
        if order == "mars" and (score is None or steps is None):
            raise ValueError("the mars queue order needs the policy's score and the engine's step count")
        self.order = order
        self.placement = placement
        self._score = score
        self._steps = steps
        self._patience = patience(order)
        self._items: list[tuple[tuple[int, float, int], Req]] = []
        self._since: list[tuple[float, int, Req]] = []  # guarded orders: (queued at, seq, req), lazily pruned
        self._seq = itertools.count()

    def _clock(self, now: float) -> float:
        return float(self._steps()) if self._steps is not None else now

    def add(self, r: Req, now: float, preempted: bool = False, kept_ticket: bool = False) -> None:
        """Queue ``r`` (not in the queue) at ``now``: by its key, or under ``arrival`` where the engine's FCFS
        queue takes it (``_fcfs_index``); ``preempted``: a recompute-preemption of a running request;
        ``kept_ticket``: a request back from its pause without its KV that keeps its first ticket."""
        score = self._score(r) if self._score is not None else 0.0
        r.wait_key = queue_key(self.order, r.ticket, r.service_tokens, score=score)
        r.queued_at = self._clock(now)
        if self.order == "arrival" and self.placement != "sorted":
            self._items.insert(self._fcfs_index(r, preempted, kept_ticket), (r.wait_key, r))
        else:
            bisect.insort(self._items, (r.wait_key, r))
        if self._patience < math.inf:
            heapq.heappush(self._since, (r.queued_at, next(self._seq), r))

    def _fcfs_index(self, r: Req, preempted: bool, kept_ticket: bool) -> int:
        """Where vLLM's FCFS deque takes ``r``: a preempted request at the front, so the last preempted is served
        first (v1's ``prepend_request``, 0.2's ``waiting.insert(0, ...)``); under ``deque_v0`` a resume that keeps
        its ticket at the front too (the reference's bench scripts patch 0.2's resume to ``insert(0, ...)`` for
        ImprovedDiscard and leave it so); any other before the first request with a later ticket: a new one (the
        latest ticket) at the back (``add_request``), a resume with a new ticket at the back, and under ``deque``
        a resume that keeps its ticket by it, as the executor inserts it (``_ic_insert_by_arrival``), which can
        put it ahead of preempted requests with later tickets."""
        items = self._items
        if preempted or (kept_ticket and self.placement == "deque_v0"):
            return 0
        if not items or items[-1][1].ticket < r.ticket:
            return len(items)
        return next(i for i, (_, q) in enumerate(items) if q.ticket > r.ticket)

    def _prune(self) -> None:
        since = self._since
        while since and since[0][2].queued_at != since[0][0]:
            heapq.heappop(since)  # admitted (or re-queued) since

    def promote_starved(self, now: float) -> None:
        """Move every request that has waited the order's patience or more ahead of every unpromoted one."""
        since, clock = self._since, self._clock(now)
        self._prune()
        while since and since[0][0] <= clock - self._patience:
            r = heapq.heappop(since)[2]
            i = bisect.bisect_left(self._items, (r.wait_key,))
            if i < len(self._items) and self._items[i][1] is r:
                del self._items[i]
                r.wait_key = (-1, *r.wait_key[1:])
                bisect.insort(self._items, (r.wait_key, r))
            self._prune()

    def next_promotion(self) -> float:
        """On the order's clock, when the next promotion is due (``inf``: none)."""
        self._prune()
        return self._since[0][0] + self._patience if self._since else math.inf

    def head(self) -> Req:
        """The request served next."""
        return self._items[0][1]

    def pop_head(self) -> Req:
        """Take the request served next out of the queue."""
        r = self._items.pop(0)[1]
        r.queued_at = -1.0
        return r

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Req]:
        return (r for _, r in self._items)
