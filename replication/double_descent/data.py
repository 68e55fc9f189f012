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

from replication.toy.data import GAP_SAMPLING_BELOW, SparseFeatureSampler, normalise_rows

# Points per sampler call (rows × features ≤ this): fixes the random stream, and bounds the
# (rows × features) buffer of a dense draw.
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
    """Draw ``count`` unit-norm sparse points (all-zero draws stay zero).

    The points come from :class:`SparseFeatureSampler` draws of a memory-sized batch each (the
    same random stream at every density). Below ``GAP_SAMPLING_BELOW`` the draws' active entries
    are read off the sampler's gaps directly (:func:`sparse_draw`): no ``(points, feats)``
    buffer; otherwise each draw is a dense batch (:func:`dense_draw`).
    """
    device = generator.device
    p = torch.tensor([feature_probability], device=device)
    per_draw = max(1, min(count, DRAW_ELEMENTS // n_features))
    sampler = SparseFeatureSampler(p, n_features, per_draw, generator)
    draw = sparse_draw if feature_probability < GAP_SAMPLING_BELOW else dense_draw
    rows, features, values = [], [], []
    for start in range(0, count, per_draw):  # a loop over memory-sized draws, not over points
        row, feature, value = draw(sampler, min(per_draw, count - start))
        rows.append(row + start)
        features.append(feature)
        values.append(value)
    return SparsePoints(torch.cat(rows), torch.cat(features), torch.cat(values), count, n_features)


Entries = tuple[Int[Tensor, " nnz"], Int[Tensor, " nnz"], Float[Tensor, " nnz"]]


def dense_draw(sampler: SparseFeatureSampler, keep: int) -> Entries:
    """The first ``keep`` points of one draw of the one-instance ``sampler``, unit-normed, as
    their non-zero ``(row, feature, value)`` entries in row-major order."""
    x = normalise_rows(sampler()[0, :keep])
    row, feature = x.nonzero(as_tuple=True)
    return row, feature, x[row, feature]


def sparse_draw(sampler: SparseFeatureSampler, keep: int) -> Entries:
    """:func:`dense_draw` from the sampler's gaps alone (one sparse instance): the same entries
    in the same order, the values equal up to float rounding of the norms. Memory and time
    scale with the active entries, not with ``points × feats``."""
    slot, value = sampler.gap_draws()
    _, batch, n_features = sampler.shape
    active = (slot < sampler.slots) & (value > 0)  # not the overflow bin, not a zero draw
    slot, value = slot[active], value[active]
    feature, row = slot // batch, slot % batch  # the draw is feature-major
    kept = row < keep
    row, feature, value = row[kept], feature[kept], value[kept]
    order = torch.argsort(row * n_features + feature)  # row-major, as nonzero() lists them
    row, feature, value = row[order], feature[order], value[order]
    norm = torch.zeros(keep, device=value.device).index_add_(0, row, value.square()).sqrt_()
    return row, feature, value / norm[row]
