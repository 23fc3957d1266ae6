"""The profile's link rate: the swap connector's own copy routine timed on real tensors (no engine)."""

from __future__ import annotations

import pytest

from real.linkbench import pooled_rates


def test_pooled_rates_by_hand() -> None:
    # 1-block copies: out 2 ms (median of 1, 2, 9 ms), in 1 ms; 4-block copies: out 5 ms, in 3 ms; 1000 B a block
    times = {("out", 1): [0.001, 0.002, 0.009], ("in", 1): [0.001], ("out", 4): [0.005], ("in", 4): [0.003, 0.003]}
    rate = pooled_rates(times, 1000)
    assert rate["out"] == pytest.approx(5000 / 0.007)
    assert rate["in"] == pytest.approx(5000 / 0.004)
    assert rate["both"] == pytest.approx(10000 / 0.011)


def test_link_rate_runs_the_connectors_copy_with_the_workers_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("vllm")
    from real.linkbench import BLOCKS_PER_COPY, link_rate
    from real.model import ModelSize
    from real.swap_worker import SwapWorker

    seen: list[tuple[int, int, bool]] = []
    copy = SwapWorker._copy

    def spy(self: SwapWorker, dev_ids: list[int], host_ids: list[int], to_host: bool) -> None:
        seen.append((len(dev_ids), torch.get_num_threads(), to_host))
        copy(self, dev_ids, host_ids, to_host)

    monkeypatch.setattr(SwapWorker, "_copy", spy)
    threads = torch.get_num_threads()
    rate = link_rate(ModelSize(num_layers=2, hidden=128, num_heads=2, num_kv_heads=2), 16, 20, 12, "cpu", 4,
                     threads=1, repeats=2)
    assert torch.get_num_threads() == threads  # restored
    assert {t for _, t, _ in seen} == {1}
    # every size that fits the 12 host slots, both ways, one untimed copy and two timed ones each
    sizes = [n for n in BLOCKS_PER_COPY if n <= 12]
    assert sorted(seen) == sorted((n, 1, way) for n in sizes for way in (True, False) for _ in range(3))
    assert rate["out"] > 0 and rate["in"] > 0
