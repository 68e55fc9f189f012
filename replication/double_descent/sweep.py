"""One batched training run over every training-set size T, and what the claims read from it.

Every T owns ``datasets`` independent training sets (the paper averages its test loss over
several dataset seeds); every set is trained by ``replicates`` instances that differ only in
initialisation. Instances are laid out T-major: instance = (T index · datasets + dataset) ·
replicates + replicate. After training, the replicate with the lowest training loss is kept per
training set and scored on one fresh test set shared by every T.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import ClassVar

import torch
from jaxtyping import Float, Int
from torch import Tensor

from replication.double_descent.data import draw_points
from replication.double_descent.metrics import (
    held_out_losses,
    hidden_vectors,
    padded,
)
from replication.double_descent.model import PackedBatches, packed_loss_and_grads
from replication.double_descent.packing import pack
from replication.toy.metrics import dimensionality
from replication.toy.model import ToyModel
from replication.toy.train import TrainConfig, train

DD_TRAIN = TrainConfig(steps=50_000, lr=1e-3, optimizer="adamw", weight_decay=1e-2,
                       schedule="warmup_cosine", warmup_steps=2_500)


@dataclass(frozen=True)
class DoubleDescentSweep:
    """A sweep over training-set sizes T with fixed training sets.

    Args:
        n_features: n, features per input.
        n_hidden: m, hidden dimensions.
        feature_probability: 1 − S, probability that a feature is active.
        train_sizes: the T of each configuration.
        datasets: independent training sets per T (each its own draw of T points).
        replicates: instances per training set (same set, different initialisation); the one
            with the lowest training loss is kept.
        training: optimisation settings (full batch: ``batch_size`` is unused).
        test_size: points in the held-out test set shared by every T.
        chunk_size: slots per chunk of the packed layout (speed only; it fixes the float
            summation order, so it belongs to the configuration).
        seed: seeds initialisation, training sets and test set.
    """

    n_features: int
    n_hidden: int
    feature_probability: float
    train_sizes: tuple[int, ...]
    datasets: int
    replicates: int = 1
    training: TrainConfig = field(default_factory=lambda: DD_TRAIN)
    test_size: int = 10_000
    chunk_size: int = 128
    seed: int = 0

    @property
    def set_sizes(self) -> tuple[int, ...]:
        """T of every training set, T-major (the ``datasets`` sets of a T are consecutive)."""
        return tuple(t for t in self.train_sizes for _ in range(self.datasets))

    @property
    def n_instances(self) -> int:
        return len(self.set_sizes) * self.replicates

    kind: ClassVar[str] = "double-descent"

    def to_dict(self) -> dict:
        return asdict(self)

    def train(self, device: torch.device) -> TrainedDoubleDescent:
        return train_double_descent(self, device)

    def from_tensors(self, tensors: dict[str, Tensor], meta: dict) -> TrainedDoubleDescent:
        return TrainedDoubleDescent(config=self, **tensors)


@dataclass
class TrainedDoubleDescent:
    """The kept model of every training set and what was measured on it.

    Attributes:
        W: ``(configs, datasets, hidden, feats)``; b: ``(configs, datasets, feats)``.
        hidden: ``(Σ set sizes, hidden)`` training points' hidden vectors under their set's kept
            model, sets in :attr:`DoubleDescentSweep.set_sizes` order.
        train_loss: ``(configs, datasets, replicates)`` final training loss of every instance
            (mean over points and features).
        test_loss: ``(configs, datasets)`` test loss of each kept model (mean over points and
            features).
        zero_loss: ``()`` test loss of the all-zero predictor on the same test set.
        loss_history: ``(logs, configs, datasets, replicates)`` training loss per log interval.
    """

    config: DoubleDescentSweep
    W: Float[Tensor, "configs datasets hidden feats"]
    b: Float[Tensor, "configs datasets feats"]
    hidden: Float[Tensor, "points hidden"]
    train_loss: Float[Tensor, "configs datasets replicates"]
    test_loss: Float[Tensor, "configs datasets"]
    zero_loss: Float[Tensor, ""]
    loss_history: Float[Tensor, "logs configs datasets replicates"]

    def tensors(self) -> dict[str, Tensor]:
        return {k: getattr(self, k) for k in
                ("W", "b", "hidden", "train_loss", "test_loss", "zero_loss", "loss_history")}

    def summary(self) -> str:
        """The sweep's setup in one sentence, for a claim's card."""
        config = self.config
        return (f"n={config.n_features}, m={config.n_hidden}, "
                f"S={1 - config.feature_probability:g}, {config.training.steps} steps, weight "
                f"decay {config.training.weight_decay:g}; {config.datasets} independent training "
                f"sets per T, {config.replicates} model(s) per set (lowest training loss kept); "
                f"test set of {config.test_size} fresh points.")

    @property
    def sizes(self) -> Int[Tensor, " configs"]:
        return torch.tensor(self.config.train_sizes)

    @property
    def kept_train_loss(self) -> Float[Tensor, "configs datasets"]:
        """Training loss of each kept model; a memorised set's loss, 0 up to rounding of the
        expanded square, is shown as 0."""
        return self.train_loss.min(-1).values.clamp_min(0)

    @property
    def test_over_zero(self) -> Float[Tensor, "configs datasets"]:
        """Test loss in units of the all-zero predictor's (above 1: worse than predicting 0)."""
        return self.test_loss / self.zero_loss

    @property
    def weight_norm(self) -> Float[Tensor, "configs datasets"]:
        """‖W‖_F of each kept model."""
        return self.W.norm(dim=(-2, -1))

    @property
    def bias_norm(self) -> Float[Tensor, "configs datasets"]:
        """‖b‖ of each kept model."""
        return self.b.norm(dim=-1)

    def hidden_columns(self) -> Float[Tensor, "configs datasets hidden max_points"]:
        """Each training set's hidden vectors as columns, zero-padded to the largest T."""
        columns = padded(self.hidden, torch.tensor(self.config.set_sizes))
        return columns.view(*self.W.shape[:2], *columns.shape[1:])

    def data_dimensionality(self) -> Float[Tensor, "configs datasets max_points"]:
        """D_X of every training point, zero-padded past each T."""
        return dimensionality(self.hidden_columns())

    def feature_dimensionality(self) -> Float[Tensor, "configs datasets feats"]:
        """D_i of every feature of the kept models."""
        return dimensionality(self.W)


