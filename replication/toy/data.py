"""Synthetic sparse features: x_i = 0 with probability 1 - p, else U[0, 1].

:class:`SparseFeatureSampler` draws i.i.d. features, one density per instance, for every
instance at once. Sparse instances (small p) are drawn from the gaps between active entries
(geometric with parameter p) instead of one uniform per entry, so their cost scales with the
number of active entries; random-number generation is the dominant cost of a toy-model training
step otherwise.

:class:`FeatureSetSampler` draws features that come in sets (the paper's correlated and
anticorrelated feature sets, 'Correlated and Anticorrelated Features'), with a density per set;
singleton sets give independent features with a density per feature. :func:`signed` turns
either's values into U[−1, 1] ('Computation in Superposition').
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor

from replication.settings import check_choice

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

    def gap_draws(self) -> tuple[Int[Tensor, " gaps"], Float[Tensor, " gaps"]]:
        """The sparse instances' part of one draw, before it is scattered (one call draws
        ``2 × gaps`` uniforms, as ``__call__`` does after its dense instances).

        Returns:
            slot: each gap's index in the ``(inst, batch × feats + 1)`` buffer read flat: row =
                instance, column = ``feature × batch + example`` (feature-major), or the row's
                last column (the overflow bin) for a gap that ran past the batch.
            value: each gap's U[0, 1) value (it may be 0, i.e. not active after all).
        """
        u = torch.rand(2, len(self.owner), device=self.device, generator=self.generator)
        failures = torch.floor(torch.log1p(-u[0]) / self.log_q)  # Geometric(p), >= 0
        steps = failures.clamp_(max=self.slots).long() + 1
        reached = torch.cumsum(steps, 0)  # global running position, restarted per owner below
        before = torch.cat([reached.new_zeros(1), reached])[self.first_gap][self.owner]
        position = (reached - before - 1).clamp_(max=self.slots)  # slots: the overflow bin
        return self.row_offset + position, u[1]

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
            rows.view(-1).scatter_(0, *self.gap_draws())
        # Entries are i.i.d., so each row is read feature-major: (inst, feats, batch) storage
        # seen as (inst, batch, feats). ToyModel's matrix products run fastest on that layout.
        return rows[:, : self.slots].view(n_inst, feats, batch).transpose(1, 2)


def normalise_rows(x: Float[Tensor, "... feats"]) -> Float[Tensor, "... feats"]:
    """Rescale each input to unit L2 norm; all-zero inputs stay zero (no NaN)."""
    norm = x.norm(dim=-1, keepdim=True)
    return torch.where(norm > 0, x / norm.clamp_min(torch.finfo(x.dtype).tiny), x)


SET_KINDS = ("independent", "correlated", "anticorrelated")


class FeatureSetSampler:
    """Draws ``x: (inst, batch, feats)`` whose features come in consecutive sets.

    In instance k, feature i belongs to set ``i // set_sizes[k]``. Per example, each set is
    active with its density p, independently of the other sets, and otherwise all zero. An
    active set of kind

    * ``correlated``: every member is active ("we simply have the same sample determine whether
      they're zero"), each with its own U[0, 1] value;
    * ``anticorrelated``: exactly one member, chosen uniformly, is active with a U[0, 1] value
      ("only one randomly selected feature in the set");
    * ``independent``: sets of one feature, so each feature has its own density.

    Density 0 means never active (e.g. features padding a smaller model to a common size).
    Each entry costs two uniforms: its value and its activity draw u, of which only the first
    member's counts for a set (the anticorrelated choice reuses it: u < p makes u/p uniform on
    [0, 1)).

    Args:
        feature_probability: ``(inst, feats)`` density of each feature's set (members of a set
            share it), in [0, 1].
        kinds: one name of :data:`SET_KINDS` per instance.
        set_sizes: features per set, per instance (1 for ``independent``).
        batch_size: inputs per instance per draw.
        generator: the torch generator every draw comes from (seeded by the caller).
    """

    def __init__(self, feature_probability: Float[Tensor, "inst feats"], kinds: tuple[str, ...],
                 set_sizes: tuple[int, ...], batch_size: int, generator: torch.Generator):
        p = feature_probability.to(torch.float32)
        n_inst, n_features = p.shape
        if ((p < 0) | (p > 1)).any():
            raise ValueError(f"feature densities must lie in [0, 1], got {p.tolist()}")
        if not len(kinds) == len(set_sizes) == n_inst:
            raise ValueError(f"need one set kind and size per instance ({n_inst}), got "
                             f"{len(kinds)} and {len(set_sizes)}")
        for kind, size in zip(kinds, set_sizes, strict=True):
            check_choice("feature set kind", kind, SET_KINDS)
            if n_features % size or (kind == "independent" and size != 1):
                raise ValueError(f"{kind} sets of size {size} do not tile {n_features} features "
                                 "(independent features come in sets of 1)")
        sizes = torch.tensor(set_sizes, device=p.device)[:, None]
        rank = torch.arange(n_features, device=p.device) % sizes  # (inst, feats) rank within set
        self.leader = torch.arange(n_features, device=p.device) - rank  # first member's index
        if not torch.equal(p, p.gather(1, self.leader)):
            raise ValueError("the members of a feature set need one density")
        # Feature i is active when 0 <= (u/p)·k − r < 1 with u its set's uniform: k = set size and
        # r = its rank in an anticorrelated set (exactly one r fits), k = 1 and r = 0 otherwise.
        exclusive = torch.tensor([kind == "anticorrelated" for kind in kinds], device=p.device)[:, None]
        self.scale = (torch.where(exclusive, sizes, 1) / p)[:, :, None]  # (inst, feats, 1)
        self.offset = torch.where(exclusive, rank, 0).float()[:, :, None]
        self.generator, self.shape = generator, (n_inst, n_features, batch_size)

    def __call__(self) -> Float[Tensor, "inst batch feats"]:
        n_inst, feats, batch = self.shape
        device = self.scale.device
        u = torch.rand(n_inst, feats, batch, device=device, generator=self.generator)
        position = u.gather(1, self.leader[:, :, None].expand(-1, -1, batch))
        position.mul_(self.scale).sub_(self.offset)
        active = (position >= 0) & (position < 1)  # u = 0 with p = 0 gives NaN: never active
        values = torch.rand(n_inst, feats, batch, device=device, generator=self.generator)
        # Feature-major storage seen as (inst, batch, feats), as SparseFeatureSampler returns.
        return values.mul_(active).transpose(1, 2)


def signed(x: Float[Tensor, "... feats"]) -> Float[Tensor, "... feats"]:
    """Map every active value v ∈ (0, 1] to 2v − 1 (uniform on (−1, 1] if v is uniform), in
    place; zeros stay zero."""
    sign = x.sign()
    return x.mul_(2).sub_(1).mul_(sign)
