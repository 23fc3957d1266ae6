"""`infercept profile` and `infercept validate`: argument parsing for the real executor's commands."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.config import ConfigError

TUNED_SEEDS = (0, 1)
"""Seeds of the default validation trace whose real runs were studied while the simulator and the executor
were changed (0 from the start; 1, first the held-out trace, when the connector's whole-block copies and the
swapped resumes' queue position were found on its runs). Any other seed gives a held-out trace."""


def _need_vllm() -> None:
    try:
        import vllm  # noqa: F401
    except ImportError as exc:
        raise ConfigError("the real executor needs vLLM: `make real` (CPU build) or "
                          "`pip install -e '.[real-gpu]'` (CUDA build)") from exc


def cmd_profile(args: argparse.Namespace) -> None:
    """Measure this machine with the engine; write the profile."""
    from experiments.cli import git_revision
    from experiments.validation import run_profile

    _need_vllm()
    out = Path("profiles") if args.save else Path(args.out)
    path = run_profile(args.model, out, args.kv_blocks, args.token_budget, git_revision(), args.host_blocks)
    print(f"wrote {path}")


def cmd_validate(args: argparse.Namespace) -> None:
    """Real vs simulated, every policy (and the plain trace unless --no-plain); report, validation.csv, scatter
    plot, verdict."""
    from core.trace_io import write_jsonl
    from experiments.cli import _policies, git_revision
    from experiments.fidelity import TraceScale
    from experiments.scenarios import SCENARIOS
    from experiments.validation import (
        MODELS_DIR,
        Validation,
        load_trace,
        model_for,
        run_validation,
        settings_for,
    )
    from experiments.verdict import verdict_word
    from real.driver import check_trace

    _need_vllm()
    if args.repeats < 1:
        raise ConfigError(f"--repeats {args.repeats}: must be >= 1")
    if args.until_resolved and args.until_resolved < args.repeats:
        raise ConfigError(f"--until-resolved {args.until_resolved}: must be at least --repeats ({args.repeats})")
    scenario = SCENARIOS[args.scenario]
    host = scenario.host_blocks if args.host_blocks is None else args.host_blocks
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    size, folder, _ = model_for(args.model, MODELS_DIR)
    settings = settings_for(folder, size, args.kv_blocks, host, args.token_budget, args.seed)
    scale = TraceScale(window_s=args.window_s, seed=args.seed)
    specs, note = load_trace(args.trace, scale, settings.max_context_tokens)
    if not args.trace and args.seed not in TUNED_SEEDS:
        note += " (held out: not used while tuning)"
    check_trace(specs, settings.max_context_tokens)  # before any engine starts
    write_jsonl(out / "trace.jsonl", specs)  # kept next to the report
    v = Validation(specs, note, out, args.repeats, tuple(_policies(args.policies)), settings, size.vocab,
                   args.window_s, scenario, args.model, scale.token_scale,
                   Path(args.profile) if args.profile else None, git_revision(), not args.no_plain,
                   args.until_resolved)
    if v.profile is None:
        print("no --profile: measuring this machine before each round (with the runs' KV blocks) ...",
              file=sys.stderr)
    rows, misses, open_rows = run_validation(v)
    print((out / "report.md").read_text())
    worst = max((r for r in rows if r["metric"] in ("completed_rps", "norm_latency_ms")),
                key=lambda r: abs(r["rel_error_calibrated"]))
    print(f"largest completed_rps/norm_latency_ms error (calibrated): {worst['policy']} {worst['metric']} "
          f"{100 * worst['rel_error_calibrated']:+.1f} %")
    word = verdict_word(misses, open_rows)
    print(f"verdict: {word}" + ("" if word == "PASS" else " (" + "; ".join(misses or open_rows) + ")"))


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `profile` and `validate`."""
    p = sub.add_parser("profile", help="measure this machine with vLLM and fit a cost profile")
    p.add_argument("--model", default="small",
                   help="random-weight Llama size (tiny, small) or the folder of a Hugging Face checkpoint")
    p.add_argument("--out", default="results/profile", help="folder for <hardware>-<model>-tp1.json")
    p.add_argument("--save", action="store_true", help="write into profiles/ instead of --out")
    p.add_argument("--kv-blocks", type=int, default=512, help="KV blocks of the engine while profiling")
    p.add_argument("--token-budget", type=int, default=512, help="max_num_batched_tokens")
    p.add_argument("--host-blocks", type=int, default=0,
                   help="load the swap connector (idle) with this many host blocks, as swap and infercept runs do")
    p.set_defaults(fn=cmd_profile)
    v = sub.add_parser("validate", help="the same trace on real vLLM and in the simulator")
    v.add_argument("trace", nargs="?", help="JSONL trace (default: scaled mixed workload, see README)")
    v.add_argument("--profile", help="profile JSON (default: measure one first)")
    v.add_argument("--out", default="results/validate")
    v.add_argument("--repeats", type=int, default=1, help="real runs per policy (median)")
    v.add_argument("--until-resolved", type=int, default=0, metavar="N",
                   help="then more rounds of the policies with a row the median cannot resolve (chaotic in the "
                        "simulator), until it can or they have N runs (default: off)")
    v.add_argument("--policies", default="all")
    v.add_argument("--no-plain", action="store_true",
                   help="skip the plain trace (e.g. many repeats of one policy to resolve a chaotic row)")
    v.add_argument("--model", default="small", help="as for profile")
    v.add_argument("--window-s", type=float, default=60.0, help="wall-clock window of every run")
    v.add_argument("--scenario", choices=("default", "constrained"), default="default",
                   help="default: 512 host blocks, unthrottled link; constrained: 16 host blocks, the swap "
                        "connector throttled to a GPU's ratio of copy time to step time (InferCept must choose)")
    v.add_argument("--kv-blocks", type=int, default=64, help="device KV blocks (small: memory pressure)")
    v.add_argument("--host-blocks", type=int, help="host swap blocks (default: the scenario's)")
    v.add_argument("--token-budget", type=int, default=512)
    v.add_argument("--seed", type=int, default=0,
                   help="seed of the default trace (and of the synthetic token ids); 0 and 1 were used while "
                        "tuning, any other gives a held-out trace")
    v.set_defaults(fn=cmd_validate)
