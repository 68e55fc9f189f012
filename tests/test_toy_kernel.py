"""The fused CPU toy kernel against the torch closed form, for every model variant."""

from __future__ import annotations

import copy
import itertools
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from replication.toy import experiments, kernel
from replication.toy.model import ToyModel
from replication.toy.sweep import FeatureSets, ToySweep, geometric_importance
from replication.toy.train import BETAS, EPS, TrainConfig, train_drawn_in_kernel

pytestmark = pytest.mark.skipif(kernel.library() is None, reason="no C++ compiler here")

VARIANTS = list(itertools.product((True, False), ("relu", "linear"), ("linear", "relu")))


def case(tied: bool, activation: str, hidden: str, batch: int, n: int = 7, m: int = 3):
    generator = torch.Generator().manual_seed(1)
    model = ToyModel(3, n, m, activation, generator=generator, hidden_activation=hidden,
                     tied=tied)
    with torch.no_grad():
        model.b.normal_(0, 0.1, generator=generator)
    active = torch.rand(3, n, batch, generator=generator) < 0.5
    x = (torch.rand(3, n, batch, generator=generator) * active).transpose(1, 2)  # a sampler's view
    return model, x, torch.rand(3, n, generator=generator)


@pytest.mark.parametrize(("tied", "activation", "hidden"), VARIANTS)
@pytest.mark.parametrize("batch", [37, 64])  # a short last block of lanes, and none
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("with_target", [False, True])
def test_fused_loss_and_gradients_match_the_torch_closed_form(tied, activation, hidden, batch,
                                                               weighted, with_target):
    model, x, importance = case(tied, activation, hidden, batch)
    target = 0.7 * x.abs() if with_target else None
    weight = torch.rand(3, batch) if weighted else None
    fused = model.loss_and_grads(x, importance, weight, target)
    portable = model.portable_loss_and_grads(x, importance, weight, target)
    assert len(fused) == len(portable)
    for got, want in zip(fused, portable, strict=True):
        assert got.shape == want.shape
        # float32 sums over the batch in another order: errors scale with the largest term
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * float(want.abs().max()))


def test_a_batch_stored_batch_major_gives_the_same_numbers():
    model, x, importance = case(True, "relu", "linear", 40)
    for got, want in zip(model.loss_and_grads(x.contiguous(), importance),
                         model.loss_and_grads(x, importance), strict=True):
        assert torch.equal(got, want)


def test_the_fused_kernel_gives_the_same_bits_with_any_thread_count():
    model, x, importance = case(False, "relu", "relu", 100)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = model.loss_and_grads(x, importance)
        torch.set_num_threads(2)
        two = model.loss_and_grads(x, importance)
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a, b) for a, b in zip(one, two, strict=True))


def test_large_hidden_sizes_and_other_dtypes_take_the_torch_path():
    assert kernel.fused_available(torch.device("cpu"), kernel.MAX_HIDDEN)
    assert not kernel.fused_available(torch.device("cpu"), kernel.MAX_HIDDEN + 1)
    model, x, importance = case(True, "relu", "linear", 16)
    model = model.double()
    loss, *_ = model.loss_and_grads(x.double(), importance.double())
    assert loss.dtype == torch.float64


# The kernel's data generator as kernel.py documents it, in numpy's wrapping uint64 arithmetic.
GOLDEN, MIX = np.uint64(0x9E3779B97F4A7C15), (np.uint64(0xBF58476D1CE4E5B9),
                                              np.uint64(0x94D049BB133111EB))


def documented_draw(key: int, p: torch.Tensor, step: int, batch: int) -> torch.Tensor:
    """One instance's ``(batch, feats)`` inputs at ``step``, from the kernel's documented
    generator (keyed by ``key``, densities ``p: (feats,)``)."""
    n = len(p)
    u = ((np.uint64(step * n) + np.arange(n, dtype=np.uint64)[:, None]) * np.uint64(batch)
         + np.arange(batch, dtype=np.uint64))
    with np.errstate(over="ignore"):
        z = np.int64(key).astype(np.uint64) + (u + np.uint64(1)) * GOLDEN
        z = (z ^ (z >> np.uint64(30))) * MIX[0]
        z = (z ^ (z >> np.uint64(27))) * MIX[1]
    z ^= z >> np.uint64(31)
    below = np.floor(p.double().numpy() * 2.0**32).astype(np.uint64)[:, None]
    value = ((z & np.uint64(0x7FFFFF)).astype(np.float32) + np.float32(0.5)) / np.float32(2**23)
    return torch.from_numpy(np.where((z >> np.uint64(32)) < below, value, np.float32(0)).T.copy())


def test_the_documented_generator_gives_the_papers_features():
    """x_i = 0 with probability 1 − p, else uniform on (0, 1) ('the feature is zero with
    probability S … otherwise uniformly distributed between [0, 1]')."""
    p = torch.tensor([1.0, 0.3, 0.05, 0.0])
    x = torch.cat([documented_draw(12345, p, step, 10_000) for step in range(5)])
    n = len(x)
    for rate, q in zip((x > 0).float().mean(0).tolist(), p.tolist(), strict=True):
        assert abs(rate - q) <= 5 * math.sqrt(q * (1 - q) / n) + 1 / n
    values = x[:, 0]
    assert 0 < values.min() and values.max() < 1
    assert abs(values.mean() - 0.5) < 5 * math.sqrt(1 / 12 / n)
    assert abs(values.var() - 1 / 12) < 0.002
    assert abs(torch.corrcoef(x[:, :2].T)[0, 1]) < 5 / math.sqrt(n)


