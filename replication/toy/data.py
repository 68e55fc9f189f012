"""Synthetic sparse features: x_i = 0 with probability 1 - p, else U[0, 1].

The sampler draws a batch for every instance at once. Sparse instances (small p) are drawn
from the gaps between active entries (geometric with parameter p) instead of one uniform per
entry, so their cost scales with the number of active entries; random-number generation is
the dominant cost of a toy-model training step otherwise.
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Float
from torch import Tensor

# Below this probability, drawing gaps (2 uniforms per active entry) beats one uniform per entry.
GAP_SAMPLING_BELOW = 0.35
# Gaps drawn per instance: mean + 8 standard deviations + 16 of the active count, so a batch is
# cut short with probability below 1e-15 (Chernoff), i.e. never in any practical run.
SIGMAS, SLACK = 8.0, 16


class SparseFeatureSampler:
    """Draws ``x: (inst, batch, feats)`` with entries active independently with ``p[inst]``.

    Args:
        feature_probability: ``(inst,)`` probability that a feature is active (1 − sparsity).
        n_features: features per input.
        batch_size: inputs per instance per draw.
        generator: the torch generator every draw comes from (seeded by the caller).
    """

    def __init__(
        self,
        feature_probability: Float[Tensor, "inst"],
        n_features: int,
        batch_size: int,
        generator: torch.Generator,
    ):
        p = feature_probability.to(torch.float32)
        if ((p <= 0) | (p > 1)).any():
            raise ValueError(f"feature probabilities must lie in (0, 1], got {p.tolist()}")
        self.generator = generator
        self.device = p.device
        self.shape = (len(p), batch_size, n_features)
        self.slots = batch_size * n_features
        sparse = p < GAP_SAMPLING_BELOW
        self.dense_idx = (~sparse).nonzero().squeeze(1)
        self.sparse_idx = sparse.nonzero().squeeze(1)
        self.p_dense = p[self.dense_idx, None]
        self.log_q_sparse = torch.log1p(-p[self.sparse_idx, None])
        active = self.slots * p[self.sparse_idx].double()
        spread = (self.slots * p[self.sparse_idx].double() * (1 - p[self.sparse_idx].double())).sqrt()
        self.n_gaps = int(math.ceil((active + SIGMAS * spread).max().item())) + SLACK if sparse.any() else 0

    def __call__(self) -> Float[Tensor, "inst batch feats"]:
        x = torch.empty(self.shape[0], self.slots + 1, device=self.device)  # last slot: overflow bin
        if len(self.dense_idx):
            u = torch.rand(len(self.dense_idx), self.slots, device=self.device, generator=self.generator)
            x[self.dense_idx, : self.slots] = torch.where(u < self.p_dense, u / self.p_dense, 0.0)
        if len(self.sparse_idx):
            u = torch.rand(2, len(self.sparse_idx), self.n_gaps, device=self.device, generator=self.generator)
            failures = torch.floor(torch.log1p(-u[0]) / self.log_q_sparse)  # Geometric(p), >= 0
            position = torch.cumsum(failures + 1, dim=1) - 1
            position = position.clamp_(max=self.slots).long()  # past the batch -> overflow bin
            active = torch.zeros(len(self.sparse_idx), self.slots + 1, device=self.device)
            x[self.sparse_idx] = active.scatter_(1, position, u[1])
        # Entries are i.i.d., so the buffer is read feature-major: (inst, feats, batch) storage
        # seen as (inst, batch, feats). ToyModel's matrix products run fastest on that layout.
        n_inst, batch, feats = self.shape
        return x[:, : self.slots].view(n_inst, feats, batch).transpose(1, 2)


def normalise_rows(x: Float[Tensor, "... feats"]) -> Float[Tensor, "... feats"]:
    """Rescale each input to unit L2 norm; all-zero inputs stay zero (no NaN)."""
    norm = x.norm(dim=-1, keepdim=True)
    return torch.where(norm > 0, x / norm.clamp_min(torch.finfo(x.dtype).tiny), x)
