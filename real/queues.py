"""vLLM's waiting queue ordered by the policy's ``queue_order`` (core/queue_order.py), as sim/waitqueue.py orders
the simulator's.

- ``arrival``: vLLM's own FCFS deque, untouched (new requests at the back, preempted ones at the front; the
  scheduler inserts resumed discards by ticket when the policy has ``resume_to_front``);
- ``program``: every insertion by the request's first ticket (the whole program's arrival);
- ``plas``: every insertion by ``queue_key`` (PLAS level of the service the request received in its finished
  turns, then ticket); a request that has waited ``PLAS.starvation_s`` is promoted ahead of every level
  (``promote_starved``, called by the scheduler before each step).

vLLM pops and peeks at the front and puts the requests it skipped in a step back at the front
(``prepend_requests``): those keep their places. ``add_request`` and ``prepend_request`` (vLLM's preemption)
insert by key.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vllm.v1.core.sched.request_queue import FCFSRequestQueue

from core.queue_order import PLAS, queue_key
from real.views import hints


def ticket_of(request: Any) -> int:
    """The request's first ticket (its arrival rank in the trace; 0 for a request without hints)."""
    return int(hints(request).get("ticket", 0))


class OrderedWaiting(FCFSRequestQueue):
    """A waiting deque kept sorted by ``queue_key`` on insertion (``program`` or ``plas``).

    ``service_of(request_id)``: tokens computed for the request in its finished turns (PLAS's service)."""

    def __init__(self, order: str, service_of: Callable[[str], int], clock: Callable[[], float]) -> None:
        super().__init__()
        assert order in ("program", "plas"), order
        self.order = order
        self._service_of = service_of
        self._clock = clock
        self.queued_at_s: dict[str, float] = {}  # request id -> when it entered the queue (plas)
        self.starved: set[str] = set()  # request ids promoted by PLAS's anti-starvation guard

    def key(self, request: Any) -> tuple[int, int]:
        """The request's place: smaller is served first."""
        rid = request.request_id
        return queue_key(self.order, ticket_of(request), self._service_of(rid), rid in self.starved)

    def _insert(self, request: Any) -> None:
        key = self.key(request)
        at = next((i for i, r in enumerate(self) if self.key(r) > key), len(self))
        self.insert(at, request)

    def add_request(self, request: Any) -> None:
        """Queue ``request`` at its key's place (it waits from now)."""
        self.queued_at_s[request.request_id] = self._clock()
        self.starved.discard(request.request_id)
        self._insert(request)

    def prepend_request(self, request: Any) -> None:
        """vLLM's preemption: the request goes back by its key, not to the front."""
        self.add_request(request)

    def forget(self, request_id: str) -> None:
        """The request left the queue for good (admitted, finished or aborted)."""
        self.queued_at_s.pop(request_id, None)
        self.starved.discard(request_id)

    def promote_starved(self, now_s: float) -> None:
        """PLAS: move every request that has waited ``PLAS.starvation_s`` or more ahead of every level."""
        if self.order != "plas":
            return
        late = [r for r in self if r.request_id not in self.starved
                and self.queued_at_s.get(r.request_id, now_s) <= now_s - PLAS.starvation_s]
        for r in late:
            self.remove(r)
            self.starved.add(r.request_id)
            self._insert(r)
