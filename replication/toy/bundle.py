"""Several toy sweeps of one hidden size trained as one batched run.

Small experiments (n = 4, 5, 6 features into m = 2 dimensions) cost little arithmetic each, so a
run of them is dominated by the per-step overhead of the loop; trained together they share it.
A smaller model is padded to the largest n with features that are never active (density 0) and
carry no importance: their inputs are zero, their outputs are not scored, so their weights get
no gradient and the padded model computes exactly what the smaller one would. (Only the
xavier-normal initialisation sees the padded n: its standard deviation is √(2/(n_max + m))
instead of √(2/(n + m)).)

:class:`ToyBundle` is the config of a :mod:`replication.artifact`, :class:`TrainedBundle` its
artifact; ``bundle.part(name)`` gives each experiment back as its own
:class:`~replication.toy.sweep.TrainedSweep`, trimmed to its own features.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, ClassVar

import torch
from torch import Tensor

from replication.toy.sweep import ToySweep, TrainedSweep

# Fields every part of a bundle shares with the run (everything but the per-configuration ones).
PER_CONFIGURATION = ("n_features", "feature_probability", "importance", "feature_sets")


@dataclass(frozen=True)
class ToyBundle:
    """Named toy sweeps trained as one.

    Args:
        parts: ``(name, sweep)`` pairs; the sweeps agree on every field but
            :data:`PER_CONFIGURATION` (hidden size, model, replicates, training, seed).
    """

    kind: ClassVar[str] = "toy-bundle"

    parts: tuple[tuple[str, ToySweep], ...]

    def __post_init__(self):
        names = [name for name, _ in self.parts]
        if len(set(names)) != len(names):
            raise ValueError(f"part names must be unique, got {names}")
        first = self.parts[0][1]
        for name, sweep in self.parts[1:]:
            for f in fields(ToySweep):
                if f.name not in PER_CONFIGURATION and getattr(sweep, f.name) != getattr(first, f.name):
                    raise ValueError(f"part {name!r} has {f.name}={getattr(sweep, f.name)!r}, the "
                                     f"first part {getattr(first, f.name)!r}; a bundle shares it")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def n_features(self) -> int:
        return max(sweep.n_features for _, sweep in self.parts)

    @property
    def sweep(self) -> ToySweep:
        """The one sweep that trains every part: configurations part by part, features padded
        to :attr:`n_features` with density 0 and importance 0."""
        n = self.n_features
        probability, importance, sets = [], [], []
        for _, part in self.parts:
            pad = (0.0,) * (n - part.n_features)
            probability += [(p if isinstance(p, tuple) else (p,) * part.n_features) + pad
                            for p in part.feature_probability]
            importance += [row + pad for row in part.per_config(part.importance)]
            sets += part.per_config(part.feature_sets)
        return replace(self.parts[0][1], n_features=n, feature_probability=tuple(probability),
                       importance=tuple(importance), feature_sets=tuple(sets))

    def train(self, device: torch.device | str = "cpu") -> TrainedBundle:
        return TrainedBundle(self, self.sweep.train(device))

    def from_tensors(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> TrainedBundle:
        return TrainedBundle(self, self.sweep.from_tensors(tensors, meta))


@dataclass
class TrainedBundle:
    """The trained run of a :class:`ToyBundle`, read part by part."""

    config: ToyBundle
    sweep: TrainedSweep

    def tensors(self) -> dict[str, Tensor]:
        return self.sweep.tensors()

    def meta(self) -> dict[str, Any]:
        return self.sweep.meta()

    def part(self, name: str) -> TrainedSweep:
        """The part ``name`` as if trained alone: its configurations, its own features."""
        start = 0
        for part_name, part in self.config.parts:
            if part_name == name:
                rows, n = slice(start, start + part.n_configs), part.n_features
                s = self.sweep
                return TrainedSweep(
                    config=part, W=s.W[rows, :, :n], b=s.b[rows, :n], loss=s.loss[rows],
                    replicate_W=s.replicate_W[rows, :, :, :n], replicate_loss=s.replicate_loss[rows],
                    loss_history=s.loss_history[:, rows],
                    W_out=None if s.W_out is None else s.W_out[rows, :, :n])
            start += part.n_configs
        raise ValueError(f"unknown part {name!r}; accepted: "
                         f"{', '.join(name for name, _ in self.config.parts)}")
