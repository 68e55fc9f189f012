"""Unit tests of replication/double_descent: data, packed training, metrics, determinism."""

from __future__ import annotations

import math
from dataclasses import replace

import matplotlib.pyplot as plt
import pytest
import torch

from replication.double_descent import experiments
from replication.double_descent import model as packed_model
from replication.double_descent.data import draw_points
from replication.double_descent.figures import MAX_DRAWN, _segments
from replication.double_descent.kernel import fused_available
from replication.double_descent.metrics import (
    held_out_losses,
    hidden_vectors,
    padded,
)
from replication.double_descent.model import PackedBatches, packed_loss_and_grads
from replication.double_descent.packing import pack
from replication.double_descent.sweep import DD_TRAIN, DoubleDescentSweep, train_double_descent
from replication.toy.data import normalise_rows
from replication.toy.metrics import dimensionality, projections
from replication.toy.model import ToyModel

SIZES = (3, 5, 17, 40)


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_points_have_unit_norm_and_zero_points_stay_zero():
    points = draw_points(4000, 5, 0.05, generator())  # P(all five off) ≈ 0.77: many zero points
    norms = points.dense().norm(dim=1)
    assert not torch.isnan(points.value).any()
    assert ((norms - 1).abs() < 1e-6).sum() + (norms == 0).sum() == points.count
    assert 0 < (norms == 0).sum() < points.count
    assert torch.equal(normalise_rows(torch.zeros(2, 3)), torch.zeros(2, 3))


def test_points_follow_the_requested_sparsity():
    points = draw_points(2000, 100, 0.05, generator())
    assert len(points.value) / (2000 * 100) == pytest.approx(0.05, rel=0.05)
    assert torch.all(points.row[1:] >= points.row[:-1])


@pytest.mark.parametrize("sides", [3, 5, 6, 8, 10])
def test_data_dimensionality_of_a_regular_polygon_is_m_over_t(sides):
    angle = 2 * math.pi * torch.arange(sides) / sides + 0.3
    polygon = 1.7 * torch.stack([angle.cos(), angle.sin()])  # (2, sides)
    expected = torch.full((sides,), 2 / sides)
    assert torch.allclose(dimensionality(polygon), expected, atol=1e-6)


@pytest.mark.parametrize("hidden", [2, 5])
def test_dimensionality_matches_the_pairwise_definition_and_ignores_padding(hidden):
    vectors = torch.randn(3, hidden, 7, generator=generator())
    vectors[:, :, 2] = 0
    pairwise = (vectors**2).sum(-2) / (projections(vectors) ** 2).sum(-1)
    assert torch.allclose(dimensionality(vectors), torch.nan_to_num(pairwise, nan=0.0), atol=1e-5)
    padded_vectors = torch.cat([vectors, torch.zeros(3, hidden, 4)], 2)
    assert torch.allclose(dimensionality(padded_vectors)[:, :7], dimensionality(vectors))


def test_padded_lays_each_configuration_out_in_columns():
    flat = torch.arange(12.0).view(6, 2)
    out = padded(flat, torch.tensor([1, 2, 3]))
    assert out.shape == (3, 2, 3)
    assert torch.equal(out[1], torch.tensor([[2.0, 4.0, 0.0], [3.0, 5.0, 0.0]]))


def dense_sets(points, sizes, replicates):
    """Each instance's training set zero-padded to the largest, and its mask / T weights."""
    x = torch.zeros(len(sizes) * replicates, max(sizes), points.n_features)
    weight = torch.zeros(len(sizes) * replicates, max(sizes))
    first = 0
    for c, size in enumerate(sizes):  # the reference: every T on its own
        for r in range(replicates):
            x[c * replicates + r, :size] = points.dense(first, first + size)
            weight[c * replicates + r, :size] = 1 / size
        first += size
    return x, weight


@pytest.fixture(params=["fused", "portable"])
def dense_path(request, monkeypatch) -> str:
    """Run a test with the fused CPU kernel and with the portable torch code."""
    if request.param == "fused" and not fused_available(torch.device("cpu"), 2):
        pytest.skip("the fused kernel could not be built here (see the warning)")
    if request.param == "portable":
        monkeypatch.setattr(packed_model, "fused_available", lambda device, m: False)
    return request.param


