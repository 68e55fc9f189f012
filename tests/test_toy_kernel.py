"""The fused CPU toy kernel against the torch closed form, for every model variant."""

from __future__ import annotations

import itertools

import pytest
import torch

from replication.toy import kernel
from replication.toy.model import ToyModel

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
