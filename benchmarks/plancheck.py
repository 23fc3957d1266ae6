"""Does the executor carry out the policy's plans? From a finished `infercept validate` folder's engine logs
(step records carry the plan the step was built from, ``plan``): per run, the swap-outs the plans named and how
many of them the step actually copied, and for the pauses shorter than ``--short-ms``, the share whose first
plan after the pause gave them a swap-out, and the free host blocks that plan saw.

    python benchmarks/plancheck.py results/validate-constrained-2 [--policy infercept] [--short-ms 25]
"""

from __future__ import annotations

import argparse
import bisect
import collections
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.trace_io import read_jsonl  # noqa: E402
from real.collect import read_engine_log  # noqa: E402


def check(steps: list[dict], events: list[dict], tool_s: dict[tuple[str, int], float],
          short_s: float) -> tuple[int, int, int, int, float]:
    """(swap-outs planned, carried out, short pauses, of those given a swap-out by their first plan, mean free
    host blocks that plan saw) of one run."""
    copied = collections.defaultdict(set)
    for e in events:
        if e["e"] == "swap_out":
            copied[e["t"]].add(e["rid"])
    planned = done = 0
    plans = [s for s in steps if s.get("plan")]
    for s in plans:
        for rid in s["plan"]["out"]:
            planned += 1
            done += rid in copied.get(s["t_sched"], ())
    starts = [s["t_sched"] for s in plans]
    seen: collections.Counter[str] = collections.Counter()
    short = given = 0
    free = 0.0
    for e in events:
        if not e["e"].startswith("pause:"):
            continue
        i = seen[e["rid"]]  # the pause's segment index
        seen[e["rid"]] += 1
        j = bisect.bisect_left(starts, e["t"])
        if tool_s.get((e["rid"], i), 1e9) >= short_s or j == len(plans):
            continue
        short += 1
        given += e["rid"] in plans[j]["plan"]["out"]
        free += plans[j]["plan"]["free_cpu_blocks"]
    return planned, done, short, given, free / short if short else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path, help="an `infercept validate --out` folder (engine logs with plans)")
    ap.add_argument("--policy", default="infercept")
    ap.add_argument("--short-ms", type=float, default=25.0)
    args = ap.parse_args()
    logs = sorted((args.folder / "engine-logs").glob(f"{args.policy}-*.jsonl"))
    if not logs:
        sys.exit(f"plancheck: no engine-logs/{args.policy}-*.jsonl in {args.folder}")
    specs = read_jsonl(args.folder / "trace.jsonl")
    tool_s = {(s.rid, i): g.tool_s for s in specs for i, g in enumerate(s.segments)}
    print(f"| run | swap-outs planned | carried out | pauses under {args.short_ms:g} ms | given a swap-out by "
          "their first plan | free host blocks that plan saw (mean) |\n|---|---|---|---|---|---|")
    for log in logs:
        steps, events = read_engine_log(log)
        planned, done, short, given, free = check(steps, events, tool_s, args.short_ms / 1e3)
        print(f"| {log.stem} | {planned} | {done} | {short} | {given} | {free:.2f} |")


if __name__ == "__main__":
    main()
