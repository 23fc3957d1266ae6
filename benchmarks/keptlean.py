"""InferCept's pause decisions pooled over validate folders, and each pause's first plan in both backends.

Per real InferCept run: its kept, discarded and swapped pauses against the mean of its fixed-speed
re-simulations (the run's profile at its fitted step-time scale x SPEED_SCALES, as `decisions.py` makes
them); pooled over every run of the folders given, the mean difference (simulated - real) and its standard
error, so that a lean smaller than one invocation's noise shows. Then, at the first plan after each pause
(the policy's first chance to move its KV), in each backend: how often the host had no free block, and, when
it had room and the plan swapped nothing in, how often it swapped the pause out (else the budget went to
other paused requests first). Pauses are grouped by estimator: the kinds with a profiled mean (math, qa, ve:
their waste starts high and falls) and those whose estimate is the elapsed time (their waste starts at 0).

Options re-simulate with one thing changed, to test a cause: ``--plan-delay-ms`` (the policy asked that much
later than the simulator asks it, which since 2026-12-08 is the profile's ``step.busy_gap_s`` after a pause,
as the engine's hook is: before, at the pause's instant, a fresh pause's elapsed time was 0),
``--copy-overhead-ms`` (every step that moves KV that much longer), ``--wander`` (each run's own speed per 2-s
block, in its order, ``experiments.wander``), ``--set KEY=VALUE`` (an engine key, as ``engine.*`` overrides
take it: for the simulated engine and the cost model its policy decides with). The engine's plan time is the
start of the step it plans (its policy hook runs first thing).

    python benchmarks/keptlean.py results/validate-constrained-7 results/validate-constrained-8 [--wander]
"""

from __future__ import annotations

import argparse
import bisect
import dataclasses
import sys
import tomllib
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import simpy  # noqa: E402

from benchmarks.decisions import closed_by_engine  # noqa: E402
from core.config import parse_value  # noqa: E402
from core.cost import FittedCostModel  # noqa: E402
from core.engine_keys import engine_problem  # noqa: E402
from core.metrics import Metrics  # noqa: E402
from core.policy import make_policy  # noqa: E402
from core.trace_io import read_jsonl  # noqa: E402
from core.waste import STABLE_KINDS  # noqa: E402
from core.workload import tool_means_s  # noqa: E402
from experiments.ensemble import SPEED_SCALES, STEP_TERMS, build_config  # noqa: E402
from experiments.fidelity import DECISIONS, pause_decisions, speed_scale  # noqa: E402
from experiments.wander import WanderingCost, wander_blocks  # noqa: E402
from real.collect import read_engine_log  # noqa: E402
from sim.engine import Engine  # noqa: E402
from sim.run import load_cost  # noqa: E402

GROUPS = ("profiled mean", "elapsed time")
"""Pauses by the estimator their kind gets (``core.waste.Estimator``, the paper's rule)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    """What one plan saw and did, as far as a pause's first chance goes."""

    t_s: float
    free_cpu_blocks: int
    swapped_out: frozenset[str]
    swaps_in: bool


class Recording:
    """A policy that records its plans (``Plan``) and is asked ``delay_s`` after the engine's instant."""

    def __init__(self, policy: Any, delay_s: float) -> None:
        self.policy, self.delay_s, self.plans = policy, delay_s, []

    def plan_step(self, state: Any) -> Any:
        """The policy's plan as of ``delay_s`` later, recorded."""
        plan = self.policy.plan_step(state._replace(now_s=state.now_s + self.delay_s))
        self.plans.append(Plan(state.now_s, state.free_cpu_blocks, frozenset(r for r, _ in plan.swap_out),
                               bool(plan.swap_in)))
        return plan

    def next_decision_at(self, state: Any) -> float:
        """The policy's own deadline, on the engine's clock."""
        return self.policy.next_decision_at(state._replace(now_s=state.now_s + self.delay_s)) - self.delay_s

    def __getattr__(self, name: str) -> Any:
        return getattr(self.policy, name)


@dataclasses.dataclass(frozen=True, slots=True)
class CopyOverhead:
    """``base``'s cost model with every step that moves KV ``extra_s`` longer."""

    base: Any
    extra_s: float

    def swap_s(self, num_tokens: float) -> float:
        """``base.swap_s``, plus the overhead when anything moves."""
        return self.base.swap_s(num_tokens) + (self.extra_s if num_tokens > 0 else 0.0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.base, name)


