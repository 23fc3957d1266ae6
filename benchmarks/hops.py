"""The client-engine hops of a finished `infercept validate` folder, which the simulator does not model.

The executor's client (vLLM's AsyncLLM, in the driver's process) sends each arrival and each tool's return to
the engine core (another process) and receives its tokens back. The simulator lets the engine see an arrival
or a return at the first step boundary after it (at once, if the engine is idle), and lets an interception
last its tool time from the step that paused it. This script measures, from the real runs' own logs (the
client's events and the engine's steps share ``time.monotonic()`` on one host):

- the in-hop, directly: an arrival or return that finds the engine idle (the last step ended before it) is
  scheduled by the step it wakes, which starts ``lead`` after the client logged it; the simulator starts that
  step at once, so the lead is the hop (median and 5-95 % by kind of event);
- on a busy engine, the share of arrivals and returns that miss the next step, by their lead before it
  (descriptive: misses for other reasons, blocks or budget, occur at every lead);
- the extra interception time: client resume - engine pause - the tool's time (the engine's last token
  reaching the client, the client's sleep overshooting), which the summary counts as tool time, not latency;
- what the in-hop adds to ``norm_latency_ms`` if every arrival and return waits one median in-hop (exactly
  so on an idle engine; on a busy one only in expectation, under a uniform step phase that these runs do not
  have): per request over its tokens (gen + returned), averaged like the metric, against the real runs' mean.

    python benchmarks/hops.py results/validate-default-8 [--policy preserve]
"""

from __future__ import annotations

import argparse
import bisect
import json
import statistics
import sys
from pathlib import Path
from typing import Any, NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pyarrow.parquet as pq  # noqa: E402

from core.trace_io import read_jsonl  # noqa: E402
from experiments.fidelity import plain  # noqa: E402
from real.collect import read_engine_log  # noqa: E402

BINS_S = (0.0, 0.0005, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.006, 0.01, 0.02, 1.0)
"""Lead bins (client event to the next step's start), seconds."""


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


def miss_table(rows: list[Lead]) -> list[tuple[float, float, int, int]]:
    """(lo, hi, scheduled, missed) per lead bin of BINS_S, over the busy-engine events."""
    table = [[lo, hi, 0, 0] for lo, hi in zip(BINS_S, BINS_S[1:])]
    for r in rows:
        if not r.idle:
            k = min(bisect.bisect_right(BINS_S, r.lead_s) - 1, len(table) - 1)
            table[k][2 if r.scheduled else 3] += 1
    return [(lo, hi, h, m) for lo, hi, h, m in table]


def extra_interception_s(events: list[tuple[float, str, str]], tool_s: dict[tuple[str, int], float]
                         ) -> list[float]:
    """Client resume - engine pause - tool time, per interception; ``tool_s``: (rid, segment) -> seconds."""
    out, paused_at_s, seg = [], {}, {}
    for t, rid, name in events:
        if name.startswith("pause"):
            paused_at_s[rid] = t
        elif name == "resume" and rid in paused_at_s:
            k = seg.get(rid, 0)
            out.append(t - paused_at_s.pop(rid) - tool_s[(rid, k)])
            seg[rid] = k + 1
    return out


def _spread_ms(xs: list[float]) -> str:
    if len(xs) < 2:
        return f"{len(xs)} events"
    q = statistics.quantiles(xs, n=20)
    return (f"median {1000 * statistics.median(xs):.2f} ms, 5-95 % {1000 * q[0]:.2f}-{1000 * q[-1]:.2f} ms "
            f"({len(xs)})")


def main() -> None:
    """Print the hops of one policy's runs in a validate folder as Markdown."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path, help="an `infercept validate --out` folder")
    ap.add_argument("--policy", default="infercept")
    args = ap.parse_args()
    runs = sorted((args.folder / "runs").glob(f"{args.policy}-*"))
    if not runs:
        sys.exit(f"hops: no runs/{args.policy}-* in {args.folder}")
    specs = read_jsonl(args.folder / "trace.jsonl")
    if args.policy == "plain":  # the plain runs served the trace without its interceptions
        specs = plain(specs)
    tool_s = {(s.rid, k): g.tool_s for s in specs for k, g in enumerate(s.segments)}
    rows, extra_s, norm_ms = [], [], []
    for run in runs:
        steps = read_engine_log(args.folder / "engine-logs" / f"{run.name}.jsonl")[0]
        start_s = pq.read_table(run / "steps.parquet").column("start_s").to_pylist()
        t0 = steps[0]["t0"] - start_s[0]  # the driver's start, on the engine's clock
        # the run's step rows are the engine's steps that start inside the window, in order
        if len(start_s) > len(steps) or any(abs(s["t0"] - t0 - x) > 1e-6 for s, x in zip(steps, start_s)):
            sys.exit(f"hops: {run}: its step rows do not line up with the engine log's steps")
        t = pq.read_table(run / "events.parquet").to_pydict()
        events = list(zip(t["time_s"], t["rid"], t["event"]))
        rows += leads(steps, t0, events)
        extra_s += extra_interception_s(events, tool_s)
        norm_ms.append(json.loads((run / "summary.json").read_text())["overall"]["norm_latency_ms"])
    print(f"# Client-engine hops: `{args.folder}`, {args.policy}, {len(runs)} runs\n")
    hop = in_hop_s(rows)
    print(f"- in-hop (idle engine: client event to the step it woke): {_spread_ms(hop)}; arrivals "
          f"{_spread_ms(in_hop_s(rows, 'arrive'))}; returns {_spread_ms(in_hop_s(rows, 'resume'))}")
    if len(extra_s) > 1:
        print(f"- extra interception time (client resume - engine pause - tool time): {_spread_ms(extra_s)}; "
              "counted as tool time, not latency")
    if hop:
        per_req_ms = [1000 * statistics.median(hop) * len(s.segments)
                      / max(sum(g.gen_tokens + g.tool_tokens for g in s.segments), 1) for s in specs]
        added_ms, real_ms = statistics.mean(per_req_ms), statistics.mean(norm_ms)
        print(f"- one median in-hop per arrival and per return adds {added_ms:.3f} ms/token to "
              f"norm_latency_ms "
              f"on the trace's requests, {100 * added_ms / real_ms:.1f} % of the real runs' mean "
              f"{real_ms:.2f} ms/token")
    print("\nBusy engine: arrivals and returns by their lead before the next step\n")
    print("| lead (ms) | scheduled in that step | missed it | missed |")
    print("|---|---|---|---|")
    for lo, hi, h, m in miss_table(rows):
        print(f"| {1000 * lo:g}-{1000 * hi:g} | {h} | {m} | {100 * m / (h + m) if h + m else 0:.0f} % |")


if __name__ == "__main__":
    main()
