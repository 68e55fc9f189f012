"""Geometry of trained toy models: norms, interference, dimensionality, angles.

All functions take feature directions as the columns of ``W: (..., hidden, feats)`` and work
on any leading batch of configurations.
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Bool, Float
from torch import Tensor

REPRESENTED_NORM = 0.5  # our cut between represented (‖W_i‖ ≈ 1) and not (≈ 0); the paper gives none
# Dimensionalities of the uniform polytopes the paper finds features in: dedicated dimension,
# tetrahedron, triangle, antipodal pair, pentagon, square antiprism.
GEOMETRY_FRACTIONS = (1.0, 3 / 4, 2 / 3, 1 / 2, 2 / 5, 3 / 8)


def feature_norms(W: Float[Tensor, "... hidden feats"]) -> Float[Tensor, "... feats"]:
    """‖W_i‖ for every feature."""
    return W.norm(dim=-2)


def represented(W: Float[Tensor, "... hidden feats"], threshold: float = REPRESENTED_NORM
                ) -> Bool[Tensor, "... feats"]:
    """Features whose direction has norm above ``threshold`` (default 0.5: between the paper's
    "~1 if a feature is fully represented" and "zero if it is not")."""
    return feature_norms(W) > threshold


def unit_columns(W: Float[Tensor, "... hidden feats"]) -> Float[Tensor, "... hidden feats"]:
    """Ŵ_i = W_i/‖W_i‖, with zero columns left at zero."""
    norms = feature_norms(W).unsqueeze(-2)
    return torch.where(norms > 0, W / norms.clamp_min(1e-12), torch.zeros_like(W))


def projections(W: Float[Tensor, "... hidden feats"]) -> Float[Tensor, "... feats feats"]:
    """(Ŵ_i · W_j) for every pair: row i projects every feature onto feature i's direction."""
    return unit_columns(W).transpose(-1, -2) @ W


def interference(W: Float[Tensor, "... hidden feats"]) -> Float[Tensor, "... feats"]:
    """Σ_{j≠i} (Ŵ_i · W_j)²: how much other features leak into feature i's direction."""
    squared = projections(W) ** 2
    return squared.sum(-1) - squared.diagonal(dim1=-2, dim2=-1)


def dedicated(W: Float[Tensor, "... hidden feats"], represented_norm: float, max_interference: float
              ) -> Bool[Tensor, "... feats"]:
    """Represented features (‖W_i‖ > ``represented_norm``) that no other feature interferes with
    (Σ_{j≠i} (Ŵ_i · W_j)² ≤ ``max_interference``): a dimension of their own."""
    return represented(W, represented_norm) & (interference(W) <= max_interference)


def is_prefix(mask: Bool[Tensor, "... feats"]) -> Bool[Tensor, "..."]:
    """Whether the True entries of each row are exactly its first ones (an empty set counts):
    with features in importance order, whether the set is 'the k most important'."""
    count = mask.sum(-1, keepdim=True)
    return (mask == (torch.arange(mask.shape[-1], device=mask.device) < count)).all(-1)


def dimensionality(vectors: Float[Tensor, "... dim items"]) -> Float[Tensor, "... items"]:
    """D_i = ‖v_i‖² / Σ_j (v̂_i · v_j)² for the columns v_i; 0 for a zero column.

    Used for features (columns of W) and, in double descent, for training points' hidden vectors.
    Σ_j (v̂_i · v_j)² = v̂_iᵀ G v̂_i with the Gram matrix G = Σ_j v_j v_jᵀ (dim × dim), so
    D_i = ‖v_i‖⁴ / v_iᵀ G v_i costs O(items · dim²) rather than the O(items²) of the pairwise
    form: at n = 10,000 features or T = 100,000 points the pairwise matrix would not fit. Zero
    columns add nothing to G, so zero-padded sets give the same values as unpadded ones.
    """
    gram = vectors @ vectors.transpose(-1, -2)
    squared_norm = (vectors**2).sum(-2)
    quadratic = (vectors * (gram @ vectors)).sum(-2)
    return torch.where(quadratic > 0, squared_norm**2 / quadratic.clamp_min(1e-30),
                       torch.zeros_like(quadratic))


def dimensions_per_feature(W: Float[Tensor, "... hidden feats"]) -> Float[Tensor, "..."]:
    """m / ‖W‖_F²: 1 when each represented feature has a dimension of its own."""
    return W.shape[-2] / (W**2).sum((-2, -1))


def angular_gaps_deg(W: Float[Tensor, "2 feats"]) -> Float[Tensor, " feats"]:
    """For features in a 2-D hidden space: the gaps between consecutive directions, sorted by angle."""
    if W.shape[0] != 2:
        raise ValueError(f"angular gaps need a 2-D hidden space, got hidden size {W.shape[0]}")
    angles = torch.sort(torch.atan2(W[1], W[0]) % (2 * math.pi)).values
    gaps = torch.diff(angles, append=angles[:1] + 2 * math.pi)
    return torch.rad2deg(gaps)


