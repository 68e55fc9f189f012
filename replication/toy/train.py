"""One training loop for every instance of a toy-model sweep.

Each step asks a batch source for ``(x, example_weight)``, takes the closed-form loss and
gradients of all instances at once and steps one fused optimizer. The loop does no host work
per step: losses stay on the device and are read once per progress update.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from replication.settings import check_choice
from replication.toy.model import ToyModel

OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("constant", "warmup_cosine")
Batch = tuple[Float[Tensor, "inst batch feats"], Float[Tensor, "inst batch"] | None]


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


def train(
    model: ToyModel,
    next_batch: Callable[[], Batch],
    importance: Float[Tensor, "inst feats"],
    config: TrainConfig,
    description: str = "toy models",
    log_every: int = 500,
) -> Float[Tensor, "logs inst"]:
    """Train every instance of ``model`` in place; returns the mean loss per log interval."""
    optimizer = make_optimizer(model, config)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, config))
    history, running = [], torch.zeros(model.W.shape[0], device=model.W.device)
    with tqdm(total=config.steps, desc=description, leave=False, mininterval=1.0) as bar:
        for step in range(config.steps):
            x, example_weight = next_batch()
            loss, model.W.grad, model.b.grad = model.loss_and_grads(x, importance, example_weight)
            optimizer.step()
            schedule.step()
            running += loss
            if (step + 1) % log_every == 0 or step + 1 == config.steps:
                history.append(running / ((step % log_every) + 1))
                running = torch.zeros_like(running)
                bar.set_postfix(loss=f"{history[-1].mean().item():.4g}", refresh=False)
                bar.update((step % log_every) + 1)
    return torch.stack(history)
