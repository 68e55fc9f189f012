"""How much of a toy model's ground truth an SAE recovers, and how well it reconstructs.

The ground truth is the toy model's feature directions, the columns W_i of ``W: (hidden, feats)``;
an SAE's candidate directions are the rows of its decoder ``W_dec: (d_sae, hidden)``. Every
function works on any leading batch of instances.
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float
from torch import Tensor

RECOVERY_COSINE = 0.9  # a feature is recovered when some latent's decoder has |cos| above this
DENSE_FACTOR = 2.0  # a latent is dense when it fires this many times as often as a true feature


def cosines(
    W: Float[Tensor, "... hidden feats"], W_dec: Float[Tensor, "... d_sae hidden"]
) -> Float[Tensor, "... feats d_sae"]:
    """cos(W_i, W_dec[j]) for every ground-truth feature i and latent j (0 for a zero vector).

    The metrics below take the absolute value, as the recovery criterion |cos| > 0.9 does; note
    that it cannot tell a feature from its antipode (W_j = −c W_i), a common TMS geometry, so
    one latent can "recover" both members of an antipodal pair. Passing the signed cosines to
    :func:`recovery` counts a feature only when a latent points its way.
    """
    features = torch.nn.functional.normalize(W, dim=-2)
    latents = torch.nn.functional.normalize(W_dec, dim=-1)
    return features.transpose(-1, -2) @ latents.transpose(-1, -2)


def _masked_mean(
    values: Float[Tensor, "... items"], mask: Bool[Tensor, "... items"]
) -> Float[Tensor, "..."]:
    """Mean of ``values`` where ``mask``; NaN where the mask is empty."""
    return (values * mask).sum(-1) / mask.sum(-1)


def recovery(
    cos: Float[Tensor, "... feats d_sae"],
    represented: Bool[Tensor, "... feats"],
    threshold: float = RECOVERY_COSINE,
) -> Float[Tensor, "..."]:
    """Fraction of represented features whose best-matching latent has cosine > ``threshold``
    (pass |cos| for the sign-blind criterion)."""
    return _masked_mean((cos.amax(-1) > threshold).float(), represented)


def mmcs(
    cos: Float[Tensor, "... feats d_sae"],
    represented: Bool[Tensor, "... feats"],
    alive: Bool[Tensor, "... d_sae"],
) -> tuple[Float[Tensor, "..."], Float[Tensor, "..."]]:
    """Mean max |cos| both ways: (features → latents, latents → features).

    The first averages, over represented features, the best |cos| of any alive latent; the second
    averages, over alive latents, the best |cos| of any represented feature. Dead latents keep
    their initial directions, so they are left out of both.
    """
    features_side = cos.masked_fill(~alive.unsqueeze(-2), 0.0).amax(-1)
    latents_side = cos.masked_fill(~represented.unsqueeze(-1), 0.0).amax(-2)
    return _masked_mean(features_side, represented), _masked_mean(latents_side, alive)


def firing_frequency(acts: Float[Tensor, "... batch d_sae"]) -> Float[Tensor, "... d_sae"]:
    """Fraction of inputs on which each latent is non-zero."""
    return (acts != 0).float().mean(-2)


def l0(acts: Float[Tensor, "... batch d_sae"]) -> Float[Tensor, "..."]:
    """Mean number of non-zero latents per input."""
    return (acts != 0).float().sum(-1).mean(-1)


def fraction_variance_unexplained(
    h: Float[Tensor, "... batch hidden"], h_hat: Float[Tensor, "... batch hidden"]
) -> Float[Tensor, "..."]:
    """Σ‖h − ĥ‖² / Σ‖h − mean(h)‖² over the batch (1 − sae-lens's ``explained_variance``)."""
    residual = (h - h_hat).pow(2).sum((-2, -1))
    return residual / (h - h.mean(-2, keepdim=True)).pow(2).sum((-2, -1))


def procrustes_similarity(
    a: Float[Tensor, "... points dims"], b: Float[Tensor, "... points dims"]
) -> Float[Tensor, "..."]:
    """1 − the disparity of ``scipy.spatial.procrustes(a, b)``, batched over leading axes.

    scipy centres both point sets, scales each to unit Frobenius norm, rotates (and reflects)
    and scales b onto a, and reports the remaining squared distance. In closed form that
    disparity is 1 − (Σ singular values of aᵀb)², so the similarity is the squared nuclear norm
    of aᵀb (computed in float64). A constant point set (which scipy rejects) scores 0.
    """

    def standardise(x: Tensor) -> Tensor:
        x = x.double() - x.double().mean(-2, keepdim=True)
        norm = x.norm(dim=(-2, -1), keepdim=True)
        return torch.where(norm > 0, x / norm.clamp_min(1e-300), torch.zeros_like(x))

    return torch.linalg.svdvals(standardise(a).mT @ standardise(b)).sum(-1).pow(2).float()
