"""The order of the waiting queue, a policy trait (``policy_options.queue_order``) both backends apply.

- ``arrival`` (default, as before): by ticket; the policy's ``resume_to_front`` decides whether a request
  resumed after a discard keeps its ticket (front, by original arrival) or takes a new one (back).
- ``program``: Continuum's program-level FCFS: every turn of a request is ordered by the arrival of the whole
  request (its first ticket), whatever ``resume_to_front`` says.
- ``plas``: Autellix's program-level least attained service. A request's service is the tokens the engine
  computed for it in its finished turns (prefill, recompute and decode; a preemption counts what it had
  computed). Service is discretised into geometric queues: level 0 below ``PLAS.quantum_tokens``, level
  i + 1 below ``quantum_tokens * 2**i``, at most ``levels - 1``; FCFS (first ticket) within a level. Anti-
  starvation: a request that has waited ``starvation_s`` or more in the queue is promoted ahead of every
  level. Autellix measures service in seconds of execution; tokens are its engine-independent stand-in here
  (a choice, documented in the README).
"""

from __future__ import annotations

from dataclasses import dataclass

QUEUE_ORDERS = ("arrival", "program", "plas")


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


def queue_key(order: str, ticket: int, service_tokens: int, starved: bool = False) -> tuple[int, int]:
    """Sort key of a waiting request (smaller is served first); ``starved``: promoted by PLAS's guard."""
    if order != "plas":
        return (0, ticket)
    return (-1 if starved else plas_level(service_tokens), ticket)
