"""Re-simulate a finished `infercept validate` folder with other profiles, or with this checkout's simulator,
against the same real runs.

Answers "which part of the model is wrong" without re-running the engine: the real runs (their summary.json
and event log) stay as measured; only the simulator, or its inputs, change. The link is the runs' own where
the connector was throttled (the constrained scenario); "calibrated" re-simulates each run with the profile's
step times scaled to that run's own engine log. Without ``--profile`` every run is re-simulated with the profile of
its own round, as `infercept validate` does, and the verdict's rows are printed (decision counts included).

    python benchmarks/resim.py results/validate --profile profiles/cpu2-llama-small-tp1.json
    python benchmarks/resim.py results/validate-constrained    # the validation's own profiles, this simulator
    python benchmarks/resim.py results/validate-constrained --csv resim.csv    # and its rows, as validation.csv
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import tomllib
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

import pyarrow.parquet as pq

from benchmarks.verdicts import read_rows
from core.cost import FittedCostModel
from core.trace_io import read_jsonl
from experiments.ensemble import simulate_calibrated, simulate_ensemble
from experiments.fidelity import (
    DECISIONS,
    STEP_KINDS,
    VERDICT_METRICS,
    compare_rows,
    median_by_kind,
    pause_decisions,
    plain,
    speed_scale,
    step_time_errors,
)
from experiments.scenarios import with_link
from experiments.validation_report import write_rows
from experiments.wander import wander_blocks
from experiments.verdict import unresolved, verdict, verdict_word
from real.collect import read_engine_log

LABELS = ("discard", "improved_discard", "preserve", "swap", "infercept", "plain")


def run_speed(folder: Path, run: Path, cost: FittedCostModel) -> tuple[float, np.ndarray]:
    """A real run's fitted step-time scale and its speed's wander (``experiments.wander.wander_blocks``)."""
    steps = read_engine_log(folder / "engine-logs" / f"{run.name}.jsonl")[0]
    f = speed_scale(steps, cost)
    return f, wander_blocks(steps, cost, f)


def real_summary(run: Path) -> dict[str, float]:
    """A real run folder's overall summary with its pause decisions (from its event log)."""
    t = pq.read_table(run / "events.parquet")
    events = list(zip(*[t.column(c).to_pylist() for c in ("time_s", "rid", "event", "value")]))
    return {**pause_decisions(SimpleNamespace(events=events)),  # type: ignore[arg-type]
            **json.loads((run / "summary.json").read_text())["overall"]}


def own_profiles(folder: Path, csv_out: Path | None) -> None:
    """Every policy's verdict rows, each real run re-simulated with its own round's profile (as validate), and
    the verdict they reach with the folder's own step-time rows (the profiles and engine logs are unchanged);
    ``csv_out``: all the rows, as validation.csv."""
    specs = read_jsonl(folder / "trace.jsonl")
    labels = sorted({p.name.rsplit("-", 1)[0] for p in (folder / "runs").iterdir()})
    print("| policy | metric | real | sim | rel. error | calibrated | chaos | band |")
    print("|---|---|---|---|---|---|---|---|")
    rows = [r for r in read_rows(folder / "validation.csv") if r["metric"] == "step_time_error_median"]
    decisions = None
    for label in labels:
        runs = sorted((folder / "runs").glob(f"{label}-*"))
        configs = [tomllib.loads((p / "config.toml").read_text()) for p in runs]
        engine, window = configs[0]["engine"], configs[0]["window_s"]
        profiles = [c["profile"] for c in configs]
        trace = plain(specs) if label == "plain" else specs
        policy = "discard" if label == "plain" else label
        sim, _, _ = simulate_ensemble(policy, trace, sorted(set(profiles)), window, engine)
        speeds = [run_speed(folder, p, FittedCostModel.from_profile(prof, engine)) for p, prof in zip(runs, profiles)]
        cal = simulate_calibrated(policy, trace, [(prof, f) for prof, (f, _) in zip(profiles, speeds)], window,
                                  engine, [w for _, w in speeds])
        reals = [real_summary(p) for p in runs]
        if label == "infercept" and configs[0].get("link_bytes_per_s"):  # constrained: the decisions' floor
            decisions = {k: float(np.median([x[k] for x in reals])) for k in DECISIONS}
        for r in compare_rows(label, reals, sim, cal):
            rows.append(r)
            if r["metric"] in VERDICT_METRICS:
                band = "-" if math.isnan(r["cal_lo"]) else f"{r['cal_lo']:.4g}-{r['cal_hi']:.4g}"
                chaos = "-" if math.isnan(r["cal_self_miss"]) else f"{100 * r['cal_self_miss']:.0f} %"
                print(f"| {label} | {r['metric']} | {r['real']:.4g} | {r['sim']:.4g} | "
                      f"{100 * r['rel_error']:+.1f} % | {100 * r['rel_error_calibrated']:+.1f} % | {chaos} | {band} |")
    misses, open_rows = verdict(rows, decisions), unresolved(rows)
    word = verdict_word(misses, open_rows)
    print(f"\n**verdict: {word}" + ("" if word == "PASS" else ": " + "; ".join(misses or open_rows)) + "**")
    if csv_out is not None:
        write_rows(csv_out, rows)


