"""vLLM's waiting queue ordered by the policy's ``queue_order`` (core/queue_order.py), as sim/waitqueue.py orders
the simulator's.

- ``arrival``: vLLM's own FCFS deque, untouched (new requests at the back, preempted ones at the front; the
  scheduler inserts resumed discards by ticket when the policy has ``resume_to_front``);
- ``program``: every insertion by the request's first ticket (the whole program's arrival);
- ``plas``: every insertion by ``queue_key`` (PLAS level of the service the request received in its finished
  turns, then ticket); a request that has waited ``PLAS.starvation_s`` is promoted ahead of every level
  (``promote_starved``, called by the scheduler before each step);
- ``mars`` (the mars policy): every insertion by ``queue_key`` with the policy's score of the request as it
  enters the queue (``score_of``); a request that has waited ``MARS_STARVATION_STEPS`` steps (the clock
  counts the steps that scheduled tokens) is promoted ahead of every unpromoted one. A resume whose KV is on
  the host (``add_swapped``) goes ahead of all of them, oldest first, as the simulator swaps resumed requests
  back before it admits anyone.

vLLM pops and peeks at the front and puts the requests it skipped in a step back at the front
(``prepend_requests``): those keep their places. ``add_request`` and ``prepend_request`` (vLLM's preemption)
insert by key.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vllm.v1.core.sched.request_queue import FCFSRequestQueue

from core.queue_order import keeps_ticket_on_resume, patience, queue_key
from real.views import hints


def ticket_of(request: Any) -> int:
    """The request's first ticket (its arrival rank in the trace; 0 for a request without hints)."""
    return int(hints(request).get("ticket", 0))


class OrderedWaiting(FCFSRequestQueue):
    """A waiting deque kept sorted by ``queue_key`` on insertion (``program``, ``plas`` or ``mars``).

    ``service_of(request_id)``: tokens computed for the request in its finished turns (PLAS's service);
    ``clock()``: the order's clock (seconds for PLAS, steps for MARS); ``score_of(request)``: MARS's score."""

    def __init__(self, order: str, service_of: Callable[[str], int], clock: Callable[[], float],
                 score_of: Callable[[Any], float] | None = None) -> None:
        super().__init__()
        assert order in ("program", "plas", "mars"), order
        assert (order == "mars") == (score_of is not None), order
        self.order = order
        self._service_of = service_of
        self._clock = clock
        self._score_of = score_of
        self.queued_at_s: dict[str, float] = {}  # request id -> when it entered the queue, on the clock
        self.scores: dict[str, float] = {}  # request id -> MARS's score as it entered the queue
        self.starved: set[str] = set()  # request ids promoted by the anti-starvation guard
        self.swapped_back: set[str] = set()  # mars: resumes whose KV is on the host, served first

    def key(self, request: Any) -> tuple[int, float, int]:
        """The request's place: smaller is served first."""
        rid = request.request_id
        if rid in self.swapped_back:
            return (-2, 0.0, ticket_of(request))
        return queue_key(self.order, ticket_of(request), self._service_of(rid), rid in self.starved,
                         self.scores.get(rid, 0.0))

    def _insert(self, request: Any) -> None:
        key = self.key(request)
        at = next((i for i, r in enumerate(self) if self.key(r) > key), len(self))
        self.insert(at, request)

    def add_request(self, request: Any) -> None:
        """Queue ``request`` at its key's place (it waits from now)."""
        self.queued_at_s[request.request_id] = self._clock()
        self.starved.discard(request.request_id)
        if self._score_of is not None:
            self.scores[request.request_id] = self._score_of(request)
        self._insert(request)

    def add_swapped(self, request: Any) -> None:
        """A resume whose KV waits on the host: ahead of every other, by ticket."""
        self.swapped_back.add(request.request_id)
        self.add_request(request)

    def prepend_request(self, request: Any) -> None:
        """vLLM's preemption: the request goes back by its key, not to the front."""
        self.add_request(request)

    def forget(self, request_id: str) -> None:
        """The request left the queue for good (admitted, finished or aborted)."""
        self.queued_at_s.pop(request_id, None)
        self.scores.pop(request_id, None)
        self.starved.discard(request_id)
        self.swapped_back.discard(request_id)

    def promote_starved(self) -> None:
        """Move every request that has waited the order's patience or more (PLAS: ``PLAS.starvation_s``;
        MARS: ``MARS_STARVATION_STEPS`` steps) ahead of every unpromoted one."""
        wait = patience(self.order)
        if wait == float("inf"):
            return
        now = self._clock()
        late = [r for r in self if r.request_id not in self.starved
                and self.queued_at_s.get(r.request_id, now) <= now - wait]
        for r in late:
            self.remove(r)
            self.starved.add(r.request_id)
            self._insert(r)


class QueuePlacement:
    """Where the real scheduler puts a resumed or preempted request in vLLM's waiting queue (a mixin of
    ``real.scheduler``; state lives there)."""

    waiting: Any
    ic_paused: dict[str, Any]
    ic_order: str
    ic_policy: Any

    def _ic_requeue(self, session: Any, ticket: int) -> None:
        """Queue a request whose KV is gone (dropped at a pause, or preempted) as the simulator does: by its
        key under an ordered queue (OrderedWaiting), else by arrival or at the back as the policy keeps tickets."""
        if self.ic_order != "arrival":
            self.waiting.add_request(session)
        elif keeps_ticket_on_resume(self.ic_order, self.ic_policy.traits.resume_to_front):
            self._ic_insert_by_arrival(session, ticket)
        else:
            self.waiting.add_request(session)

    def _ic_insert_by_arrival(self, session: Any, ticket: int) -> None:
        """Queue a resumed request by its original arrival (ahead of every later arrival), as the simulator
        does; vLLM's FCFS waiting queue is a deque."""
        at = next((i for i, r in enumerate(self.waiting) if ticket_of(r) > ticket), len(self.waiting))
        self.waiting.insert(at, session)

    def _ic_insert_swapped(self, session: Any, ticket: int) -> None:
        """Queue a resumed request whose KV is on the host ahead of every waiting request (behind those back
        the same way with earlier tickets): the simulator swaps such requests in ahead of any admission, as
        vLLM 0.2 (the paper's engine) scheduled its swapped queue before its waiting one."""
        def back(r: Any) -> bool:
            p = self.ic_paused.get(r.request_id)
            return p is not None and p.resumed and p.place == "cpu"

        at = next((i for i, r in enumerate(self.waiting) if not (back(r) and ticket_of(r) < ticket)),
                  len(self.waiting))
        self.waiting.insert(at, session)
