"""Does the cost model lack a per-chunk term? Fit the profile's four older terms (const, per query token, per decode
context token, per prefill attention pair), and those plus one per prefill chunk in the step, on the busy
steps of a validation's first round of real runs; print each fit's signed median error by kind of step on
the other rounds' runs (held out). In the validations of 2026-12-06 steps whose prefill chunks total 1-63
tokens (a resume's returned tokens, a prompt's tail) ran 2.5-22 % slower than the profile predicted, while
steps with larger chunks were within 6 %. Since then `infercept profile` fits the fifth term too
(``step.per_prefill_seq_s``); this script still compares the two fits on the runs themselves.

    python benchmarks/chunkfit.py results/validate-constrained-seed2-5
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from core.cost import BatchShape  # noqa: E402
from experiments.fidelity import measured_s  # noqa: E402
from real.collect import read_engine_log  # noqa: E402

TERMS = ("const", "per query token", "per decode context token", "per prefill attention pair", "per prefill chunk")
KINDS = (("decode only", 0, 1), ("chunk 1-63", 1, 64), ("chunk 64-255", 64, 256), ("chunk >= 256", 256, 10**9))
"""Kinds of steps by the tokens of their prefill chunks: [lo, hi)."""


def design(steps: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(terms per step, measured seconds, prefill tokens) of the steps with tokens; a step's prefill chunks
    are its scheduled requests that are not decodes."""
    busy = [s for s in steps if s["num_decode"] + s["prefill_tokens"]]
    shapes = [BatchShape.of_step(s) for s in busy]
    x = np.array([[1.0, b.query_tokens, b.decode_ctx_tokens, b.prefill_attn_pairs, b.num_prefill_seqs]
                  for b in shapes], dtype=float).reshape(-1, len(TERMS))
    return x, np.array([measured_s(s) for s in busy]), np.array([s["prefill_tokens"] for s in busy], dtype=float)


def fit(x: np.ndarray, y: np.ndarray, terms: int) -> np.ndarray:
    """Least squares of ``y`` on the first ``terms`` columns of ``x``, on relative errors (as the profile, whose
    fit is also non-negative: a negative coefficient here is printed as it comes)."""
    coef, *_ = np.linalg.lstsq(x[:, :terms] / y[:, None], np.ones_like(y), rcond=None)
    return coef


def signed_by_kind(x: np.ndarray, y: np.ndarray, prefill: np.ndarray, coef: np.ndarray) -> dict[str, float]:
    """Median of (predicted - measured) / measured per KINDS entry (kinds without steps left out)."""
    rel = (x[:, :len(coef)] @ coef - y) / y
    return {k: float(np.median(rel[(prefill >= lo) & (prefill < hi)])) for k, lo, hi in KINDS
            if ((prefill >= lo) & (prefill < hi)).any()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path, help="an `infercept validate --out` folder (its engine-logs/)")
    args = ap.parse_args()
    logs = sorted((args.folder / "engine-logs").glob("*.jsonl"))
    if not logs:
        sys.exit(f"chunkfit: no engine-logs/*.jsonl in {args.folder}")
    parts: dict[bool, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {True: [], False: []}
    for log in logs:
        parts[log.stem.rsplit("-", 1)[1] == "0"].append(design(read_engine_log(log)[0]))
    if not parts[True] or not parts[False]:
        sys.exit(f"chunkfit: {args.folder} needs runs of round 0 and of another round (validate --repeats 2 or more)")
    (xt, yt, _), (xh, yh, ph) = ([np.concatenate(c) for c in zip(*parts[k])] for k in (True, False))
    print(f"`{args.folder}`: fitted on round 0's runs ({len(yt)} steps), errors on the other rounds' "
          f"({len(yh)} steps)\n")
    print("| terms | coefficients | " + " | ".join(k for k, _, _ in KINDS) + " | median abs. error |")
    print("|---|---|" + "---|" * (len(KINDS) + 1))
    for n in (4, 5):
        coef = fit(xt, yt, n)
        by = signed_by_kind(xh, yh, ph, coef)
        abs_err = float(np.median(np.abs((xh[:, :n] @ coef - yh) / yh)))
        print(f"| {n} | " + ", ".join(f"{t} {c:.3g}" for t, c in zip(TERMS, coef)) + " | "
              + " | ".join(f"{100 * by[k]:+.1f} %" if k in by else "-" for k, _, _ in KINDS)
              + f" | {100 * abs_err:.1f} % |")


if __name__ == "__main__":
    main()
