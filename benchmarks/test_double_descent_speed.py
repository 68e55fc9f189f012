"""Speed of the batched double-descent sweep, and of the layouts for sets of different sizes.

The benchmarks time their variants inside one run with the shared ``speed`` fixture (same
process, same work) and report the ratios in ``benchmark.extra_info`` and on stdout; nothing
asserts time. The reference configuration (the ARENA course's: n=1000, m=2, S=0.99, 10
instances per T, T = 3 … 3000, 15,000 steps) is timed with 1 and with 2 threads against the
course's structure: one model per T, dense inputs, autograd, Adam.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import replace

import pytest
import torch

from replication.double_descent import experiments
from replication.double_descent.data import draw_points
from replication.double_descent.model import packed_loss_and_grads, portable_loss_and_grads
from replication.double_descent.packing import pack
from replication.toy.model import ToyModel
from replication.toy.train import lr_factor

STEPS = 30  # reduced work: the cpu-scale sweep (every T, every replicate) for this many steps
REPEATS = 5  # loss-and-gradient evaluations timed per layout (the fastest is kept)
REFERENCE_STEPS, REFERENCE_INSTANCES = 15_000, 10  # the course's double-descent run
TIMED_STEPS = 10  # steps timed per T of the reference loop, and of the batched run


def seeded() -> torch.Generator:
    return torch.Generator().manual_seed(0)


@contextmanager
def threads(count: int = 1):
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def batched_sweep(config, points, packed=None) -> None:
    """The suite's way: every (training set, replicate) an instance of one packed model, one loop
    (``packed``: the sets packed beforehand, to time the training alone)."""
    n = config.n_features
    model = ToyModel(config.n_instances, n, config.n_hidden, generator=seeded())
    packed = packed or pack(points, config.set_sizes, config.replicates, config.chunk_size)
    importance = torch.full((config.n_instances, n), 1.0 / n)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.training.lr,
                                  weight_decay=config.training.weight_decay, fused=True)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, config.training))
    for _ in range(config.training.steps):
        _, model.W.grad, model.b.grad = packed_loss_and_grads(model, packed, importance)
        optimizer.step()
        schedule.step()


def per_t_loop(config, points, sizes=None) -> None:
    """The textbook way: a fresh model per T (its training sets as instances), dense x, autograd.

    ``sizes`` limits the loop to those T (default: every T of the sweep)."""
    n, first, per_t = config.n_features, 0, config.datasets * config.replicates
    for size in config.train_sizes:
        start, first = first, first + size * config.datasets  # this T's sets: rows start…first
        if sizes is not None and size not in sizes:
            continue
        x = torch.cat([points.dense(start + i * size, start + (i + 1) * size)[None]
                       for i in range(config.datasets)]).repeat_interleave(config.replicates, 0)
        model = ToyModel(per_t, n, config.n_hidden, generator=seeded())
        importance = torch.full((per_t, n), 1.0 / n)
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
        with threads(1):
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
    model = ToyModel(len(sizes) * replicates, n, config.n_hidden, generator=seeded())
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
            lambda: model.loss_and_grads(x.transpose(1, 2), importance, weight),
        **{f"packed C={c}": (lambda p: lambda: packed_loss_and_grads(model, p, importance))(
            pack(points, sizes, replicates, c)) for c in (max(sizes), 1, 128)},
        "packed C=128, portable torch path": (lambda p: lambda: portable_loss_and_grads(
            model, p, importance))(pack(points, sizes, replicates, 128)),
    }

    def compare():
        times = {}
        with threads(1):
            for name, step in layouts.items():
                times[name] = speed.best_seconds(step, rounds=REPEATS, warmup=step)
        fastest = min(times.values())
        benchmark.extra_info.update({f"{k}_ms": 1e3 * v for k, v in times.items()})
        print("\nloss and gradients of the cpu sweep, " + ", ".join(
            f"{k}: {1e3 * v:.1f} ms ({v / fastest:.1f}x)" for k, v in times.items()))

    benchmark.pedantic(compare, rounds=1, iterations=1)


@pytest.mark.parametrize("thread_count", [1, 2])
def test_reference_configuration_against_the_course_loop(benchmark, speed, thread_count):
    """The course's double-descent run, projected to its 15,000 steps: our one batched run over
    every T against the course's loop of one model per T (each T timed alone, summed)."""
    config = replace(experiments.sweep("cpu", 0), datasets=REFERENCE_INSTANCES,
                     training=replace(experiments.sweep("cpu", 0).training,
                                      steps=TIMED_STEPS, warmup_steps=1))
    points = draw_points(sum(config.set_sizes), config.n_features, config.feature_probability,
                         seeded())
    largest = max(config.train_sizes)
    packed = pack(points, config.set_sizes, config.replicates, config.chunk_size)

    def compare():
        with threads(thread_count):
            batched = speed.best_seconds(lambda: batched_sweep(config, points, packed), rounds=1,
                                         warmup=lambda: batched_sweep(config, points, packed))
            per_t = {t: speed.best_seconds(lambda t=t: per_t_loop(config, points, {t}), rounds=1)
                     for t in config.train_sizes}
            scale = REFERENCE_STEPS / TIMED_STEPS  # (ratio() prints the thread count in force)
            speed.ratio("reference run: course loop over every T vs batched, projected to 15,000 "
                        "steps", sum(per_t.values()) * scale, batched * scale)
            speed.ratio(f"reference run: course loop at T={largest} alone vs batched over every T",
                        per_t[largest] * scale, batched * scale)
        print(f"projected: batched {batched * scale / 60:.1f} min, course loop "
              f"{sum(per_t.values()) * scale / 3600:.1f} h")

    benchmark.pedantic(compare, rounds=1, iterations=1)
