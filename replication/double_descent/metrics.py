"""Double-descent measurements: dimensionalities, hidden vectors, held-out losses."""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor

from replication.double_descent.data import SparsePoints
from replication.double_descent.model import packed_loss_and_grads
from replication.double_descent.packing import pack
from replication.toy.model import ToyModel


def padded(flat: Float[Tensor, "points hidden"], sizes: Int[Tensor, " configs"]
           ) -> Float[Tensor, "configs hidden max_points"]:
    """Per-configuration columns of consecutive rows of ``flat``, zero-padded to the largest set."""
    first = torch.cumsum(sizes, 0) - sizes
    position = torch.arange(int(sizes.max()), device=flat.device)
    valid = position < sizes[:, None]
    rows = torch.where(valid, first[:, None] + position, 0)
    return (flat[rows] * valid[..., None]).transpose(1, 2)


@torch.no_grad()
def hidden_vectors(W: Float[Tensor, "configs hidden feats"], points: SparsePoints,
                   sizes: Int[Tensor, " configs"]) -> Float[Tensor, "points hidden"]:
    """h = W_c x for every point, with W_c the model of the configuration owning the point."""
    config = torch.repeat_interleave(torch.arange(len(sizes), device=sizes.device), sizes)
    rows_w = W.transpose(1, 2)[config[points.row], points.feature]  # (nnz, hidden)
    h = torch.zeros(points.count, W.shape[1], device=W.device)
    return h.index_add_(0, points.row, rows_w * points.value[:, None])


@torch.no_grad()
def held_out_losses(model: ToyModel, test: SparsePoints, chunk_size: int = 128
                    ) -> tuple[Float[Tensor, " inst"], Float[Tensor, ""]]:
    """Mean over test points and features of (x − x')² per instance, and the all-zero predictor's.

    Every instance is scored on the same test set, packed once per instance so that the sparse
    training loss (:func:`~replication.double_descent.model.packed_loss_and_grads`) serves.
    With unit-norm inputs the all-zero predictor scores (fraction of non-zero points) / n.
    """
    n_inst, n = model.W.shape[0], model.W.shape[2]
    importance = torch.full((n_inst, n), 1.0 / n, device=model.W.device)
    sets = pack(test, (test.count,), n_inst, chunk_size)
    loss, _, _ = packed_loss_and_grads(model, sets, importance)
    zero = (test.value**2).sum() / (test.count * n)
    return loss, zero


def interior_peak_ratio(values: Float[Tensor, " configs"]) -> float:
    """Largest value strictly inside a 1-D sequence over the larger of its two ends (above 1:
    an interior peak)."""
    return float(values[1:-1].max() / torch.maximum(values[0], values[-1]))
