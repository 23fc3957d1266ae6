"""The host link a validation's runs drove against the one their simulation was given: per swapping run, the
bytes its swap connector moved (whole blocks, as it copies them) over the copy time it logged, beside the
link rate of the run's profile (the throttle's, in the constrained scenario).

    python benchmarks/linkcheck.py results/validate
"""

from __future__ import annotations

import argparse
import math
import sys
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.cost import FittedCostModel  # noqa: E402
from real.collect import read_engine_log  # noqa: E402


def achieved(engine_log: Path, cost: FittedCostModel) -> tuple[int, float, float]:
    """(blocks copied, seconds copying, bytes/s) of one run's engine log; a swap event of v tokens moved
    ceil(v / block) whole blocks (its first block may be a partial one's rest: the connector copies it whole)."""
    steps, events = read_engine_log(engine_log)
    bs = cost.block_size_tokens
    blocks = sum(math.ceil(e["v"] / bs) for e in events if e["e"] in ("swap_out", "swap_in") and e["v"] > 0)
    copy_s = sum(s.get("copy_s", 0.0) for s in steps)
    rate = blocks * bs * cost.kv_bytes_per_token / copy_s if copy_s > 0 else math.nan
    return blocks, copy_s, rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path, help="an `infercept validate` output folder (with runs/ and engine-logs/)")
    args = ap.parse_args()
    runs = sorted(p for p in (args.folder / "runs").glob("*-*") if (p / "config.toml").is_file())
    if not runs:
        sys.exit(f"linkcheck: {args.folder} has no runs/*/config.toml (not a validate folder)")
    print("| run | blocks copied | copy time (s) | achieved (GB/s) | profile's link (GB/s) | achieved / profile |")
    print("|---|---|---|---|---|---|")
    for run in runs:
        cfg = tomllib.loads((run / "config.toml").read_text())
        log = args.folder / "engine-logs" / f"{run.name}.jsonl"
        cost = FittedCostModel.from_profile(cfg["profile"], cfg["engine"])
        blocks, copy_s, rate = achieved(log, cost)
        if not blocks:
            continue
        link = cost.link_bytes_per_s
        print(f"| {run.name} | {blocks} | {copy_s:.3f} | {rate / 1e9:.3g} | {link / 1e9:.3g} | {rate / link:.2f} |")


if __name__ == "__main__":
    main()
