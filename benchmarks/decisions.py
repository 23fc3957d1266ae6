"""A policy's pause decisions run by run in a finished `infercept validate` folder: each real run's kept,
discarded and swapped pauses beside those of its calibrated simulations (the run's own profile, its fitted
step-time scale times each of SPEED_SCALES), to tell a lean of the simulator from a count that is chaotic in
both backends.

    python benchmarks/decisions.py results/validate-constrained [--policy infercept]
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from core.cost import FittedCostModel  # noqa: E402
from core.trace_io import read_jsonl  # noqa: E402
from experiments.ensemble import SPEED_SCALES, simulate_trace  # noqa: E402
from experiments.fidelity import pause_decisions, speed_scale  # noqa: E402
from real.collect import read_engine_log  # noqa: E402

KEYS = ("preserved_pauses", "discarded_pauses", "swapped_pauses")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path, help="an `infercept validate --out` folder")
    ap.add_argument("--policy", default="infercept")
    args = ap.parse_args()
    runs = sorted((args.folder / "runs").glob(f"{args.policy}-*"))
    if not runs:
        sys.exit(f"decisions: no runs/{args.policy}-* in {args.folder}")
    specs = read_jsonl(args.folder / "trace.jsonl")
    print("| run | fitted scale | real kept, discarded, swapped | simulated at the fitted scale x "
          + ", ".join(f"{f:g}" for f in SPEED_SCALES) + " |")
    print("|---|---|---|---|")
    real_all, sim_all = [], []
    for run in runs:
        cfg = tomllib.loads((run / "config.toml").read_text())
        t = pq.read_table(run / "events.parquet")
        events = list(zip(*[t.column(c).to_pylist() for c in ("time_s", "rid", "event", "value")]))
        real = pause_decisions(SimpleNamespace(events=events))  # type: ignore[arg-type]
        steps = read_engine_log(args.folder / "engine-logs" / f"{run.name}.jsonl")[0]
        scale = speed_scale(steps, FittedCostModel.from_profile(cfg["profile"], cfg["engine"]))
        sims = [pause_decisions(simulate_trace(args.policy, specs, cfg["profile"], cfg["window_s"], cfg["engine"],
                                               scale * f)) for f in SPEED_SCALES]
        real_all.append([real[k] for k in KEYS])
        sim_all += [[s[k] for k in KEYS] for s in sims]
        cells = "; ".join(", ".join(f"{s[k]:g}" for k in KEYS) for s in sims)
        print(f"| {run.name} | {scale:.3f} | {', '.join(f'{real[k]:g}' for k in KEYS)} | {cells} |")
    for name, rows in (("real", real_all), ("simulated", sim_all)):
        a = np.array(rows)
        print(f"| {name}: mean (sd) | | " + ", ".join(f"{m:.1f} ({s:.1f})" for m, s in zip(a.mean(0), a.std(0, ddof=1)))
              + " | |")


if __name__ == "__main__":
    main()
