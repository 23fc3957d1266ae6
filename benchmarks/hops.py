"""The client-engine hops of a finished `infercept validate` folder's real runs.

The executor's client (vLLM's AsyncLLM, in the driver's process) sends each arrival and each tool's return to
the engine core (another process) and receives its tokens back. The simulator applies the hops that the run's
profile measured (``engine.client_in_hop_s``, ``client_out_hop_s``; ``real.hops``): the engine sees an
arrival or a return an in-hop after it, at the first step boundary from then (at once, if it is idle); the
client sees output an out-hop after its step, and the tool starts then. This script measures, from the real
runs' own logs (the client's events and the engine's steps share ``time.monotonic()`` on one host):

- the in-hop, directly: an arrival or return that finds the engine idle (the last step ended before it) is
  scheduled by the step it wakes, which starts ``lead`` after the client logged it: the hop (median and
  5-95 % by kind of event), to compare with the profile's;
- on a busy engine, the share of arrivals and returns that miss the next step, by their lead before it
  (descriptive: misses for other reasons, blocks or budget, occur at every lead);
- the extra interception time: client resume - engine pause - the tool's time (the out-hop, and the client's
  sleep overshooting, which the simulator does not model), which the summary counts as tool time;
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pyarrow.parquet as pq  # noqa: E402

from core.trace_io import read_jsonl  # noqa: E402
from experiments.fidelity import plain  # noqa: E402
from real.collect import read_engine_log  # noqa: E402
from real.hops import Lead, in_hop_s, leads  # noqa: E402

BINS_S = (0.0, 0.0005, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.006, 0.01, 0.02, 1.0)
"""Lead bins (client event to the next step's start), seconds."""


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
