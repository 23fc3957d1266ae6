"""Reading and writing workload files: InferCept JSON templates, plain CSV traces, and JSONL traces.

Errors name the file, line or key and what was wrong. Writers go through a temporary file and a rename, so a
failed write never leaves a half-written trace.
"""

from __future__ import annotations

import csv
import json
import math
import os
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.types import KINDS, RequestSpec, Segment


class WorkloadError(ValueError):
    """A workload file or argument that cannot be used; the message says where and why."""


@dataclass(frozen=True, slots=True)
class Template:
    """One request of an InferCept-format file, before it gets an arrival time."""

    key: str
    kind: str
    prompt_tokens: int
    segments: tuple[Segment, ...]


def text_tokens(text: str) -> int:
    """Token count of a text segment: ceil(characters / 4), at least 1 (INFERCEPT.md §3.3)."""
    return max(1, math.ceil(len(text) / 4))


def _classify(segments: list[dict[str, Any]]) -> str:
    """Augmentation type of one template from the shape of its data (the file has no type field)."""
    if "prompt" in segments[0]:
        returned = [str(s.get("api_token", "")).strip().lower() for s in segments]
        if any(r.startswith("generate an image about this") for r in returned):
            return "image"
        if any(r.startswith("convert this to text to speech") for r in returned):
            return "tts"
        return "chatbot"
    if segments[0].get("prompt_tokens", 0) >= 1900 and all(s.get("completion_tokens") == 4 for s in segments):
        return "ve"
    max_tool_s = max((float(s.get("api_time", 0.0)) for s in segments), default=0.0)
    return "qa" if max_tool_s > 0.01 else "math"


