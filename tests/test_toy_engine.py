"""Unit tests of the toy-model engine: data, model, gradients, training, sweeps."""

from __future__ import annotations

import math

import pytest
import torch

from replication.toy.data import SparseFeatureSampler, normalise_rows
from replication.toy.model import ToyModel
from replication.toy.sweep import ToySweep, geometric_importance, train_sweep
from replication.toy.train import TrainConfig, lr_factor

PROBABILITIES = [1.0, 0.5, 0.3, 0.1, 0.01, 0.001]


def test_active_fraction_matches_probability_per_instance():
    generator = torch.Generator().manual_seed(0)
    p = torch.tensor(PROBABILITIES)
    x = SparseFeatureSampler(p, n_features=20, batch_size=20_000, generator=generator)()
    slots = 20 * 20_000
    observed = (x > 0).float().mean((1, 2))
    # Binomial standard error; 5 of them puts a false alarm below 1 in 10^6.
    tolerance = 5 * torch.sqrt(p * (1 - p) / slots) + 1 / slots
    assert ((observed - p).abs() <= tolerance).all(), (observed, p)


def test_active_values_are_uniform_and_spread_over_batch_and_features():
    generator = torch.Generator().manual_seed(1)
    p = torch.tensor([0.05])  # drawn by the gap sampler
    x = SparseFeatureSampler(p, n_features=10, batch_size=100_000, generator=generator)()[0]
    values = x[x > 0]
    se = math.sqrt(1 / 12 / len(values))
    assert abs(values.mean().item() - 0.5) < 5 * se
    assert abs(values.var().item() - 1 / 12) < 0.01
    assert values.max() <= 1
    per_feature = (x > 0).float().mean(0)
    # in storage (draw) order, the last quarter of the slots is not cut short
    per_quarter = (x.T > 0).float().reshape(4, -1).mean(1)
    for rate, n in ((per_feature, 100_000), (per_quarter, 250_000)):
        assert ((rate - 0.05).abs() < 5 * math.sqrt(0.05 * 0.95 / n)).all()


def test_sampler_rejects_bad_probability():
    with pytest.raises(ValueError, match="feature probabilities"):
        SparseFeatureSampler(torch.tensor([0.0, 0.5]), 4, 8, torch.Generator())


def test_normalise_rows_unit_norm_and_zero_rows_stay_zero():
    x = torch.tensor([[3.0, 4.0, 0.0], [0.0, 0.0, 0.0]])
    out = normalise_rows(x)
    assert torch.allclose(out[0], torch.tensor([0.6, 0.8, 0.0]))
    assert (out[1] == 0).all() and not out.isnan().any()


def test_loss_against_hand_computation():
    W = torch.tensor([[[1.0, 0.0]]])  # one instance, m=1, n=2
    b = torch.tensor([[0.0, 0.25]])
    model = ToyModel.from_tensors(W, b, "relu")
    x = torch.tensor([[[0.5, 0.0], [0.0, 1.0]]])  # batch of two inputs
    importance = torch.tensor([[1.0, 2.0]])
    # input 1: x' = (0.5, 0.25), error 2·0.25² = 0.125; input 2: x' = (0, 0.25), error 2·0.75²
    expected = (0.125 + 2 * 0.75**2) / 2
    assert model.loss(x, importance).item() == pytest.approx(expected)


@pytest.mark.parametrize("activation", ["relu", "linear"])
@pytest.mark.parametrize("weighted", [False, True])
def test_closed_form_gradients_match_autograd(activation, weighted):
    generator = torch.Generator().manual_seed(2)
    model = ToyModel(3, 12, 4, activation, generator=generator)
    with torch.no_grad():
        model.b.normal_(generator=generator)
    x = SparseFeatureSampler(torch.tensor([1.0, 0.2, 0.05]), 12, 64, generator)()
    importance = torch.rand(3, 12, generator=generator)
    weight = torch.rand(3, 64, generator=generator) if weighted else None
    loss, grad_W, grad_b = model.loss_and_grads(x, importance, weight)
    reference = model.loss(x, importance, weight)
    reference.sum().backward()
    torch.testing.assert_close(loss, reference.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad_W, model.W.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(grad_b, model.b.grad, rtol=1e-4, atol=1e-5)


def test_bad_activation_optimizer_schedule_are_named():
    with pytest.raises(ValueError, match="'tanh'.*relu, linear"):
        ToyModel(1, 2, 1, "tanh")
    with pytest.raises(ValueError, match="'sgd'.*adam, adamw"):
        TrainConfig(optimizer="sgd")
    with pytest.raises(ValueError, match="'cosine'.*constant, warmup_cosine"):
        TrainConfig(schedule="cosine")


def test_warmup_cosine_schedule():
    config = TrainConfig(steps=110, schedule="warmup_cosine", warmup_steps=10)
    assert lr_factor(0, config) == pytest.approx(0.1)
    assert lr_factor(9, config) == pytest.approx(1.0)
    assert lr_factor(60, config) == pytest.approx(0.5)
    assert lr_factor(110, config) == pytest.approx(0.0, abs=1e-12)


def small_sweep(seed: int = 0) -> ToySweep:
    return ToySweep(6, 2, (1.0, 0.1), (geometric_importance(6, 0.9),), replicates=3,
                    train=TrainConfig(steps=1000, batch_size=64), seed=seed)


def test_training_lowers_loss_and_keeps_best_replicate():
    trained = train_sweep(small_sweep())
    history = trained.loss_history
    assert (history[-1] < history[0]).all()
    assert torch.equal(trained.loss, trained.replicate_loss.min(1).values)
    assert trained.W.shape == (2, 2, 6) and trained.b.shape == (2, 6)
    assert trained.replicate_W.shape == (2, 3, 2, 6)
    best = trained.replicate_loss.argmin(1)
    assert torch.equal(trained.W, trained.replicate_W[torch.arange(2), best])


def test_same_seed_same_weights_bit_for_bit():
    first, second = train_sweep(small_sweep(seed=5)), train_sweep(small_sweep(seed=5))
    assert torch.equal(first.W, second.W) and torch.equal(first.loss, second.loss)
    assert not torch.equal(first.W, train_sweep(small_sweep(seed=6)).W)


def test_sweep_rejects_mismatched_importance():
    with pytest.raises(ValueError, match="importance needs 1 or 2 rows"):
        ToySweep(3, 1, (1.0, 0.5), ((1, 1, 1),) * 3)
