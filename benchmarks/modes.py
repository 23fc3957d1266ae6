"""One policy's real runs from several `infercept validate` folders on one speed axis, beside the simulator's
landscape on that axis: does a run's latency mode follow the machine's speed, and where does the simulator's?

Near memory pressure a policy's mean ``norm_latency_ms`` can be bimodal (the default scenario's preserve: a few
recompute-preemptions more send a few short requests into long waits). This puts every real run of
``--policy`` on one speed scale, its engine log's steps measured over their time predicted by one reference
profile (``fidelity.speed_scale``; 1 = that profile's speed, higher = slower), with its ``norm_latency_ms``
and its ``discard`` events (for preserve, which keeps every pause, its recompute-preemptions; other policies
log their pause discards under that name too); then the simulator's ``norm_latency_ms`` on the folders'
trace with that profile's step times times each scale of ``--scales``; with ``--wander-draws N``, beside it
N re-simulations at each scale whose speed wanders within the run as the real runs' did (``experiments.wander``:
2-s blocks drawn from every run's own, seeded by the scale's place and the draw's). The folders must share the
trace (checked) and the engine settings (the first run's are used).

    python benchmarks/modes.py results/validate-default-{8,9} \
        --reference results/validate-default-9/profiles/round-0/cpu2-llama-small-tp1.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from core.cost import FittedCostModel  # noqa: E402
from core.trace_io import read_jsonl  # noqa: E402
from experiments.ensemble import simulate_trace  # noqa: E402
from experiments.fidelity import plain, speed_scale, summary_of  # noqa: E402
from experiments.wander import autocorrelation, draw_wander, log_residuals, wander_blocks  # noqa: E402
from real.collect import read_engine_log  # noqa: E402


def real_runs(folders: list[Path], label: str, ref: str, blocks: list[np.ndarray] | None = None
              ) -> list[tuple[float, float, int, str, str]]:
    """(speed on the reference profile, norm_latency_ms, discard events, run, its speed's wander: the sd of its
    2-s blocks and its step residuals' autocorrelation at lags 1 and 50) per real run of ``label``; each run's
    wander blocks appended to ``blocks`` when given."""
    rows = []
    for folder in folders:
        for run in sorted((folder / "runs").glob(f"{label}-*")):
            engine = tomllib.loads((run / "config.toml").read_text())["engine"]
            steps = read_engine_log(folder / "engine-logs" / f"{run.name}.jsonl")[0]
            cost = FittedCostModel.from_profile(ref, engine)
            speed = speed_scale(steps, cost)
            w = wander_blocks(steps, cost, speed)
            if blocks is not None:
                blocks.append(w)
            resid = log_residuals(steps, cost, speed)
            wander = (f"{100 * np.std(np.log(w)):.1f} % / {autocorrelation(resid, 1):.2f}, "
                      f"{autocorrelation(resid, 50):.2f}")
            norm = json.loads((run / "summary.json").read_text())["overall"]["norm_latency_ms"]
            discards = pq.read_table(run / "events.parquet").column("event").to_pylist().count("discard")
            rows.append((speed, norm, discards, f"{folder.name}/{run.name}", wander))
    return sorted(rows)


def main() -> None:
    """Print the real runs by speed, then the simulator's norm_latency_ms at each scale, as markdown."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", type=Path, help="`infercept validate` folders (runs/, engine-logs/)")
    ap.add_argument("--policy", default="preserve", help="a policy label of the folders' runs (or plain)")
    ap.add_argument("--reference", required=True, help="the profile every speed is measured against")
    ap.add_argument("--scales", default="0.8:1.2:0.01", help="the simulator's scales, first:last:step")
    ap.add_argument("--wander-draws", type=int, default=0,
                    help="re-simulations per scale whose speed wanders as the runs' did (default: none)")
    args = ap.parse_args()
    blocks: list[np.ndarray] = []
    rows = real_runs(args.folders, args.policy, args.reference, blocks)
    if not rows:
        sys.exit(f"no runs/{args.policy}-* with engine logs in {', '.join(map(str, args.folders))}")
    traces = {(f / "trace.jsonl").read_bytes() for f in args.folders}
    if len(traces) > 1:
        sys.exit("the folders' trace.jsonl differ: their runs cannot share one simulated landscape")
    first = min((args.folders[0] / "runs").glob(f"{args.policy}-*"))
    config = tomllib.loads((first / "config.toml").read_text())
    specs = read_jsonl(args.folders[0] / "trace.jsonl")
    policy = "discard" if args.policy == "plain" else args.policy
    specs = plain(specs) if args.policy == "plain" else specs
    print(f"# {args.policy}: real runs by speed (reference `{args.reference}`), and the simulator\n")
    print("| speed | norm_latency_ms | discard events | run | wander: sd of 2-s blocks / autocorrelation, lags 1 "
          "and 50 |\n|---|---|---|---|---|")
    for speed, norm, discards, name, wander in rows:
        print(f"| {speed:.3f} | {norm:.1f} | {discards} | {name} | {wander} |")
    lo, hi, step = (float(x) for x in args.scales.split(":"))
    scales = np.round(np.arange(lo, hi + step / 2, step), 6)
    print(f"\nThe simulator on `{args.folders[0] / 'trace.jsonl'}`, the reference's step times x each speed:\n")
    pooled = np.concatenate(blocks)
    if args.wander_draws:
        print(f"Wandering: {args.wander_draws} re-simulations per speed, 2-s blocks drawn from the runs' own "
              f"{len(pooled)} (sd {100 * np.std(np.log(pooled)):.1f} %).\n")
    print("| speed | norm_latency_ms | wandering: sorted |\n|---|---|---|")
    window, engine = config["window_s"], config["engine"]
    for i, f in enumerate(scales):
        fixed = summary_of(simulate_trace(policy, specs, args.reference, window, engine, float(f)))
        wandering = sorted(summary_of(simulate_trace(
            policy, specs, args.reference, window, engine, float(f),
            draw_wander(pooled, window, np.random.default_rng([i, d]))))["norm_latency_ms"]
            for d in range(args.wander_draws))
        print(f"| {f:.3f} | {fixed['norm_latency_ms']:.1f} | {', '.join(f'{x:.1f}' for x in wandering) or '-'} |")


if __name__ == "__main__":
    main()
