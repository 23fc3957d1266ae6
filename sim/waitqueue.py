"""The waiting queue, ordered by the policy's ``queue_order`` (core/queue_order.py)."""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Iterator

from core.queue_order import PLAS, queue_key
from sim.request import Req


class WaitQueue:
    """Waiting requests sorted by their queue key; PLAS promotes those waiting ``PLAS.starvation_s``."""

    def __init__(self, order: str) -> None:
        self.order = order
        self._items: list[tuple[tuple[int, int], Req]] = []
        self._since: list[tuple[float, int, Req]] = []  # PLAS: (queued at, ticket, req), lazily pruned

    def add(self, r: Req, now: float) -> None:
        """Queue ``r`` (not in the queue) at ``now`` by its key."""
        r.queued_at = now
        bisect.insort(self._items, (queue_key(self.order, r.ticket, r.service_tokens), r))
        if self.order == "plas":
            heapq.heappush(self._since, (now, r.ticket, r))

    def promote_starved(self, now: float) -> None:
        """PLAS: move every request that has waited ``starvation_s`` or more ahead of all levels."""
        since = self._since
        while since and since[0][0] <= now - PLAS.starvation_s:
            at, _, r = heapq.heappop(since)
            if r.queued_at != at:
                continue  # admitted (or re-queued) since
            key = queue_key(self.order, r.ticket, r.service_tokens)
            i = bisect.bisect_left(self._items, (key,))
            if i < len(self._items) and self._items[i][1] is r:
                del self._items[i]
                bisect.insort(self._items, (queue_key(self.order, r.ticket, r.service_tokens, starved=True), r))

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
