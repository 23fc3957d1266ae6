"""Orchestration of `infercept profile` and `infercept validate` (the real executor against the simulator).

validate runs ``repeats`` rounds; each round measures a profile first (unless one is given), so that the
profile and the runs see the same machine, then runs every policy and (unless told not to) the plain trace
once on the engine (round-robin, so that a drift of the machine's speed is shared); with ``until_resolved``,
more rounds follow, each of the cases with a row their median cannot yet resolve
(``validation_case.more_rounds``; those rounds run only those cases, so they share the machine's drift only
among themselves). Each round's runs are simulated with that round's profile: an ensemble over SPEED_SCALES
(``sim``), and each run at its own fitted step-time scale times each of SPEED_SCALES, its speed wandering
as the run's did (``experiments.wander``; ``rel_error_calibrated``: the dynamics alone). The simulator
charges swap copies in full (``engine.swap_overlap = false``): the CPU build copies synchronously inside the
step; and a swap holds its GPU blocks while it runs (``engine.swap_holds_blocks = true``), as vLLM's connector
in the executor does.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

from core.cost import FittedCostModel
from core.trace_io import read_jsonl
from core.types import RequestSpec
from experiments.scenarios import Scenario, gpu_ratio_link, with_link

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


@dataclasses.dataclass(frozen=True)
class Validation:
    """What `infercept validate` runs: the trace, the engine settings (host blocks from the scenario) and how."""

    trace: list[RequestSpec]
    trace_note: str
    out: Path
    repeats: int
    policies: tuple[str, ...]
    settings: Any  # real.engine.EngineSettings
    vocab: int
    window_s: float
    scenario: Scenario
    model: str  # for the profiles measured between rounds
    token_scale: float  # the trace's token counts against the paper's (for the constrained link)
    profile: Path | None = None  # fixed for every round; None: measured before each round
    git_rev: str = "unknown"
    with_plain: bool = True  # the plain trace too (off: more repeats of the policies in the same time)
    until_resolved: int = 0  # more rounds of the cases with an unresolved row, up to this many runs each

    @property
    def engine(self) -> dict[str, Any]:
        """The simulator's engine settings: the real engine's (vLLM keeps one of its num_gpu_blocks as the null
        block: the simulator gets the blocks requests can use); copies charged in full; a swap holds its GPU
        blocks while it runs, as the executor's connector does."""
        s = self.settings
        return {"gpu_kv_blocks": s.kv_blocks - 1, "cpu_kv_blocks": s.host_blocks,
                "token_budget_tokens": s.token_budget_tokens, "saturation_tokens": s.token_budget_tokens,
                "swap_overlap": False, "swap_holds_blocks": True}


def _real_run(v: Validation, policy: str, specs: list[RequestSpec], folder: Path, profile: Path, link: float,
              rnd: int) -> tuple[Any, list[dict[str, Any]]]:
    from core.runfolder import save_run
    from core.summary import summarize
    from real.collect import build_metrics
    from real.driver import replay

    # the swap connector (vllm_offload's host tier is its own)
    swaps = policy in ("swap", "swap_blocking", "infercept", "mars")
    s = dataclasses.replace(v.settings, policy=policy, profile=str(profile), profile_overrides=v.engine,
                            host_blocks=v.settings.host_blocks if swaps else 0,
                            link_bytes_per_s=link if swaps or policy == "vllm_offload" else 0.0,
                            log_path=str(folder.parent / f".{folder.name}.engine.jsonl"))
    t0, client = replay(s, specs, v.window_s, v.vocab)
    m, steps = build_metrics(specs, t0, client, s.log_path, v.window_s, v.settings.kv_blocks,
                             FittedCostModel.from_profile(profile, v.engine))
    save_run(folder, m, {"policy": policy, "backend": "vllm", "window_s": v.window_s, "profile": str(profile),
                         "engine": v.engine, "kv_blocks": v.settings.kv_blocks, "scenario": v.scenario.name,
                         "link_bytes_per_s": link, "round": rnd}, summarize(m))
    logs = folder.parent.parent / "engine-logs"
    logs.mkdir(exist_ok=True)
    Path(s.log_path).replace(logs / f"{folder.name}.jsonl")  # the raw engine log, for diagnosis
    return m, steps


