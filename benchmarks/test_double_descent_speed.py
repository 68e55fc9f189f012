"""Speed of the batched double-descent sweep, and of the layouts for sets of different sizes.

Both benchmarks time their variants inside one run with the shared ``speed`` fixture (same
process, same work, one thread: the machines are shared and a second thread waiting for a busy
core distorts small operations) and report the ratios in ``benchmark.extra_info`` and on stdout;
nothing asserts time.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import replace

import pytest
import torch

from replication.double_descent import experiments
from replication.double_descent.data import draw_points
from replication.double_descent.model import PackedToyModel
from replication.double_descent.packing import pack
from replication.toy.model import ToyModel
from replication.toy.train import lr_factor

STEPS = 30  # reduced work: the cpu-scale sweep (every T, every replicate) for this many steps
REPEATS = 5  # loss-and-gradient evaluations timed per layout (the fastest is kept)


def seeded() -> torch.Generator:
    return torch.Generator().manual_seed(0)


@contextmanager
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def batched_sweep(config, points) -> None:
    """The suite's way: every (training set, replicate) an instance of one packed model, one loop."""
    n = config.n_features
    model = PackedToyModel(config.n_instances, n, config.n_hidden, generator=seeded())
    packed = pack(points, config.set_sizes, config.replicates, config.chunk_size)
    importance = torch.full((config.n_instances, n), 1.0 / n)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.training.lr,
                                  weight_decay=config.training.weight_decay, fused=True)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, config.training))
    for _ in range(config.training.steps):
        _, model.W.grad, model.b.grad = model.loss_and_grads(packed, importance)
        optimizer.step()
        schedule.step()


def per_t_loop(config, points) -> None:
    """The textbook way: a fresh model per training set (its replicates as instances), dense x,
    autograd."""
    n, first = config.n_features, 0
    for size in config.set_sizes:
        x = points.dense(first, first + size).expand(config.replicates, -1, -1)
        first += size
        model = ToyModel(config.replicates, n, config.n_hidden, generator=seeded())
        importance = torch.full((config.replicates, n), 1.0 / n)
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.training.lr,
                                      weight_decay=config.training.weight_decay)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer,
                                                     lambda s: lr_factor(s, config.training))
        for _ in range(config.training.steps):
            optimizer.zero_grad()
            model.loss(x, importance).sum().backward()
            optimizer.step()
            schedule.step()


def test_batched_sweep_against_a_per_t_loop(benchmark, speed):
    config = experiments.sweep("cpu", 0)
    config = replace(config, training=replace(config.training, steps=STEPS, warmup_steps=STEPS // 10))
    points = draw_points(sum(config.set_sizes), config.n_features, config.feature_probability,
                         seeded())

    def compare():
        with one_thread():
            batched = speed.best_seconds(lambda: batched_sweep(config, points), rounds=1)
            looped = speed.best_seconds(lambda: per_t_loop(config, points), rounds=1)
        speed.ratio(f"double descent, {STEPS} steps of the cpu sweep: batched vs per-T loop",
                    looped, batched, per=STEPS, unit="step")

    benchmark.pedantic(compare, rounds=1, iterations=1)


@pytest.mark.parametrize("replicates", [2])
def test_layouts_for_sets_of_different_sizes(benchmark, speed, replicates):
    """Dense padding with a mask (the engine as is) against the packed layout at C = max T
    (sparse padding), C = 1 (flat point list) and C = 128 (chunks)."""
    config = experiments.sweep("cpu", 0)
    sizes, n = config.train_sizes, config.n_features
    points = draw_points(sum(sizes), n, config.feature_probability, seeded())
    model = PackedToyModel(len(sizes) * replicates, n, config.n_hidden, generator=seeded())
    importance = torch.full((len(sizes) * replicates, n), 1.0 / n)
    x = torch.zeros(len(sizes) * replicates, n, max(sizes))  # feature-major, as the engine likes
    weight = torch.zeros(len(sizes) * replicates, max(sizes))
    first = 0
    for c, size in enumerate(sizes):  # building the padded reference, not timed
        x[c * replicates:(c + 1) * replicates, :, :size] = points.dense(first, first + size).T
        weight[c * replicates:(c + 1) * replicates, :size] = 1 / size
        first += size
    layouts = {
        "dense padding + mask":
            lambda: ToyModel.loss_and_grads(model, x.transpose(1, 2), importance, weight),
        **{f"packed C={c}": (lambda p: lambda: model.loss_and_grads(p, importance))(
            pack(points, sizes, replicates, c)) for c in (max(sizes), 1, 128)},
    }

    def compare():
        times = {}
        with one_thread():
            for name, step in layouts.items():
                times[name] = speed.best_seconds(step, rounds=REPEATS, warmup=step)
        fastest = min(times.values())
        benchmark.extra_info.update({f"{k}_ms": 1e3 * v for k, v in times.items()})
        print("\nloss and gradients of the cpu sweep, " + ", ".join(
            f"{k}: {1e3 * v:.1f} ms ({v / fastest:.1f}x)" for k, v in times.items()))

    benchmark.pedantic(compare, rounds=1, iterations=1)
