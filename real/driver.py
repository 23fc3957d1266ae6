"""Replay a workload trace on vLLM in real time (AsyncLLM streaming input) and collect a run's Metrics.

Each request is one streaming-input session: its prompt (seeded synthetic token ids) with ``max_tokens`` =
the first segment's tokens; when a chunk ends the request is paused in the engine, the client sleeps the
tool time, then sends ``[last token] + returned tokens`` (vLLM drops a chunk's last sampled token from the
context) with the next segment's ``max_tokens``; the input stream closes after the last segment.
"""

from __future__ import annotations

import asyncio
import gc
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from core.trace_io import WorkloadError, validate_spec
from core.types import RequestSpec
from core.workload import tool_means_s
from real.engine import EngineSettings, start_engine, stop_engine
from real.errors import RealRunError
from real.views import HINT_KEY


@dataclass
class ClientLog:
    """What the client saw, in ``time.monotonic()`` seconds: (t, event, rid, value) and output tokens."""

    events: list[tuple[float, str, str, int]] = field(default_factory=list)
    tokens: dict[str, list[int]] = field(default_factory=dict)


def check_trace(specs: list[RequestSpec], max_context_tokens: int) -> None:
    """Reject, before any engine starts, a request the model cannot serve (naming it)."""
    for s in specs:
        validate_spec(s, f"request {s.rid}")  # positive counts, a final segment without a tool call
        if s.total_tokens > max_context_tokens:
            raise WorkloadError(f"request {s.rid}: {s.total_tokens} tokens exceed the model's context of "
                                f"{max_context_tokens}")


def token_ids(seed: int, ticket: int, part: int, n: int, vocab: int) -> list[int]:
    """Synthetic token ids: the same for the same (seed, request, part) in every run."""
    return np.random.default_rng([seed, ticket, part]).integers(0, vocab, n).tolist()


def _params(spec: RequestSpec, ticket: int, i: int) -> Any:
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    seg = spec.segments[i]
    hint = {"rid": spec.rid, "ticket": ticket, "kind": seg.kind or spec.kind, "req_kind": spec.kind,
            "tool_s": seg.tool_s, "seg": i, "gen_tokens": seg.gen_tokens, "tool_tokens": seg.tool_tokens,
            "last": i == len(spec.segments) - 1}
    return SamplingParams(max_tokens=seg.gen_tokens, ignore_eos=True, detokenize=False, temperature=0.0,
                          output_kind=RequestOutputKind.DELTA, extra_args={HINT_KEY: hint})


async def _session(llm: Any, spec: RequestSpec, ticket: int, t0: float, seed: int, vocab: int,
                   log: ClientLog) -> None:
    from vllm.engine.protocol import StreamingInput
    from vllm.inputs import TokensPrompt

    await asyncio.sleep(max(spec.arrival_s - (time.monotonic() - t0), 0.0))
    ev = log.events
    ev.append((time.monotonic(), "arrive", spec.rid, spec.prompt_tokens))
    chunk_done = asyncio.Event()
    out_tokens: list[int] = log.tokens.setdefault(spec.rid, [])

    async def inputs() -> Any:
        yield StreamingInput(TokensPrompt(prompt_token_ids=token_ids(seed, ticket, 0, spec.prompt_tokens, vocab)),
                             _params(spec, ticket, 0))
        for i, seg in enumerate(spec.segments[:-1]):
            await chunk_done.wait()
            chunk_done.clear()
            await asyncio.sleep(seg.tool_s)
            ev.append((time.monotonic(), "resume", spec.rid, seg.tool_tokens))
            returned = token_ids(seed, ticket, i + 1, seg.tool_tokens, vocab)
            yield StreamingInput(TokensPrompt(prompt_token_ids=[out_tokens[-1], *returned]),
                                 _params(spec, ticket, i + 1))

    seg_i, in_chunk = 0, 0
    async for out in llm.generate(inputs(), _params(spec, ticket, 0), request_id=spec.rid):
        new = out.outputs[0].token_ids
        if new:  # every delta, so that a window's end can count the tokens of a segment still running
            ev.append((time.monotonic(), "token", spec.rid, len(new)))
        in_chunk += len(new)
        out_tokens.extend(new)
        if out.outputs[0].finish_reason is not None:
            last = seg_i == len(spec.segments) - 1
            ev.append((time.monotonic(), "finish" if last else "chunk_end", spec.rid, in_chunk))
            seg_i, in_chunk = seg_i + 1, 0
            if last:
                return
            chunk_done.set()


async def run_sessions(llm: Any, specs: list[RequestSpec], t0: float, seed: int, vocab: int, log: ClientLog,
                       timeout_s: float | None) -> None:
    """Serve ``specs`` (arrivals relative to ``t0``) on a started engine; cancel what is left at the timeout."""
    tasks = [asyncio.create_task(_session(llm, s, k, t0, seed, vocab, log)) for k, s in enumerate(specs)]
    done, pending = await asyncio.wait(tasks, timeout=timeout_s)
    for t in pending:
        t.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    errors = [t.exception() for t in done if t.exception() is not None]  # retrieve every one (no asyncio noise)
    if errors:
        raise RealRunError(f"the engine failed during the run: {errors[0]!r}") from errors[0]
    if llm.errored:
        raise RealRunError("the engine died during the run")


async def _replay(settings: EngineSettings, specs: list[RequestSpec], timeout_s: float | None, vocab: int,
                  log: ClientLog) -> float:
    llm = start_engine(settings)
    try:
        t0 = time.monotonic()
        await run_sessions(llm, specs, t0, settings.seed, vocab, log, timeout_s)
        return t0
    finally:
        stop_engine(llm)


def replay(settings: EngineSettings, specs: list[RequestSpec], window_s: float, vocab: int) -> tuple[float, ClientLog]:
    """Run ``specs`` for ``window_s`` seconds of wall time (inf: until every request ends).

    Returns the start instant (monotonic) and the client's log; the engine log is at ``settings.log_path``.
    Raises RealRunError if the engine dies. Unless ``settings`` names them, the policy is given the trace's
    own mean interception time per kind (as the simulator is, for a replayed trace).
    """
    check_trace(specs, settings.max_context_tokens)
    if not settings.tool_means_s:
        settings = replace(settings, tool_means_s=tool_means_s("trace", specs))
    Path(settings.log_path).parent.mkdir(parents=True, exist_ok=True)
    Path(settings.log_path).unlink(missing_ok=True)
    log = ClientLog()
    timeout = None if math.isinf(window_s) else window_s
    try:
        t0 = asyncio.run(_replay(settings, specs, timeout, vocab, log))  # type: ignore[arg-type]
    except RealRunError:
        raise
    except Exception as exc:  # the engine process died or failed to start
        raise RealRunError(f"real run failed: {type(exc).__name__}: {exc}") from exc
    finally:
        gc.collect()  # finalize the AsyncLLM and its engine client now
    return t0, log