def load_templates(path: str | Path) -> tuple[list[Template], Counter[str]]:
    """Parse an InferCept-format JSON file; return its templates and a count of the artifacts repaired.

    Artifacts: a zero ``api_time`` (kept: a zero-length interception), a negative ``api_token_length``
    (clamped to 0). A missing or non-numeric field raises WorkloadError naming the request key and segment.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise WorkloadError(f"{path}: cannot read InferCept JSON: {exc}") from exc
    if not isinstance(data, dict) or not data:
        raise WorkloadError(f"{path}: expected a non-empty JSON object {{request_key: [segment, ...]}}")
    artifacts: Counter[str] = Counter()
    templates = []
    for key, segs in data.items():
        where = f"{path}: request {key!r}"
        if not isinstance(segs, list) or not segs or not all(isinstance(s, dict) for s in segs):
            raise WorkloadError(f"{where}: expected a non-empty list of segment objects")
        kind = _classify(segs)
        out: list[Segment] = []
        prompt_tokens = 0
        for j, seg in enumerate(segs):
            last = j == len(segs) - 1
            try:
                if "prompt" in seg:
                    if j == 0:
                        prompt_tokens = text_tokens(str(seg["prompt"]))
                    gen = text_tokens(str(seg["completion"]))
                    ret = 0 if last else text_tokens(str(seg.get("api_token", "")))
                else:
                    if j == 0:
                        prompt_tokens = int(seg["prompt_tokens"])
                    gen = int(seg["completion_tokens"])
                    ret = 0 if last else int(seg["api_token_length"])
                tool_s = 0.0 if last else float(seg["api_time"])
            except (KeyError, TypeError, ValueError) as exc:
                raise WorkloadError(f"{where}, segment {j}: missing or bad field {exc}") from exc
            if ret < 0:
                artifacts["negative_api_token_length"] += 1
                ret = 0
            if not last and tool_s == 0.0:
                artifacts["zero_api_time"] += 1
            if tool_s < 0 or not math.isfinite(tool_s):
                raise WorkloadError(f"{where}, segment {j}: api_time {tool_s} is negative or not finite")
            if gen < 1:
                artifacts["empty_completion"] += 1
                gen = 1
            if prompt_tokens < 1:
                raise WorkloadError(f"{where}, segment {j}: prompt must have at least one token")
            out.append(Segment(gen, tool_s, ret, "" if last else kind))
        templates.append(Template(str(key), kind, prompt_tokens, tuple(out)))
    return templates, artifacts


def load_plain_csv(path: str | Path) -> list[tuple[int, int]]:
    """Read (prompt tokens, output tokens) per request from a CSV with columns
    ``num_prefill_tokens`` and ``num_decode_tokens`` (the splitwise/Vidur format)."""
    path = Path(path)
    rows: list[tuple[int, int]] = []
    try:
        with path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            cols = set(reader.fieldnames or ())
            missing = {"num_prefill_tokens", "num_decode_tokens"} - cols
            if missing:
                raise WorkloadError(f"{path}: missing column(s) {sorted(missing)}; found {sorted(cols)}")
            for line, row in enumerate(reader, start=2):
                try:
                    p, d = int(float(row["num_prefill_tokens"])), int(float(row["num_decode_tokens"]))
                except (TypeError, ValueError) as exc:
                    raise WorkloadError(f"{path}:{line}: bad token count: {exc}") from exc
                if p < 1 or d < 1:
                    raise WorkloadError(f"{path}:{line}: token counts must be positive, got ({p}, {d})")
                rows.append((p, d))
    except OSError as exc:
        raise WorkloadError(f"{path}: cannot read CSV: {exc}") from exc
    if not rows:
        raise WorkloadError(f"{path}: no requests")
    return rows


def _spec_to_json(r: RequestSpec) -> dict[str, Any]:
    segs = [{"gen_tokens": s.gen_tokens, "tool_s": s.tool_s, "tool_tokens": s.tool_tokens, "kind": s.kind}
            for s in r.segments]
    return {"rid": r.rid, "arrival_s": r.arrival_s, "kind": r.kind, "prompt_tokens": r.prompt_tokens,
            "segments": segs}


def _spec_from_json(obj: Any, where: str) -> RequestSpec:
    try:
        segs = tuple(
            Segment(int(s["gen_tokens"]), float(s.get("tool_s", 0.0)), int(s.get("tool_tokens", 0)),
                    str(s.get("kind", "")))
            for s in obj["segments"])
        spec = RequestSpec(str(obj["rid"]), float(obj["arrival_s"]), int(obj["prompt_tokens"]), segs,
                           str(obj.get("kind", "plain")))
    except (KeyError, TypeError, ValueError) as exc:
        raise WorkloadError(f"{where}: missing or bad field {exc}") from exc
    validate_spec(spec, where)
    return spec


def validate_spec(spec: RequestSpec, where: str) -> None:
    """Raise WorkloadError (naming ``where``) if a request cannot be served: a non-positive prompt or
    segment, negative returned tokens or times, no segments, or a tool call on the last segment."""
    if spec.prompt_tokens < 1:
        raise WorkloadError(f"{where}: prompt_tokens must be >= 1, got {spec.prompt_tokens}")
    if not spec.segments:
        raise WorkloadError(f"{where}: a request needs at least one segment")
    if not (spec.arrival_s >= 0 and math.isfinite(spec.arrival_s)):
        raise WorkloadError(f"{where}: arrival_s must be a finite time >= 0, got {spec.arrival_s}")
    for j, s in enumerate(spec.segments):
        if s.gen_tokens < 1 or s.tool_tokens < 0 or not (s.tool_s >= 0 and math.isfinite(s.tool_s)):
            raise WorkloadError(f"{where}, segment {j}: gen_tokens must be >= 1 and tool_tokens, tool_s >= 0;"
                                f" got {s}")
    if spec.segments[-1].tool_s or spec.segments[-1].tool_tokens:
        raise WorkloadError(f"{where}: the last segment cannot have an interception")
    if spec.kind not in KINDS and spec.kind != "plain":
        raise WorkloadError(f"{where}: unknown kind {spec.kind!r}; expected one of {KINDS + ('plain',)}")


def read_jsonl(path: str | Path) -> list[RequestSpec]:
    """Read a JSONL trace (one request per line) written by write_jsonl; sorted by arrival."""
    path = Path(path)
    specs = []
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise WorkloadError(f"{path}: cannot read trace: {exc}") from exc
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise WorkloadError(f"{path}:{n}: not JSON: {exc}") from exc
        specs.append(_spec_from_json(obj, f"{path}:{n}"))
    if not specs:
        raise WorkloadError(f"{path}: empty trace")
    rids = Counter(s.rid for s in specs)
    dup = [r for r, c in rids.items() if c > 1]
    if dup:
        raise WorkloadError(f"{path}: duplicate request id(s) {dup[:3]}")
    return sorted(specs, key=lambda s: s.arrival_s)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_jsonl(path: str | Path, specs: list[RequestSpec]) -> None:
    """Write a JSONL trace atomically: one request per line, in arrival order."""
    atomic_write_text(path, "".join(json.dumps(_spec_to_json(s)) + "\n" for s in specs))
