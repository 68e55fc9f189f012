"""Score every SAE of a trained sweep on fresh activations of its toy model, and read the scores
by their layout: a (toy configuration × L1 value) grid, and the SAE kept per configuration."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from replication.sae import metrics
from replication.sae.train import SAETrainConfig, TrainedToySAEs
from replication.toy.metrics import REPRESENTED_NORM, represented
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
    recovery_cosine: float = metrics.RECOVERY_COSINE,
    represented_norm: float = REPRESENTED_NORM,
) -> SAEEvaluation:
    """Score every SAE of ``trained`` on ``n_samples`` fresh inputs of its toy model: a feature
    counts when ``‖W_i‖ > represented_norm`` and is recovered by a decoder row with
    ``|cos| > recovery_cosine``."""
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
    truth = represented(W, represented_norm)
    cosines = metrics.cosines(W, stack.params["W_dec"].detach())
    abs_cosines = cosines.abs()
    mmcs_features, mmcs_latents = metrics.mmcs(abs_cosines, truth, alive)
    dense = frequency > metrics.DENSE_FACTOR * p[index, None]
    return SAEEvaluation(
        recovery=metrics.recovery(abs_cosines, truth, recovery_cosine),
        recovery_signed=metrics.recovery(cosines, truth, recovery_cosine),
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


@dataclass
class KeptSAEs:
    """The SAE kept per toy configuration of an :class:`EvaluatedSAEs` (see
    :meth:`EvaluatedSAEs.kept`).

    Attributes:
        variant: ``(configs,)`` the index of each kept SAE's L1 value.
        l1: each kept SAE's L1 coefficient.
        evaluation: the kept SAEs' scores, one per configuration.
        max_fvu: the FVU bound they were chosen by.
    """

    variant: Int[Tensor, " configs"]
    l1: list[float]
    evaluation: SAEEvaluation
    max_fvu: float


@dataclass
class EvaluatedSAEs:
    """A toy sweep, the SAE sweeps trained on its activations, and their scores, with the layout
    to read them: one evaluation ordered by toy configuration, then L1 value.

    Attributes:
        toy: the trained toy sweep (the SAEs' upstream artifact).
        saes: SAE sweeps over disjoint toy configurations, every one with the same L1 values.
        evaluation: every SAE's scores (see :func:`evaluate`).
        recovery_cosine, represented_norm: the cut-offs the scores were computed with.
    """

    toy: TrainedSweep
    saes: list[TrainedToySAEs]
    evaluation: SAEEvaluation
    recovery_cosine: float = metrics.RECOVERY_COSINE
    represented_norm: float = REPRESENTED_NORM

    @classmethod
    def of(cls, toy: TrainedSweep, saes: list[TrainedToySAEs], device: torch.device | str = "cpu",
           **cut_offs: float) -> EvaluatedSAEs:
        """Score ``saes`` (trained on ``toy``) with :func:`evaluate` and merge their scores."""
        if len({s.config.l1_coefficients for s in saes}) != 1:
            raise ValueError("the SAE sweeps of one evaluation need the same L1 coefficients; got "
                             + ", ".join(str(s.config.l1_coefficients) for s in saes))
        evaluation = SAEEvaluation.merge([evaluate(s, toy, device=device, **cut_offs) for s in saes])
        return cls(toy, saes, evaluation, **cut_offs)

    @property
    def l1_coefficients(self) -> tuple[float, ...]:
        """The L1 values every toy configuration has an SAE for (the grid's columns)."""
        return self.saes[0].config.l1_coefficients

    @property
    def n_variants(self) -> int:
        return self.saes[0].config.n_variants

    @property
    def densities(self) -> Float[Tensor, " configs"]:
        """The feature density of every toy configuration with SAEs (the grid's rows)."""
        configs = self.evaluation.toy_config.view(-1, self.n_variants)[:, 0]
        return torch.tensor(self.toy.config.feature_probability)[configs]

    @property
    def d_sae(self) -> int:
        return self.saes[0].config.architecture.d_sae

    def grid(self, name: str) -> Tensor:
        """Score ``name`` laid out ``(configs, l1 values, ...)``."""
        return self.evaluation.grid(name, self.n_variants)

    def training(self) -> list[tuple[tuple[float, ...], SAETrainConfig]]:
        """Per SAE sweep: the densities it covers and its optimisation settings."""
        density = self.toy.config.feature_probability
        return [(tuple(density[c] for c in s.config.toy_configs), s.config.training) for s in self.saes]

    def kept(self, max_fvu: float) -> KeptSAEs:
        """Per toy configuration, the SAE kept without looking at the ground truth: the sparsest
        (lowest L0) with FVU below ``max_fvu``, or the lowest FVU where none is
        (:func:`sparsest_within`)."""
        variant = sparsest_within(self.evaluation, self.n_variants, max_fvu)
        index = torch.arange(len(variant)) * self.n_variants + variant
        return KeptSAEs(variant, [self.l1_coefficients[v] for v in variant.tolist()],
                        self.evaluation.select(index), max_fvu)
