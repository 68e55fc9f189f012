"""Recovery, MMCS, FVU and Procrustes similarity on constructed cases."""

import numpy as np
import pytest
import torch
from scipy.spatial import procrustes

from replication.sae import metrics
from replication.sae.critical import CriticalCurves


@pytest.fixture
def ground_truth() -> torch.Tensor:
    """W: (hidden 8, feats 8), orthonormal; features 0–5 represented (norm 1), 6–7 not (0.1)."""
    W, _ = torch.linalg.qr(torch.randn(8, 8, generator=torch.Generator().manual_seed(0)))
    W[:, 6:] *= 0.1
    return W


def test_decoder_equal_to_ground_truth_recovers_everything(ground_truth):
    cos = metrics.cosines(ground_truth, 3.0 * ground_truth.T).abs()  # decoder norms do not matter
    represented = ground_truth.norm(dim=0) > 0.5
    alive = torch.ones(8, dtype=torch.bool)
    assert metrics.recovery(cos, represented) == pytest.approx(1.0)
    features_side, latents_side = metrics.mmcs(cos, represented, alive & represented)
    assert features_side == pytest.approx(1.0) and latents_side == pytest.approx(1.0)


def test_sign_flipped_decoder_counts_only_for_the_sign_blind_recovery(ground_truth):
    cos = metrics.cosines(ground_truth, -ground_truth.T)
    represented = ground_truth.norm(dim=0) > 0.5
    assert metrics.recovery(cos.abs(), represented) == pytest.approx(1.0)
    assert metrics.recovery(cos, represented) == 0.0


def test_random_decoder_recovers_little():
    generator = torch.Generator().manual_seed(1)
    W = torch.randn(64, 20, generator=generator)
    decoder = torch.randn(40, 64, generator=generator)
    cos = metrics.cosines(W, decoder).abs()
    represented, alive = torch.ones(20, dtype=torch.bool), torch.ones(40, dtype=torch.bool)
    assert metrics.recovery(cos, represented) == 0.0
    assert all(side < 0.5 for side in metrics.mmcs(cos, represented, alive))


def test_batched_metrics_match_per_instance(ground_truth):
    decoders = torch.stack(
        [ground_truth.T, torch.randn(8, 8, generator=torch.Generator().manual_seed(2))]
    )
    cos = metrics.cosines(ground_truth.expand(2, -1, -1), decoders).abs()
    represented = (ground_truth.norm(dim=0) > 0.5).expand(2, -1)
    batched = metrics.recovery(cos, represented)
    assert batched[0] == pytest.approx(1.0)
    assert batched[1] == pytest.approx(metrics.recovery(cos[1], represented[1]))


def test_firing_frequency_and_l0():
    acts = torch.tensor([[0.0, 1.0, 2.0], [0.0, 0.0, 3.0]])
    assert metrics.firing_frequency(acts).tolist() == [0.0, 0.5, 1.0]
    assert metrics.l0(acts) == pytest.approx(1.5)


def test_fraction_variance_unexplained():
    h = torch.randn(1000, 5, generator=torch.Generator().manual_seed(3))
    assert metrics.fraction_variance_unexplained(h, h) == 0.0
    mean = h.mean(0, keepdim=True).expand_as(h)
    assert metrics.fraction_variance_unexplained(h, mean) == pytest.approx(1.0)


def test_procrustes_similarity_matches_scipy():
    rng = np.random.default_rng(4)
    a = rng.normal(size=(200, 5))
    rotation, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    for b in (
        1.7 * a @ rotation + 0.3 * rng.normal(size=a.shape) + 2.0,  # related
        rng.normal(size=(200, 5)),
    ):  # unrelated
        _, _, disparity = procrustes(a, b)
        ours = metrics.procrustes_similarity(torch.tensor(a), torch.tensor(b))
        assert ours.item() == pytest.approx(1.0 - disparity, abs=1e-6)


def test_procrustes_similarity_is_batched_and_handles_constants():
    a = torch.randn(3, 50, 4, generator=torch.Generator().manual_seed(5))
    similarity = metrics.procrustes_similarity(
        a, 2.0 * a.flip(-1) + 1.0
    )  # scaled, permuted, shifted
    assert similarity.shape == (3,) and torch.allclose(similarity, torch.ones(3))
    assert metrics.procrustes_similarity(a[0], torch.zeros(50, 4)) == 0.0


def test_critical_curves_locate_extremes_per_run():
    curves = CriticalCurves(
        10,
        torch.tensor([0.1, 0.5, 0.85, 0.99]),
        {
            "toy_loss": torch.tensor([[1.0, 2.0, 3.0, 0.5], [4.0, 1.0, 1.0, 1.0]]),
            "procrustes": torch.tensor([[1.0, 0.9, 0.8, 1.0], [0.7, 0.9, 0.8, 1.0]]),
        },
    )
    assert curves.locations("toy_loss").tolist() == pytest.approx([0.85, 0.1])
    assert curves.locations("procrustes").tolist() == pytest.approx([0.85, 0.1])
    # run means: toy loss [2.5, 1.5, 2.0, 0.75] peaks at 0.1; similarity [0.85, 0.9, 0.8, 1.0] dips at 0.85
    assert curves.mean_location("toy_loss") == pytest.approx(0.1)
    assert curves.mean_location("procrustes") == pytest.approx(0.85)