@pytest.mark.parametrize("n_hidden", [2, 5])
@pytest.mark.parametrize("chunk_size, group_elements",
                         [(1, 1 << 20), (4, 1 << 20), (4, 300), (16, 1 << 20), (40, 1 << 20)])
def test_packed_loss_and_gradients_match_training_each_t_alone(chunk_size, group_elements,
                                                               n_hidden, dense_path):
    replicates, n = 2, 60
    points = draw_points(sum(SIZES), n, 0.1, generator())
    packed = pack(points, SIZES, replicates, chunk_size, group_elements)
    model = ToyModel(len(SIZES) * replicates, n, n_hidden, generator=generator(1))
    with torch.no_grad():  # weights and biases large enough that many outputs are live
        model.W.mul_(3)
        model.b.normal_(0, 0.2, generator=generator(2))
    importance = torch.rand(len(SIZES) * replicates, n, generator=generator(3))
    x, weight = dense_sets(points, SIZES, replicates)
    expected = model.loss_and_grads(x, importance, weight)
    for got, want in zip(packed_loss_and_grads(model, packed, importance), expected, strict=True):
        assert torch.allclose(got, want, rtol=1e-5, atol=1e-6 * want.abs().max())


def test_packed_loss_matches_autograd_of_each_t_alone(dense_path):
    points = draw_points(sum(SIZES), 30, 0.1, generator())
    model = ToyModel(len(SIZES), 30, 2, generator=generator(1))
    importance = torch.full((len(SIZES), 30), 1 / 30)
    loss, grad_W, grad_b = packed_loss_and_grads(model, pack(points, SIZES, 1, 8), importance)
    x, weight = dense_sets(points, SIZES, 1)
    reference = model.loss(x, importance, weight)
    reference.sum().backward()
    assert torch.allclose(loss, reference.detach(), rtol=1e-5)
    assert torch.allclose(grad_W, model.W.grad, rtol=1e-4, atol=1e-7)
    assert torch.allclose(grad_b, model.b.grad, rtol=1e-4, atol=1e-7)


def test_the_fused_kernel_gives_the_same_bits_with_any_thread_count(dense_path):
    points = draw_points(sum(SIZES) * 20, 200, 0.05, generator())
    sets = pack(points, tuple(20 * t for t in SIZES), 2, 16)
    model = ToyModel(len(SIZES) * 2, 200, 3, generator=generator(1))
    importance = torch.ones(len(SIZES) * 2, 200)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = packed_loss_and_grads(model, sets, importance)
        torch.set_num_threads(2)
        two = packed_loss_and_grads(model, sets, importance)
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(one, two, strict=True):
        assert torch.equal(a, b)


def test_hidden_vectors_are_w_x_under_each_configurations_model():
    points = draw_points(sum(SIZES), 20, 0.2, generator())
    W = torch.randn(len(SIZES), 2, 20, generator=generator(1))
    h = hidden_vectors(W, points, torch.tensor(SIZES))
    config = torch.repeat_interleave(torch.arange(len(SIZES)), torch.tensor(SIZES))
    expected = torch.einsum("phf,pf->ph", W[config], points.dense())
    assert torch.allclose(h, expected, atol=1e-6)


def test_the_all_zero_predictor_scores_the_mean_squared_input():
    test = draw_points(3000, 50, 0.02, generator())
    model = ToyModel(2, 50, 2, generator=generator(1))
    with torch.no_grad():
        model.W.zero_()
        model.b.fill_(-1.0)  # every output ReLU'd to zero
    loss, zero = held_out_losses(model, test)
    assert torch.allclose(loss, zero.expand(2))
    nonzero_points = len(test.row.unique())
    assert zero.item() == pytest.approx(nonzero_points / (3000 * 50), rel=1e-5)


def tiny_sweep(seed: int) -> DoubleDescentSweep:
    return DoubleDescentSweep(n_features=40, n_hidden=2, feature_probability=0.1,
                              train_sizes=(3, 6, 30), datasets=2, replicates=2, test_size=500,
                              chunk_size=8,
                              training=replace(DD_TRAIN, steps=60, warmup_steps=5), seed=seed)


