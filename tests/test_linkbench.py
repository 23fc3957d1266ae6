"""The profile's link rate times the swap connector's own copy routine (real tensors, no engine)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("vllm")

from real.linkbench import link_rate  # noqa: E402
from real.model import ModelSize  # noqa: E402


def test_link_rate_pools_both_directions_and_restores_threads() -> None:
    threads = torch.get_num_threads()
    rate = link_rate(ModelSize(num_layers=2, hidden=128, num_heads=2, num_kv_heads=2), 16, 20, "cpu", 4,
                     threads=1, repeats=2)
    assert torch.get_num_threads() == threads
    assert rate["out"] > 0 and rate["in"] > 0
    # all the bytes over all the time: between the two directions' rates
    assert min(rate["out"], rate["in"]) <= rate["both"] <= max(rate["out"], rate["in"])
