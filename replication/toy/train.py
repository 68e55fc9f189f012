"""One training loop for every instance of a toy-model sweep.

Each step asks a batch source for ``(x, example_weight)``, takes the closed-form loss and
gradients of all instances at once and steps one fused optimizer. The loop itself
(:func:`logged_loop`, also the SAE trainer's) does no host work per step: losses stay on the
device and are read once per progress update.
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


def make_optimizer(model: ToyModel, config: TrainConfig) -> torch.optim.Optimizer:
    kind = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
    return kind(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=True)


def logged_loop(
    steps: int,
    step: Callable[[int], dict[str, Float[Tensor, " inst"]]],
    optimizer: torch.optim.Optimizer,
    schedules: Sequence[Any] = (),
    description: str = "training",
    log_every: int = 500,
) -> dict[str, Float[Tensor, "logs inst"]]:
    """The training loop shared by every batched trainer (toy models, their SAEs).

    Each of ``steps`` iterations calls ``step(i)``, which sets the gradients and returns the
    per-instance loss terms (``loss`` first: the progress bar shows its mean), then steps the
    optimizer, clears the gradients and steps each of ``schedules`` (anything with ``step()``).
    The loss terms are summed on the device; the host reads them once per log interval.

    In a smoke run (:mod:`replication.smoke`) only the first few steps run, and their rate is
    recorded against ``steps``.

    Returns: each loss term averaged over each log interval (the last one may be shorter).
    """
    history: dict[str, list[Tensor]] = {}
    running: dict[str, Tensor] = {}
    planned, steps = steps, smoke.steps_to_run(steps)
    timed_from = time.perf_counter()
    with tqdm(total=steps, desc=description, leave=False, mininterval=1.0) as bar:
        for i in range(steps):
            if i == 1:  # the first step (allocation, compilation) is not timed
                timed_from = time.perf_counter()
            losses = step(i)
            optimizer.step()
            optimizer.zero_grad()
            for schedule in schedules:
                schedule.step()
            for name, value in losses.items():
                if name not in running:
                    running[name] = torch.zeros_like(value)
                running[name] += value.detach()
            if (i + 1) % log_every == 0 or i + 1 == steps:
                for name, total in running.items():
                    history.setdefault(name, []).append(total / ((i % log_every) + 1))
                running = {}
                bar.set_postfix(loss=f"{next(iter(history.values()))[-1].mean().item():.4g}",
                                refresh=False)
                bar.update((i % log_every) + 1)
    smoke.note_loop(description, planned, steps, time.perf_counter() - timed_from)
    return {name: torch.stack(values) for name, values in history.items()}


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