def train_double_descent(config: DoubleDescentSweep, device: torch.device | str = "cpu"
                         ) -> TrainedDoubleDescent:
    """Train every (T, training set, replicate) instance in one loop; keep the best replicate
    per training set."""
    generator = torch.Generator(device).manual_seed(config.seed)
    n, set_sizes = config.n_features, config.set_sizes
    grid = (len(config.train_sizes), config.datasets)
    model = ToyModel(config.n_instances, n, config.n_hidden, generator=generator, device=device)
    points = draw_points(sum(set_sizes), n, config.feature_probability, generator)
    test = draw_points(config.test_size, n, config.feature_probability, generator)
    packed = pack(points, set_sizes, config.replicates, config.chunk_size)
    importance = torch.full((config.n_instances, n), 1.0 / n, device=device)
    batches = PackedBatches(packed)
    history = train(model, batches, importance, config.training,
                    description=f"double descent n={n} m={config.n_hidden} ×{config.n_instances}",
                    loss_and_grads=batches.loss_and_grads)
    final, _, _ = packed_loss_and_grads(model, packed, importance)
    final = final.view(len(set_sizes), config.replicates)
    kept = torch.arange(len(set_sizes), device=device) * config.replicates + final.argmin(1)
    best = ToyModel.from_tensors(model.W.detach()[kept], model.b.detach()[kept], "relu")
    test_loss, zero_loss = held_out_losses(best, test)
    hidden = hidden_vectors(best.W.detach(), points, torch.tensor(set_sizes, device=device))
    return TrainedDoubleDescent(
        config=config,
        W=best.W.detach().view(*grid, config.n_hidden, n).cpu(),
        b=best.b.detach()[:, 0].view(*grid, n).cpu(),
        hidden=hidden.cpu(),
        train_loss=final.view(*grid, config.replicates).cpu(),
        test_loss=test_loss.view(grid).cpu(),
        zero_loss=zero_loss.cpu(),
        loss_history=history.view(-1, *grid, config.replicates).cpu(),
    )
