"""The order of the waiting queue, a policy trait (``policy_options.queue_order``) both backends apply.

- ``arrival`` (default, as before): by ticket; the policy's ``resume_to_front`` decides whether a request
  resumed after a discard keeps its ticket (front, by original arrival) or takes a new one (back). A
  recompute-preempted running request goes to the very front, the last preempted first, as vLLM queues it
  (v1's ``prepend_request``, 0.2's ``waiting.insert(0, ...)``), and a resume by its ticket goes before the
  first request with a later ticket, as the executor inserts it into vLLM's deque; under the other orders
  every request goes by its key, as the real executor's ordered queue (``real/queues.py``) puts it.
- ``program``: Continuum's program-level FCFS: every turn of a request is ordered by the arrival of the whole
  request (its first ticket), whatever ``resume_to_front`` says.
- ``plas``: Autellix's program-level least attained service. A request's service is the tokens the engine
  computed for it in its finished turns (prefill, recompute and decode; a preemption counts what it had
  computed). Service is discretised into geometric queues: level 0 below ``PLAS.quantum_tokens``, level
  i + 1 below ``quantum_tokens * 2**i``, at most ``levels - 1``; FCFS (first ticket) within a level. Anti-
  starvation: a request that has waited ``starvation_s`` or more in the queue is promoted ahead of every
  level. Autellix measures service in seconds of execution; tokens are its engine-independent stand-in here
  (a choice, documented in the README).
- ``mars``: set by the ``mars`` policy only (not an option of the others): by the policy's memory x time
  score of the request's coming segment (``RankingPolicy.queue_score``, computed when it enters the queue),
  smallest first, then ticket. Anti-starvation as MARS: a request that has waited ``MARS_STARVATION_STEPS``
  engine steps is promoted ahead of every unstarved one (score order among the promoted).
"""

from __future__ import annotations

from dataclasses import dataclass

QUEUE_ORDERS = ("arrival", "program", "plas")
"""The orders ``policy_options.queue_order`` accepts (``mars`` comes with the mars policy)."""

MARS_STARVATION_STEPS = 100
"""MARS's starvation threshold in engine steps (its bench scripts' ``--starvation-threshold 100``)."""


@dataclass(frozen=True, slots=True)
class PlasSettings:
    """Autellix-style PLAS queues: the first level's size, the number of levels, the starvation bound."""

    quantum_tokens: int = 2048
    levels: int = 8
    starvation_s: float = 30.0


PLAS = PlasSettings()


def plas_level(service_tokens: int, settings: PlasSettings = PLAS) -> int:
    """The PLAS queue of a request that has received ``service_tokens`` of service (0 is served first)."""
    level = (max(service_tokens, 0) // settings.quantum_tokens).bit_length()  # 0 below one quantum
    return min(level, settings.levels - 1)


def keeps_ticket_on_resume(order: str, resume_to_front: bool) -> bool:
    """True if a request resumed after a discard re-enters the queue by its first ticket."""
    return resume_to_front or order != "arrival"


def queue_key(order: str, ticket: int, service_tokens: int, starved: bool = False,
              score: float = 0.0) -> tuple[int, float, int]:
    """Sort key of a waiting request (smaller is served first; under ``arrival`` a recompute-preempted request
    goes ahead of its key, ``sim.waitqueue``); ``starved``: promoted by the order's anti-starvation guard
    (PLAS, MARS); ``score``: MARS's score of the request."""
    if order == "plas":
        return (-1 if starved else plas_level(service_tokens), 0.0, ticket)
    if order == "mars":
        return (-1 if starved else 0, score, ticket)
    return (0, 0.0, ticket)


def patience(order: str) -> float:
    """How long a request waits before the order's anti-starvation guard promotes it, in the order's clock:
    seconds for PLAS, engine steps for MARS; ``inf`` for orders without a guard."""
    return {"plas": PLAS.starvation_s, "mars": float(MARS_STARVATION_STEPS)}.get(order, float("inf"))
