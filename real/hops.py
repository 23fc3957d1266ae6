"""The client-engine hops: the executor's client (vLLM's AsyncLLM, in the driver's process) sends each arrival
and each tool's return to the engine core (another process), and receives its output back. Both sides log in
``time.monotonic()`` seconds on one host, so the hops are read off the logs:

- the in-hop: an arrival or return that finds the engine idle (the last step ended before it) is scheduled
  by the step it wakes, which starts ``lead`` after the client logged it; an engine that saw it at once would
  start that step then, so the lead is the hop;
- the out-hop: from the engine's pause (its log, taken as the step's output is processed, a few tens of us
  before the step ends, where the simulator starts it) to the client receiving that output (``chunk_end``).

`infercept profile` measures both into the profile's engine table (``client_in_hop_s``,
``client_out_hop_s``), which the simulator applies; ``benchmarks/hops.py`` reports them for finished runs.
"""

from __future__ import annotations

import bisect
from typing import Any, NamedTuple


class Lead(NamedTuple):
    """A client arrival or return against the engine's next step."""

    lead_s: float  # the next step's start minus the client's time of the event
    scheduled: bool  # that step schedules the request
    idle: bool  # the engine was idle at the event (the step before it had ended)
    event: str  # "arrive" or "resume"


def leads(steps: list[dict[str, Any]], t0: float, events: list[tuple[float, str, str]]) -> list[Lead]:
    """A Lead for every client ``arrive`` and ``resume`` event (time from ``t0``, rid, name) between the
    first and the last step (engine-log step records, absolute ``t0``/``t_end``)."""
    starts_s = [s["t0"] - t0 for s in steps]
    out = []
    for t, rid, name in events:
        i = bisect.bisect_right(starts_s, t)
        if name in ("arrive", "resume") and 0 < i < len(steps):
            out.append(Lead(starts_s[i] - t, rid in steps[i]["sched"], steps[i - 1]["t_end"] - t0 < t, name))
    return out


def in_hop_s(rows: list[Lead], event: str | None = None) -> list[float]:
    """Leads of the idle-engine events (of kind ``event``, or all) that the step they woke scheduled."""
    return [r.lead_s for r in rows if r.idle and r.scheduled and event in (None, r.event)]


def out_hop_s(engine_events: list[dict[str, Any]], client_events: list[tuple[float, str, str, int]]) -> list[float]:
    """Engine pause (engine-log ``pause:*`` events) to the client's ``chunk_end`` of that request, per pause
    (a request's k-th pause against its k-th chunk end)."""
    pauses: dict[str, list[float]] = {}
    for e in engine_events:
        if e["e"].startswith("pause:"):
            pauses.setdefault(e["rid"], []).append(e["t"])
    ends: dict[str, list[float]] = {}
    for t, name, rid, _ in client_events:
        if name == "chunk_end":
            ends.setdefault(rid, []).append(t)
    out = [end - p for rid, ps in pauses.items() for p, end in zip(ps, ends.get(rid, []))]
    if any(x < 0 for x in out):
        raise ValueError("out_hop_s: a request's chunk end reached the client before the engine's pause: the logs "
                         "do not pair up (a pause missing from the engine log?)")
    return out
