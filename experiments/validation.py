"""Orchestration of `infercept profile` and `infercept validate` (the real executor against the simulator)."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from core.cost import FittedCostModel
from core.trace_io import atomic_write_text, read_jsonl
from core.types import RequestSpec
from experiments.ensemble import SPEED_SCALES
from experiments.fidelity import STEP_KINDS

MODELS_DIR = Path("results/models")
"""Where the random-weight checkpoints are written (once per size)."""


def model_for(name: str, models_dir: Path) -> tuple[Any, str, str]:
    """(ModelSize, checkpoint folder, label) of ``name``: a random-weight size (written on first use) or the
    folder of a Hugging Face checkpoint."""
    from real.model import SIZES, size_of_checkpoint, write_model

    if Path(name).is_dir():
        return size_of_checkpoint(name), name, Path(name).resolve().name.lower()
    if name not in SIZES:
        raise ValueError(f"--model {name!r}: expected a checkpoint folder or one of {sorted(SIZES)}")
    return SIZES[name], str(write_model(models_dir / f"llama-{name}", SIZES[name])), f"llama-{name}"


def settings_for(model_dir: str, size: Any, kv_blocks: int, host_blocks: int, budget: int, seed: int) -> Any:
    """Engine settings shared by profile and validate runs (float32 for the random-weight models, the
    checkpoint's own dtype otherwise)."""
    from real.engine import EngineSettings

    dtype = "float32" if Path(model_dir).parent.resolve() == MODELS_DIR.resolve() else "auto"
    s = EngineSettings(model_dir, kv_blocks=kv_blocks, host_blocks=host_blocks, token_budget_tokens=budget,
                       seed=seed, dtype=dtype)
    # vLLM refuses a context longer than the KV cache holds
    return dataclasses.replace(s, max_context_tokens=min(size.max_context_tokens, (kv_blocks - 1) * s.block_size_tokens))


def run_profile(model: str, out_dir: Path, kv_blocks: int, budget: int, git_rev: str, host_blocks: int = 0) -> Path:
    """Measure this machine (with the swap connector loaded if ``host_blocks``), write the profile into
    ``out_dir``; return its path."""
    from real.profile import measure, write_profile

    size, folder, label = model_for(model, MODELS_DIR)
    prof = measure(settings_for(folder, size, kv_blocks, host_blocks, budget, 0), size, label, git_rev)
    return write_profile(prof, out_dir)


def _real_run(settings: Any, policy: str, specs: list[RequestSpec], window_s: float, vocab: int, folder: Path,
              profile: str, engine: dict[str, Any]) -> tuple[Any, list[dict[str, Any]]]:
    from core.runfolder import save_run
    from core.summary import summarize
    from real.collect import build_metrics
    from real.driver import replay

    s = dataclasses.replace(settings, policy=policy, profile=profile, profile_overrides=engine,
                            host_blocks=settings.host_blocks if policy in ("swap", "infercept") else 0,
                            log_path=str(folder.parent / f".{folder.name}.engine.jsonl"))
    t0, client = replay(s, specs, window_s, vocab)
    m, steps = build_metrics(specs, t0, client, s.log_path, window_s, settings.kv_blocks,
                             FittedCostModel.from_profile(profile, engine))
    save_run(folder, m, {"policy": policy, "backend": "vllm", "window_s": window_s, "profile": profile,
                         "engine": engine, "kv_blocks": settings.kv_blocks}, summarize(m))
    logs = folder.parent.parent / "engine-logs"
    logs.mkdir(exist_ok=True)
    Path(s.log_path).replace(logs / f"{folder.name}.jsonl")  # the raw engine log, for diagnosis
    return m, steps


def run_validation(trace: list[RequestSpec], trace_note: str, profile: Path, out: Path, repeats: int,
                   policies: tuple[str, ...], settings: Any, vocab: int, window_s: float) -> list[dict[str, Any]]:
    """Every policy and the plain trace, real (``repeats`` times) and simulated; writes the report files."""
    from experiments.ensemble import simulate_ensemble
    from experiments.fidelity import (
        compare_rows,
        median_by_kind,
        plain,
        request_latency_s,
        step_time_errors,
        summary_of,
    )

    # vLLM keeps one of its num_gpu_blocks as the null block: the simulator gets the blocks requests can use
    engine = {"gpu_kv_blocks": settings.kv_blocks - 1, "cpu_kv_blocks": settings.host_blocks,
              "token_budget_tokens": settings.token_budget_tokens,
              "saturation_tokens": settings.token_budget_tokens}
    cost = FittedCostModel.from_profile(profile, engine)
    rows: list[dict[str, Any]] = []
    extra: dict[str, dict[str, Any]] = {}
    scatter: dict[str, tuple[list[float], list[float]]] = {}
    cases = [(p, p, trace) for p in policies] + [("plain", "discard", plain(trace))]
    runs: dict[str, list[tuple[Any, list[dict[str, Any]]]]] = {c[0]: [] for c in cases}
    for k in range(repeats):  # round-robin, so that a drift of the machine's speed is shared by every policy
        for label, policy, specs in cases:
            print(f"  real {label} run {k + 1}/{repeats} ...", file=sys.stderr, flush=True)
            runs[label].append(_real_run(settings, policy, specs, window_s, vocab, out / "runs" / f"{label}-{k}",
                                         str(profile), engine))
    full = 0.95 * engine["gpu_kv_blocks"]
    for label, policy, specs in cases:
        ms = [m for m, _ in runs[label]]
        first = ms[0]
        reals = [summary_of(m) for m in ms]
        errs = [step_time_errors(steps, cost) for _, steps in runs[label]]
        hook = [float(m.steps["policy_s"].sum()) / max(float(m.steps["dur_s"].sum()), 1e-12) for m in ms]
        pressure = [float(np.mean(m.steps["gpu_used_blocks"] >= full)) if m.step_rows else 0.0 for m in ms]
        sim_median, sim, sim_norms = simulate_ensemble(policy, specs, str(profile), window_s, engine)
        rows += compare_rows(label, reals, sim_median)
        signed = np.concatenate([e for e, _ in errs])
        e = np.abs(signed)
        by_kind = median_by_kind(signed, [k for _, ks in errs for k in ks])
        extra[label] = {"step_err_median": float(np.median(e)) if e.size else math.nan,
                        "step_err_p90": float(np.percentile(e, 90)) if e.size else math.nan,
                        "step_err_signed_by_kind": by_kind,
                        "hook_share": float(np.median(hook)), "steps_kv_full": float(np.median(pressure)),
                        "real_norm_min": min(x["norm_latency_ms"] for x in reals),
                        "real_norm_max": max(x["norm_latency_ms"] for x in reals),
                        "sim_norm_min": min(sim_norms), "sim_norm_max": max(sim_norms)}
        rl, sl = request_latency_s(first), request_latency_s(sim)
        both = sorted(set(rl) & set(sl))
        scatter[label] = ([rl[r] for r in both], [sl[r] for r in both])
    _write_outputs(out, rows, extra, scatter, trace_note, profile, repeats, window_s, settings)
    return rows


def _write_outputs(out: Path, rows: list[dict[str, Any]], extra: dict[str, dict[str, Any]],
                   scatter: dict[str, tuple[list[float], list[float]]], trace_note: str, profile: Path,
                   repeats: int, window_s: float, settings: Any) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["policy", "metric", "real", "sim", "rel_error"], lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    atomic_write_text(out / "validation.csv", buf.getvalue())
    atomic_write_text(out / "steps.json", json.dumps(extra, indent=2))
    _scatter_plot(out / "latency_scatter.png", scatter)
    lines = ["# Validation: real vLLM vs simulator\n", f"- trace: {trace_note}",
             f"- profile: `{profile}`",
             (f"- engine: {settings.kv_blocks} KV blocks of {settings.block_size_tokens} tokens, host swap "
              f"{settings.host_blocks} blocks, token budget {settings.token_budget_tokens}, "
              f"model `{settings.model_dir}`"),
             (f"- window {window_s:g} s, real runs per policy {repeats} (median), simulator `v1` batching, "
             f"{len(SPEED_SCALES)} runs with step times scaled by {', '.join(f'{x:g}' for x in SPEED_SCALES)} "
             "(median; near memory pressure latency is chaotic in the step time)\n"),
             "| policy | metric | real | sim | rel. error |", "|---|---|---|---|---|"]
    lines += [f"| {r['policy']} | {r['metric']} | {r['real']:.4g} | {r['sim']:.4g} | {100 * r['rel_error']:+.1f} % |"
              for r in rows]
    lines += ["", ("| policy | step-time error median | p90 | policy hook share of step time | steps with KV >= 95 % "
              "full | norm_latency_ms range: real runs | simulations |"), "|---|---|---|---|---|---|---|"]
    lines += [f"| {p} | {100 * x['step_err_median']:.1f} % | {100 * x['step_err_p90']:.1f} % | "
              f"{100 * x['hook_share']:.2f} % | {100 * x['steps_kv_full']:.1f} % | "
              f"{x['real_norm_min']:.1f}-{x['real_norm_max']:.1f} | {x['sim_norm_min']:.1f}-{x['sim_norm_max']:.1f} |"
              for p, x in extra.items()]
    lines += ["", ("Signed step-time error (predicted - measured) / measured, median by kind of step (decode-only "
              "steps by batch size; steps with a prefill, recompute or resume chunk by its tokens):"), "",
              "| policy | " + " | ".join(STEP_KINDS) + " |", "|---|" + "---|" * len(STEP_KINDS)]
    lines += [f"| {p} | " + " | ".join(f"{100 * x['step_err_signed_by_kind'][k]:+.1f} %"
                                       if k in x["step_err_signed_by_kind"] else "-" for k in STEP_KINDS) + " |"
              for p, x in extra.items()]
    lines += ["", "![simulated vs real per-request latency](latency_scatter.png)", ""]
    atomic_write_text(out / "report.md", "\n".join(lines))


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


def load_trace(path: str | None, scale: Any, max_context_tokens: int) -> tuple[list[RequestSpec], str]:
    """The trace to validate on, and a sentence describing it."""
    from experiments.fidelity import default_trace

    if path:
        return read_jsonl(path), f"`{path}`"
    specs = default_trace(scale, max_context_tokens)
    note = (f"default: the paper's mixed workload at {scale.rate_rps:g} req/s for {scale.arrivals_s:g} s "
            f"(seed {scale.seed}), {len(specs)} augmented requests, token counts x{scale.token_scale:g}, "
            f"tool times x{scale.tool_time_scale:g}")
    return specs, note

