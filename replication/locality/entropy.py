"""Positional entropy: how spread over input positions an influence profile is."""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor


def positional_entropy(influence: Float[Tensor, "... pos"]) -> Float[Tensor, "..."]:
    """Entropy in bits of ``influence`` normalised to a distribution over its last axis.

    ``H = -sum_t P(t) log2 P(t)`` with ``P = J / sum_t J`` and ``0 log 0 = 0``, so
    ``0 <= H <= log2(pos)``. Guard: an all-zero profile (an output that no input position
    moves) has no spread and gets ``H = 0`` rather than a division by zero.
    """
    total = influence.sum(-1, keepdim=True)
    p = influence / torch.where(total > 0, total, torch.ones_like(total))
    return -(torch.xlogy(p, p).sum(-1)) / torch.log(torch.tensor(2.0, dtype=p.dtype))
