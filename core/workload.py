"""Workloads: the six-augmentation synthetic generator, template sampling, plain traces, and the context cap.

The generator's per-type statistics are those of the paper's evaluation file (INFERCEPT.md §3.3, recomputed
from ``merged_exp_uniform.json``); `tests/test_workload.py` checks them against the file when it is present.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from core.trace_io import Template, WorkloadError, load_plain_csv, load_templates, read_jsonl
from core.types import KINDS, RequestSpec, Segment


@dataclass(frozen=True, slots=True)
class Dist:
    """A clipped distribution: "normal" (mean, std), "lognormal" (mean, std of the variable) or "const"."""

    family: str
    mean: float
    std: float = 0.0
    lo: float = 0.0
    hi: float = math.inf

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` samples, clipped to [lo, hi]."""
        if self.family == "const" or self.std == 0:
            x = np.full(n, self.mean)
        elif self.family == "normal":
            x = rng.normal(self.mean, self.std, n)
        else:
            sigma2 = math.log(1 + (self.std / self.mean) ** 2)
            x = rng.lognormal(math.log(self.mean) - sigma2 / 2, math.sqrt(sigma2), n)
        out: np.ndarray = np.clip(x, self.lo, self.hi)
        return out


@dataclass(frozen=True, slots=True)
class KindStats:
    """Per-augmentation statistics; ``alt_*`` describe every second interception (image/tts human turns)."""

    share: float
    interceptions: Dist
    prompt_tokens: Dist
    gen_tokens: Dist
    first_gen_tokens: Dist
    tool_s: Dist
    tool_tokens: Dist
    alt_tool_s: Dist | None = None
    alt_tool_tokens: Dist | None = None


_HUMAN_S = Dist("normal", 28.1, 18.2, 3.1, 60.0)
_CHAT_PROMPT = Dist("lognormal", 117, 291, 1, 1800)
# Shares and moments: merged_exp_uniform.json (397 templates), see INFERCEPT.md §3.3.
KIND_STATS: dict[str, KindStats] = {
    "math": KindStats(99 / 397, Dist("normal", 2.79, 1.33, 1, 4), Dist("normal", 411, 56, 300, 600),
                      Dist("lognormal", 126, 140, 4, 900), Dist("lognormal", 155, 140, 4, 900),
                      Dist("normal", 8.3e-5, 4.8e-5, 0, 6e-4), Dist("normal", 21, 5, 10, 40)),
    "qa": KindStats(49 / 397, Dist("normal", 3.08, 1.16, 1, 4), Dist("normal", 934, 7, 900, 960),
                    Dist("lognormal", 182, 137, 8, 900), Dist("lognormal", 253, 137, 8, 900),
                    Dist("normal", 0.713, 0.202, 0, 1.03), Dist("normal", 57, 8.5, 30, 90)),
    "ve": KindStats(54 / 397, Dist("normal", 4.35, 1.02, 3, 7), Dist("const", 1973),
                    Dist("const", 4), Dist("const", 4),
                    Dist("normal", 0.0851, 0.0147, 0.0516, 0.111), Dist("lognormal", 8.8, 9.1, 0, 60)),
    "chatbot": KindStats(65 / 397, Dist("normal", 3.46, 1.96, 1, 8), _CHAT_PROMPT,
                         Dist("lognormal", 118, 158, 1, 1000), Dist("lognormal", 60, 80, 1, 1000),
                         _HUMAN_S, Dist("lognormal", 42.5, 110, 1, 1500)),
    "image": KindStats(65 / 397, Dist("normal", 5.92, 3.92, 1, 15), _CHAT_PROMPT,
                       Dist("lognormal", 34, 28, 1, 64), Dist("lognormal", 60, 40, 1, 64),
                       Dist("normal", 11.7, 2.54, 0.6, 16), Dist("const", 8),
                       _HUMAN_S, Dist("lognormal", 34.6, 55, 1, 600)),
    "tts": KindStats(65 / 397, Dist("normal", 5.92, 3.92, 1, 15), _CHAT_PROMPT,
                     Dist("lognormal", 34, 28, 1, 64), Dist("lognormal", 60, 40, 1, 64),
                     Dist("normal", 6.25, 3.81, 0.08, 13), Dist("const", 8),
                     _HUMAN_S, Dist("lognormal", 34.6, 55, 1, 600)),
}


def poisson_arrivals(rate_rps: float, duration_s: float, rng: np.random.Generator) -> np.ndarray:
    """Arrival instants of a Poisson process of ``rate_rps`` in [0, duration_s), sorted."""
    if not rate_rps > 0 or not duration_s > 0:
        raise WorkloadError(f"rate ({rate_rps}) and duration ({duration_s}) must be positive")
    n_guess = int(rate_rps * duration_s * 1.2 + 20)
    times = np.cumsum(rng.exponential(1.0 / rate_rps, n_guess))
    while times[-1] < duration_s:
        more = np.cumsum(rng.exponential(1.0 / rate_rps, n_guess)) + times[-1]
        times = np.concatenate([times, more])
    return times[times < duration_s]


