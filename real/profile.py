"""`infercept profile`: measure this machine with the engine itself and fit the CostModel.

A controlled grid of batch shapes runs on one engine (async scheduling off, preserve): decode batches of
B requests at context L, long prompts split into prefill chunks of the token budget, and resumes (short
chunks of returned tokens over a long context); every step's shape and duration come from the scheduler's
log. Least squares (coefficients kept >= 0) fits step_s = const + a*query_tokens + b*decode_ctx_tokens +
c*prefill_attn_pairs + d*prefill_chunks (validations found steps with short chunks 2.5-22 % slower than the
four other terms predict: ``benchmarks/chunkfit.py``); the engine loop's gap between busy steps goes into
const. The client's hops to the engine and back are read off the same logs (``real.hops``); the swap
connector's copy routine is timed both ways on tensors of the engine's KV layout and size (``real.linkbench``).
Profile the engine configuration you will run: on the CPU build the step cost depends on the KV cache's size
(about 0.5 ms per step between 64 and 512 blocks).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import itertools
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from core.cost import BatchShape
from core.types import RequestSpec, Segment
from real.collect import read_engine_log
from real.driver import ClientLog, run_sessions
from real.engine import VLLM_VERSION, EngineSettings, start_engine, stop_engine, worker_threads
from real.hops import in_hop_s, leads, out_hop_s
from real.linkbench import link_rate
from real.model import ModelSize

TERMS = ("const_s", "per_query_token_s", "per_decode_ctx_token_s", "per_prefill_attn_pair_s", "per_prefill_seq_s")


def grid(size: ModelSize, kv_tokens: int, budget_tokens: int, passes: int = 2) -> list[list[RequestSpec]]:
    """Phases of requests that arrive together: decode batches, prefill chunks, and resumes (a pause, then a
    short chunk of returned tokens over a long context, beside the other requests' decodes; staggered, and
    2-4 at once so that steps carry several chunks and the per-chunk cost is told from a per-step one). The
    grid runs ``passes`` times, every other pass in reverse order, so that a slow drift of the machine's speed
    (a few % over minutes on a shared machine) averages out instead of biasing one kind of step."""
    one: list[list[RequestSpec]] = []
    for ctx in (64, 256, 1024):
        for batch in (1, 2, 4, 8, 16, 32):
            if batch * (ctx + 32) <= kv_tokens and ctx + 32 <= size.max_context_tokens:
                one.append([RequestSpec(f"d{batch}x{ctx}-{i}", 0.0, ctx, (Segment(24),)) for i in range(batch)])
    for prompt in (budget_tokens, 2 * budget_tokens, 4 * budget_tokens):
        if prompt + 8 <= min(kv_tokens, size.max_context_tokens):
            one.append([RequestSpec(f"p{prompt}", 0.0, prompt, (Segment(2),))])
    for ctx in (128, 512, 1024):
        for returned in (8, 32, 128):
            need = ctx + returned + 16
            n = min(3, kv_tokens // (need + 32))
            if n and need <= size.max_context_tokens:
                one.append([RequestSpec(f"r{ctx}+{returned}-{i}", 0.04 * i, ctx,
                                        (Segment(6, 0.1, returned, "qa"), Segment(6)), "qa") for i in range(n)])
    for ctx in (128, 512):  # resumes together: steps with several short chunks (the per-chunk term)
        for returned in (8, 32):
            n = min(4, kv_tokens // (ctx + returned + 48))
            if n > 1 and ctx + returned + 16 <= size.max_context_tokens:
                one.append([RequestSpec(f"m{ctx}+{returned}-{i}", 0.0, ctx,
                                        (Segment(6, 0.1, returned, "qa"), Segment(6)), "qa") for i in range(n)])
    phases: list[list[RequestSpec]] = []
    for k in range(passes):
        for phase in (one if k % 2 == 0 else one[::-1]):
            phases.append([dataclasses.replace(r, rid=f"{r.rid}.{k}") for r in phase])
    return phases


def fit_steps(steps: list[dict[str, Any]]) -> tuple[dict[str, float], dict[str, Any]]:
    """Non-negative least squares of step durations on the TERMS, minimizing relative errors (a decode step of
    one request matters as much as a 2048-token prefill); returns (coefficients, fit stats)."""
    shapes = [BatchShape.of_step(s) for s in steps]
    x = np.array([[1.0, b.query_tokens, b.decode_ctx_tokens, b.prefill_attn_pairs, b.num_prefill_seqs]
                  for b in shapes]).reshape(-1, len(TERMS))
    y = np.array([s["t_end"] - s["t0"] for s in steps])
    xw, yw = x / y[:, None], np.ones_like(y)  # relative errors: small steps count as much as large ones
    active = list(range(len(TERMS)))
    while True:
        coef, *_ = np.linalg.lstsq(xw[:, active], yw, rcond=None)
        if (coef >= 0).all() or len(active) == 1:
            break
        active.pop(int(np.argmin(coef)))
    full = np.zeros(len(TERMS))
    full[active] = np.maximum(coef, 0.0)
    pred = x @ full
    resid = y - pred
    rel_resid = resid / y
    dof = max(len(y) - len(active), 1)
    cov = np.linalg.pinv(xw[:, active].T @ xw[:, active]) * float(rel_resid @ rel_resid) / dof
    stderr = dict.fromkeys(TERMS, 0.0)
    for i, j in enumerate(active):
        stderr[TERMS[j]] = float(np.sqrt(max(cov[i, i], 0.0)))
    rel = np.abs(rel_resid)
    stats = {"num_steps": len(y), "median_rel_error": float(np.median(rel)),
             "p90_rel_error": float(np.percentile(rel, 90)), "stderr": stderr,
             "max_query_tokens": int(x[:, 1].max()), "max_decode_ctx_tokens": int(x[:, 2].max())}
    return dict(zip(TERMS, map(float, full))), stats


def busy_gap_s(steps: list[dict[str, Any]]) -> float:
    """Median time from one step's end to the next step's start while the engine is busy (< 5 ms)."""
    gaps = [b["t0"] - a["t_end"] for a, b in itertools.pairwise(steps) if 0 <= b["t0"] - a["t_end"] < 0.005]
    return float(np.median(gaps)) if gaps else 0.0


def hardware() -> dict[str, Any]:
    """What this machine is: the CUDA device, or the CPU model and cores the engine may use."""
    import torch

    if torch.cuda.is_available():
        return {"name": torch.cuda.get_device_name(0), "kind": "cuda",
                "memory_bytes": torch.cuda.get_device_properties(0).total_memory}
    model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                  if ln.startswith("model name")), platform.processor())
    return {"name": model, "kind": "cpu", "cores": os.cpu_count(),
            "memory_bytes": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")}


async def _run_grid(settings: EngineSettings, phases: list[list[RequestSpec]], vocab: int) -> tuple[float, ClientLog]:
    llm = start_engine(settings)
    log = ClientLog()
    try:
        t_first = time.monotonic()
        for phase in phases:
            await run_sessions(llm, phase, time.monotonic(), settings.seed, vocab, log, None)
        return t_first, log
    finally:
        stop_engine(llm)


def measure(settings: EngineSettings, size: ModelSize, model_name: str, git_rev: str) -> dict[str, Any]:
    """Run the grid on ``settings`` (its policy is forced to preserve) and return the profile as a dict.

    With ``settings.host_blocks`` the swap connector is loaded (idle), as in swap and infercept runs; with the
    CPU build's thread reservation pinned (``real.engine.prepare_environment``) that changes no coefficient by
    more than ~2 %, so one profile serves every policy."""
    with tempfile.TemporaryDirectory() as tmp:
        s = dataclasses.replace(settings, log_path=str(Path(tmp) / "engine.jsonl"), policy="preserve",
                                async_scheduling=False)
        kv_tokens = s.kv_blocks * s.block_size_tokens
        _, client = asyncio.run(_run_grid(s, grid(size, kv_tokens, s.token_budget_tokens), size.vocab))
        steps, events = read_engine_log(s.log_path)
        raw = Path(s.log_path).read_text()
    coef, stats = fit_steps([st for st in steps if st["num_decode"] + st["prefill_tokens"] > 0])
    gap = busy_gap_s(steps)
    coef["const_s"] += gap
    coef["busy_gap_s"] = gap
    in_hops = in_hop_s(leads(steps, 0.0, [(t, rid, name) for t, name, rid, _ in client.events]))
    out_hops = out_hop_s(events, client.events)
    if not in_hops or not out_hops:
        raise RuntimeError(f"profile: the grid left {len(in_hops)} arrivals or returns that woke an idle engine "
                           f"and {len(out_hops)} pauses seen by the client; cannot measure the client's hops")
    hw = hardware()
    dtype_bytes = 4 if s.dtype == "float32" else 2  # "auto": assumed a 16-bit checkpoint
    bw = link_rate(size, s.block_size_tokens, s.kv_blocks, s.host_blocks or s.kv_blocks,
                   "cuda" if hw["kind"] == "cuda" else "cpu", dtype_bytes,
                   threads=worker_threads() if hw["kind"] == "cpu" else None)
    name = f"{'cpu' + str(hw.get('cores')) if hw['kind'] == 'cpu' else hw['name'].split()[-1].lower()}-{model_name}-tp1"
    return {
        "_raw_log": raw,
        "name": name,
        "gpu": {"name": hw["name"], "memory_bytes": hw["memory_bytes"]},
        "model": {"hf": model_name, "num_layers": size.num_layers, "num_heads": size.num_heads,
                  "num_kv_heads": size.num_kv_heads, "head_dim": size.head_dim, "dtype_bytes": dtype_bytes,
                  "weight_bytes": dtype_bytes * size.num_params, "max_context_tokens": size.max_context_tokens},
        "tp": 1,
        "engine": {"gpu_memory_utilization": 1.0, "activation_reserve_bytes": 0,
                   "block_size_tokens": s.block_size_tokens, "token_budget_tokens": s.token_budget_tokens,
                   "max_num_seqs": s.max_num_seqs, "saturation_tokens": s.token_budget_tokens,
                   "cpu_swap_bytes": 0, "gpu_kv_blocks": s.kv_blocks - 1, "cpu_kv_blocks": s.kv_blocks,
                   "client_in_hop_s": float(np.median(in_hops)), "client_out_hop_s": float(np.median(out_hops))},
        "step": coef,
        "link": {"bytes_per_s": bw["both"]},
        "fit_range": {"max_query_tokens": stats["max_query_tokens"],
                      "max_decode_ctx_tokens": stats["max_decode_ctx_tokens"]},
        "provenance": {
            "kind": "measured with `infercept profile` (the engine itself)",
            "step.const_s": "least-squares fit over the grid's steps, plus the engine loop's median busy gap",
            "step.busy_gap_s": "that gap: the median time from a step's end (its outputs processed) to the next "
                               "step's start while the engine is busy (< 5 ms); a part of const_s",
            "step.per_query_token_s": "least-squares fit (relative errors, coefficients >= 0)",
            "step.per_decode_ctx_token_s": "least-squares fit",
            "step.per_prefill_attn_pair_s": "least-squares fit",
            "step.per_prefill_seq_s": "least-squares fit: per request with a prefill chunk in the step (a prompt's "
                                      "chunk, a resume's returned tokens)",
            "link.bytes_per_s": "the swap connector's own copy routine on KV tensors of the engine's layout and "
                                "size, 1-16 blocks per copy, both ways (real.linkbench)",
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "vllm_version": VLLM_VERSION, "hardware": hw, "git_revision": git_rev,
            "model": f"{s.model_dir}: {size} (~{size.num_params / 1e6:.1f} M parameters, dtype {s.dtype})",
            "fit": {**stats, "busy_gap_s_added_to_const": gap},
            "link": {"copy_bytes_per_s": bw},
            "engine.client_in_hop_s": "median over the grid's arrivals and returns that found the engine idle: "
                                      "the client's event to the start of the step that scheduled it (real.hops)",
            "engine.client_out_hop_s": "median over the grid's pauses: the engine's pause to the client's "
                                       "receipt of that step's output (real.hops)",
            "client_hops": {"in_samples": len(in_hops), "out_samples": len(out_hops)},
            "swap_connector_loaded": bool(s.host_blocks),
            "engine": "KV capacity = the engine's num_gpu_blocks while profiling, less vLLM's null block "
                      "(validate overrides it with its own); saturation S = token budget (vLLM's chunked prefill "
                      "fills up to it)",
        },
    }


def write_profile(profile: dict[str, Any], out_dir: str | Path) -> Path:
    """Write ``<name>.json`` (and the engine log it was fitted on, ``<name>.steps.jsonl``) into ``out_dir``
    atomically; return the profile's path."""
    from core.trace_io import atomic_write_text

    profile = dict(profile)
    raw = profile.pop("_raw_log", "")
    path = Path(out_dir) / f"{profile['name']}.json"
    atomic_write_text(path, json.dumps(profile, indent=2) + "\n")
    if raw:  # the engine log the fit came from, for re-fitting or diagnosis
        atomic_write_text(path.with_suffix(".steps.jsonl"), raw)
    return path
