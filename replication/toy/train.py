"""One training loop for every instance of a toy-model sweep.

Each step asks a batch source for ``(x, example_weight)``, takes the closed-form loss and
gradients of all instances at once and steps one fused optimizer (:func:`train`). The loop
itself (:func:`logged_loop`, also the SAE trainer's) does no host work per step: losses stay on
the device and are read once per progress update. On CPU, models trained on independent
features draw their data and take their optimizer steps inside the fused kernel, many steps per
call (:func:`train_drawn_in_kernel`); both share :func:`chunked_loop`'s bookkeeping.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from replication import smoke
from replication.settings import check_choice
from replication.toy import kernel
from replication.toy.model import ToyModel

OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("constant", "warmup_cosine")
Batch = tuple[Float[Tensor, "inst batch feats"], Float[Tensor, "inst batch"] | None]
Gradients = tuple[Float[Tensor, " inst"], Float[Tensor, "inst hidden feats"],
                  Float[Tensor, "inst 1 feats"]]
LossAndGrads = Callable[[ToyModel, Any, Float[Tensor, "inst feats"], Any], Gradients]


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings shared by every instance of a sweep.

    Args:
        steps: optimizer steps.
        batch_size: inputs per instance per step (ignored by fixed-data sources).
        lr: peak learning rate.
        optimizer: ``adam`` or ``adamw``.
        weight_decay: decoupled weight decay (``adamw`` only).
        schedule: ``constant`` or ``warmup_cosine`` (linear warm-up, cosine decay to zero).
        warmup_steps: length of the linear warm-up.
    """

    steps: int = 10_000
    batch_size: int = 1024
    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup_steps: int = 0

    def __post_init__(self):
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("schedule", self.schedule, SCHEDULES)
        if self.optimizer == "adam" and self.weight_decay:
            raise ValueError("weight_decay needs optimizer 'adamw'")

    def to_dict(self) -> dict:
        return asdict(self)


def lr_factor(step: int, config: TrainConfig) -> float:
    """Multiplier of the peak learning rate at ``step``."""
    if config.schedule == "constant":
        return 1.0
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


BETAS, EPS = (0.9, 0.999), 1e-8  # Adam's, in torch's optimizers and in the kernel's alike


def make_optimizer(model: ToyModel, config: TrainConfig) -> torch.optim.Optimizer:
    kind = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
    return kind(model.parameters(), lr=config.lr, betas=BETAS, eps=EPS,
                weight_decay=config.weight_decay, fused=True)


def chunked_loop(
    steps: int,
    run: Callable[[int, int, dict[str, Tensor]], None],
    description: str = "training",
    log_every: int = 500,
) -> dict[str, Float[Tensor, "logs inst"]]:
    """The progress, history and smoke bookkeeping of every batched training loop.

    ``run(start, count, sums)`` runs steps ``start … start + count − 1`` and adds each
    per-instance loss term, summed over those steps, into ``sums[name]`` (``loss`` first: the
    progress bar shows its mean). It is called for at most ``log_every`` steps at a time, and
    for the first step alone. The sums stay on the device; the host reads them once per log
    interval.

    In a smoke run (:mod:`replication.smoke`) only the first few steps run, and their rate,
    timed after the first step (allocation, compilation), is recorded against ``steps``.

    Returns: each loss term averaged over each log interval (the last one may be shorter).
    """
    history: dict[str, list[Tensor]] = {}
    planned, steps = steps, smoke.steps_to_run(steps)
    timed_from = time.perf_counter()
    with tqdm(total=steps, desc=description, leave=False, mininterval=1.0) as bar:
        for start in range(0, steps, log_every):
            count, sums = min(log_every, steps - start), {}
            run(start, 1, sums)
            if start == 0:
                timed_from = time.perf_counter()
            if count > 1:
                run(start + 1, count - 1, sums)
            for name, total in sums.items():
                history.setdefault(name, []).append(total / count)
            bar.set_postfix(loss=f"{next(iter(history.values()))[-1].mean().item():.4g}",
                            refresh=False)
            bar.update(count)
    smoke.note_loop(description, planned, steps, time.perf_counter() - timed_from)
    return {name: torch.stack(values) for name, values in history.items()}


