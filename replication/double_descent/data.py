"""Unit-norm sparse inputs, drawn once and kept sparse: a fixed training set or a test set.

Inputs follow the toy-model distribution (each feature active with probability p, U[0, 1]
when active) and are then rescaled to unit L2 norm. At n=1000 and p=0.01 a point has about
ten non-zero entries, so the points are stored as their non-zero entries only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from replication.toy.data import SparseFeatureSampler, normalise_rows

# Points drawn per sampler call: bounds the dense (rows × features) buffer of one draw.
DRAW_ELEMENTS = 1 << 24


@dataclass(frozen=True)
class SparsePoints:
    """``count`` points in ``n_features`` dimensions as their non-zero entries, row-major.

    Attributes:
        row: ``(nnz,)`` point of each entry (non-decreasing).
        feature: ``(nnz,)`` feature of each entry.
        value: ``(nnz,)`` value of each entry.
    """

    row: Int[Tensor, " nnz"]
    feature: Int[Tensor, " nnz"]
    value: Float[Tensor, " nnz"]
    count: int
    n_features: int

    def dense(self, start: int = 0, stop: int | None = None) -> Float[Tensor, "points feats"]:
        """Points ``start:stop`` as a dense ``(points, feats)`` matrix."""
        stop = self.count if stop is None else stop
        keep = (self.row >= start) & (self.row < stop)
        x = torch.zeros(stop - start, self.n_features, device=self.value.device)
        x[self.row[keep] - start, self.feature[keep]] = self.value[keep]
        return x


def draw_points(count: int, n_features: int, feature_probability: float,
                generator: torch.Generator) -> SparsePoints:
    """Draw ``count`` unit-norm sparse points (all-zero draws stay zero)."""
    device = generator.device
    p = torch.tensor([feature_probability], device=device)
    per_draw = max(1, min(count, DRAW_ELEMENTS // n_features))
    sampler = SparseFeatureSampler(p, n_features, per_draw, generator)
    rows, features, values = [], [], []
    for start in range(0, count, per_draw):  # a loop over memory-sized draws, not over points
        x = normalise_rows(sampler()[0, : count - start])
        row, feature = x.nonzero(as_tuple=True)
        rows.append(row + start)
        features.append(feature)
        values.append(x[row, feature])
    return SparsePoints(torch.cat(rows), torch.cat(features), torch.cat(values), count, n_features)