def synth_templates(kind: str, n: int, rng: np.random.Generator) -> list[Template]:
    """Draw ``n`` requests of augmentation ``kind`` from KIND_STATS (image/tts alternate a tool call and a
    human turn: every second interception uses the ``alt_*`` distributions)."""
    st = KIND_STATS[kind]
    n_int = np.rint(st.interceptions.draw(rng, n)).astype(int)
    prompts = np.rint(st.prompt_tokens.draw(rng, n)).astype(int)
    first = np.maximum(np.rint(st.first_gen_tokens.draw(rng, n)), 1).astype(int)
    total = int(n_int.sum())
    gens = np.maximum(np.rint(st.gen_tokens.draw(rng, total)), 1).astype(int)
    tool_s, rets = st.tool_s.draw(rng, total), np.rint(st.tool_tokens.draw(rng, total)).astype(int)
    alt_s = st.alt_tool_s.draw(rng, total) if st.alt_tool_s else tool_s
    alt_rets = np.rint(st.alt_tool_tokens.draw(rng, total)).astype(int) if st.alt_tool_tokens else rets
    out, pos = [], 0
    for i in range(n):
        segs = []
        gen = int(first[i])
        for j in range(int(n_int[i])):
            alt = j % 2 == 1
            segs.append(Segment(gen, float((alt_s if alt else tool_s)[pos]), int((alt_rets if alt else rets)[pos]),
                                kind))
            gen = int(gens[pos])
            pos += 1
        segs.append(Segment(gen))
        out.append(Template(f"{kind}-{i}", kind, int(prompts[i]), tuple(segs)))
    return out


def cap_context(spec: RequestSpec, max_context_tokens: int) -> RequestSpec:
    """Apply the served model's context cap as the reference does: generation and returned tokens are
    truncated so the context never exceeds the cap, and the request ends when it is reached."""
    if spec.total_tokens <= max_context_tokens:
        return spec
    prompt = ctx = min(spec.prompt_tokens, max_context_tokens - 1)
    segs: list[Segment] = []
    for j, s in enumerate(spec.segments):
        gen = min(s.gen_tokens, max_context_tokens - ctx)  # ctx <= cap - 1 here
        ctx += gen
        ret = min(s.tool_tokens, max_context_tokens - ctx)
        if j == len(spec.segments) - 1 or ctx + ret >= max_context_tokens:
            segs.append(Segment(max(gen, 1)))  # nothing could be generated after this return: the end
            break
        segs.append(replace(s, gen_tokens=gen, tool_tokens=ret))
        ctx += ret
    return replace(spec, prompt_tokens=prompt, segments=tuple(segs))


def _from_templates(templates: list[Template], arrivals: np.ndarray, rng: np.random.Generator,
                    ) -> list[RequestSpec]:
    picks = rng.integers(0, len(templates), len(arrivals))
    return [RequestSpec(f"r{i}", float(t), templates[k].prompt_tokens, templates[k].segments, templates[k].kind)
            for i, (t, k) in enumerate(zip(arrivals, picks))]


def make_workload(workload: str, rate_rps: float, duration_s: float, seed: int,
                  max_context_tokens: int | None = None, max_requests: int | None = None,
                  ) -> tuple[list[RequestSpec], dict[str, int]]:
    """Build a workload from its name or file, capped to ``max_context_tokens``; return it and notes
    (artifact counts, how many requests were capped).

    ``workload``: "mixed", one of KINDS, an InferCept JSON file (templates sampled uniformly with
    replacement), a plain CSV trace (rows in order, Poisson arrivals), or a JSONL trace (replayed as is).
    """
    rng = np.random.default_rng(seed)
    notes: dict[str, int] = {}
    path = Path(workload)
    if workload == "mixed" or workload in KINDS:
        arrivals = poisson_arrivals(rate_rps, duration_s, rng)
        kinds = list(KINDS) if workload == "mixed" else [workload]
        shares = np.array([KIND_STATS[k].share for k in kinds])
        picks = rng.choice(len(kinds), size=len(arrivals), p=shares / shares.sum())
        drawn = [iter(synth_templates(k, int((picks == i).sum()), rng)) for i, k in enumerate(kinds)]
        specs = []
        for i, (t, k) in enumerate(zip(arrivals, picks)):
            tpl = next(drawn[k])
            specs.append(RequestSpec(f"r{i}", float(t), tpl.prompt_tokens, tpl.segments, tpl.kind))
    elif path.suffix == ".jsonl":
        specs = read_jsonl(path)
    elif path.suffix == ".json":
        templates, artifacts = load_templates(path)
        notes.update(artifacts)
        specs = _from_templates(templates, poisson_arrivals(rate_rps, duration_s, rng), rng)
    elif path.suffix == ".csv":
        rows = load_plain_csv(path)
        arrivals = poisson_arrivals(rate_rps, duration_s, rng)
        specs = [RequestSpec(f"r{i}", float(t), *_plain(rows[i % len(rows)])) for i, t in enumerate(arrivals)]
    else:
        raise WorkloadError(f"workload {workload!r}: expected 'mixed', one of {KINDS}, or a .json/.jsonl/.csv file")
    if max_requests is not None:
        specs = specs[:max_requests]
    if max_context_tokens is not None:
        capped = [cap_context(s, max_context_tokens) for s in specs]
        notes["capped_requests"] = sum(a is not b for a, b in zip(specs, capped))
        specs = capped
    return specs, notes


def _plain(row: tuple[int, int]) -> tuple[int, tuple[Segment, ...], str]:
    return row[0], (Segment(row[1]),), "plain"


def tool_means_s(workload: str, specs: list[RequestSpec]) -> dict[str, float]:
    """Mean interception time per tool label (augmentation kind), for estimators that use profiled
    durations: the generator's per-type statistics for "mixed" and the six kinds (a tool call's mean; the
    human turns of image/tts are labelled with the request's kind too, but those kinds use the elapsed time),
    otherwise the workload's own per-kind means over its interceptions."""
    if workload == "mixed" or workload in KINDS:
        return {k: KIND_STATS[k].tool_s.mean for k in KINDS}
    sums: dict[str, list[float]] = {}
    for spec in specs:
        for seg in spec.segments[:-1]:
            acc = sums.setdefault(seg.kind or spec.kind, [0.0, 0.0])
            acc[0] += seg.tool_s
            acc[1] += 1
    return {k: total / n for k, (total, n) in sorted(sums.items())}