def logged_loop(
    steps: int,
    step: Callable[[int], dict[str, Float[Tensor, " inst"]]],
    optimizer: torch.optim.Optimizer,
    schedules: Sequence[Any] = (),
    description: str = "training",
    log_every: int = 500,
) -> dict[str, Float[Tensor, "logs inst"]]:
    """:func:`chunked_loop` one step at a time (the toy models without kernel-drawn data, their
    SAEs): each step calls ``step(i)``, which sets the gradients and returns the per-instance
    loss terms, then steps the optimizer, clears the gradients and steps each of ``schedules``
    (anything with ``step()``)."""

    def run(start: int, count: int, sums: dict[str, Tensor]) -> None:
        for i in range(start, start + count):
            losses = step(i)
            optimizer.step()
            optimizer.zero_grad()
            for schedule in schedules:
                schedule.step()
            for name, value in losses.items():
                if name not in sums:
                    sums[name] = torch.zeros_like(value)
                sums[name] += value.detach()

    return chunked_loop(steps, run, description, log_every)


def train_drawn_in_kernel(
    model: ToyModel,
    feature_probability: Float[Tensor, "inst feats"],
    importance: Float[Tensor, "inst feats"],
    config: TrainConfig,
    generator: torch.Generator,
    description: str = "toy models",
    log_every: int = 500,
) -> Float[Tensor, "logs inst"]:
    """Train every instance of ``model`` in place on independent features, drawn with density
    ``feature_probability`` inside the fused kernel (:func:`~replication.toy.kernel.
    fused_train_steps`), which also takes the optimizer's steps: :func:`train`'s loss, optimizer
    and schedule with no per-step work in Python. Each instance's data stream is keyed by a
    number drawn from ``generator``.

    Returns: the mean loss per log interval ``(logs, inst)``.
    """
    W, b = model.W.data, model.b.data
    W_out = None if model.W_out is None else model.W_out.data
    keys = torch.randint(-2**63, 2**63 - 1, (len(W),), generator=generator, dtype=torch.int64)
    moments = torch.zeros(kernel.moments_shape(W.shape, W_out is None))
    adam = (*BETAS, EPS, config.weight_decay)

    def run(start: int, count: int, sums: dict[str, Tensor]) -> None:
        lr = torch.tensor([config.lr * lr_factor(s, config) for s in range(start, start + count)])
        sums.setdefault("loss", torch.zeros(len(W), dtype=torch.float64))
        kernel.fused_train_steps(W, W_out, b, model.activation == "relu",
                                 model.hidden_activation == "relu", config.batch_size,
                                 feature_probability, importance, keys, start, lr, adam, moments,
                                 sums["loss"])

    return chunked_loop(config.steps, run, description, log_every)["loss"].float()


def train(
    model: ToyModel,
    next_batch: Callable[[], Batch],
    importance: Float[Tensor, "inst feats"],
    config: TrainConfig,
    description: str = "toy models",
    log_every: int = 500,
    loss_and_grads: LossAndGrads | None = None,
) -> Float[Tensor, "logs inst"]:
    """Train every instance of ``model`` in place; returns the mean loss per log interval.

    Gradients are the closed form ``loss_and_grads(model, x, importance, example_weight)`` of
    the batches (default: the model's own, for dense batches), stepped by one fused optimizer.
    A batch source with its own batch layout brings its own (e.g. the packed training sets of
    :class:`replication.double_descent.model.PackedBatches`).
    """
    gradients = loss_and_grads or type(model).loss_and_grads
    optimizer = make_optimizer(model, config)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, config))

    def step(_: int) -> dict[str, Tensor]:
        x, example_weight = next_batch()
        loss, model.W.grad, model.b.grad = gradients(model, x, importance, example_weight)
        return {"loss": loss}

    return logged_loop(config.steps, step, optimizer, (schedule,), description, log_every)["loss"]
