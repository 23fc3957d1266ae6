"""Steady decoders as one group: advancing k decode steps costs O(1) instead of O(requests x k).

Every member decodes one token per decode step. A member's token count is ``base + g`` where ``g`` counts
the group's decode steps, so a step only increments ``g``; sums (context tokens, blocks) follow in closed
form. A member needs a new KV block at the step where its position ``base + g - 1`` is a multiple of the
block size, so a histogram of ``base mod block_size`` gives the blocks needed over any number of steps.
"""

from __future__ import annotations

import bisect
import heapq
import math
from itertools import accumulate

from sim.request import Req


class DecodeGroup:
    """The set of running requests whose next step is a plain decode, fully on the GPU."""

    def __init__(self, block_size: int) -> None:
        self.bs = block_size
        self.g = 0
        self.members: dict[str, Req] = {}
        self.sum_base = 0
        self.blocks = 0  # GPU blocks held by members
        self.phase_list = [0] * block_size  # members by base mod block size
        self.ends: list[tuple[int, int, int, Req]] = []  # (g at segment end, ticket, version, req)
        self._cum: list[int] | None = None  # cumulative blocks needed over one cycle from g (cached)
        self._cum_g = -1

    def __len__(self) -> int:
        return len(self.members)

    @property
    def ctx_tokens(self) -> int:
        """Sum of members' context lengths (tokens, including the one being computed)."""
        return self.sum_base + len(self.members) * self.g

    def join(self, r: Req) -> None:
        """Add a running request with exactly one pending token and all its KV on the GPU."""
        assert r.pending == 1 and r.cpu_blocks == 0 and not r.in_group
        assert r.gpu_blocks == -(-r.computed // self.bs), "blocks must cover exactly the computed tokens"
        r.in_group, r.base, r.g_join, r.gen_at_join = True, r.num_tokens - self.g, self.g, r.gen_in_seg
        r.version += 1
        self.members[r.rid] = r
        self.sum_base += r.base
        self.blocks += r.gpu_blocks
        self.phase_list[r.base % self.bs] += 1
        self._cum = None
        heapq.heappush(self.ends, (self.g + r.segment.gen_tokens - r.gen_in_seg, r.ticket, r.version, r))

    def leave(self, r: Req) -> None:
        """Remove a member and write its up-to-date token counts and blocks back into it."""
        assert r.in_group
        del self.members[r.rid]
        self.sum_base -= r.base
        self.phase_list[r.base % self.bs] -= 1
        self._cum = None
        r.num_tokens = r.base + self.g
        r.computed = r.num_tokens - 1
        r.ever_computed = max(r.ever_computed, r.computed)
        r.gen_in_seg = r.gen_at_join + self.g - r.g_join
        r.gpu_blocks = -(-r.computed // self.bs)
        self.blocks -= r.gpu_blocks
        r.in_group = False
        r.version += 1

    def steps_to_next_end(self) -> float:
        """Decode steps until the first member finishes its segment (inf if none)."""
        while self.ends and (not self.ends[0][3].in_group or self.ends[0][2] != self.ends[0][3].version):
            heapq.heappop(self.ends)
        return self.ends[0][0] - self.g if self.ends else math.inf

    def pop_ended(self) -> list[Req]:
        """Remove and return members whose segment has ended (in ticket order)."""
        out = []
        while self.ends and self.ends[0][0] <= self.g:
            _, _, version, r = heapq.heappop(self.ends)
            if r.in_group and r.version == version:
                self.leave(r)
                out.append(r)
        return out

    def _cycle(self) -> list[int]:
        """Blocks needed by steps 0..j from now (j < block size), cumulative; cached until g or members change."""
        if self._cum is None or self._cum_g != self.g:
            bs, phase, g = self.bs, self.phase_list, self.g
            self._cum, self._cum_g = list(accumulate(phase[(1 - g - j) % bs] for j in range(bs))), g
        return self._cum

    def blocks_needed_now(self) -> int:
        """New blocks the members need for the next decode step."""
        return self.phase_list[(1 - self.g) % self.bs]

    def blocks_needed(self, k: int) -> int:
        """New blocks the members need over the next ``k`` decode steps."""
        if k <= 0 or not self.members:
            return 0
        if k == 1:
            return self.blocks_needed_now()
        full, rem = divmod(k, self.bs)
        return full * len(self.members) + (self._cycle()[rem - 1] if rem else 0)

    def max_steps_within(self, free_blocks: int) -> int:
        """The largest k whose blocks_needed(k) <= free_blocks (a large number if nothing is ever needed)."""
        n = len(self.members)
        if n == 0:
            return 1 << 60
        cum = self._cycle()
        full = free_blocks // n
        left = free_blocks - full * n
        return full * self.bs + bisect.bisect_right(cum, left)

    def advance(self, k: int) -> None:
        """Run ``k`` decode steps: every member gains k tokens (blocks are taken by the engine)."""
        self.blocks += self.blocks_needed(k)
        self.g += k

    def held_blocks_exact(self) -> int:
        """Recount members' blocks one by one (for conservation checks)."""
        return sum(-(-(r.base + self.g - 1) // self.bs) for r in self.members.values())