def kernel_case(tied: bool, hidden: str, batch: int = 37):
    generator = torch.Generator().manual_seed(3)
    model = ToyModel(3, 7, 3, "relu", generator=generator, hidden_activation=hidden, tied=tied)
    with torch.no_grad():
        model.b.normal_(0, 0.1, generator=generator)
    p = torch.rand(3, 7, generator=generator)
    importance = torch.rand(3, 7, generator=generator)
    keys = torch.randint(-2**63, 2**63 - 1, (3,), generator=generator, dtype=torch.int64)
    return model, p, importance, keys


def kernel_steps(model, p, importance, keys, first, steps, batch, decay, moments, loss_sum):
    kernel.fused_train_steps(model.W.data, None if model.W_out is None else model.W_out.data,
                             model.b.data, True, model.hidden_activation == "relu", batch, p,
                             importance, keys, first, torch.full((steps,), 0.01),
                             (*BETAS, EPS, decay), moments, loss_sum)


@pytest.mark.parametrize(("tied", "hidden"), [(True, "linear"), (False, "relu")])
@pytest.mark.parametrize("decay", [0.0, 0.1])
def test_kernel_steps_are_adam_on_the_closed_form_of_the_documented_draws(tied, hidden, decay):
    model, p, importance, keys = kernel_case(tied, hidden)
    reference = copy.deepcopy(model)
    optimizer = torch.optim.AdamW(reference.parameters(), lr=0.01, betas=BETAS, eps=EPS,
                                  weight_decay=decay)
    losses = torch.zeros(3, dtype=torch.float64)
    for step in range(3):
        x = torch.stack([documented_draw(int(key), p[k], step, 37) for k, key in enumerate(keys)])
        loss, *grads = reference.portable_loss_and_grads(x, importance)
        for parameter, grad in zip(reference.parameters(), grads, strict=True):
            parameter.grad = grad
        optimizer.step()
        losses += loss
    moments = torch.zeros(kernel.moments_shape(model.W.shape, tied))
    loss_sum = torch.zeros(3, dtype=torch.float64)
    kernel_steps(model, p, importance, keys, 0, 3, 37, decay, moments, loss_sum)
    torch.testing.assert_close(loss_sum, losses, rtol=1e-5, atol=0)
    for got, want in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_kernel_training_gives_the_same_bits_in_any_split_and_thread_count():
    runs = []
    threads = torch.get_num_threads()
    try:
        for threads_now, splits in ((1, [(0, 20)]), (2, [(0, 1), (1, 6), (7, 13)])):
            torch.set_num_threads(threads_now)
            model, p, importance, keys = kernel_case(False, "relu")
            moments = torch.zeros(kernel.moments_shape(model.W.shape, False))
            loss_sum = torch.zeros(3, dtype=torch.float64)
            for first, steps in splits:
                kernel_steps(model, p, importance, keys, first, steps, 37, 0.0, moments, loss_sum)
            runs.append([*model.parameters(), moments, loss_sum])
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a, b) for a, b in zip(*runs, strict=True))


def test_kernel_training_rejects_moments_of_another_shape():
    model, p, importance, keys = kernel_case(True, "linear")
    with pytest.raises(ValueError, match=r"moments need shape \(3, 2, 28\), got \(3, 2, 49\)"):
        kernel_steps(model, p, importance, keys, 0, 1, 8, 0.0, torch.zeros(3, 2, 49),
                     torch.zeros(3, dtype=torch.float64))


def test_sweeps_of_independent_features_to_reconstruct_draw_in_the_kernel():
    basic, cpu = experiments.BASIC["cpu"], torch.device("cpu")
    assert basic.drawn_in_kernel(cpu)
    assert not basic.drawn_in_kernel(torch.device("meta"))  # off the CPU: torch's sampler
    assert not replace(basic, n_hidden=kernel.MAX_HIDDEN + 1).drawn_in_kernel(cpu)
    assert not replace(basic, task="absolute-value").drawn_in_kernel(cpu)
    assert not replace(basic, feature_sets=(FeatureSets("correlated", 4),)).drawn_in_kernel(cpu)


def test_sweep_train_is_train_drawn_in_kernel_number_for_number():
    """ToySweep.train's glue (initialisation, keys from the same generator, the replicate layout
    of the history and weights) around train_drawn_in_kernel, bit for bit."""
    sweep = ToySweep(6, 2, (1.0, 0.1), (geometric_importance(6, 0.9),), replicates=2,
                     training=TrainConfig(steps=300, batch_size=32), seed=7)
    trained = sweep.train()
    generator = torch.Generator().manual_seed(7)
    p, importance = sweep.instance_tensors("cpu")
    model = ToyModel(sweep.n_instances, 6, 2, "relu", generator=generator)
    history = train_drawn_in_kernel(model, p[:, None].expand(-1, 6), importance, sweep.training,
                                    generator)
    assert torch.equal(model.W.detach().view(trained.replicate_W.shape), trained.replicate_W)
    assert torch.equal(history.view(trained.loss_history.shape), trained.loss_history)
