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


_REQUIRED = object()


def _field(obj: dict[str, Any], key: str, where: str, default: Any) -> Any:
    if key in obj:
        return obj[key]
    if default is _REQUIRED:
        raise WorkloadError(f"{where}: missing field {key!r}")
    return default


def _int_field(obj: dict[str, Any], key: str, where: str, default: Any = _REQUIRED) -> int:
    """``obj[key]`` as an int: a whole number (not a bool, not text); WorkloadError naming ``where`` and
    the field if it is missing (and no default is given) or not a whole number."""
    value = _field(obj, key, where, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not float(value).is_integer():
        raise WorkloadError(f"{where}: {key} = {value!r}: expected a whole number")
    return int(value)


def _float_field(obj: dict[str, Any], key: str, where: str, default: Any = _REQUIRED) -> float:
    """``obj[key]`` as a finite float (not a bool, not text); WorkloadError naming ``where`` and the field."""
    value = _field(obj, key, where, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise WorkloadError(f"{where}: {key} = {value!r}: expected a finite number")
    return float(value)


def _str_field(obj: dict[str, Any], key: str, where: str, default: Any = _REQUIRED) -> str:
    """``obj[key]`` as text; WorkloadError naming ``where`` and the field if missing or not a string."""
    value = _field(obj, key, where, default)
    if not isinstance(value, str):
        raise WorkloadError(f"{where}: {key} = {value!r}: expected a string")
    return value


def _classify(segments: list[dict[str, Any]], where: str) -> str:
    """Augmentation type of one template from the shape of its data (the file has no type field)."""
    if "prompt" in segments[0]:
        returned = [str(s.get("api_token", "")).strip().lower() for s in segments]
        if any(r.startswith("generate an image about this") for r in returned):
            return "image"
        if any(r.startswith("convert this to text to speech") for r in returned):
            return "tts"
        return "chatbot"
    if (_int_field(segments[0], "prompt_tokens", f"{where}, segment 0", 0) >= 1900
            and all(s.get("completion_tokens") == 4 for s in segments)):
        return "ve"
    max_tool_s = max(_float_field(s, "api_time", f"{where}, segment {j}", 0.0)
                     for j, s in enumerate(segments))
    return "qa" if max_tool_s > 0.01 else "math"


def _template_segment(seg: dict[str, Any], first: bool, last: bool,
                      where: str) -> tuple[int, int, float, int]:
    """(prompt tokens (0 unless ``first``), generated tokens, tool seconds, returned tokens) of one segment of
    an InferCept-format request, in its text form (prompt/completion/api_token) or its token-count form."""
    if "prompt" in seg:
        prompt = text_tokens(_str_field(seg, "prompt", where)) if first else 0
        gen = text_tokens(_str_field(seg, "completion", where))
        ret = 0 if last else text_tokens(_str_field(seg, "api_token", where))
    else:
        prompt = _int_field(seg, "prompt_tokens", where) if first else 0
        gen = _int_field(seg, "completion_tokens", where)
        ret = 0 if last else _int_field(seg, "api_token_length", where)
    tool_s = 0.0 if last else _float_field(seg, "api_time", where)
    return prompt, gen, tool_s, ret


def load_templates(path: str | Path) -> tuple[list[Template], Counter[str]]:
    """Parse an InferCept-format JSON file; return its templates and a count of the artifacts repaired.

    Artifacts: a zero ``api_time`` (kept: a zero-length interception), a negative ``api_token_length``
    (clamped to 0). A missing or non-numeric field raises WorkloadError naming the request key, the segment
    and the field.
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
        kind = _classify(segs, where)
        out: list[Segment] = []
        prompt_tokens = 0
        for j, seg in enumerate(segs):
            last = j == len(segs) - 1
            prompt, gen, tool_s, ret = _template_segment(seg, j == 0, last, f"{where}, segment {j}")
            prompt_tokens = prompt if j == 0 else prompt_tokens
            if ret < 0:
                artifacts["negative_api_token_length"] += 1
                ret = 0
            if not last and tool_s == 0.0:
                artifacts["zero_api_time"] += 1
            if tool_s < 0:
                raise WorkloadError(f"{where}, segment {j}: api_time = {tool_s}: must be >= 0")
            if gen < 1:
                artifacts["empty_completion"] += 1
                gen = 1
            if prompt_tokens < 1:
                raise WorkloadError(f"{where}, segment {j}: prompt_tokens = {prompt_tokens}: must be >= 1")
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
                where = f"{path}:{line}"
                rows.append((_csv_count(row, "num_prefill_tokens", where),
                             _csv_count(row, "num_decode_tokens", where)))
    except OSError as exc:
        raise WorkloadError(f"{path}: cannot read CSV: {exc}") from exc
    if not rows:
        raise WorkloadError(f"{path}: no requests")
    return rows


def _csv_count(row: dict[str, Any], column: str, where: str) -> int:
    """A positive whole token count from one CSV cell; WorkloadError naming the line and the column."""
    text = row.get(column)
    try:
        value = float(text) if text is not None else math.nan
    except ValueError:
        value = math.nan
    if not (value >= 1 and math.isfinite(value) and value.is_integer()):
        raise WorkloadError(f"{where}: {column} = {text!r}: expected a whole number >= 1")
    return int(value)


def _spec_to_json(r: RequestSpec) -> dict[str, Any]:
    segs = [{"gen_tokens": s.gen_tokens, "tool_s": s.tool_s, "tool_tokens": s.tool_tokens, "kind": s.kind}
            for s in r.segments]
    return {"rid": r.rid, "arrival_s": r.arrival_s, "kind": r.kind, "prompt_tokens": r.prompt_tokens,
            "segments": segs}


def _spec_from_json(obj: Any, where: str) -> RequestSpec:
    if not isinstance(obj, dict):
        raise WorkloadError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    raw_segs = _field(obj, "segments", where, _REQUIRED)
    if not isinstance(raw_segs, list) or not all(isinstance(s, dict) for s in raw_segs):
        raise WorkloadError(f"{where}: segments: expected a list of segment objects")
    segs = []
    for j, s in enumerate(raw_segs):
        at = f"{where}, segment {j}"
        segs.append(Segment(_int_field(s, "gen_tokens", at), _float_field(s, "tool_s", at, 0.0),
                            _int_field(s, "tool_tokens", at, 0), _str_field(s, "kind", at, "")))
    rid = _field(obj, "rid", where, _REQUIRED)
    if isinstance(rid, bool) or not isinstance(rid, str | int):
        raise WorkloadError(f"{where}: rid = {rid!r}: expected a string or an integer")
    spec = RequestSpec(str(rid), _float_field(obj, "arrival_s", where),
                       _int_field(obj, "prompt_tokens", where), tuple(segs),
                       _str_field(obj, "kind", where, "plain"))
    validate_spec(spec, where)
    return spec


def validate_spec(spec: RequestSpec, where: str) -> None:
    """Raise WorkloadError (naming ``where``) if a request cannot be served: a non-positive prompt or
    segment, negative returned tokens or times, no segments, or a tool call on the last segment."""
    if spec.prompt_tokens < 1:
        raise WorkloadError(f"{where}: prompt_tokens = {spec.prompt_tokens}: must be >= 1")
    if not spec.segments:
        raise WorkloadError(f"{where}: segments: a request needs at least one segment")
    if not (spec.arrival_s >= 0 and math.isfinite(spec.arrival_s)):
        raise WorkloadError(f"{where}: arrival_s = {spec.arrival_s}: must be a finite time >= 0")
    for j, s in enumerate(spec.segments):
        checks = (("gen_tokens", s.gen_tokens, s.gen_tokens >= 1, ">= 1"),
                  ("tool_tokens", s.tool_tokens, s.tool_tokens >= 0, ">= 0"),
                  ("tool_s", s.tool_s, s.tool_s >= 0 and math.isfinite(s.tool_s), "a finite number >= 0"))
        for name, value, ok, need in checks:
            if not ok:
                raise WorkloadError(f"{where}, segment {j}: {name} = {value}: must be {need}")
    last = spec.segments[-1]
    if last.tool_s or last.tool_tokens:
        raise WorkloadError(f"{where}, segment {len(spec.segments) - 1}: tool_s = {last.tool_s}, "
                            f"tool_tokens = {last.tool_tokens}: the last segment cannot have an "
                            "interception (both must be 0)")
    if spec.kind not in KINDS and spec.kind != "plain":
        raise WorkloadError(f"{where}: kind = {spec.kind!r}: expected one of {KINDS + ('plain',)}")


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
