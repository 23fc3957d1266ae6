"""Plain data at the seams: workload specs, the policy's view of the engine, and the policy's decisions.

Everything here is frozen; the simulator and the real executor build these and never share mutable state
with a policy. The records built around every step (ReqView, EngineState, StepPlan, Observation) are
NamedTuples rather than frozen dataclasses: a run builds ~10^5 of them, and a NamedTuple is built about
five times faster (a ReqView: 0.34 against 1.67 us). Compare them by field, never with ``==`` across types.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple

KINDS: tuple[str, ...] = ("math", "qa", "ve", "chatbot", "image", "tts")
"""The six augmentation types of the paper; "plain" marks a request without interceptions."""


class Status(Enum):
    """Where a request is in its life."""

    WAITING = "waiting"  # needs (re)computation and has no running slot: new, discarded-resumed, preempted
    RUNNING = "running"  # has a slot; decodes or prefills chunks
    PAUSED = "paused"  # inside an interception (tool call)
    SWAPPED = "swapped"  # resumed, but part of its KV is still on the CPU: waits for swap-in
    DONE = "done"


class KvPlace(Enum):
    """Where a paused request's KV lives (GPU+CPU while a chunked swap is half done: see ReqView)."""

    GPU = "gpu"
    CPU = "cpu"
    NONE = "none"


class KvAction(Enum):
    """What to do with a request's KV when it pauses."""

    PRESERVE = "preserve"
    DISCARD = "discard"
    SWAP = "swap"


@dataclass(frozen=True, slots=True)
class Segment:
    """LLM work up to one interception (or the end, on the last segment)."""

    gen_tokens: int  # tokens decoded before the next interception (or the end)
    tool_s: float = 0.0  # duration of the following interception; 0 on the last segment
    tool_tokens: int = 0  # tokens the tool appends to the context
    kind: str = ""  # augmentation of this interception


@dataclass(frozen=True, slots=True)
class RequestSpec:
    """One request of a workload: a prompt, then segments separated by interceptions."""

    rid: str
    arrival_s: float  # seconds from the start of the run
    prompt_tokens: int
    segments: tuple[Segment, ...]
    kind: str = "plain"  # augmentation type of the whole request (for per-type metrics)

    @property
    def total_tokens(self) -> int:
        """Context length at the end: prompt + every generated and returned token."""
        return self.prompt_tokens + sum(s.gen_tokens + s.tool_tokens for s in self.segments)