def main() -> None:
    """Print real vs re-simulated completed_rps and norm_latency_ms per policy, and the profile's signed
    step-time error by kind of step on the real runs' engine logs. The engine settings and the window are the
    real runs' own (their config.toml)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", help="an `infercept validate --out` folder")
    ap.add_argument("--profile", help="profile for every policy (default: each run's own round's)")
    ap.add_argument("--csv", type=Path, help="without --profile: write the rows there too, as validation.csv")
    args = ap.parse_args()
    folder = Path(args.folder)
    if not args.profile:
        own_profiles(folder, args.csv)
        return
    specs = read_jsonl(folder / "trace.jsonl")
    print("| policy | completed_rps real / sim | error | calibrated | norm_latency_ms real / sim | error | calibrated |")
    print("|---|---|---|---|---|---|---|")
    engine: dict[str, float] = {}
    tmp = tempfile.TemporaryDirectory()
    profile = args.profile
    for label in LABELS:
        runs = sorted((folder / "runs").glob(f"{label}-*"))
        if not runs:
            continue
        config = tomllib.loads((runs[0] / "config.toml").read_text())
        engine = config["engine"]
        if config.get("link_bytes_per_s"):  # the connector was throttled: the simulator's link is the throttle
            profile = str(with_link(args.profile, config["link_bytes_per_s"], Path(tmp.name) / "throttled.json"))
        reals = [json.loads((p / "summary.json").read_text())["overall"] for p in runs]
        trace = plain(specs) if label == "plain" else specs
        policy = "discard" if label == "plain" else label
        sim, _, _ = simulate_ensemble(policy, trace, profile, config["window_s"], engine)
        cost = FittedCostModel.from_profile(profile, engine)
        speeds = [run_speed(folder, p, cost) for p in runs]
        cal = simulate_calibrated(policy, trace, [(profile, f) for f, _ in speeds], config["window_s"], engine,
                                  [w for _, w in speeds])
        rows = {r["metric"]: r for r in compare_rows(label, reals, sim, cal)}
        c, n = rows["completed_rps"], rows["norm_latency_ms"]
        print(f"| {label} | {c['real']:.3f} / {c['sim']:.3f} | {100 * c['rel_error']:+.1f} % | "
              f"{100 * c['rel_error_calibrated']:+.1f} % | {n['real']:.1f} / {n['sim']:.1f} | "
              f"{100 * n['rel_error']:+.1f} % | {100 * n['rel_error_calibrated']:+.1f} % |")
    cost = FittedCostModel.from_profile(profile, engine)
    print("\n| policy | " + " | ".join(STEP_KINDS) + " | all steps' summed time |")
    print("|---|" + "---|" * (len(STEP_KINDS) + 1))
    for label in LABELS:
        err, kinds, pred, real = [], [], 0.0, 0.0
        for log in sorted((folder / "engine-logs").glob(f"{label}-*.jsonl")):
            steps = [s for s in read_engine_log(log)[0] if s["num_decode"] + s["prefill_tokens"]]
            e, k = step_time_errors(steps, cost)
            err.append(e)
            kinds += k
            measured = np.array([s["t_end"] - s["t0"] - s.get("copy_s", 0.0) for s in steps])
            real += float(measured.sum())
            pred += float(((1 + e) * measured).sum())
        if not kinds:
            continue
        by_kind = median_by_kind(np.concatenate(err), kinds)
        cells = [f"{100 * by_kind[kind]:+.1f} %" if kind in by_kind else "-" for kind in STEP_KINDS]
        print(f"| {label} | " + " | ".join(cells) + f" | {100 * (pred - real) / real:+.1f} % |")


if __name__ == "__main__":
    main()