def simulate(cfg: dict[str, Any], specs: list[Any], scale: float, args: argparse.Namespace,
             steps: list[dict[str, Any]]) -> tuple[Metrics, list[Plan]]:
    """One fixed-speed re-simulation of a real run at ``scale`` (as ``experiments.ensemble.simulate_trace``,
    without policy options as there, with the options' change), and its policy's plans."""
    engine = {**cfg["engine"], **args.set}
    rc = build_config({"policy": "infercept", "profile": cfg["profile"], "batching": "v1", "engine": engine,
                       "duration_s": cfg["window_s"], "workload": "trace", "jump": not args.wander})
    measured = load_cost(rc)
    cost: Any = dataclasses.replace(measured, **{k: getattr(measured, k) * scale for k in STEP_TERMS})
    if args.copy_overhead_ms:
        cost = CopyOverhead(cost, args.copy_overhead_ms / 1e3)
    env = simpy.Environment()
    if args.wander:
        blocks = wander_blocks(steps, FittedCostModel.from_profile(cfg["profile"], engine), scale)
        cost = WanderingCost(cost, blocks, env)
    policy = Recording(make_policy("infercept", measured, tool_means_s("trace", specs)),
                       args.plan_delay_ms / 1e3)
    m = Metrics(rc.duration_s, measured.gpu_kv_blocks)
    run = Engine(env, specs, cost, policy, m, rc.batching, rc.duration_s, rc.drain, rc.jump, rc.check, None)
    env.process(run.run())
    env.run()
    return m, policy.plans


def first_plans(pauses: list[tuple[float, str, str]], plans: list[Plan]) -> Counter[tuple[str, str]]:
    """Per estimator group (``GROUPS``): pauses, those whose first plan (the first at or after the pause) saw
    a full host, those whose first plan saw host room and swapped nothing in, and of those the ones it swapped
    out; and their summed delay from pause to first plan (µs). ``pauses``: (time, rid, kind) in time order;
    ``plans`` in time order."""
    out: Counter[tuple[str, str]] = Counter()
    times = [p.t_s for p in plans]
    for t, rid, kind in pauses:
        i = bisect.bisect_left(times, t - 1e-9)
        if i == len(plans):
            continue
        p, g = plans[i], GROUPS[0] if kind in STABLE_KINDS else GROUPS[1]
        out[(g, "pauses")] += 1
        out[(g, "delay us")] += round(1e6 * (p.t_s - t))
        out[(g, "host full")] += p.free_cpu_blocks == 0
        if p.free_cpu_blocks > 0 and not p.swaps_in:
            out[(g, "room")] += 1
            out[(g, "room, swapped")] += rid in p.swapped_out
    return out


def kinds_of(pauses: list[tuple[float, str]], specs: dict[str, Any]) -> list[tuple[float, str, str]]:
    """(time, rid, the kind of its interception) of each pause of a log, in order."""
    n: Counter[str] = Counter()
    out = []
    for t, rid in pauses:
        out.append((t, rid, specs[rid].segments[n[rid]].kind or specs[rid].kind))
        n[rid] += 1
    return out


def folder_runs(folder: Path, args: argparse.Namespace) -> tuple[list[list[float]], Counter, Counter]:
    """Per real InferCept run of ``folder``: simulated mean - real for each of DECISIONS, then the real
    counts; and the first-plan counters (``first_plans``) of the real runs and of their re-simulations."""
    specs = read_jsonl(folder / "trace.jsonl")
    by_rid = {s.rid: s for s in specs}
    rows, real_fp, sim_fp = [], Counter(), Counter()
    for run in sorted((folder / "runs").glob("infercept-*")):
        cfg = tomllib.loads((run / "config.toml").read_text())
        t = pq.read_table(run / "events.parquet")
        events = list(zip(*[t.column(c).to_pylist() for c in ("time_s", "rid", "event", "value")]))
        real = pause_decisions(SimpleNamespace(events=closed_by_engine(events)))  # type: ignore[arg-type]
        steps, kv = read_engine_log(folder / "engine-logs" / f"{run.name}.jsonl")
        real_plans = [Plan(s["t0"], s["plan"]["free_cpu_blocks"], frozenset(s["plan"]["out"]),
                           bool(s["plan"]["in"])) for s in steps if "plan" in s]
        real_fp += first_plans(kinds_of([(e["t"], e["rid"]) for e in kv if e["e"].startswith("pause:")],
                                        by_rid), real_plans)
        scale = speed_scale(steps, FittedCostModel.from_profile(cfg["profile"], cfg["engine"]))
        sims = []
        for f in SPEED_SCALES:
            m, plans = simulate(cfg, specs, scale * f, args, steps)
            sims.append(pause_decisions(m))
            sim_fp += first_plans(kinds_of([(e[0], e[1]) for e in m.events if e[2].startswith("pause:")],
                                            by_rid), plans)
        rows.append([float(np.mean([s[k] for s in sims])) - real[k] for k in DECISIONS]
                    + [real[k] for k in DECISIONS])
    return rows, real_fp, sim_fp


