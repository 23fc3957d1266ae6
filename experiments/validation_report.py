"""The files `infercept validate` writes: validation.csv, steps.json, report.md and the latency scatter plot."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

from core.cost import FittedCostModel
from core.trace_io import atomic_write_text
from experiments.ensemble import SPEED_SCALES
from experiments.fidelity import (
    MIN_DECISIONS,
    STEP_ERROR_GATE,
    STEP_KINDS,
    TARGET,
    VERDICT_METRICS,
    predicted_s,
)
from experiments.spread import BAND_PCT, RESOLVABLE
from experiments.verdict import held_columns, verdict_word

COLUMNS = ("policy", "metric", "real", "sim", "rel_error", "rel_error_calibrated", "cal_self_miss", "cal_lo",
           "cal_hi")


@dataclasses.dataclass(frozen=True)
class ReportInputs:
    """Everything the report is written from."""

    v: Any  # experiments.validation.Validation
    rows: list[dict[str, Any]]
    extra: dict[str, dict[str, Any]]  # per case: step-time errors, fitted scales, hook share, ranges
    scatter: dict[str, tuple[list[float], list[float]]]
    profiles: list[Path]  # one per round
    costs: list[FittedCostModel]
    link_bytes_per_s: float  # the connector's throttle (0: none)
    steps: list[tuple[int, dict[str, Any]]]  # (round, engine step record) of every real run
    decisions: dict[str, float]  # InferCept's real pause decisions (constrained scenario)
    misses: list[str]
    unresolved: list[str]  # held errors on rows the real median cannot resolve, not misses
    more_why: tuple[str, ...] = ()  # why each round of --until-resolved ran: "round K: case after N runs: rows"


def profile_drift(costs: list[FittedCostModel], steps: list[tuple[int, dict[str, Any]]]) -> list[float]:
    """Per round's profile: its predicted time of every real step over the first round's profile's, less 1."""
    first = sum(predicted_s(s, costs[0]) for _, s in steps)
    return [sum(predicted_s(s, c) for _, s in steps) / first - 1 if first else 0.0 for c in costs]


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """validation.csv: one line per row, the COLUMNS (the step-time rows have no spread: NaN)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow({k: (f"{x:.6g}" if isinstance(x, float) else x) for k in COLUMNS
                    for x in [row.get(k, math.nan)]})
    atomic_write_text(path, buf.getvalue())


def write_outputs(r: ReportInputs) -> None:
    """validation.csv, steps.json, latency_scatter.png and report.md into the validation's folder."""
    out = r.v.out
    write_rows(out / "validation.csv", r.rows)
    drift = profile_drift(r.costs, r.steps)
    atomic_write_text(out / "steps.json", json.dumps(
        {**r.extra, "_profiles": {"paths": [str(p) for p in r.profiles], "drift": drift,
                                  "link_bytes_per_s": r.link_bytes_per_s},
         "_verdict": {"verdict": verdict_word(r.misses, r.unresolved), "misses": r.misses,
                      "unresolved": r.unresolved, "infercept_decisions": r.decisions}}, indent=2))
    _scatter_plot(out / "latency_scatter.png", r.scatter)
    atomic_write_text(out / "report.md", "\n".join(_report_lines(r, drift)))