def _round_profile(v: Validation, rnd: int, link: float) -> tuple[Path, float]:
    """The profile of round ``rnd`` (measured now unless fixed) and the constrained scenario's link (derived from
    the first round's profile, then kept: the connector's throttle is the same for every run)."""
    base = v.profile
    if base is None:
        print(f"  profile before round {rnd + 1} ...", file=sys.stderr, flush=True)
        base = run_profile(v.model, v.out / "profiles" / f"round-{rnd}", v.settings.kv_blocks,
                           v.settings.token_budget_tokens, v.git_rev)
    if not v.scenario.throttled:
        return base, 0.0
    if not link:
        link = gpu_ratio_link(FittedCostModel.from_profile(base, v.engine), v.token_scale)
    return with_link(base, link, v.out / "profiles" / f"round-{rnd}-{v.scenario.name}.json"), link


def validation_cases(policies: tuple[str, ...], trace: list[RequestSpec],
                     with_plain: bool) -> list[tuple[str, str, list[RequestSpec]]]:
    """(label, policy, trace) of each case validate runs: every policy on the trace, then (``with_plain``) the
    trace without its interceptions, labelled plain and served by discard (no pause: every policy is one)."""
    from experiments.fidelity import plain

    return [(p, p, trace) for p in policies] + ([("plain", "discard", plain(trace))] if with_plain else [])


def run_validation(v: Validation) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """Every case (``validation_cases``), real (``repeats`` rounds, then with ``until_resolved`` more rounds of
    the cases ``more_rounds`` names) and simulated; writes the report files. Returns the validation.csv rows,
    what misses the target and what is unresolved (``experiments.verdict``; both empty: it passes)."""
    from experiments.validation_case import Compared, compare_case, more_rounds, why_more
    from experiments.validation_report import ReportInputs, write_outputs
    from experiments.verdict import unresolved, verdict

    cases = validation_cases(v.policies, v.trace, v.with_plain)
    runs: dict[str, list[tuple[int, Any, list[dict[str, Any]]]]] = {c[0]: [] for c in cases}
    compared: dict[str, Compared] = {}
    profiles: list[Path] = []
    link = 0.0
    todo = [c[0] for c in cases]
    why: list[str] = []  # why each further round ran (--until-resolved)
    while todo:  # a profile, then each case to run once: the profile sees the machine the runs see
        k = len(profiles)
        prof, link = _round_profile(v, k, link)
        profiles.append(prof)
        for label, policy, specs in cases:
            if label in todo:
                print(f"  real {label} run {len(runs[label]) + 1} (round {k + 1}) ...", file=sys.stderr,
                      flush=True)
                m, steps = _real_run(v, policy, specs, v.out / "runs" / f"{label}-{k}", prof, link, k)
                runs[label].append((k, m, steps))
        if k + 1 < v.repeats:
            continue
        for case in cases:
            if case[0] in todo:
                compared[case[0]] = compare_case(v, case, runs[case[0]], profiles)
        counts = {c: len(r) for c, r in runs.items()}
        todo = more_rounds(compared, counts, v.until_resolved)
        for line in why_more(compared, todo, counts):
            why.append(f"round {k + 2}: {line}")
            print(f"  {why[-1]}", file=sys.stderr, flush=True)
    costs = [FittedCostModel.from_profile(p, v.engine) for p in profiles]
    rows = [r for c in cases for r in compared[c[0]].rows]
    decisions = next((x.decisions for x in compared.values() if x.decisions), {})
    misses, open_rows = verdict(rows, decisions if v.scenario.throttled else None), unresolved(rows)
    all_steps = [(k, s) for done in runs.values() for k, _, steps in done for s in steps]
    write_outputs(ReportInputs(v, rows, {c[0]: compared[c[0]].extra for c in cases},
                               {c[0]: compared[c[0]].scatter for c in cases}, profiles, costs, link, all_steps,
                               decisions, misses, open_rows, tuple(why)))
    return rows, misses, open_rows


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