def engine_setting(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` as an engine key and value (read as `infercept run --set` reads one), checked."""
    key, sep, raw = text.partition("=")
    value = parse_value(raw)
    problem = engine_problem({key: value}) if sep else "expected KEY=VALUE"
    if problem:
        raise argparse.ArgumentTypeError(f"--set {text!r}: {problem}")
    return key, value


def non_negative(text: str) -> float:
    """A number of milliseconds >= 0."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number of milliseconds >= 0")
    return value


def se(x: np.ndarray) -> float:
    """Standard error of the mean (NaN for one value)."""
    return float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")


def cells(a: np.ndarray) -> str:
    """'mean (standard error)' of the first len(DECISIONS) columns."""
    return ", ".join(f"{a[:, i].mean():+.1f} ({se(a[:, i]):.1f})" for i in range(len(DECISIONS)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", type=Path, nargs="+", help="`infercept validate --out` folders")
    ap.add_argument("--plan-delay-ms", type=non_negative, default=0.0)
    ap.add_argument("--copy-overhead-ms", type=non_negative, default=0.0)
    ap.add_argument("--wander", action="store_true")
    ap.add_argument("--set", type=engine_setting, action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    args.set = dict(args.set)
    for f in args.folders:
        runs = sorted((f / "runs").glob("infercept-*"))
        if not runs or not (f / "trace.jsonl").is_file():
            sys.exit(f"keptlean: {f}: no runs/infercept-* or trace.jsonl (not a validate folder?)")
        for run in runs:
            if not (f / "engine-logs" / f"{run.name}.jsonl").is_file():
                sys.exit(f"keptlean: {f}: no engine-logs/{run.name}.jsonl (the engine logs were not kept?)")
    print("| folder | InferCept runs | simulated - real per run, mean (standard error): "
          "kept, discarded, swapped |")
    print("|---|---|---|")
    every, fp = [], {"real": Counter(), "simulated": Counter()}
    for folder in args.folders:
        rows, real_fp, sim_fp = folder_runs(folder, args)
        every += rows
        fp["real"] += real_fp
        fp["simulated"] += sim_fp
        print(f"| {folder.name} | {len(rows)} | {cells(np.array(rows))} |")
    a, n = np.array(every), len(DECISIONS)
    print(f"| pooled | {len(a)} | {cells(a)} |")
    share = [(k, 100 / a[:, n + i].mean(), a[:, i]) for i, k in enumerate(DECISIONS)]
    print("\nPooled, as a share of the real mean (standard error): "
          + ", ".join(f"{k} {c * x.mean():+.1f} % ({c * se(x):.1f})" for k, c, x in share))
    print("\n| at a pause's first plan | " + " | ".join(f"{b}: {g}" for g in GROUPS for b in fp) + " |")
    print("|---|" + "---|" * 4)
    table = (("pauses", "pauses", None, "{:.0f}"),
             ("mean time from the pause to it (µs)", "delay us", "pauses", "{:.0f}"),
             ("host full", "host full", "pauses", "{:.3f}"),
             ("swapped out, given host room and no swap-in", "room, swapped", "room", "{:.3f}"))
    for label, num, den, fmt in table:
        vals = [fp[b][(g, num)] / (fp[b][(g, den)] or float("nan")) if den else fp[b][(g, num)]
                for g in GROUPS for b in fp]
        print(f"| {label} | " + " | ".join(fmt.format(v) for v in vals) + " |")


if __name__ == "__main__":
    main()
