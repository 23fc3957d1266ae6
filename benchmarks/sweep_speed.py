"""Sweep speed: a shipped sweep run from scratch, timed as a user would time it.

Runs `infercept sweep FILE --out TMP --jobs N` in a fresh process and folder (nothing reused), twice: the
sweep file as shipped, and with its knee refinement off (its grid alone), and reports the wall time, the
summed run times, and the parallel efficiency = summed run time / (jobs x wall time). The issue's target for
e2e_gptj6b (5 policies x 11 rates x 3 seeds x 30-minute windows) is under 5 minutes at >= 85 % on 2 cores.
Usage: python benchmarks/sweep_speed.py [--sweep experiments/sweeps/e2e_gptj6b.toml] [--jobs N]
                                        [--out docs/results/sweep_speed.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed_sweep(sweep: Path, jobs: int, refine: bool) -> dict[str, float | int | str]:
    """One fresh sweep in a subprocess; its timing.json plus the process's wall time."""
    with tempfile.TemporaryDirectory(prefix="infercept-sweep-speed-") as tmp:
        path = Path(tmp) / sweep.name
        text = sweep.read_text()
        if not refine:
            text = re.sub(r"refine = \d+", "refine = 0", text)
        path.write_text(text)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "experiments.cli", "sweep", str(path), "--out", f"{tmp}/out",
                        "--jobs", str(jobs), "--quiet"], cwd=ROOT, check=True, stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        (timing,) = json.loads((Path(tmp) / "out" / "timing.json").read_text())
    return {"sweep": sweep.stem, "refine": refine, "runs": timing["ran"], "jobs": jobs,
            "process_wall_s": round(wall, 1), "run_time_sum_s": timing["run_wall_s_sum"],
            "parallel_efficiency": round(timing["run_wall_s_sum"] / (jobs * wall), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sweep", default=str(ROOT / "experiments" / "sweeps" / "e2e_gptj6b.toml"))
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", default=str(ROOT / "docs" / "results" / "sweep_speed.json"))
    args = ap.parse_args()
    rows = [timed_sweep(Path(args.sweep), args.jobs, refine) for refine in (False, True)]
    for r in rows:
        print(f"{r['sweep']} ({'as shipped' if r['refine'] else 'grid only'}): {r['runs']} runs on {r['jobs']} "
              f"jobs in {r['process_wall_s']} s; summed run time {r['run_time_sum_s']} s; parallel efficiency "
              f"{r['parallel_efficiency']:.0%}")
    Path(args.out).write_text(json.dumps({"machine": f"{os.cpu_count()} cores", "runs": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
