"""Unit tests of toy-model geometry and of the phase-diagram closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from replication.toy import metrics, phase
from replication.toy.data import SparseFeatureSampler
from replication.toy.model import ToyModel


def regular_polygon(k: int) -> torch.Tensor:
    angles = torch.arange(k) * 2 * math.pi / k
    return torch.stack([torch.cos(angles), torch.sin(angles)])  # (2, k)


def test_dimensionality_of_known_geometries():
    assert torch.allclose(metrics.dimensionality(torch.eye(3)), torch.ones(3))
    antipodal = torch.tensor([[1.0, -1.0]])
    assert torch.allclose(metrics.dimensionality(antipodal), torch.full((2,), 0.5))
    assert torch.allclose(metrics.dimensionality(regular_polygon(5)), torch.full((5,), 0.4), atol=1e-6)
    with_zero = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    D = metrics.dimensionality(with_zero)
    assert D.tolist() == [1.0, 0.0] and not D.isnan().any()


def test_interference_norms_and_dimensions_per_feature():
    W = torch.tensor([[1.0, -1.0, 0.0], [0.0, 0.0, 2.0]])
    assert torch.allclose(metrics.interference(W), torch.tensor([1.0, 1.0, 0.0]))
    assert metrics.represented(W).tolist() == [True, True, True]
    assert metrics.dimensions_per_feature(W).item() == pytest.approx(2 / 6)


def test_angular_gaps_of_a_pentagon():
    gaps = metrics.angular_gaps_deg(regular_polygon(5)[:, [3, 0, 4, 1, 2]])
    assert torch.allclose(gaps, torch.full((5,), 72.0), atol=1e-3)
    with pytest.raises(ValueError, match="2-D hidden space"):
        metrics.angular_gaps_deg(torch.eye(3))


def test_near_fraction():
    D = torch.tensor([1.0, 0.52, 0.41, 0.3, 0.0])
    assert metrics.near_fraction(D).tolist() == [True, True, True, False, False]


@pytest.mark.parametrize("r, s", [(0.5, 0.1), (2.0, 0.5), (1.0, 0.03), (5.0, 1.0)])
def test_closed_form_phase_losses_match_monte_carlo(r, s):
    """Evaluate the three solutions as real models on 1.6M samples per instance."""
    losses = phase.closed_form_losses(r, s)
    W = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]], [[1.0, -1.0]]])
    b = torch.tensor([[0.0, s / 2], [s / 2, 0.0], [0.0, 0.0]])
    model = ToyModel.from_tensors(W, b, "relu")
    generator = torch.Generator().manual_seed(3)
    importance = torch.tensor([[1.0, r]]).expand(3, 2)
    total = torch.zeros(3, dtype=torch.float64)
    for _ in range(8):
        x = SparseFeatureSampler(torch.full((3,), s), 2, 200_000, generator)()
        with torch.no_grad():
            total += model.loss(x, importance).double()
    estimate = (total / 8).numpy()
    # Monte-Carlo standard error of a mean of squared errors ≤ 1 over 1.6M samples is < 1e-3.
    np.testing.assert_allclose(estimate, losses, rtol=0.03, atol=3e-4)


def test_classify_and_boundary():
    W = torch.tensor([[[1.0, 0.0]], [[0.1, 0.9]], [[0.9, -1.1]], [[0.8, 0.8]], [[0.1, 0.1]]])
    assert phase.classify(W).tolist() == [0, 1, 2, phase.OTHER, phase.OTHER]
    predicted = np.array([[0, 0, 1], [0, 0, 1], [0, 0, 1]])
    assert phase.away_from_boundary(predicted).tolist() == [[True, False, False]] * 3
    ratios, densities = np.array([0.1, 10.0]), np.array([0.01, 1.0])
    winners = phase.predicted_solution(ratios[:, None], densities[None, :])
    assert winners.tolist() == [[2, 0], [2, 1]]


def test_dedicated_and_prefix():
    # feature 0 alone on axis 0; features 1 and 2 antipodal on axis 1; feature 3 not represented
    W = torch.tensor([[1.0, 0.0, 0.0, 0.1], [0.0, 1.0, -1.0, 0.0]])
    assert metrics.dedicated(W, 0.5, 0.01).tolist() == [True, False, False, False]
    masks = torch.tensor([[True, True, False], [False, False, False], [True, False, True],
                          [False, True, False]])
    assert metrics.is_prefix(masks).tolist() == [True, True, False, False]


def test_uniform_share_near_fractions():
    # bands of ±0.05 around 1/2 and 2/5 inside [0.3, 0.7]: [0.35, 0.55], 0.2 of 0.4
    assert metrics.uniform_share_near(0.3, 0.7, (0.5, 0.4)) == pytest.approx(0.5)
    # a band reaching past the range counts only inside it; an outside fraction adds nothing
    assert metrics.uniform_share_near(0.48, 0.58, (0.5, 1.0)) == pytest.approx(0.7)
    with pytest.raises(ValueError, match="high > low"):
        metrics.uniform_share_near(0.5, 0.5)


def test_longest_run():
    assert metrics.longest_run([False, True, True, False, True, True, True]) == (4, 3)
    assert metrics.longest_run([True, True, False, True]) == (0, 2)
    assert metrics.longest_run([False, False]) == (0, 0)


def test_aggregate_replicates():
    classes = np.array([[0, 2, 2, 1], [1, 0, 0, 2], [0, 1, 2, 2]])
    losses = np.array([[0.1, 0.2, 0.3, 0.4], [0.5, 0.1, 0.2, 0.9], [0.1, 0.2, 0.3, 0.4]])
    assert phase.aggregate(classes, losses, "best").tolist() == [0, 0, 0]
    # the worst (last) replicate dropped; then the most frequent class, ties to the best replicate
    assert phase.aggregate(classes, losses, "drop-worst-vote").tolist() == [2, 0, 0]
    with pytest.raises(ValueError, match="accepted: best, drop-worst-vote"):
        phase.aggregate(classes, losses, "mean")
