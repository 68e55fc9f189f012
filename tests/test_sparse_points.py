"""The double-descent points drawn from the sampler's gaps equal the dense draws they replace."""

from __future__ import annotations

import pytest
import torch

from replication.double_descent import data
from replication.toy.data import SparseFeatureSampler


def draw(monkeypatch, dense: bool, count: int, n: int, p: float) -> data.SparsePoints:
    """``draw_points`` at seed 0, through the dense draws when ``dense`` (as before the
    sparse path existed)."""
    with monkeypatch.context() as patch:
        if dense:
            patch.setattr(data, "GAP_SAMPLING_BELOW", 0.0)
        return data.draw_points(count, n, p, torch.Generator().manual_seed(0))


@pytest.mark.parametrize(("count", "n", "p"), [
    (40_000, 1000, 0.01),  # the cpu sweep's inputs: 3 draws of 16,777 points, the last cut short
    (4_000, 10_000, 0.001),  # the paper's n and density: 3 draws of 1,677 points
])
def test_the_sparse_draw_gives_the_dense_draws_entries(monkeypatch, count, n, p):
    sparse, dense = draw(monkeypatch, False, count, n, p), draw(monkeypatch, True, count, n, p)
    assert torch.equal(sparse.row, dense.row) and torch.equal(sparse.feature, dense.feature)
    torch.testing.assert_close(sparse.value, dense.value, rtol=1e-6, atol=0)
    assert sparse.row.numel() == pytest.approx(count * n * p, rel=0.05)


def test_the_sparse_draw_drops_the_overflow_bin_zero_values_and_points_past_the_count():
    sampler = SparseFeatureSampler(torch.tensor([0.1]), 3, 4, torch.Generator().manual_seed(0))
    # slots are feature-major: slot = feature * batch + example; slot 12 is the overflow bin
    slot, value = torch.tensor([1, 2, 5, 7, 9, 12, 12]), torch.tensor([3., 0., 4., .5, .5, 1., 1.])
    sampler.gap_draws = lambda: (slot, value)
    row, feature, value = data.sparse_draw(sampler, keep=3)
    assert row.tolist() == [1, 1, 1] and feature.tolist() == [0, 1, 2]  # example 3 (slot 7) cut
    torch.testing.assert_close(value, torch.tensor([3., 4., .5]) / 25.25 ** 0.5)
