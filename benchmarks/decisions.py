"""A policy's pause decisions run by run in a finished `infercept validate` folder: each real run's kept,
discarded and swapped pauses beside those of its calibrated simulations (the run's own profile, its fitted
step-time scale times each of SPEED_SCALES), to tell a lean of the simulator from a count that is chaotic in
both backends; and how long the swap-ins of resumed pauses waited for their first chunk in each (the simulator
starts one at the plan that follows the resume, where vLLM must admit the request first); and the pauses of each
real run against those of its simulation at the fitted scale, pause by pause. Counts "closed on the engine's side"
move, in logs from before the executor logged ``seen``, the discards and swap-outs the engine made after the
client sent a return and before it saw it ahead of the resume, as the simulator and ``real.collect`` now count.

    python benchmarks/decisions.py results/validate-constrained [--policy infercept] [--hops-ms IN,OUT]
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from core.cost import FittedCostModel  # noqa: E402
from core.trace_io import read_jsonl  # noqa: E402
from experiments.ensemble import SPEED_SCALES, simulate_trace  # noqa: E402
from experiments.fidelity import DECISIONS, TARGET, pause_decisions, speed_scale  # noqa: E402
from experiments.spread import repeats_to_resolve  # noqa: E402
from real.collect import read_engine_log  # noqa: E402



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path, help="an `infercept validate --out` folder")
    ap.add_argument("--policy", default="infercept")
    ap.add_argument("--hops-ms", type=_hops, default=None, metavar="IN,OUT",
                    help="re-simulate with these client hops (engine.client_in_hop_s, client_out_hop_s, in ms) in "
                         "place of the profiles' (profiles measured before the simulator applied them have none)")
    args = ap.parse_args()
    runs = sorted((args.folder / "runs").glob(f"{args.policy}-*"))
    if not runs:
        sys.exit(f"decisions: no runs/{args.policy}-* in {args.folder}")
    specs = read_jsonl(args.folder / "trace.jsonl")
    print("| run | fitted scale | real kept, discarded, swapped | the same, closed on the engine's side | simulated at "
          "the fitted scale x " + ", ".join(f"{f:g}" for f in SPEED_SCALES) + " |")
    print("|---|---|---|---|---|")
    real_all, engine_all, sim_all, delays, paired = [], [], [], [], []
    for run in runs:
        cfg = tomllib.loads((run / "config.toml").read_text())
        t = pq.read_table(run / "events.parquet")
        events = list(zip(*[t.column(c).to_pylist() for c in ("time_s", "rid", "event", "value")]))
        real = pause_decisions(SimpleNamespace(events=events))  # type: ignore[arg-type]
        engine_side = pause_decisions(SimpleNamespace(events=closed_by_engine(events)))  # type: ignore[arg-type]
        steps = read_engine_log(args.folder / "engine-logs" / f"{run.name}.jsonl")[0]
        scale = speed_scale(steps, FittedCostModel.from_profile(cfg["profile"], cfg["engine"]))
        engine = cfg["engine"] if args.hops_ms is None else {**cfg["engine"], **args.hops_ms}
        runs_sim = [simulate_trace(args.policy, specs, cfg["profile"], cfg["window_s"], engine, scale * f)
                    for f in SPEED_SCALES]
        sims = [pause_decisions(m) for m in runs_sim]
        at_fit = runs_sim[SPEED_SCALES.index(1.0)].events
        delays.append((run.name, swap_in_delays_s(events), swap_in_delays_s(at_fit)))
        paired.append((run.name, pause_outcomes(closed_by_engine(events)), pause_outcomes(at_fit)))
        real_all.append([real[k] for k in DECISIONS])
        engine_all.append([engine_side[k] for k in DECISIONS])
        sim_all += [[s[k] for k in DECISIONS] for s in sims]
        cells = "; ".join(", ".join(f"{s[k]:g}" for k in DECISIONS) for s in sims)
        print(f"| {run.name} | {scale:.3f} | {', '.join(f'{real[k]:g}' for k in DECISIONS)} | "
              f"{', '.join(f'{engine_side[k]:g}' for k in DECISIONS)} | {cells} |")
    need = [repeats_to_resolve([s[i] for s in sim_all], TARGET, np.random.default_rng(0)) for i in range(len(DECISIONS))]
    print("| repeats a median needs to resolve 10 % (simulated) | | | "
          + ", ".join("more than 31" if n is None else str(n) for n in need) + " | |")
    for name, rows in (("real", real_all), ("real, closed on the engine's side", engine_all), ("simulated", sim_all)):
        a = np.array(rows)
        print(f"| {name}: mean (sd) | | | " + ", ".join(f"{m:.1f} ({s:.1f})" for m, s in zip(a.mean(0), a.std(0, ddof=1)))
              + " | |")
    print("\n| run | swap-ins real / simulated | resume to first swap-in, median (ms) | p90 (ms) |\n|---|---|---|---|")
    for name, r, m in delays:
        def ms(x: list[float], q: float) -> str:
            return f"{1e3 * np.percentile(x, q):.1f}" if x else "-"

        print(f"| {name} | {len(r)} / {len(m)} | {ms(r, 50)} / {ms(m, 50)} | {ms(r, 90)} / {ms(m, 90)} |")
    print("\n| run | pauses (real, closed on the engine's side / simulated at the fitted scale) | decided alike "
          "| decided otherwise: real -> simulated (count) | first such pause (s) |\n|---|---|---|---|---|")
    for name, r, m in paired:
        both = sorted(set(r) & set(m), key=lambda k: r[k][0])
        other = Counter(f"{r[k][1]} -> {m[k][1]}" for k in both if r[k][1] != m[k][1])
        first = next((f"{r[k][0]:.1f}" for k in both if r[k][1] != m[k][1]), "-")
        print(f"| {name} | {len(r)} / {len(m)} | {len(both) - sum(other.values())} | "
              + ("; ".join(f"{k}: {n}" for k, n in other.most_common()) or "-") + f" | {first} |")


def _hops(text: str) -> dict[str, float]:
    """``IN,OUT`` in ms as the engine keys, in seconds."""
    try:
        hop_in, hop_out = (float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected IN,OUT, two numbers of ms") from None
    if not (0 <= hop_in < 1e3 and 0 <= hop_out < 1e3):
        raise argparse.ArgumentTypeError(f"{text!r}: each hop must be >= 0 and under 1000 ms")
    return {"client_in_hop_s": hop_in / 1e3, "client_out_hop_s": hop_out / 1e3}


def closed_by_engine(events: list[tuple[float, str, str, float]]) -> list[tuple[float, str, str, float]]:
    """The event log with each pause closed on the engine's side, for logs from before the executor logged when
    its engine saw a return (``seen``): a discard or swap-out logged after the client's resume and before any
    other event of the request (its admission, first) came before the engine saw the return, so the resume row
    moves after them. A log that already closes pauses so is left as it is."""
    out, sent = [], {}
    for row in events:
        rid, event = row[1], row[2]
        if event == "resume":
            sent[rid] = row
            continue
        if rid in sent and event not in ("discard", "swap_out"):
            out.append(sent.pop(rid))
        out.append(row)
    return out + list(sent.values())


def pause_outcomes(events: list[tuple[float, str, str, float]]) -> dict[tuple[str, int], tuple[float, str]]:
    """Each returned pause, keyed by (rid, its index among the request's pauses): (its time, what happened to
    its KV: "kept", "discarded at the pause", "kept, then discarded", "swapped", ...), from the event log."""
    count: Counter[str] = Counter()
    open_: dict[str, tuple[tuple[str, int], float, str, set[str]]] = {}
    out = {}
    for t, rid, event, _ in events:
        if event.startswith("pause:"):
            open_[rid] = ((rid, count[rid]), t, event.split(":", 1)[1], set())
            count[rid] += 1
        elif event in ("discard", "swap_out") and rid in open_:
            open_[rid][3].add(event)
        elif event == "resume" and rid in open_:
            key, t0, action, moved = open_.pop(rid)
            label = {"preserve": "kept", "discard": "discarded at the pause", "swap": "swapped"}.get(action, action)
            if action == "preserve" and moved:
                label = "kept, then " + ("discarded" if "discard" in moved else "swapped")
            out[key] = (t0, label)
    return out


def swap_in_delays_s(events: list[tuple[float, str, str, float]]) -> list[float]:
    """Seconds from each resume to its request's first swap-in chunk (resumes swapped in before the request
    pauses again or finishes)."""
    resumed: dict[str, float] = {}
    out = []
    for t, rid, event, _ in events:
        if event == "resume":
            resumed[rid] = t
        elif event == "swap_in" and rid in resumed:
            out.append(t - resumed.pop(rid))
        elif event.startswith("pause:"):
            resumed.pop(rid, None)
    return out


if __name__ == "__main__":
    main()
