"""Unit tests of the toy-model engine: data, model, gradients, training, sweeps."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from replication.artifact import load_or_train
from replication.cache import ArtifactCache
from replication.toy import experiments, phase
from replication.toy.data import SparseFeatureSampler, normalise_rows
from replication.toy.model import ToyModel
from replication.toy.sweep import ToySweep, geometric_importance
from replication.toy.train import TrainConfig, logged_loop, lr_factor

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
                    training=TrainConfig(steps=1000, batch_size=64), seed=seed)


def test_training_lowers_loss_and_keeps_best_replicate():
    trained = small_sweep().train()
    history = trained.loss_history
    assert (history[-1] < history[0]).all()
    assert torch.equal(trained.loss, trained.replicate_loss.min(1).values)
    assert trained.W.shape == (2, 2, 6) and trained.b.shape == (2, 6)
    assert trained.replicate_W.shape == (2, 3, 2, 6)
    best = trained.replicate_loss.argmin(1)
    assert torch.equal(trained.W, trained.replicate_W[torch.arange(2), best])


def test_same_seed_same_weights_bit_for_bit():
    first, second = small_sweep(seed=5).train(), small_sweep(seed=5).train()
    assert torch.equal(first.W, second.W) and torch.equal(first.loss, second.loss)
    assert not torch.equal(first.W, small_sweep(seed=6).train().W)


def test_sweep_rejects_mismatched_importance():
    with pytest.raises(ValueError, match="importance needs 1 or 2 rows"):
        ToySweep(3, 1, (1.0, 0.5), ((1, 1, 1),) * 3)


def test_logged_loop_averages_each_term_per_interval_and_steps_everything():
    """Means over intervals of 3 steps (the last one shorter), optimizer and schedules stepped
    once per step, gradients cleared after each."""
    param = torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.SGD([param], lr=1.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0 / (s + 1))

    def step(i):
        assert param.grad is None
        param.grad = torch.ones(2)
        return {"loss": torch.tensor([i, 2.0 * i]), "other": torch.tensor([1.0, 1.0])}

    history = logged_loop(7, step, optimizer, (schedule,), log_every=3)
    torch.testing.assert_close(history["loss"], torch.tensor([[1.0, 2.0], [4.0, 8.0], [6.0, 12.0]]))
    assert torch.equal(history["other"], torch.ones(3, 2))
    torch.testing.assert_close(param.detach(), -torch.full((2,), sum(1 / (s + 1) for s in range(7))))


def test_sweep_through_the_cache_is_the_trained_sweep(tmp_path):
    config, cache = small_sweep(seed=1), ArtifactCache(tmp_path)
    trained = config.train()
    cached, again = load_or_train(config, cache, "cpu"), load_or_train(config, cache, "cpu")
    for name, value in trained.tensors().items():
        assert torch.equal(value, cached.tensors()[name]) and torch.equal(value, again.tensors()[name])
    assert cached.config == config and cached.cache_key == again.cache_key
    assert len(list((tmp_path / ToySweep.kind).iterdir())) == 1


def test_phase_sweep_knows_its_grid():
    config = experiments.phase_sweep("cpu", seed=0)
    ratios, densities = config.grid
    sweep = config.sweep
    assert sweep.n_configs == len(ratios) * len(densities)
    cell = 2 * len(densities) + 3  # row-major: (r_2, s_3)
    assert sweep.feature_probability[cell] == densities[3]
    assert sweep.importance[cell] == (1.0, ratios[2])
    with pytest.raises(ValueError, match="'mean'.*best, drop-worst-vote"):
        phase.PhaseSweep((1.0,), (0.1,), 2, "mean")


def test_trained_phase_solutions_are_shaped_as_the_grid():
    config = phase.PhaseSweep((0.5, 2.0), (0.05, 1.0), replicates=2, aggregation="best",
                              training=TrainConfig(steps=50, batch_size=32))
    trained = config.train()
    assert trained.solutions().shape == trained.predicted().shape == (2, 2)
    flat = phase.aggregate(phase.classify(trained.sweep.replicate_W),
                           trained.sweep.replicate_loss.numpy(), "best")
    assert (trained.solutions().ravel() == flat).all()
    assert (trained.predicted() == phase.predicted_solution(*np.meshgrid(
        config.ratios, config.densities, indexing="ij"))).all()
