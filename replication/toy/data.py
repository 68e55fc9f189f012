"""Synthetic sparse features: x_i = 0 with probability 1 - p, else U[0, 1].

The sampler draws a batch for every instance at once. Sparse instances (small p) are drawn
from the gaps between active entries (geometric with parameter p) instead of one uniform per
entry, so their cost scales with the number of active entries; random-number generation is
the dominant cost of a toy-model training step otherwise.
"""

from __future__ import annotations

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

    Dense instances take one uniform per entry. Sparse instances take two uniforms per gap
    (the gap length and the active value), laid out flat with no padding between instances,
    and are scattered into one zero buffer.

    Args:
        feature_probability: ``(inst,)`` probability that a feature is active (1 − sparsity).
        n_features: features per input.
        batch_size: inputs per instance per draw.
        generator: the torch generator every draw comes from (seeded by the caller).
    """

    def __init__(
        self,
        feature_probability: Float[Tensor, " inst"],
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
        self.p_dense = p[self.dense_idx, None]
        sparse_idx = sparse.nonzero().squeeze(1)
        p_sparse = p[sparse_idx].double().cpu()
        mean, std = self.slots * p_sparse, (self.slots * p_sparse * (1 - p_sparse)).sqrt()
        n_gaps = (mean + SIGMAS * std).ceil().long() + SLACK  # gaps drawn per sparse instance
        # Flat gap layout: gap g belongs to sparse instance owner[g].
        owner = torch.repeat_interleave(torch.arange(len(n_gaps)), n_gaps).to(self.device)
        self.log_q = torch.log1p(-p[sparse_idx])[owner]  # (gaps,) log(1 − p) of each gap's owner
        self.first_gap = (torch.cumsum(n_gaps, 0) - n_gaps).to(self.device)  # (sparse inst,)
        self.owner = owner
        self.row_offset = (sparse_idx.to(self.device) * (self.slots + 1))[owner]  # (gaps,)

    def __call__(self) -> Float[Tensor, "inst batch feats"]:
        n_inst, batch, feats = self.shape
        # One row per instance, plus an overflow bin at the end of each row for gaps that run
        # past the batch. (No bool masks here: they cost several times more on CPU.)
        rows = torch.zeros(n_inst, self.slots + 1, device=self.device)
        if len(self.dense_idx):
            u = torch.rand(len(self.dense_idx), self.slots, device=self.device,
                           generator=self.generator)
            # 1 − u/p > 0 with probability p, and is then uniform on (0, 1].
            rows[:, : self.slots].index_copy_(0, self.dense_idx,
                                              u.div_(-self.p_dense).add_(1).clamp_min_(0))
        if len(self.owner):
            u = torch.rand(2, len(self.owner), device=self.device, generator=self.generator)
            failures = torch.floor(torch.log1p(-u[0]) / self.log_q)  # Geometric(p), >= 0
            steps = failures.clamp_(max=self.slots).long() + 1
            reached = torch.cumsum(steps, 0)  # global running position, restarted per owner below
            before = torch.cat([reached.new_zeros(1), reached])[self.first_gap][self.owner]
            position = (reached - before - 1).clamp_(max=self.slots)  # slots: the overflow bin
            rows.view(-1).scatter_(0, self.row_offset + position, u[1])
        # Entries are i.i.d., so each row is read feature-major: (inst, feats, batch) storage
        # seen as (inst, batch, feats). ToyModel's matrix products run fastest on that layout.
        return rows[:, : self.slots].view(n_inst, feats, batch).transpose(1, 2)


def normalise_rows(x: Float[Tensor, "... feats"]) -> Float[Tensor, "... feats"]:
    """Rescale each input to unit L2 norm; all-zero inputs stay zero (no NaN)."""
    norm = x.norm(dim=-1, keepdim=True)
    return torch.where(norm > 0, x / norm.clamp_min(torch.finfo(x.dtype).tiny), x)
