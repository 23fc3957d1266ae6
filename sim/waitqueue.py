"""The waiting queue, ordered by the policy's ``queue_order`` (core/queue_order.py)."""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
from collections.abc import Callable, Iterator

from core.queue_order import patience, queue_key
from sim.request import Req


class WaitQueue:
    """Waiting requests in queue order: by their queue key, or under ``arrival`` as vLLM's FCFS deque holds them
    (``_fcfs_index``). The order's anti-starvation guard (PLAS, MARS) promotes
    those that waited ``patience(order)`` on the order's clock: the simulated time (PLAS), or the engine's
    step count ``steps()`` (MARS, whose keys also carry the policy's ``score`` of the request)."""

    def __init__(self, order: str, score: Callable[[Req], float] | None = None,
                 steps: Callable[[], int] | None = None) -> None:
        if order == "mars" and (score is None or steps is None):
            raise ValueError("the mars queue order needs the policy's score and the engine's step count")
        self.order = order
        self._score = score
        self._steps = steps
        self._patience = patience(order)
        self._items: list[tuple[tuple[int, float, int], Req]] = []
        self._since: list[tuple[float, int, Req]] = []  # guarded orders: (queued at, seq, req), lazily pruned
        self._seq = itertools.count()

    def _clock(self, now: float) -> float:
        return float(self._steps()) if self._steps is not None else now

    def add(self, r: Req, now: float, preempted: bool = False) -> None:
        """Queue ``r`` (not in the queue) at ``now``: by its key, or under ``arrival`` where vLLM's FCFS deque
        takes it (``_fcfs_index``); ``preempted``: a recompute-preemption of a running request."""
        score = self._score(r) if self._score is not None else 0.0
        r.wait_key = queue_key(self.order, r.ticket, r.service_tokens, score=score)
        r.queued_at = self._clock(now)
        if self.order == "arrival":
            self._items.insert(self._fcfs_index(r, preempted), (r.wait_key, r))
        else:
            bisect.insort(self._items, (r.wait_key, r))
        if self._patience < math.inf:
            heapq.heappush(self._since, (r.queued_at, next(self._seq), r))

    def _fcfs_index(self, r: Req, preempted: bool) -> int:
        """Where vLLM's FCFS deque, as the executor keeps it (real/queues.py), takes ``r``: a preempted request at
        the front, so the last preempted is served first (v1's ``prepend_request``, 0.2's ``waiting.insert(0,
        ...)``); any other before the first request with a later ticket: a new one (the latest ticket) at the
        back (``add_request``), a resume that keeps its ticket by it (``_ic_insert_by_arrival``), which can put
        it ahead of preempted requests with later tickets."""
        items = self._items
        if preempted:
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
