"""The 2-feature, 1-dimension phase diagram: closed-form losses and solution classes.

Features x1 (importance 1) and x2 (importance r), each active with probability s and then
U[0, 1]; one hidden dimension. Expected loss per input, Σ_i I_i (x_i − x'_i)², of the three
candidate solutions (our derivation, checked by Monte Carlo in tests/):

- W = [1, 0]: x1 passes exactly; x2's output is the constant its bias learns, its mean s/2,
  costing r·Var(x2) = r(s/3 − s²/4).
- W = [0, 1]: the mirror image, s/3 − s²/4.
- W = [1, −1], zero bias: exact when one feature is active; when both are (probability s²)
  each output loses min(x1, x2), and E[min²] = 1/6, so (1 + r)s²/6.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from replication.settings import check_choice
from replication.toy.sweep import ToySweep, TrainedSweep
from replication.toy.train import TrainConfig

SOLUTIONS = ("W=[1,0] (feature 2 ignored)", "W=[0,1] (feature 2 only)", "W=[1,-1] (antipodal)")
OTHER = -1
# How the replicates of one grid cell give its trained solution, by name.
AGGREGATIONS = {
    "best": "the class of the lowest-loss replicate",
    "drop-worst-vote": "the paper's protocol, 'we train ten models for each point and average over "
                       "the results, discarding the model with the highest loss', read for a class "
                       "as the most frequent class of the other replicates (a tie goes to the class "
                       "of the lowest-loss replicate among those tied)",
}


def closed_form_losses(r: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Expected loss per input of each solution in :data:`SOLUTIONS`; shape ``(..., 3)``."""
    r, s = np.broadcast_arrays(np.asarray(r, float), np.asarray(s, float))
    dropped = s / 3 - s**2 / 4
    return np.stack([r * dropped, dropped, (1 + r) * s**2 / 6], axis=-1)


def predicted_solution(r: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Index into :data:`SOLUTIONS` of the lowest closed-form loss."""
    return closed_form_losses(r, s).argmin(-1)


def classify(W: Float[Tensor, "... 1 2"], threshold: float = 0.5) -> np.ndarray:
    """Solution class of trained weights: which features have norm > threshold, and signs.

    Returns indices into :data:`SOLUTIONS`, or :data:`OTHER` for anything else (neither
    feature, or both with the same sign).
    """
    w = W[..., 0, :].detach().cpu().numpy()
    big = np.abs(w) > threshold
    result = np.full(w.shape[:-1], OTHER)
    result[big[..., 0] & ~big[..., 1]] = 0
    result[~big[..., 0] & big[..., 1]] = 1
    result[big[..., 0] & big[..., 1] & (w[..., 0] * w[..., 1] < 0)] = 2
    return result


def aggregate(classes: np.ndarray, losses: np.ndarray, how: str) -> np.ndarray:
    """One solution class per cell from its replicates, as :data:`AGGREGATIONS` describes.

    Args:
        classes: ``(cells, replicates)`` :func:`classify` of every replicate.
        losses: ``(cells, replicates)`` evaluation loss of every replicate.
        how: a name in :data:`AGGREGATIONS`.

    Returns: ``(cells,)`` classes.
    """
    check_choice("aggregation", how, tuple(AGGREGATIONS))
    order = np.argsort(losses, axis=1, kind="stable")  # best first
    ranked = np.take_along_axis(np.asarray(classes), order, axis=1)
    if how == "best":
        return ranked[:, 0]
    if ranked.shape[1] < 2:
        raise ValueError("drop-worst-vote needs at least 2 replicates per cell")
    kept = ranked[:, :-1]
    result = np.empty(len(kept), dtype=int)
    for cell, row in enumerate(kept):
        values, first, counts = np.unique(row, return_index=True, return_counts=True)
        tied = counts == counts.max()
        result[cell] = values[tied][np.argmin(first[tied])]
    return result


def away_from_boundary(predicted: np.ndarray) -> np.ndarray:
    """Grid cells whose four neighbours share their predicted class (boundary cells excluded)."""
    padded = np.pad(predicted, 1, mode="edge")
    same = np.ones_like(predicted, dtype=bool)
    for dr, dc in ((0, 1), (2, 1), (1, 0), (1, 2)):
        same &= padded[dr : dr + predicted.shape[0], dc : dc + predicted.shape[1]] == predicted
    return same


@dataclass(frozen=True)
class PhaseSweep:
    """The trained phase diagram: n=2, m=1 over the grid of relative importances × densities.

    The config of a :mod:`replication.artifact`; its artifact is :class:`TrainedPhase`.

    Args:
        ratios: the relative importances r of feature 2 (grid rows).
        densities: the feature densities s (grid columns).
        replicates: models trained per cell.
        aggregation: how a cell's replicates give its solution, a name in :data:`AGGREGATIONS`.
        training: optimisation settings.
        seed: seeds initialisation and data.
    """

    kind: ClassVar[str] = "toy-phase"

    ratios: tuple[float, ...]
    densities: tuple[float, ...]
    replicates: int
    aggregation: str
    training: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0

    def __post_init__(self):
        check_choice("aggregation", self.aggregation, tuple(AGGREGATIONS))

    @property
    def grid(self) -> tuple[np.ndarray, np.ndarray]:
        """``(ratios, densities)``: the grid's rows and columns."""
        return np.asarray(self.ratios), np.asarray(self.densities)

    @property
    def sweep(self) -> ToySweep:
        """The toy sweep that trains it: configuration (i, j) = (r_i, s_j), row-major."""
        return ToySweep(
            2, 1,
            feature_probability=tuple(s for _ in self.ratios for s in self.densities),
            importance=tuple((1.0, r) for r in self.ratios for _ in self.densities),
            replicates=self.replicates,
            training=self.training,
            seed=self.seed,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def train(self, device: torch.device | str = "cpu") -> TrainedPhase:
        return TrainedPhase(self, self.sweep.train(device))

    def from_tensors(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> TrainedPhase:
        return TrainedPhase(self, self.sweep.from_tensors(tensors, meta))


@dataclass
class TrainedPhase:
    """Every replicate of every cell of a :class:`PhaseSweep`, read as grids.

    Attributes:
        sweep: the trained toy sweep (its configurations are the cells, row-major).
    """

    config: PhaseSweep
    sweep: TrainedSweep

    def tensors(self) -> dict[str, Tensor]:
        return self.sweep.tensors()

    def meta(self) -> dict[str, Any]:
        return self.sweep.meta()

    def solutions(self) -> np.ndarray:
        """``(ratios, densities)``: each cell's trained solution class (:data:`SOLUTIONS` index or
        :data:`OTHER`), its replicates aggregated as the config says."""
        classes = classify(self.sweep.replicate_W)  # (cells, replicates)
        cells = aggregate(classes, self.sweep.replicate_loss.numpy(), self.config.aggregation)
        return cells.reshape(len(self.config.ratios), len(self.config.densities))

    def predicted(self) -> np.ndarray:
        """``(ratios, densities)``: the closed-form winner of each cell."""
        ratios, densities = self.config.grid
        return predicted_solution(ratios[:, None], densities[None, :])
