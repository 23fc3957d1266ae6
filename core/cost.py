"""Cost model: how long a forward pass and a KV copy take, and how much KV fits where.

Every number comes from a JSON profile in ``profiles/`` (see profiles/README.md for where each came from);
nothing measured is written here.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from core.engine_keys import engine_problem

PROFILE_DIR = Path(__file__).resolve().parent.parent / "profiles"


class ProfileError(ValueError):
    """A profile file that cannot be used; the message names the file and key."""


class BatchShape(NamedTuple):
    """Composition of one forward pass (a NamedTuple: one or two are built per simulated step).

    ``prefill_attn_pairs`` is the attention work of the prefill chunks: sum over chunks of
    q * (ctx_before + (q + 1) / 2), i.e. query-key pairs under the causal mask.
    """

    num_decode: int = 0
    decode_ctx_tokens: int = 0
    prefill_tokens: int = 0
    prefill_attn_pairs: float = 0.0
    num_prefill_seqs: int = 0  # requests with a prefill/recompute chunk in the pass

    @classmethod
    def of_step(cls, step: Mapping[str, Any]) -> BatchShape:
        """The shape of an engine-log step record (``real.steplog``): its prefill chunks are its scheduled
        requests (``sched``) that are not decodes."""
        return cls(step["num_decode"], step["decode_ctx_tokens"], step["prefill_tokens"],
                   step["prefill_attn_pairs"], len(step["sched"]) - step["num_decode"])

    @property
    def num_seqs(self) -> int:
        """Requests scheduled in the pass."""
        return self.num_decode + self.num_prefill_seqs

    @property
    def query_tokens(self) -> int:
        """All query tokens of the pass: one per decoder plus every prefill/recompute token."""
        return self.num_decode + self.prefill_tokens


class CostModel(Protocol):
    """What the simulator and the policies ask of a cost model."""

    block_size_tokens: int
    saturation_tokens: int
    kv_bytes_per_token: float  # per GPU
    cpu_kv_blocks: int  # the host swap space, blocks per GPU

    def step_s(self, batch: BatchShape) -> float:
        """Duration of one forward pass of this batch composition, seconds."""
        ...

    def fwd_s(self, query_tokens: float) -> float:
        """T_fwd(x) of the paper: a pass of ``query_tokens`` query tokens without context terms, seconds."""
        ...

    def swap_s(self, num_tokens: float) -> float:
        """Time to move ``num_tokens`` tokens of KV one way over the GPU-CPU link, not overlapped, seconds."""
        ...

    def swap_tokens_in(self, seconds: float) -> int:
        """How many tokens of KV the link moves in ``seconds`` (the inverse of swap_s)."""
        ...


def _optional(table: dict[str, Any], key: str, where: str, prefix: str = "step.") -> float:
    """An optional non-negative term of ``table`` (0 when absent); a bad value names ``prefix + key``."""
    value = table.get(key, 0.0)
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ProfileError(f"{where}: {prefix}{key} = {value!r}: expected a number >= 0")
    return float(value)


def _busy_gap(profile: dict[str, Any], step: dict[str, Any], where: str) -> float:
    """step.busy_gap_s: a part of step.const_s, so no larger than it. Absent: the gap that a profile measured
    before the key existed recorded as added to const_s (``provenance.fit.busy_gap_s_added_to_const``), else
    0."""
    prov = profile.get("provenance")
    fit = prov.get("fit") if isinstance(prov, dict) else None
    if "busy_gap_s" not in step and isinstance(fit, dict) and "busy_gap_s_added_to_const" in fit:
        name, gap = "provenance.fit.busy_gap_s_added_to_const", _optional(fit, "busy_gap_s_added_to_const",
                                                                          where, "provenance.fit.")
    else:
        name, gap = "step.busy_gap_s", _optional(step, "busy_gap_s", where)
    const = step.get("const_s")
    if gap and isinstance(const, int | float) and gap > const:
        raise ProfileError(f"{where}: {name} = {gap!r} exceeds step.const_s = {const!r}, which counts it")
    return gap


def _get(d: dict[str, Any], key: str, where: str) -> Any:
    node: Any = d
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ProfileError(f"{where}: missing key {key!r}")
        node = node[part]
    return node


STEP_TERMS = ("const_s", "per_query_token_s", "per_decode_ctx_token_s", "per_prefill_attn_pair_s",
              "per_prefill_seq_s", "excess_query_token_s", "host_per_step_s", "host_per_seq_s")
"""FittedCostModel's step-time coefficients (seconds per unit): a machine k times slower has each k times."""


