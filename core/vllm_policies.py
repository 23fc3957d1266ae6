"""What vLLM 0.32 itself does with an augmented request whose client closes the session at every tool call
and reopens it with the whole context (VLLM.md §1, §2.6): two fixed policies, batched as vLLM v1 batches.

- ``vllm_native``: the KV is freed at the pause, but vLLM v1's prefix cache (on by default) keeps the freed
  full blocks reusable until they are evicted, so a resume recomputes only what was evicted (and the partial
  tail block). The reopened request queues behind everything that arrived before its resume.
- ``vllm_offload``: the same plus vLLM's native OffloadingConnector: a write-through CPU tier of
  ``cpu_tier_gib`` GiB per GPU (default: the profile's host swap space) that receives every full block as it
  is computed (only prompt blocks with ``offload_prompt_only``, vLLM's default) over the host-device link,
  evicts least recently used blocks, and at admission loads back what the GPU cache lost instead of
  recomputing it. Loads are asynchronous: the request computes from the step after its load.

The mechanics (block identity, eviction, link time) are the engine's (sim/kvmanager.py); these classes only
set the traits that turn them on.
"""

from __future__ import annotations

from core.cost import CostModel
from core.policy import Discard
from core.types import PolicyTraits


class VllmNative(Discard):
    """Discard at the pause with vLLM v1's prefix cache on and v1 batching."""

    name = "vllm_native"
    traits = PolicyTraits(resume_to_front=False, prefix_caching=True, batching="v1")


class VllmOffload(Discard):
    """vllm_native plus the OffloadingConnector's CPU tier (write-through, LRU, reload at admission)."""

    name = "vllm_offload"

    def __init__(self, cost: CostModel, cpu_tier_gib: float | None = None, offload_prompt_only: bool = True) -> None:
        if cpu_tier_gib is None:  # the profile's host swap space
            cpu_tier_gib = cost.cpu_kv_blocks * cost.kv_bytes_per_token * cost.block_size_tokens / 2**30
        if isinstance(cpu_tier_gib, bool) or not isinstance(cpu_tier_gib, int | float) or not cpu_tier_gib >= 0:
            raise ValueError(f"policy option cpu_tier_gib={cpu_tier_gib!r}: expected a number of GiB >= 0")
        if not isinstance(offload_prompt_only, bool):
            raise ValueError(f"policy option offload_prompt_only={offload_prompt_only!r}: expected true or false")  # noqa: TRY004
        # the copies run on their own streams beside the forward pass (where the link allows it)
        self.traits = PolicyTraits(resume_to_front=False, prefix_caching=True, batching="v1", pipelined_swap=True,
                                   cpu_tier_gib=float(cpu_tier_gib), offload_prompt_only=offload_prompt_only)
