"""Speed benchmark: whole `infercept run` processes, timed as a user would time them, on one core.

(a) a 30-minute window of the mixed workload at 2 req/s on GPT-J-6B / A100-40GB, every policy;
(b) the first 10,000 requests of splitwise_conv.csv (Poisson arrivals at 2 req/s, contexts capped at the
    model's maximum) on Llama3-70B TP=4 / A100-80GB, drained;
plus how the simulation time grows with the number of requests and with output length.

Usage: python benchmarks/speed.py [--quick] [--baseline REV] [--out docs/results/speed.json]
Each process is pinned to one core with `taskset` when available; wall times are the median of --repeats.
``--baseline REV`` also times (a) for the paper's five policies at git revision REV (a temporary worktree),
interleaved run by run with this checkout so that both see the same machine, and reports the ratio (the
issue's check that the prefix-cache model costs the existing policies at most 10 % with the cache off:
``--baseline b988e73~1``, the revision before it).
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
PAPER = ("discard", "improved_discard", "preserve", "swap", "infercept")
POLICIES = (*PAPER, "continuum", "continuum_utility", "saga", "vllm_native", "vllm_offload", "mars")


def _command(sets: list[str], out: Path) -> list[str]:
    cmd = [sys.executable, "-m", "experiments.cli", "run", "--out", str(out)]
    for s in sets:
        cmd += ["--set", s]
    return ["taskset", "-c", "0", *cmd] if shutil.which("taskset") else cmd


def _once(cmd: list[str], cwd: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True)
    return time.perf_counter() - t0


def timed_run(sets: list[str], out: Path, repeats: int) -> tuple[float, dict]:
    """Median wall time of `infercept run --set ...` in a fresh process, and its summary."""
    cmd = _command(sets, out)
    walls = [_once(cmd, ROOT) for _ in range(repeats)]
    summary = json.loads((out / "summary.json").read_text())
    return statistics.median(walls), summary


def against_baseline(rev: str, tmp: Path, repeats: int) -> dict:
    """(a) for the paper's five policies here and at git revision ``rev``, interleaved; median walls, ratio."""
    tree = tmp / "baseline"
    subprocess.run(["git", "worktree", "add", "--detach", str(tree), rev], cwd=ROOT, check=True, capture_output=True)
    out: dict = {"revision": rev}
    try:
        for p in PAPER:
            sets = [f"policy={p}", "rate_rps=2", "duration_s=1800"]
            here = _command(sets, tmp / f"here-{p}")
            there = _command(sets, tmp / f"there-{p}")
            walls_here, walls_there = [], []
            for _ in range(repeats):
                walls_there.append(_once(there, tree))
                walls_here.append(_once(here, ROOT))
            h, t = statistics.median(walls_here), statistics.median(walls_there)
            out[p] = {"wall_s": round(h, 3), "baseline_wall_s": round(t, 3), "ratio": round(h / t, 3)}
            print(f"  {p:<17} {h:6.2f} s here, {t:6.2f} s at {rev}: x{h / t:.3f}")
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, capture_output=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="one repeat, no scaling series")
    ap.add_argument("--baseline", help="also time the paper's five policies at this git revision (interleaved)")
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
    if args.baseline:
        print(f"(a) against revision {args.baseline}, interleaved")
        results["a_against_baseline"] = against_baseline(args.baseline, tmp, repeats)
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
