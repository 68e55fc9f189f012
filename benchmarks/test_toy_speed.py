"""Speed of the toy-model engine against the textbook training loop, on the same work.

The naive reference is the usual einsum model with autograd, ``torch.optim.Adam`` and fresh
dense ``torch.rand`` data (values and mask) every step: the structure of the ARENA superposition
course's solution. Both train the TMS basic sweep (n=20, m=5, seven densities, batch 1024) for
the same reduced number of steps in the same run, with 1 and with 2 threads; the engine's run
also scores its models on a final evaluation batch (16,384 inputs each), which the naive loop
skips. The ratio is reported, never asserted (run with ``--benchmark-enable`` to time it).

For the later sections' models (neuron model, untied absolute-value model, the m=2 bundle) the
closed-form gradients are timed against autograd on the same batch.
"""

from __future__ import annotations

import einops
import pytest
import torch

from replication.toy import experiments
from replication.toy.experiments import BASIC_DENSITIES
from replication.toy.model import ToyModel
from replication.toy.sweep import ToySweep, geometric_importance
from replication.toy.train import TrainConfig

STEPS = 1000  # the paper's run has 10,000; fewer keep CI short


def naive_training(steps: int, seed: int = 0) -> None:
    """Textbook loop: autograd through einsums, dense random data drawn twice per step."""
    torch.manual_seed(seed)
    n_inst, n, m, batch = len(BASIC_DENSITIES), 20, 5, 1024
    p = torch.tensor(BASIC_DENSITIES)
    importance = torch.tensor(geometric_importance(n, 0.7))
    W = torch.nn.Parameter(torch.nn.init.xavier_normal_(torch.empty(n_inst, m, n)))
    b = torch.nn.Parameter(torch.zeros(n_inst, n))
    optimizer = torch.optim.Adam([W, b], lr=1e-3)
    for _ in range(steps):
        values = torch.rand(batch, n_inst, n)
        x = torch.where(torch.rand(batch, n_inst, n) <= p[None, :, None], values, 0.0)
        h = einops.einsum(W, x, "inst hidden feats, batch inst feats -> batch inst hidden")
        out = einops.einsum(W, h, "inst hidden feats, batch inst hidden -> batch inst feats")
        out = torch.relu(out + b)
        loss = (importance * (x - out) ** 2).sum(-1).mean(0).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def engine_training(steps: int, seed: int = 0) -> None:
    sweep = ToySweep(20, 5, BASIC_DENSITIES, (geometric_importance(20, 0.7),),
                     training=TrainConfig(steps=steps, batch_size=1024), seed=seed)
    sweep.train()


@pytest.mark.parametrize("threads", [1, 2])
def test_engine_against_naive_loop(benchmark, speed, threads):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        naive = speed.best_seconds(lambda: naive_training(STEPS), warmup=lambda: naive_training(10))
        engine = speed.best_seconds(lambda: engine_training(STEPS),
                                    warmup=lambda: engine_training(10))
        speed.ratio("TMS basic sweep, engine vs naive loop", naive, engine, per=STEPS, unit="step")
        benchmark.pedantic(engine_training, args=(STEPS,), rounds=1, iterations=1)
    finally:
        torch.set_num_threads(before)


# The later sections' models at their cpu-scale sizes: closed-form gradients against autograd
# through ToyModel.loss, on the same batch (one gradient evaluation; the optimizer and the
# sampler are the same either way).
GRADIENT_CASES = {
    "neuron model": experiments.privileged_sweep("cpu", 0),
    "absolute value": experiments.absolute_sweep("cpu", 0),
    "m=2 bundle": experiments.two_dimensional_bundle("cpu", 0).sweep,
}


@pytest.mark.parametrize("case", GRADIENT_CASES)
def test_closed_form_gradients_against_autograd(benchmark, speed, case):
    sweep = GRADIENT_CASES[case]
    generator = torch.Generator().manual_seed(0)
    model = ToyModel(sweep.n_instances, sweep.n_features, sweep.n_hidden, sweep.activation,
                     generator=generator, hidden_activation=sweep.hidden_activation, tied=sweep.tied)
    x, target = sweep.batches(sweep.training.batch_size, generator, "cpu")()
    _, importance = sweep.instance_tensors("cpu")

    def closed_form():
        model.loss_and_grads(x, importance, None, target)

    def autograd():
        model.zero_grad(set_to_none=True)
        model.loss(x, importance, target=target).sum().backward()

    repeat = 20
    baseline = speed.best_seconds(lambda: [autograd() for _ in range(repeat)], warmup=autograd)
    candidate = speed.best_seconds(lambda: [closed_form() for _ in range(repeat)], warmup=closed_form)
    speed.ratio(f"{case} ({sweep.n_instances} instances, n={sweep.n_features}, m={sweep.n_hidden}): "
                "closed form vs autograd", baseline, candidate, per=repeat, unit="gradient")
    benchmark.pedantic(closed_form, rounds=1, iterations=1)
