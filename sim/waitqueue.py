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
    """Waiting requests sorted by their queue key. The order's anti-starvation guard (PLAS, MARS) promotes
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
        self._fronts = itertools.count(1)  # preemptions queued at the front (``add``)

    def _clock(self, now: float) -> float:
        return float(self._steps()) if self._steps is not None else now

    def add(self, r: Req, now: float, preempted: bool = False) -> None:
        """Queue ``r`` (not in the queue) at ``now`` by its key; ``preempted`` (a recompute-preemption) under the
        ``arrival`` order: at the front, ahead of the requests preempted before it, as vLLM queues it
        (v1's ``prepend_request``; 0.2's ``waiting.insert(0, ...)``)."""
        score = self._score(r) if self._score is not None else 0.0
        front = next(self._fronts) if preempted and self.order == "arrival" else 0
        r.wait_key = queue_key(self.order, r.ticket, r.service_tokens, score=score, front=front)
        r.queued_at = self._clock(now)
        bisect.insort(self._items, (r.wait_key, r))
        if self._patience < math.inf:
            heapq.heappush(self._since, (r.queued_at, next(self._seq), r))

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