class ReqView(NamedTuple):
    """What a policy may see of one request (paused, or resumed and waiting for swap-in)."""

    rid: str
    ticket: int  # FCFS priority: smaller is older
    kind: str
    status: Status
    context_tokens: int  # all tokens whose KV must exist before the request can decode again
    computed_tokens: int  # tokens whose KV exists (on GPU or CPU)
    gpu_blocks: int
    cpu_blocks: int
    paused_at_s: float  # when the current interception started (NaN if never paused)
    tool_s: float  # true duration of the current interception (only oracle estimators may use it)
    tool_kind: str = ""  # label of the current interception's tool (its augmentation kind); "" if unknown
    # the current segment's true lengths and index (only policies that model a predictor, MARS, may use them)
    seg_gen_tokens: int = 0  # tokens the segment decodes before its interception (or the end)
    seg_tool_tokens: int = 0  # tokens its interception returns (0 on the last segment)
    segment: int = 0  # index of the segment in the request
    seg_done_tokens: int = 0  # tokens of the segment decoded so far (a preempted request's progress)
    last_segment: bool = False  # no interception follows it: the request ends

    def growth_blocks(self, block_size_tokens: int) -> int:
        """GPU blocks beyond those it holds on either side that the request needs to compute its pending
        tokens (the returned tokens of a resume) once its KV is back: ceil(context / block) - held."""
        return max(-(-self.context_tokens // block_size_tokens) - self.gpu_blocks - self.cpu_blocks, 0)

    @property
    def place(self) -> KvPlace:
        """GPU if any block is on the GPU, else CPU if any on the CPU, else NONE."""
        if self.gpu_blocks:
            return KvPlace.GPU
        return KvPlace.CPU if self.cpu_blocks else KvPlace.NONE


class EngineState(NamedTuple):
    """A snapshot given to the policy before each step. Token counts are per GPU shard-independent."""

    now_s: float
    block_size_tokens: int
    free_gpu_blocks: int
    free_cpu_blocks: int
    running_query_tokens: int  # R: query tokens the running group computes in the next step
    running_gpu_tokens: int  # Rb: GPU tokens (KV) held by running requests
    gpu_blocks_short: int  # blocks the running requests need next step beyond what is free (0 if none)
    paused: tuple[ReqView, ...] = ()  # requests inside an interception
    swapped: tuple[ReqView, ...] = ()  # resumed requests waiting for their KV to come back
    running_blocks_needed: int = 0  # new GPU blocks the running requests take next step (part of them free)
    waiting_query_tokens: int = 0  # tokens waiting requests still have to compute (summed; may stop past S)
    gpu_blocks_total: int = 0  # the GPU's KV capacity in blocks (0: not known)


class StepPlan(NamedTuple):
    """What a policy wants done before the next forward pass. Block counts per request."""

    swap_out: tuple[tuple[str, int], ...] = ()
    swap_in: tuple[tuple[str, int], ...] = ()
    discard: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        """True when the plan moves nothing."""
        return not (self.swap_out or self.swap_in or self.discard)


EMPTY_PLAN = StepPlan()


class Observation(NamedTuple):
    """What a learning policy is told after the fact (``Policy.observe``); it never sees the future.

    - ``"resume"``: the engine saw, at ``at_s`` (a step boundary), that an interception of tool ``tool_kind``
      had returned; ``value_s`` is the duration it measured, from the pause to then (what a scheduler can
      measure: the tool's time plus the wait for the step boundary);
    - ``"readmit"``: a resumed request whose KV had been dropped was admitted at ``at_s``; ``value_s`` is
      its wait in the queue from when the engine saw the return to the admission;
    - ``"finish"``: the request finished at ``at_s``; ``value_s`` is its number of turns (segments);
      ``tool_kind`` is ""."""

    event: str
    rid: str
    tool_kind: str
    at_s: float
    value_s: float


@dataclass(frozen=True, slots=True)
class PolicyTraits:
    """How a policy wants the engine to batch and move KV (fixed for a run)."""

    resume_to_front: bool = True  # a discarded request keeps its arrival order when it resumes
    chunk_fill: bool = False  # chunk-and-fill up to the saturation point S, whatever the run's batching
    chunk_recompute: bool = True  # recomputation is chunked like any prefill; False: a recompute runs whole
    pipelined_swap: bool = False  # swaps overlap the forward pass; only the excess stalls
    # a swap-in comes back as vLLM's asynchronous load (the executor's connector), in the plan's chunks, the
    # request computing from the step after its last; False: whole, copied before the forward pass of the step
    # that admits it, computing in that step (a synchronous load). Matters only without copy/compute overlap
    # (engine.swap_overlap = false); with it a request computes in the step that brings its last block back.
    async_swap_in: bool = False
    # order of the waiting queue (core/queue_order.py): "arrival" (tickets; resume_to_front decides where a
    # discarded request re-enters), "program" (the whole request's arrival), "plas" (least attained service)
    queue_order: str = "arrival"
    # vLLM v1's prefix cache (sim/prefix.py): freed full blocks stay reusable until evicted, whatever the
    # run's engine.prefix_caching says (that setting turns it on for any policy)
    prefix_caching: bool = False
    batching: str = ""  # "v0" or "v1": batch this way whatever the run's batching; "": the run's
    # write-through host tier of vLLM's OffloadingConnector (sim/offload.py), GiB per GPU; 0: none
    cpu_tier_gib: float = 0.0
    offload_prompt_only: bool = True  # the host tier stores only blocks inside the prompt (vLLM's default)
