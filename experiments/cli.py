"""The `infercept` command: run, compare, trace (and profile, validate: experiments/real_cli.py)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from core.config import ConfigError, build_config, load_config
from core.cost import ProfileError
from core.policy import POLICY_GROUPS, expand_policies, make_policy
from core.trace_io import WorkloadError, write_jsonl

DEFAULT_RATES = "1,1.5,2,2.5,3,3.5,4,4.5"


def git_revision() -> str:
    """The project's git revision (with "+dirty" if the tree has changes), or "unknown"."""
    here = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, check=True).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _floats(text: str, name: str) -> list[float]:
    try:
        vals = [float(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise ConfigError(f"--{name} {text!r}: expected comma-separated numbers") from exc
    if not vals or any(v <= 0 for v in vals):
        raise ConfigError(f"--{name} {text!r}: expected positive numbers")
    return vals


def _policies(text: str) -> list[str]:
    """``--policies``: comma-separated registered names and groups (POLICY_GROUPS: "all" is the paper's
    five, "recent" the systems after InferCept, "every" both), e.g. ``discard,recent``."""
    try:
        names = expand_policies([p.strip() for p in text.split(",") if p.strip()])
    except ValueError as exc:
        raise ConfigError(f"--policies {text!r}: {exc}") from exc
    if not names:
        raise ConfigError(f"--policies {text!r}: no policy named; expected names or groups "
                          f"({', '.join(POLICY_GROUPS)})")
    return names


def cmd_run(args: argparse.Namespace) -> None:
    """One run: progress line, summary table, run folder."""
    from core.runfolder import save_run
    from core.summary import summarize
    from experiments.compare import table
    from sim.run import load_cost, simulate

    cfg = load_config(args.config, args.set) if args.config else build_config(None, args.set)
    cost = load_cost(cfg)
    forced = make_policy(cfg.policy, cost, **cfg.policy_options).traits.batching  # vllm_*: v1 whatever is set
    batching = f"{forced} (the policy's)" if forced else cfg.batching
    print(f"simulating {cfg.policy} on {cfg.workload} at {cfg.rate_rps:g} req/s for {cfg.duration_s:g}s "
          f"({cost.name}, batching {batching}, seed {cfg.seed}) ...", file=sys.stderr)
    t0 = time.perf_counter()

    def progress(now_s: float) -> None:
        if sys.stderr.isatty():
            done = min(now_s / cfg.duration_s, 1.0)
            print(f"\r  [{'#' * int(30 * done):<30}] {now_s:7.0f} / {cfg.duration_s:g} s simulated", end="",
                  file=sys.stderr, flush=True)

    m = simulate(cfg, cost=cost, progress=progress)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    summary = summarize(m)
    print(f"done in {time.perf_counter() - t0:.2f}s wall: {m.notes['steps']} steps in "
          f"{m.notes['step_rows']} intervals", file=sys.stderr)
    print(table([{"policy": cfg.policy, "rate": cfg.rate_rps, "norm_latency_ms_ci95": 0.0,
                  **summary["overall"]}]))
    out = Path(args.out or f"results/runs/{cfg.policy}-r{cfg.rate_rps:g}-s{cfg.seed}")
    config = {**cfg.to_dict(), "profile_name": cost.name, "git_revision": git_revision()}
    save_run(out, m, config, summary, trace=cfg.chrome_trace or args.trace)
    print(f"wrote {out}")


def cmd_compare(args: argparse.Namespace) -> None:
    """Every policy at every rate over seeds; each policy gets the ``policy_options`` it accepts."""
    from core.config import options_by_policy
    from experiments.compare import compare

    policies, rates = _policies(args.policies), _floats(args.rates, "rates")
    base = build_config({"workload": args.workload, "duration_s": args.duration_s, "model": args.model,
                         "gpu": args.gpu, "tp": args.tp, "profile": args.profile or "", "batching": args.batching,
                         "drain": args.drain, "seed": args.seed}, args.set, policy_options=False)
    options_by_policy(policies, base.policy_options)  # fail early on an option no selected policy takes
    from sim.run import load_cost

    load_cost(base)  # fail early on a bad profile
    jobs = args.jobs or max(1, min(os.cpu_count() or 1, 8))
    compare(base, policies, rates, args.seeds, Path(args.out), jobs, args.target_ms)


def cmd_trace(args: argparse.Namespace) -> None:
    """Write any workload as a JSONL trace."""
    from core.workload import make_workload

    if args.rate <= 0 or args.duration_s <= 0:
        raise ConfigError("--rate and --duration-s must be positive")
    specs, notes = make_workload(args.workload, args.rate, args.duration_s, args.seed, args.max_context_tokens)
    write_jsonl(args.out, specs)
    print(f"wrote {len(specs)} requests to {args.out}" + (f" ({notes})" if notes else ""))


def parser() -> argparse.ArgumentParser:
    """The argument parser of `infercept`."""
    p = argparse.ArgumentParser(prog="infercept", description="Serving augmented LLM requests: compare what to "
                                "do with a paused request's KV cache (discard, preserve, swap, InferCept).")
    sub = p.add_subparsers(dest="command")
    r = sub.add_parser("run", help="one simulated run: summary table and run folder")
    r.add_argument("config", nargs="?", help="TOML run configuration (keys of RunConfig); default: built-in")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    r.add_argument("--out", help="run folder (default results/runs/<policy>-r<rate>-s<seed>)")
    r.add_argument("--trace", action="store_true", help="also write a Chrome/Perfetto trace.json")
    r.set_defaults(fn=cmd_run)
    c = sub.add_parser("compare", help="every policy at every rate; table, summary.csv, latency plot")
    c.add_argument("--model", default="gptj-6b", help="gptj-6b, vicuna-13b, llama3-70b")
    c.add_argument("--gpu", default="a100", help="a100 (40GB), a100-80gb")
    c.add_argument("--tp", type=int, default=1)
    c.add_argument("--profile", help="a profile JSON file (overrides --model/--gpu/--tp)")
    c.add_argument("--workload", default="mixed",
                   help="mixed, math, qa, ve, chatbot, image, tts, or a .json (InferCept), .jsonl or .csv file")
    c.add_argument("--batching", default="v0", choices=("v0", "v1"), help="baselines' batching (InferCept chunk-fills)")
    c.add_argument("--rates", default=DEFAULT_RATES, help="comma-separated request rates (req/s)")
    c.add_argument("--duration-s", type=float, default=600.0, help="arrival window (s)")
    c.add_argument("--policies", default="all", help="comma-separated names and groups: all (the paper's five), recent, every")
    c.add_argument("--seeds", type=int, default=1, help="seeds per point (mean and 95%% interval)")
    c.add_argument("--seed", type=int, default=0, help="first seed")
    c.add_argument("--drain", action="store_true", help="run until every request finishes")
    c.add_argument("--jobs", type=int, default=0, help="parallel processes (default: CPU count)")
    c.add_argument("--target-ms", type=float, default=100.0, help="latency target drawn on the plot")
    c.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    c.add_argument("--out", default="results/compare", help="output folder")
    c.set_defaults(fn=cmd_compare)
    t = sub.add_parser("trace", help="write a workload as a JSONL trace")
    t.add_argument("--workload", default="mixed")
    t.add_argument("--rate", type=float, default=1.0, help="request rate (req/s)")
    t.add_argument("--duration-s", type=float, default=600.0)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--max-context-tokens", type=int, default=None, help="cap contexts like the served model")
    t.add_argument("--out", required=True, help="FILE.jsonl")
    t.set_defaults(fn=cmd_trace)
    from experiments import analysis_cli, real_cli, sweep_cli

    sweep_cli.add_parsers(sub)
    analysis_cli.add_parsers(sub)
    real_cli.add_parsers(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    args = parser().parse_args(argv)
    if not getattr(args, "fn", None):
        parser().print_help()
        return 0
    if getattr(args, "seeds", 1) < 1:
        print("infercept: error: --seeds must be >= 1", file=sys.stderr)
        return 2
    from real.errors import RealRunError  # not real.driver: a simulator run need not import the executor

    try:
        status = args.fn(args)
    except (ConfigError, WorkloadError, ProfileError, ValueError, RealRunError) as exc:
        print(f"infercept: error: {exc}", file=sys.stderr)
        return 2
    return int(status or 0)


if __name__ == "__main__":
    sys.exit(main())

