"""Double-descent measurements: dimensionalities, hidden vectors, held-out losses."""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor

from replication.double_descent.data import SparsePoints
from replication.toy.model import ToyModel

EVAL_ROWS = 1024  # test points per evaluation batch


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
def held_out_losses(model: ToyModel, test: SparsePoints
                    ) -> tuple[Float[Tensor, " inst"], Float[Tensor, ""]]:
    """Mean over test points and features of (x − x')² per instance, and the all-zero predictor's.

    With unit-norm inputs the all-zero predictor scores (fraction of non-zero points) / n.
    """
    n_inst, n = model.W.shape[0], model.W.shape[2]
    importance = torch.full((n_inst, n), 1.0 / n, device=model.W.device)
    total = torch.zeros(n_inst, device=model.W.device)
    for start in range(0, test.count, EVAL_ROWS):  # memory-sized batches of one shared test set
        x = test.dense(start, min(start + EVAL_ROWS, test.count))
        total += model.loss(x.expand(n_inst, -1, -1), importance) * len(x)
    zero = (test.value**2).sum() / (test.count * n)
    return total / test.count, zero