@dataclass(frozen=True, slots=True)
class FittedCostModel:
    """A linear-in-composition step-time model with a linear link, read from a profile."""

    name: str
    const_s: float
    per_query_token_s: float
    per_decode_ctx_token_s: float
    per_prefill_attn_pair_s: float
    link_bytes_per_s: float
    kv_bytes_per_token: float  # per GPU (a TP shard holds 1/tp of every token's KV)
    gpu_kv_blocks: int
    cpu_kv_blocks: int
    block_size_tokens: int
    token_budget_tokens: int
    max_num_seqs: int
    saturation_tokens: int
    max_context_tokens: int
    fit_max_query_tokens: int
    fit_max_decode_ctx_tokens: int
    swap_overlap: bool = True  # the link copies beside the forward pass (GPU); False: copies add to the step
    swap_holds_blocks: bool = False  # engine.swap_holds_blocks: a swap holds all its GPU blocks while it runs
    prefix_caching: bool = False  # engine.prefix_caching: vLLM v1's prefix cache for every policy
    client_in_hop_s: float = 0.0  # engine.client_in_hop_s: client -> engine (an arrival, a tool's return)
    client_out_hop_s: float = 0.0  # engine.client_out_hop_s: engine -> client (tokens, a finish, a pause)
    # optional terms (0 when a profile has none; measured profiles fold them into the fitted ones):
    host_per_step_s: float = 0.0  # the engine's CPU time per step outside the forward pass
    host_per_seq_s: float = 0.0  # ... and per scheduled request
    excess_query_token_s: float = 0.0  # extra time per query token beyond saturation_tokens
    per_prefill_seq_s: float = 0.0  # per request with a prefill/recompute chunk (`infercept profile` fits it)
    # the part of const_s that is the engine loop's gap from a step's outputs to the next step's start
    # (`infercept profile` measures it): outputs come this long before a step's end, and the next step's
    # policy decision sees that much time gone by; an engine log's step excludes it
    busy_gap_s: float = 0.0

    def step_s(self, batch: BatchShape) -> float:
        """Duration of one engine step (seconds) for ``batch``: the forward pass plus the host's work."""
        return self.gpu_s(batch) + self.host_s(batch)

    def gpu_s(self, batch: BatchShape) -> float:
        """The forward pass alone (what a pipelined KV copy can hide behind), seconds."""
        q = batch.num_decode + batch.prefill_tokens
        return (self.const_s + self.per_query_token_s * q
                + self.excess_query_token_s * max(q - self.saturation_tokens, 0)
                + self.per_decode_ctx_token_s * batch.decode_ctx_tokens
                + self.per_prefill_attn_pair_s * batch.prefill_attn_pairs
                + self.per_prefill_seq_s * batch.num_prefill_seqs)

    def host_s(self, batch: BatchShape) -> float:
        """The engine's CPU work of a step (scheduling, input preparation, sampling, output processing,
        worker RPCs), serialised with the forward pass, seconds."""
        return self.host_per_step_s + self.host_per_seq_s * batch.num_seqs

    def fwd_s(self, query_tokens: float) -> float:
        """T_fwd(x) = const + per_query_token * x, seconds."""
        return self.const_s + self.per_query_token_s * query_tokens

    def swap_s(self, num_tokens: float) -> float:
        """One-way KV copy of ``num_tokens`` tokens, seconds."""
        return num_tokens * self.kv_bytes_per_token / self.link_bytes_per_s

    def swap_tokens_in(self, seconds: float) -> int:
        """Tokens of KV the link moves in ``seconds``."""
        return int(seconds * self.link_bytes_per_s / self.kv_bytes_per_token)

    def out_of_range(self, batch: BatchShape) -> str | None:
        """A message if ``batch`` lies outside the range the profile was fitted on, else None."""
        if batch.query_tokens > self.fit_max_query_tokens:
            return f"{batch.query_tokens} query tokens > fitted {self.fit_max_query_tokens}"
        if batch.decode_ctx_tokens > self.fit_max_decode_ctx_tokens:
            return f"{batch.decode_ctx_tokens} decode context tokens > fitted {self.fit_max_decode_ctx_tokens}"
        return None

    @classmethod
    def from_profile(cls, path: str | Path, overrides: dict[str, Any] | None = None) -> FittedCostModel:
        """Load a profile JSON; ``overrides`` replace engine settings (e.g. ``token_budget_tokens``).

        ``engine.gpu_kv_blocks`` / ``engine.cpu_kv_blocks``, when present (measured profiles, or overrides),
        give the KV capacities directly instead of deriving them from memory sizes."""
        path = Path(path)
        try:
            p = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ProfileError(f"{path}: cannot read profile: {exc}") from exc
        w = str(path)
        m = _get(p, "model", w)
        tp = int(_get(p, "tp", w))
        kv_bytes = (2 * _get(m, "num_layers", w) * _get(m, "num_kv_heads", w) * _get(m, "head_dim", w)
                    * _get(m, "dtype_bytes", w) / tp)
        eng = _engine_settings(_get(p, "engine", w), overrides or {}, w)

        def e(key: str) -> Any:  # an engine setting, ProfileError naming engine.<key> if missing
            return _get({"engine": eng}, f"engine.{key}", w)

        bs = int(e("block_size_tokens"))
        if "gpu_kv_blocks" in eng:
            gpu_blocks = int(eng["gpu_kv_blocks"])
        else:
            usable = (_get(p, "gpu.memory_bytes", w) * e("gpu_memory_utilization")
                      - _get(m, "weight_bytes", w) / tp - e("activation_reserve_bytes"))
            gpu_blocks = math.floor(usable / (kv_bytes * bs))
            if gpu_blocks < 1:
                raise ProfileError(f"{w}: the model does not fit: {usable / 2**30:.2f} GiB left for KV "
                                   "per GPU")
        st = _get(p, "step", w)
        return cls(
            name=str(p.get("name", path.stem)),
            const_s=float(_get(st, "const_s", w)),
            per_query_token_s=float(_get(st, "per_query_token_s", w)),
            per_decode_ctx_token_s=float(_get(st, "per_decode_ctx_token_s", w)),
            per_prefill_attn_pair_s=float(_get(st, "per_prefill_attn_pair_s", w)),
            host_per_step_s=_optional(st, "host_per_step_s", w),
            host_per_seq_s=_optional(st, "host_per_seq_s", w),
            excess_query_token_s=_optional(st, "excess_query_token_s", w),
            per_prefill_seq_s=_optional(st, "per_prefill_seq_s", w),
            busy_gap_s=_busy_gap(p, st, w),
            link_bytes_per_s=float(_get(p, "link.bytes_per_s", w)),
            kv_bytes_per_token=kv_bytes,
            gpu_kv_blocks=gpu_blocks,
            cpu_kv_blocks=(int(eng["cpu_kv_blocks"]) if "cpu_kv_blocks" in eng
                           else math.floor(e("cpu_swap_bytes") / (kv_bytes * bs))),
            block_size_tokens=bs,
            token_budget_tokens=int(e("token_budget_tokens")),
            max_num_seqs=int(e("max_num_seqs")),
            saturation_tokens=int(e("saturation_tokens")),
            max_context_tokens=int(_get(m, "max_context_tokens", w)),
            fit_max_query_tokens=int(_get(p, "fit_range.max_query_tokens", w)),
            fit_max_decode_ctx_tokens=int(_get(p, "fit_range.max_decode_ctx_tokens", w)),
            swap_overlap=bool(eng.get("swap_overlap", True)),
            swap_holds_blocks=bool(eng.get("swap_holds_blocks", False)),
            prefix_caching=bool(eng.get("prefix_caching", False)),
            client_in_hop_s=float(eng.get("client_in_hop_s", 0.0)),
            client_out_hop_s=float(eng.get("client_out_hop_s", 0.0)),
        )


