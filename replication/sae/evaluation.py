"""Score every SAE of a trained sweep on fresh activations of its toy model."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from replication.sae import metrics
from replication.sae.train import TrainedToySAEs
from replication.toy.metrics import represented
from replication.toy.sweep import TrainedSweep

EVAL_SAMPLES = 16_384
EVAL_SEED_OFFSET = 1_000_003  # evaluation inputs never repeat the training stream


@dataclass
class SAEEvaluation:
    """Per-SAE metrics; every field has a leading ``inst`` axis (the sweep's SAE layout).

    Attributes:
        recovery: fraction of represented features matched by a latent with |cos| > 0.9.
        recovery_signed: the same with cos > 0.9 (an antipode does not count).
        mmcs_features, mmcs_latents: mean max |cos| feature → latents and latent → features.
        fvu: fraction of variance of h the reconstruction leaves unexplained.
        mse: sae-lens's reconstruction loss, Σ_hidden (h − ĥ)² averaged over inputs.
        procrustes: 1 − scipy's Procrustes disparity between h and ĥ.
        l0: mean active latents per input.
        dead, dense: latents that never fire / fire more than twice as often as a true feature.
        n_represented: toy features with ‖W_i‖ > 0.5.
        cosines: ``(inst, feats, d_sae)`` cos between features and decoder rows (signed).
        represented: ``(inst, feats)``; frequency: ``(inst, d_sae)`` latent firing frequency.
        toy_config: ``(inst,)`` the toy configuration each SAE reads.
    """

    recovery: Float[Tensor, " inst"]
    recovery_signed: Float[Tensor, " inst"]
    mmcs_features: Float[Tensor, " inst"]
    mmcs_latents: Float[Tensor, " inst"]
    fvu: Float[Tensor, " inst"]
    mse: Float[Tensor, " inst"]
    procrustes: Float[Tensor, " inst"]
    l0: Float[Tensor, " inst"]
    dead: Float[Tensor, " inst"]
    dense: Float[Tensor, " inst"]
    n_represented: Float[Tensor, " inst"]
    cosines: Float[Tensor, "inst feats d_sae"]
    represented: Bool[Tensor, "inst feats"]
    frequency: Float[Tensor, "inst d_sae"]
    toy_config: Int[Tensor, " inst"]

    def grid(self, name: str, variants: int) -> Tensor:
        """Field ``name`` laid out ``(configs, variants, ...)``."""
        value = getattr(self, name)
        return value.view(-1, variants, *value.shape[1:])

    def select(self, index: Tensor) -> SAEEvaluation:
        """The evaluation of the SAEs ``index`` (a ``(k,)`` index tensor) only."""
        return SAEEvaluation(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def cpu(self) -> SAEEvaluation:
        return SAEEvaluation(**{f.name: getattr(self, f.name).cpu() for f in fields(self)})

    @classmethod
    def merge(cls, parts: list[SAEEvaluation]) -> SAEEvaluation:
        """Evaluations of SAE sweeps over disjoint toy configurations, ordered by toy
        configuration (then by variant, as within each sweep)."""
        joined = cls(
            **{f.name: torch.cat([getattr(p, f.name) for p in parts]) for f in fields(cls)}
        )
        return joined.select(torch.argsort(joined.toy_config, stable=True))


@torch.no_grad()
def evaluate(
    trained: TrainedToySAEs,
    toy: TrainedSweep,
    n_samples: int = EVAL_SAMPLES,
    device: torch.device | str = "cpu",
) -> SAEEvaluation:
    """Score every SAE of ``trained`` on ``n_samples`` fresh inputs of its toy model."""
    config = trained.config
    generator = torch.Generator(device).manual_seed(config.seed + EVAL_SEED_OFFSET)
    h = config.activations(toy, n_samples, generator)()
    index = config.toy_index(device)
    p = torch.tensor(config.toy.feature_probability, device=device)
    stack = trained.stack(device)
    acts, h_hat = stack(h)
    frequency = metrics.firing_frequency(acts)
    alive = frequency > 0
    W = toy.W.to(device)[index]
    truth = represented(W)
    cosines = metrics.cosines(W, stack.params["W_dec"].detach())
    abs_cosines = cosines.abs()
    mmcs_features, mmcs_latents = metrics.mmcs(abs_cosines, truth, alive)
    dense = frequency > metrics.DENSE_FACTOR * p[index, None]
    return SAEEvaluation(
        recovery=metrics.recovery(abs_cosines, truth),
        recovery_signed=metrics.recovery(cosines, truth),
        mmcs_features=mmcs_features,
        mmcs_latents=mmcs_latents,
        fvu=metrics.fraction_variance_unexplained(h, h_hat),
        mse=(h - h_hat).pow(2).sum(-1).mean(-1),
        procrustes=metrics.procrustes_similarity(h, h_hat),
        l0=metrics.l0(acts),
        dead=(~alive).sum(-1).float(),
        dense=dense.sum(-1).float(),
        n_represented=truth.sum(-1).float(),
        cosines=cosines,
        represented=truth,
        frequency=frequency,
        toy_config=index,
    ).cpu()


def sparsest_within(
    evaluation: SAEEvaluation, n_variants: int, max_fvu: float
) -> Int[Tensor, " configs"]:
    """Per toy configuration, the variant (L1 value) to keep, without looking at ground truth.

    The sparsest SAE (lowest L0) among those whose FVU is below ``max_fvu``; where none is,
    the one with the lowest FVU.
    """
    fvu, l0 = evaluation.grid("fvu", n_variants), evaluation.grid("l0", n_variants)
    acceptable = fvu < max_fvu
    score = torch.where(acceptable, l0, torch.inf)
    return torch.where(acceptable.any(-1), score.argmin(-1), fvu.argmin(-1))
