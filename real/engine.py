"""Engine settings for the real executor and the AsyncLLM built from them (vLLM 0.32)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
VLLM_VERSION = "0.32.0"
"""The vLLM release the scheduler subclass is written against (its overridden methods are private)."""


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """What a real run needs besides the trace. ``profile`` feeds the cost model of cost-aware policies."""

    model_dir: str
    policy: str = "infercept"
    policy_options: dict[str, Any] = field(default_factory=dict)
    profile: str = ""
    profile_overrides: dict[str, Any] = field(default_factory=dict)  # engine.* keys of the profile
    kv_blocks: int = 0  # device KV blocks (0: whatever the engine's memory setting gives)
    host_blocks: int = 0  # host swap slots (0: no swap connector)
    link_bytes_per_s: float = 0.0  # throttle of the swap connector's / host tier's copies (0: as fast as they go)
    tool_means_s: dict[str, float] = field(default_factory=dict)  # per interception kind, for InferCept
    token_budget_tokens: int = 512  # max_num_batched_tokens (chunked prefill chunk size)
    block_size_tokens: int = 32
    dtype: str = "float32"  # "auto": the checkpoint's own
    max_num_seqs: int = 256
    max_context_tokens: int = 4096
    async_scheduling: bool = False
    log_path: str = ""
    seed: int = 0


def prepare_environment(kv_cache_gib: float = 1.0) -> None:
    """The engine core is a spawned process: it must import ``real.scheduler`` and see the KV setting."""
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if str(PROJECT_ROOT) not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(PROJECT_ROOT), *[p for p in paths if p]])
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", f"{kv_cache_gib:g}")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # The CPU build reserves one core per worker for the rest of the process tree, and one more when a KV
    # connector is configured; on a 2-core machine that second reservation leaves nothing to reserve, so the
    # worker took both cores with the swap connector and one without (prefills 2x faster, decodes 2 ms slower).
    # Pin the reservation so that every policy runs the same engine.
    os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "1")


def worker_threads() -> int:
    """Threads of the CPU build's worker: the cores this process may use less the reservation
    ``prepare_environment`` pins."""
    return max(1, len(os.sched_getaffinity(0)) - int(os.environ.get("VLLM_CPU_NUM_OF_RESERVED_CPU", "1")))


def policy_traits(s: EngineSettings) -> tuple[Any, Any]:
    """(PolicyTraits of ``s``'s policy, the profile's cost model or None): the policy built as the scheduler
    builds it."""
    from core.cost import FittedCostModel
    from core.policy import make_policy

    cost = FittedCostModel.from_profile(s.profile, s.profile_overrides) if s.profile else None
    policy = make_policy(s.policy, cost, tool_means_s=s.tool_means_s or None,  # type: ignore[arg-type]
                         **s.policy_options)
    return policy.traits, cost


def offload_spec() -> dict[str, str]:
    """The OffloadingConnector's spec: vLLM's native CPU tier where its worker runs (CUDA, XPU), else
    ``real.offload``'s torch-copy worker under vLLM's scheduler side (the CPU build)."""
    from vllm.platforms import current_platform

    if current_platform.is_cuda_alike() or current_platform.is_xpu():
        return {"spec_name": "CPUOffloadingSpec"}
    return {"spec_name": "TorchCopyOffloadingSpec", "spec_module_path": "real.offload"}


def engine_args(s: EngineSettings) -> Any:
    """AsyncEngineArgs for ``s``: our scheduler class, float32, prefix caching only if the policy's traits ask
    for it (``prefix_caching``: vLLM's own discard, whose freed blocks stay reusable until evicted) or the
    profile's ``engine.prefix_caching`` turns it on for every policy, as in the simulator; off, a discard
    recomputes the whole context."""
    from vllm.config import KVTransferConfig
    from vllm.engine.arg_utils import AsyncEngineArgs

    traits, cost = policy_traits(s)
    prefix = traits.prefix_caching or (cost is not None and cost.prefix_caching)
    kv = None
    tier_gib = traits.cpu_tier_gib
    if tier_gib > 0:  # vLLM's OffloadingConnector; on the CPU build with our worker (real.offload)
        kv = KVTransferConfig(kv_connector="OffloadingConnector", kv_role="kv_both", kv_connector_extra_config={
            **offload_spec(), "cpu_bytes_to_use": round(tier_gib * 2**30),
            "offload_prompt_only": traits.offload_prompt_only, "link_bytes_per_s": s.link_bytes_per_s})
    elif s.host_blocks:
        kv = KVTransferConfig(kv_connector="InterceptSwapConnector", kv_connector_module_path="real.swap",
                              kv_role="kv_both", kv_connector_extra_config={
                                  "host_blocks": s.host_blocks, "link_bytes_per_s": s.link_bytes_per_s})
    sched = "InterceptAsyncScheduler" if s.async_scheduling else "InterceptScheduler"
    return AsyncEngineArgs(
        model=s.model_dir, skip_tokenizer_init=True, dtype=s.dtype, max_model_len=s.max_context_tokens,
        enforce_eager=True, enable_prefix_caching=prefix, seed=s.seed,
        distributed_executor_backend="uni",
        max_num_batched_tokens=s.token_budget_tokens, max_num_seqs=s.max_num_seqs,
        num_gpu_blocks_override=s.kv_blocks or None, block_size=s.block_size_tokens, async_scheduling=s.async_scheduling,
        scheduler_cls=f"real.scheduler.{sched}", kv_transfer_config=kv, disable_log_stats=True,
        additional_config={"infercept": {"policy": s.policy, "policy_options": dict(s.policy_options),
                                         "profile": s.profile, "engine": dict(s.profile_overrides),
                                         "tool_means_s": dict(s.tool_means_s), "log": s.log_path}},
    )


def start_engine(s: EngineSettings) -> Any:
    """An AsyncLLM with its engine core in a spawned process (call from inside a running event loop)."""
    from vllm.v1.engine.async_llm import AsyncLLM

    prepare_environment()
    return AsyncLLM.from_engine_args(engine_args(s))


def stop_engine(llm: Any) -> None:
    """Shut ``llm`` down; its ``__del__`` would do it again at interpreter exit, where vLLM's module globals are
    already gone and it prints a traceback, so the second call is made a no-op."""
    llm.shutdown()
    llm.shutdown = lambda *args, **kwargs: None