def _engine_settings(table: Any, overrides: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The profile's ``engine`` table updated by ``overrides``; ProfileError naming the file and the first
    unknown key or bad value of either."""
    if not isinstance(table, dict):
        raise ProfileError(f"{where}: engine: expected a table of engine settings")
    for values, source in ((table, where), (overrides, f"{where} (overrides)")):
        problem = engine_problem(values)
        if problem:
            raise ProfileError(f"{source}: {problem}")
    return {**table, **overrides}


def profile_path(model: str, gpu: str, tp: int) -> Path:
    """The shipped profile ``profiles/<gpu>-<model>-tp<N>.json``; a clear error lists what exists."""
    path = PROFILE_DIR / f"{gpu}-{model}-tp{tp}.json"
    if not path.exists():
        have = sorted(p.stem for p in PROFILE_DIR.glob("*.json"))
        raise ProfileError(f"no profile for model={model} gpu={gpu} tp={tp} ({path.name}); shipped: {have}")
    return path


def warn_out_of_range(model: FittedCostModel, batch: BatchShape) -> None:
    """Emit a RuntimeWarning if ``batch`` leaves the profile's fitted range."""
    msg = model.out_of_range(batch)
    if msg:
        warnings.warn(f"profile {model.name}: step outside the fitted range ({msg})", RuntimeWarning,
                      stacklevel=2)
