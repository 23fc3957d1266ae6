"""The client-engine hops of a finished `infercept validate` folder, which the simulator does not model.

The executor's client (vLLM's AsyncLLM, in the driver's process) sends each arrival and each tool's return to
the engine core (another process) and receives its tokens back. The simulator lets the engine see an arrival
or a return at the first step boundary after it, and lets an interception last its tool time from the step
that paused it. This script measures, from the real runs' own logs:

- the in-hop: an arrival or return logged by the client ``lead`` seconds before a step starts is scheduled in
  that step or misses it; the table gives the share missed by lead. Misses beyond the hop (blocks, budget)
  occur at any lead; the base rate is the share at leads of BASE_LEADS_S. Under a uniform step phase the
  expected extra wait per arrival or return is the integral of (miss share - base) over the lead: the
  effective in-hop delay;
- the extra interception time: client resume - engine pause - the tool's time (the engine's last token
  reaching the client, the client's sleep overshooting), which the summary counts as tool time, not latency;
- what the in-hop alone adds to ``norm_latency_ms``: per request, one in-hop per arrival and per return over
  its tokens (gen + returned), averaged like the metric, against the real runs' mean.

    python benchmarks/hops.py results/validate-default-7 [--policy preserve]
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

BINS_S = (0.0, 0.0005, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.006, 0.01, 0.02, 1.0)
"""Lead bins (client event to the next step's start), seconds."""
BASE_LEADS_S = (0.006, 0.02)
"""Leads far beyond any hop: their miss share is the base rate of misses for other reasons."""
LOOKAHEAD_STEPS = 50
"""An event whose request is not scheduled within this many steps is left out (it waits for other reasons)."""


def leads(starts_s: list[float], sched: list[set[str]], events: list[tuple[float, str, str]]
          ) -> list[tuple[float, bool]]:
    """(lead, scheduled in that step) for every client ``arrive`` and ``resume`` event (time, rid, name):
    lead = the start of the first step after it minus its time; events past the last step, or whose request
    no step within LOOKAHEAD_STEPS schedules, are left out."""
    out = []
    for t, rid, name in events:
        if name not in ("arrive", "resume"):
            continue
        i = bisect.bisect_right(starts_s, t)
        j = next((k for k in range(i, min(i + LOOKAHEAD_STEPS, len(starts_s))) if rid in sched[k]), None)
        if j is not None:
            out.append((starts_s[i] - t, j == i))
    return out


def miss_table(pairs: list[tuple[float, bool]]) -> list[tuple[float, float, int, int]]:
    """(lo, hi, scheduled, missed) per lead bin of BINS_S."""
    rows = [[lo, hi, 0, 0] for lo, hi in zip(BINS_S, BINS_S[1:])]
    for lead, hit in pairs:
        k = min(bisect.bisect_right(BINS_S, lead) - 1, len(rows) - 1)
        rows[k][2 if hit else 3] += 1
    return [(lo, hi, h, m) for lo, hi, h, m in rows]


def effective_in_hop_s(pairs: list[tuple[float, bool]]) -> float:
    """Integral over the lead, below BASE_LEADS_S, of the miss share minus the base rate (per bin, >= 0)."""
    base = [hit for lead, hit in pairs if BASE_LEADS_S[0] <= lead < BASE_LEADS_S[1]]
    p0 = 1 - sum(base) / len(base) if base else 0.0
    total = 0.0
    for lo, hi, h, m in miss_table(pairs):
        if hi <= BASE_LEADS_S[0] and h + m:
            total += max(m / (h + m) - p0, 0.0) * (hi - lo)
    return total


def extra_interception_s(events: list[tuple[float, str, str]], tool_s: dict[tuple[str, int], float]
                         ) -> list[float]:
    """Client resume - engine pause - tool time, per interception; ``tool_s``: (rid, segment) -> seconds."""
    out, paused, seg = [], {}, {}
    for t, rid, name in events:
        if name.startswith("pause"):
            paused[rid] = t
        elif name == "resume" and rid in paused:
            k = seg.get(rid, 0)
            out.append(t - paused.pop(rid) - tool_s[(rid, k)])
            seg[rid] = k + 1
    return out


def main() -> None:
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
    pairs, extra, norm = [], [], []
    for run in runs:
        steps = read_engine_log(args.folder / "engine-logs" / f"{run.name}.jsonl")[0]
        rel = pq.read_table(run / "steps.parquet").column("start_s").to_pylist()
        t0 = steps[0]["t0"] - rel[0]  # the driver's start, on the engine's clock
        t = pq.read_table(run / "events.parquet").to_pydict()
        events = list(zip(t["time_s"], t["rid"], t["event"]))
        pairs += leads([s["t0"] - t0 for s in steps], [set(s["sched"]) for s in steps], events)
        extra += extra_interception_s(events, tool_s)
        norm.append(json.loads((run / "summary.json").read_text())["overall"]["norm_latency_ms"])
    hop = effective_in_hop_s(pairs)
    print(f"# Client-engine hops: `{args.folder}`, {args.policy}, {len(runs)} runs\n")
    print("| lead before the next step (ms) | scheduled in it | missed it | missed |")
    print("|---|---|---|---|")
    for lo, hi, h, m in miss_table(pairs):
        print(f"| {1000 * lo:g}-{1000 * hi:g} | {h} | {m} | {100 * m / (h + m) if h + m else 0:.0f} % |")
    per_req = [1000 * hop * len(s.segments) / max(sum(g.gen_tokens + g.tool_tokens for g in s.segments), 1)
               for s in specs]
    print(f"\n- effective in-hop delay: {1000 * hop:.2f} ms per arrival or return")
    if len(extra) > 1:
        q = statistics.quantiles(extra, n=20)
        print(f"- extra interception time (client resume - engine pause - tool time): median "
              f"{1000 * statistics.median(extra):.2f} ms, 5-95 % {1000 * q[0]:.2f}-{1000 * q[-1]:.2f} ms "
              f"({len(extra)} interceptions; counted as tool time, not latency)")
    share = statistics.mean(per_req)
    print(f"- what the in-hop adds to norm_latency_ms: {share:.3f} ms/token on the trace's requests (one per "
          f"arrival and per return, over gen + returned tokens), {100 * share / statistics.mean(norm):.1f} % of "
          f"the real runs' mean {statistics.mean(norm):.2f} ms/token")


if __name__ == "__main__":
    main()