def test_same_seed_gives_the_same_numbers_bit_for_bit():
    first, second = train_double_descent(tiny_sweep(7)), train_double_descent(tiny_sweep(7))
    for name, tensor in first.tensors().items():
        assert torch.equal(tensor, second.tensors()[name]), name
    assert torch.equal(first.data_dimensionality(), second.data_dimensionality())
    assert torch.equal(first.feature_dimensionality(), second.feature_dimensionality())
    other = train_double_descent(tiny_sweep(8))
    assert not torch.equal(first.W, other.W)


def test_training_lowers_the_loss_of_every_instance():
    run = train_double_descent(tiny_sweep(0))
    assert torch.all(run.train_loss < run.loss_history[0])  # final loss below the mean over steps
    assert run.hidden.shape == (2 * 39, 2)


def test_each_t_gets_independent_training_sets_laid_out_t_major():
    config = tiny_sweep(0)
    assert config.set_sizes == (3, 3, 6, 6, 30, 30)
    assert config.n_instances == 12
    run = train_double_descent(config)
    assert run.W.shape == (3, 2, 2, 40) and run.test_loss.shape == (3, 2)
    assert run.data_dimensionality().shape == (3, 2, 30)
    assert torch.all(run.data_dimensionality()[0, :, 3:] == 0)  # padding past T=3
    first, second = run.hidden_columns()[2, 0], run.hidden_columns()[2, 1]
    assert not torch.allclose(first, second)  # two draws of the 30 points, not one set twice


def test_bad_inputs_name_the_accepted_values():
    points = draw_points(10, 8, 0.3, generator())
    with pytest.raises(ValueError, match="chunk_size"):
        pack(points, (4, 6), 1, 0)
    with pytest.raises(ValueError, match="sum to the 10 points"):
        pack(points, (4, 5), 1, 4)
    sets = pack(points, (4, 6), 1, 4)
    with pytest.raises(ValueError, match="needs a 'relu' toy model, got 'linear'"):
        packed_loss_and_grads(ToyModel(2, 8, 2, activation="linear"), sets, torch.ones(2, 8))
    with pytest.raises(ValueError, match="2 instances × 8 features do not fit"):
        packed_loss_and_grads(ToyModel(3, 8, 2), sets, torch.ones(3, 8))
    with pytest.raises(ValueError, match="carry their own example weights"):
        PackedBatches(sets).loss_and_grads(ToyModel(2, 8, 2), sets, torch.ones(2, 8),
                                           torch.ones(2, 10))
    with pytest.raises(ValueError, match="accepted: cpu, paper"):
        experiments.sweep("laptop", 0)


def test_sweep_tables_follow_the_issue():
    cpu, paper = experiments.sweep("cpu", 0), experiments.sweep("paper", 0)
    assert (cpu.n_features, cpu.n_hidden, cpu.feature_probability) == (1000, 2, 0.01)
    assert (paper.n_features, paper.feature_probability) == (10_000, 0.001)
    assert (paper.training.steps, paper.training.warmup_steps) == (50_000, 2_500)
    assert paper.train_sizes[: len(cpu.train_sizes)] == cpu.train_sizes
    for config in (cpu, paper):
        train = config.training
        assert (train.optimizer, train.lr, train.weight_decay) == ("adamw", 1e-3, 1e-2)
        assert config.training.schedule == "warmup_cosine"
    assert experiments.sweep("cpu", 3, weight_decay=1.0).training.weight_decay == 1.0


def test_geometry_panels_draw_the_longest_vectors():
    lengths = torch.linspace(0.01, 1.0, MAX_DRAWN + 500)
    angles = torch.rand(len(lengths), generator=generator()) * 2 * math.pi
    vectors = torch.stack([lengths * angles.cos(), lengths * angles.sin()]).numpy()
    fig, (capped, whole) = plt.subplots(1, 2)
    assert _segments(capped, vectors, "tab:blue") == 500
    drawn = capped.collections[0].get_segments()
    assert len(drawn) == MAX_DRAWN
    assert min(float(torch.tensor(s[1]).norm()) for s in drawn) >= float(lengths[500]) - 1e-6
    assert _segments(whole, vectors[:, :MAX_DRAWN], "tab:blue") == 0  # cpu scale: every vector
    plt.close(fig)
