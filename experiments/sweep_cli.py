"""`infercept sweep`: the command line of experiments/sweep.py."""

from __future__ import annotations

import argparse
import os
import sys

from core.config import ConfigError

FAILED_STATUS_BASE = 100
"""Exit status when runs failed: 100 + their number (at most 125); 2 is a bad sweep file or option."""


def cmd_sweep(args: argparse.Namespace) -> int:
    """Run (or, with --dry-run, list) a sweep; the exit status counts the failed runs."""
    from experiments.sweep import dry_run, run_sweep

    if args.jobs < 0:
        raise ConfigError(f"--jobs {args.jobs}: must be >= 1 (0: the number of cores)")
    if args.address and args.executor != "ray":
        raise ConfigError("--address is for --executor ray")
    if args.dry_run:
        text = dry_run(args.file, args.out)
        try:
            print(text)
        except BrokenPipeError:  # `--dry-run | head`: the reader has seen enough
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    outcome = run_sweep(args.file, args.out, args.jobs or os.cpu_count() or 1, args.executor, args.address,
                        args.retry_failed, progress=not args.quiet)
    return min(FAILED_STATUS_BASE + len(outcome.failed), 125) if outcome.failed else 0


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `sweep`."""
    s = sub.add_parser("sweep", help="run a sweep file's grid (local pool or Ray), resumably; runs.parquet",
                       description="Run every configuration of a sweep file (experiments/sweeps/*.toml) into "
                       "OUT/runs/<id>/, reusing finished runs, then write OUT/runs.parquet, "
                       "OUT/runs_by_kind.parquet and, with a [sweep.knee] section, OUT/knees.csv. Exit status: "
                       "0, or 100 + the number of failed runs (at most 125); 2 for a bad file or option.")
    s.add_argument("file", help="sweep file (TOML: [sweep], [base], [grid], [[variants]])")
    s.add_argument("--out", required=True, help="sweep folder (created; reused runs are read from it)")
    s.add_argument("--jobs", type=int, default=0, help="parallel runs (default: the number of cores)")
    s.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local process pool, or Ray tasks (pip install -e '.[cluster]')")
    s.add_argument("--address", default="", help="Ray cluster address (default: start a local Ray)")
    s.add_argument("--retry-failed", action="store_true", help="run the failed runs again")
    s.add_argument("--dry-run", action="store_true", help="list the runs and which are done, failed or stale")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(fn=cmd_sweep)