def near_fraction(D: Float[Tensor, "..."], fractions=GEOMETRY_FRACTIONS, tolerance: float = 0.05
                  ) -> Bool[Tensor, "..."]:
    """Whether each dimensionality lies within ``tolerance`` of one of ``fractions``."""
    distance = (D.unsqueeze(-1) - torch.tensor(fractions, dtype=D.dtype)).abs().min(-1).values
    return distance <= tolerance


def uniform_share_near(low: float, high: float, fractions=GEOMETRY_FRACTIONS,
                       tolerance: float = 0.05) -> float:
    """Share of a uniform spread over ``[low, high]`` lying within ``tolerance`` of a fraction:
    the length of the union of the bands ``[f − tolerance, f + tolerance]`` inside the range,
    over the range's length (the null that :func:`near_fraction` shares are compared with)."""
    if not high > low:
        raise ValueError(f"need a range with high > low, got [{low}, {high}]")
    bands = sorted((max(low, f - tolerance), min(high, f + tolerance)) for f in fractions)
    covered, reach = 0.0, low
    for start, end in bands:
        start = max(start, reach)
        if end > start:
            covered, reach = covered + end - start, end
    return covered / (high - low)


def longest_run(flags) -> tuple[int, int]:
    """``(start, length)`` of the longest run of consecutive True values (``(0, 0)`` if none)."""
    best = (0, 0)
    start = None
    for i, flag in enumerate([*map(bool, flags), False]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            best = max(best, (start, i - start), key=lambda run: run[1])
            start = None
    return best


def cosines(W: Float[Tensor, "... hidden feats"]) -> Float[Tensor, "... feats feats"]:
    """cos(W_i, W_j) for every pair of feature directions (0 where either is zero)."""
    unit = unit_columns(W)
    return unit.transpose(-1, -2) @ unit


def within_set_cosines(W: Float[Tensor, "... hidden feats"], set_size: int
                       ) -> Float[Tensor, "... pairs"]:
    """cos(W_i, W_j) of every pair i < j inside each consecutive set of ``set_size`` features,
    set by set (for sets of 2: one value per set)."""
    n = W.shape[-1]
    if n % set_size:
        raise ValueError(f"sets of {set_size} do not tile {n} features")
    i, j = torch.triu_indices(set_size, set_size, offset=1)
    starts = torch.arange(0, n, set_size)
    first, second = (starts[:, None] + i).flatten(), (starts[:, None] + j).flatten()
    return cosines(W)[..., first, second]


def neuron_features(W: Float[Tensor, "... hidden feats"], threshold: float
                    ) -> Bool[Tensor, "... hidden feats"]:
    """Which features each neuron stores: those whose weight into it has at least ``threshold``
    times the magnitude of the neuron's largest (the paper rescales every neuron so that its
    largest weight has magnitude 1 before drawing it; 'Computation in Superposition', note 15).
    A neuron with no weight stores nothing."""
    magnitude = W.abs()
    largest = magnitude.amax(-1, keepdim=True)
    return (magnitude >= threshold * largest) & (largest > 0)


def neuron_semantics(W: Float[Tensor, "... hidden feats"], threshold: float
                     ) -> tuple[Tensor, Tensor]:
    """``(monosemantic, polysemantic)`` neuron counts: neurons storing exactly one feature, and
    more than one (:func:`neuron_features`)."""
    count = neuron_features(W, threshold).sum(-1)
    return (count == 1).sum(-1), (count > 1).sum(-1)


def lone_feature_outputs(model, values: Float[Tensor, " values"]
                         ) -> Float[Tensor, "inst values feats"]:
    """Output i of each instance of ``model`` when feature i alone takes each of ``values``
    (every other feature 0): the function the model computes on feature i by itself."""
    n = model.W.shape[-1]
    x = (values[:, None, None] * torch.eye(n, device=values.device)).reshape(-1, n)
    with torch.no_grad():
        out = model(x.expand(model.W.shape[0], -1, -1))
    return out.view(-1, len(values), n, n).diagonal(dim1=-2, dim2=-1)


def absolute_value_explained(model, points: int = 41) -> Float[Tensor, "inst feats"]:
    """Per feature, the share of |x| that the model computes on the feature alone:
    1 − E[(y'_i − |t|)²] / E[t²] over t evenly spaced on [−1, 1], with y'_i the output for
    x = t e_i. 1: |x| exactly; 0.5: one side of it (ReLU(x) or ReLU(−x)); 0: the zero output."""
    t = torch.linspace(-1, 1, points, device=model.W.device)
    error = (lone_feature_outputs(model, t) - t.abs()[:, None]) ** 2
    return 1 - error.mean(-2) / (t**2).mean()
