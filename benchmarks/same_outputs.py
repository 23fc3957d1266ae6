"""Do this checkout and a git revision simulate the same thing? For a change meant to be a pure speed-up:
the same `infercept run` configurations at both, their run folders' events, steps, requests and summary
compared by hash (MD5 of the four files' bytes, concatenated; the config's git revision is left out).

The configurations: every policy on the mixed workload for 1800 s at 2 req/s (GPT-J-6B / A100), InferCept and
preserve under v1 batching, InferCept with the elapsed estimator and skip_short_pauses, and the validation's
engine (a measured CPU profile, v1 batching, copies added to the step, swaps holding their blocks, 16 host
blocks; 160 GPU blocks, as the mixed workload's contexts need) for every paper policy.

    python benchmarks/same_outputs.py 7a0a3d4 [--out docs/results/same-outputs-7a0a3d4.md]
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ("discard", "improved_discard", "preserve", "swap", "infercept", "continuum", "continuum_utility",
            "saga", "vllm_native", "vllm_offload", "mars", "swap_blocking")
CPU_PROFILE = "docs/results/validate-default-8/profiles/round-0.json"
MIXED = ["rate_rps=2", "duration_s=1800"]
CPU = [f"profile={ROOT / CPU_PROFILE}", "batching=v1", "rate_rps=0.5", "duration_s=600",
       "engine.swap_overlap=false", "engine.swap_holds_blocks=true", "engine.cpu_kv_blocks=16",
       "engine.gpu_kv_blocks=160", "engine.token_budget_tokens=512", "engine.saturation_tokens=512"]
CASES: list[tuple[str, list[str]]] = (
    [(p, [f"policy={p}", *MIXED]) for p in POLICIES]
    + [(f"{p} v1", [f"policy={p}", "batching=v1", "rate_rps=3", "duration_s=900"])
       for p in ("infercept", "preserve")]
    + [("infercept elapsed, skip_short_pauses", ["policy=infercept", "rate_rps=3", "duration_s=900",
                                                 "policy_options.estimator=elapsed",
                                                 "policy_options.skip_short_pauses=true"])]
    + [(f"{p}, the validation's engine", [f"policy={p}", *CPU])
       for p in ("discard", "improved_discard", "preserve", "swap", "infercept")])
"""(label, `--set` arguments) of each configuration compared."""


def run_hash(tree: Path, sets: list[str], out: Path) -> str:
    """MD5 of the run folder's events, steps, requests and summary after `infercept run` in ``tree``."""
    cmd = [sys.executable, "-m", "experiments.cli", "run", "--out", str(out)]
    for s in sets:
        cmd += ["--set", s]
    done = subprocess.run(cmd, cwd=tree, env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True)
    if done.returncode:
        return f"failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}"
    h = hashlib.md5()
    for name in ("events.parquet", "steps.parquet", "requests.parquet", "summary.json"):
        h.update((out / name).read_bytes())
    return h.hexdigest()


def main() -> None:
    """Run every case at both trees and print the Markdown table (and write it to --out)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("revision", help="the git revision to compare with")
    ap.add_argument("--out", type=Path, help="also write the table here")
    args = ap.parse_args()
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True).stdout.strip()
    lines = [f"# Same outputs: this checkout ({head}) against {args.revision}", "",
             f"`python benchmarks/same_outputs.py {args.revision}`", "",
             "| configuration | here | there | same |", "|---|---|---|---|"]
    with tempfile.TemporaryDirectory(prefix="infercept-same-") as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), args.revision], cwd=ROOT, check=True,
                       capture_output=True)
        try:
            for label, sets in CASES:
                here = run_hash(ROOT, sets, Path(tmp) / "here")
                there = run_hash(tree, sets, Path(tmp) / "there")
                lines.append(f"| {label} | {here} | {there} | {'yes' if here == there else '**no**'} |")
                print(lines[-1], flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, capture_output=True)
    same = sum(line.endswith("| yes |") for line in lines)
    lines += ["", f"{same} of {len(CASES)} configurations give the same bytes."]
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")
    print(lines[-1])


if __name__ == "__main__":
    main()
