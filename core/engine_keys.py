"""The engine settings a profile's ``engine`` table holds (and ``engine.*`` overrides set): their names, kinds
and meanings, and the check of a table of them."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


ENGINE_KEYS: dict[str, tuple[str, str]] = {
    "gpu_memory_utilization": ("fraction", "share of GPU memory the engine may use (0 < x <= 1)"),
    "activation_reserve_bytes": ("count", "GPU memory per GPU kept for activations, not KV, bytes"),
    "block_size_tokens": ("positive", "tokens per KV block"),
    "token_budget_tokens": ("positive", "the baselines' query tokens per step (vLLM max_num_batched_tokens)"),
    "max_num_seqs": ("positive", "most requests in one batch"),
    "saturation_tokens": ("positive", "S: query tokens that saturate the GPU; InferCept's step budget"),
    "cpu_swap_bytes": ("count", "CPU memory for swapped KV, bytes (read when cpu_kv_blocks is absent)"),
    "gpu_kv_blocks": ("positive", "GPU KV blocks, given directly instead of derived from memory sizes"),
    "cpu_kv_blocks": ("count", "CPU KV blocks, given directly instead of derived from cpu_swap_bytes"),
    "swap_overlap": ("bool", "KV copies run beside the forward pass (default true); false: added to it"),
    "swap_holds_blocks": ("bool", ("as vLLM 0.32's KV connector: a swap-out frees its GPU blocks only after its "
                                   "last block is copied (a resume before then cancels it, keeping the KV) and "
                                   "a swap-in allocates all of them with its first; default false: block by "
                                   "block")),
    "prefix_caching": ("bool", ("vLLM v1's prefix cache for every policy: freed full blocks stay reusable until "
                                "evicted (default false; the vllm_* policies turn it on whatever this says)")),
    "client_in_hop_s": ("seconds", ("an arrival or a tool's return reaches the engine this long after the client "
                                    "sends it (another process: `infercept profile` measures it; default 0)")),
    "client_out_hop_s": ("seconds", ("the engine's output reaches the client this long after the step: tokens, "
                                     "the finish, and the pause that starts the tool (default 0)")),
}
"""The keys of a profile's ``engine`` table, which are also the accepted ``engine.*`` overrides:
key -> (kind of value, meaning). Kinds: positive (integer > 0), count (integer >= 0), fraction, bool,
seconds (a finite number >= 0)."""

_EXPECTED = {"positive": "an integer > 0", "count": "an integer >= 0", "fraction": "a number in (0, 1]",
             "bool": "true or false", "seconds": "a finite number of seconds >= 0"}


def _engine_value_ok(kind: str, value: Any) -> bool:
    if kind == "bool":
        return isinstance(value, bool)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if kind == "fraction":
        return 0 < value <= 1
    if kind == "seconds":
        return 0 <= value < math.inf
    return isinstance(value, int) and value >= (1 if kind == "positive" else 0)


def engine_problem(values: Mapping[str, Any]) -> str | None:
    """What is wrong with ``values`` as ``engine`` settings (the first unknown key or bad value, named as
    ``engine.<key>``), or None if every key is in ENGINE_KEYS with a value of its kind."""
    for key, value in values.items():
        if key not in ENGINE_KEYS:
            return f"engine.{key}: unknown engine key; accepted: {', '.join(ENGINE_KEYS)}"
        kind = ENGINE_KEYS[key][0]
        if not _engine_value_ok(kind, value):
            return f"engine.{key} = {value!r}: expected {_EXPECTED[kind]}"
    return None
