"""Speed benchmark: whole `infercept run` processes, timed as a user would time them, on one core.

(a) a 30-minute window of the mixed workload at 2 req/s on GPT-J-6B / A100-40GB, every policy;
(b) the first 10,000 requests of splitwise_conv.csv (Poisson arrivals at 2 req/s, contexts capped at the
    model's maximum) on Llama3-70B TP=4 / A100-80GB, drained;
plus how the simulation time grows with the number of requests and with output length.

Usage: python benchmarks/speed.py [--quick] [--out docs/results/speed.json]
Each process is pinned to one core with `taskset` when available; wall times are the median of --repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPLITWISE = ROOT.parent / "shared" / "workloads" / "splitwise_conv.csv"
POLICIES = ("discard", "improved_discard", "preserve", "swap", "infercept")


def timed_run(sets: list[str], out: Path, repeats: int) -> tuple[float, dict]:
    """Median wall time of `infercept run --set ...` in a fresh process, and its summary."""
    cmd = [sys.executable, "-m", "experiments.cli", "run", "--out", str(out)]
    for s in sets:
        cmd += ["--set", s]
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", "0", *cmd]
    walls = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True)
        walls.append(time.perf_counter() - t0)
    summary = json.loads((out / "summary.json").read_text())
    return statistics.median(walls), summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="one repeat, no scaling series")
    ap.add_argument("--out", default=str(ROOT / "docs" / "results" / "speed.json"))
    args = ap.parse_args()
    repeats = 1 if args.quick else args.repeats
    tmp = Path(tempfile.mkdtemp(prefix="infercept-bench-"))
    results: dict = {"machine": f"{os.cpu_count()} cores, {sys.version.split()[0]}", "repeats": repeats,
                     "a_mixed_30min_2rps_gptj_a100": {}, "scaling_requests": [], "scaling_output": []}
    print("(a) mixed workload, 1800 s at 2 req/s, GPT-J-6B / A100-40GB (whole process, one core)")
    for p in POLICIES:
        wall, s = timed_run([f"policy={p}", "rate_rps=2", "duration_s=1800"], tmp / p, repeats)
        notes = s["notes"]
        results["a_mixed_30min_2rps_gptj_a100"][p] = {"wall_s": round(wall, 3), "steps": notes["steps"],
                                                       "intervals": notes["step_rows"],
                                                       "requests": s["overall"]["num_requests"]}
        print(f"  {p:<17} {wall:6.2f} s  ({int(s['overall']['num_requests'])} requests, {notes['steps']} steps "
              f"in {notes['step_rows']} intervals)")
    if SPLITWISE.exists():
        sets = ["policy=discard", f"workload={SPLITWISE}", "rate_rps=2", "duration_s=5200", "max_requests=10000",
                "drain=true", "model=llama3-70b", "gpu=a100-80gb", "tp=4"]
        wall, s = timed_run(sets, tmp / "splitwise", repeats)
        results["b_splitwise_10k_llama70b_tp4"] = {"wall_s": round(wall, 3), "steps": s["notes"]["steps"],
                                                   "intervals": s["notes"]["step_rows"],
                                                   "requests": s["overall"]["num_requests"],
                                                   "simulated_rps": round(s["overall"]["num_requests"] / wall)}
        print(f"(b) splitwise_conv first 10,000 requests, Llama3-70B TP=4: {wall:.2f} s "
              f"({s['overall']['num_requests'] / wall:.0f} simulated requests per second)")
    else:
        print(f"(b) skipped: {SPLITWISE} not found")
    if not args.quick:
        print("scaling with the number of requests (infercept and discard, mixed, 2 req/s):")
        for dur in (450, 900, 1800, 3600):
            row = {"duration_s": dur}
            for p in ("discard", "infercept"):
                row[p + "_wall_s"], s = timed_run([f"policy={p}", "rate_rps=2", f"duration_s={dur}"],
                                                  tmp / f"n{dur}{p}", 1)
                row["requests"] = s["overall"]["num_requests"]
            results["scaling_requests"].append(row)
            print(f"  {int(row['requests']):>6} requests: discard {row['discard_wall_s']:.2f} s, "
                  f"infercept {row['infercept_wall_s']:.2f} s")
        print("scaling with output length (plain requests, 200-token prompts, 1 req/s for 600 s, preserve):")
        for out_tokens in (50, 200, 800, 1600):
            csv = tmp / f"plain{out_tokens}.csv"
            csv.write_text("num_prefill_tokens,num_decode_tokens\n" + f"200,{out_tokens}\n" * 10)
            wall, s = timed_run(["policy=preserve", f"workload={csv}", "rate_rps=1", "duration_s=600"],
                                tmp / f"o{out_tokens}", 1)
            results["scaling_output"].append({"output_tokens": out_tokens, "wall_s": round(wall, 3),
                                              "steps": s["notes"]["steps"], "intervals": s["notes"]["step_rows"]})
            print(f"  {out_tokens:>5} output tokens: {wall:.2f} s, {s['notes']['steps']} steps in "
                  f"{s['notes']['step_rows']} intervals")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