def _report_lines(r: ReportInputs, drift: list[float]) -> list[str]:
    v, s = r.v, r.v.settings
    link = (f"throttled to {r.link_bytes_per_s / 1e6:.1f} MB/s (a GPU's ratio of copy time to step time)"
            if r.link_bytes_per_s else "unthrottled")
    lines = ["# Validation: real vLLM vs simulator\n", f"- scenario `{v.scenario.name}`: {v.scenario.note}",
             f"- trace: {v.trace_note}",
             f"- policies: {', '.join(v.policies)}" + ("" if v.with_plain else "; no plain trace (--no-plain)"),
             (f"- engine: {s.kv_blocks} KV blocks of {s.block_size_tokens} tokens, host swap {s.host_blocks} "
              f"blocks, link {link}, token budget {s.token_budget_tokens}, model `{s.model_dir}`"),
             (f"- window {v.window_s:g} s, {v.repeats} rounds (median of the real runs){_more(r)}; simulator "
              "`v1` batching, swap copies charged in full (`engine.swap_overlap = false`: the CPU build copies "
              "inside the step), "
              "a swap holding its GPU blocks while it runs (`engine.swap_holds_blocks = true`, as vLLM's "
              "connector)")]
    lines += [f"  - {w}" for w in r.more_why]  # under the window bullet: why each --until-resolved round ran
    lines += [(f"- sim: median of {len(SPEED_SCALES)} runs per round's profile with step times scaled by "
              f"{', '.join(f'{x:g}' for x in SPEED_SCALES)}; calibrated: each real run re-simulated with its own "
              "fitted scale (measured / predicted time of its steps) times each of those, its speed wandering "
              "within the run as the run's did (4 draws of its 2-s blocks each, `experiments/wander.py`), median "
              "of all")]
    if v.profile is not None:
        lines.append(f"- profile `{v.profile}` for every round (the machine's drift is not measured)")
    else:
        lines.append("- profiles, one measured before each round: " + ", ".join(
            f"`{p}` (const {c.const_s * 1e3:.2f} ms, {c.per_query_token_s * 1e3:.3f} ms/token, "
            f"{100 * d:+.1f} % on the runs' steps, client hops in {c.client_in_hop_s * 1e3:.2f} / out "
            f"{c.client_out_hop_s * 1e3:.2f} ms)" for p, c, d in zip(r.profiles, r.costs, drift)))
    word = verdict_word(r.misses, r.unresolved)
    verdict = word if word == "PASS" else f"{word}: " + "; ".join(r.misses or r.unresolved)
    lines += [(f"- **verdict: {verdict}** (|rel_error_calibrated| <= {100 * TARGET:g} % for "
               f"{', '.join(VERDICT_METRICS)}; rel_error too where the step-time error is under "
               f"{100 * STEP_ERROR_GATE:g} %; pause counts under {MIN_DECISIONS} in both not held (column "
               "'held'); a row is "
               f"unresolved, neither a pass nor a miss, where more than {100 * RESOLVABLE:g} % of the "
               f"calibrated simulations' own medians of as many runs as the real ones miss their median by "
               f"{100 * TARGET:g} % (column 'chaos'), unless its error is beyond the target and its real "
               f"median more than {100 * TARGET:g} % outside their central {BAND_PCT[1] - BAND_PCT[0]:g} % "
               f"(column 'band'): a miss)"), ""]
    if r.misses and r.unresolved:
        lines[-1:-1] = ["- unresolved as well: " + "; ".join(r.unresolved)]
    if r.decisions:
        lines[-1:-1] = ["- InferCept's real pause decisions (median): " + ", ".join(
            f"{k} {x:g}" for k, x in r.decisions.items())]
    held = held_columns(r.rows)
    lines += ["| policy | metric | real | sim | rel. error | calibrated | chaos | band | held |",
              "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {x['policy']} | {x['metric']} | {x['real']:.4g} | {x['sim']:.4g} | {100 * x['rel_error']:+.1f} % | "
              f"{100 * x['rel_error_calibrated']:+.1f} % | {_pct(x.get('cal_self_miss', math.nan))} | "
              f"{_band(x)} | {held.get((x['policy'], x['metric']), 'no')} |" for x in r.rows]
    lines += ["", ("| policy | step-time error median | p90 | fitted step-time scales | their wander (sd of 2-s "
                   "blocks) | policy hook share of step time | steps with KV >= 95 % full | norm_latency_ms range: "
                   "real runs | simulations |"),
              "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {p} | {100 * x['step_err_median']:.1f} % | {100 * x['step_err_p90']:.1f} % | "
              f"{', '.join(f'{f:.3f}' for f in x['speed_scales'])} | "
              f"{', '.join(f'{w:.1f} %' for w in x.get('wander_pct', ()))} | {100 * x['hook_share']:.2f} % | "
              f"{100 * x['steps_kv_full']:.1f} % | {x['real_norm_min']:.1f}-{x['real_norm_max']:.1f} | "
              f"{x['sim_norm_min']:.1f}-{x['sim_norm_max']:.1f} |" for p, x in r.extra.items()]
    lines += ["", ("Signed step-time error (predicted - measured) / measured, median by kind of step (decode-only "
                   "steps by batch size; steps with a prefill, recompute or resume chunk by its tokens):"), "",
              "| policy | " + " | ".join(STEP_KINDS) + " |", "|---|" + "---|" * len(STEP_KINDS)]
    lines += [f"| {p} | " + " | ".join(f"{100 * x['step_err_signed_by_kind'][k]:+.1f} %"
                                       if k in x["step_err_signed_by_kind"] else "-" for k in STEP_KINDS) + " |"
              for p, x in r.extra.items()]
    lines += ["", "![simulated vs real per-request latency](latency_scatter.png)", ""]
    return lines


def _more(r: ReportInputs) -> str:
    """The extra rounds of ``--until-resolved``, if any ran."""
    if not r.v.until_resolved:
        return ""
    ran = ", ".join(f"{p} {x['runs']} runs" for p, x in r.extra.items() if x["runs"] > r.v.repeats)
    return (f", then rounds of the cases with an unresolved row until it resolved or they had "
            f"{r.v.until_resolved} runs (`--until-resolved`): {ran or 'none needed'}")


def _pct(x: float) -> str:
    return "-" if math.isnan(x) else f"{100 * x:.0f} %"


def _band(row: dict[str, Any]) -> str:
    lo, hi = row.get("cal_lo", math.nan), row.get("cal_hi", math.nan)
    return "-" if math.isnan(lo) else f"{lo:.4g}-{hi:.4g}"


def _scatter_plot(path: Path, scatter: dict[str, tuple[list[float], list[float]]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    top = 0.0
    for label, (real, sim) in scatter.items():
        ax.scatter(real, sim, s=10, label=label, alpha=0.7)
        top = max([top, *real, *sim])
    ax.plot([0, top], [0, top], color="grey", lw=0.8)
    ax.set_xlabel("real latency outside interceptions (s)")
    ax.set_ylabel("simulated (s)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    tmp = Path(tempfile.mkstemp(dir=path.parent, suffix=".png")[1])
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    shutil.move(tmp, path)
