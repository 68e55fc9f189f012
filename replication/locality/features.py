"""Feature statistics beside H_pos: activation indicators, unique tokens, decoder geometry.

sae-analysis, paper/paper.tex, section 'Feature sparsity statistics' (sec:sparsity):
the correlation matrix ``C_ab = <A^a A^b> - <A^a><A^b>`` of the binary activation
indicators A^a of the leading features, and the number of unique tokens that activate each
feature at layer 0. We read C through the correlation coefficients
``r_ab = C_ab / sqrt(C_aa C_bb)`` (C_aa = p_a (1 - p_a) for a feature active at a fraction p_a
of positions), so that "approximately diagonal" compares each entry with its own diagonal.

sae-analysis, ``scripts/analysis/feature_geometry_vs_entropy.py`` (the sae-locality-data
artefact ``feature_geometry_vs_entropy``): over pairs of features, Spearman's rho between
the absolute cosine of their decoder vectors and the gap |H_a - H_b| of their mean H_pos,
against a null in which H_pos is permuted over the features (200 permutations there).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from scipy.stats import rankdata
from torch import Tensor

from replication.locality.presets import LoadedPreset
from replication.locality.sweep import LEADING_MIN_FREQUENCY, LEADING_TOP

NULL_PERMUTATIONS = 200  # feature_geometry_vs_entropy.py: n_perm = 200
UNIQUE_TOKENS_LAYER = 0  # paper.tex, Figure unique_tokens: "(layer~0)"
CORRELATION_LAYER = 3  # paper.tex, Figure correlation: "for leading features at layer~3"


@dataclass
class LayerActivity:
    """Where the features of one layer are active over a set of windows.

    Args:
        layer: the layer index.
        position: shape ``(e,)``: flat position (window * pos + t) of each (position, feature)
            activation above the preset's threshold.
        feature: shape ``(e,)``: its feature.
        tokens: shape ``(n,)``: the token id at every flat position.
        d_sae: the SAE's width.
    """

    layer: int
    position: Int[Tensor, " e"]
    feature: Int[Tensor, " e"]
    tokens: Int[Tensor, " n"]
    d_sae: int

    @property
    def frequency(self) -> Float[Tensor, " d_sae"]:
        """Fraction of positions where each feature is active."""
        return torch.bincount(self.feature, minlength=self.d_sae) / len(self.tokens)

    def leading(self) -> Int[Tensor, " k"]:
        """The leading features (paper.tex, 'Leading features': active at more than 0.1% of
        positions, the 500 most frequent), most frequent first."""
        frequency = self.frequency
        order = torch.sort(-frequency, stable=True).indices
        return order[frequency[order] > LEADING_MIN_FREQUENCY][:LEADING_TOP]

    def indicators(self, features: Int[Tensor, " k"]) -> Bool[Tensor, "n k"]:
        """A^a at every position for ``features`` (columns in their order)."""
        column = torch.full((self.d_sae,), -1, dtype=torch.long)
        column[features] = torch.arange(len(features))
        keep = column[self.feature] >= 0
        A = torch.zeros(len(self.tokens), len(features), dtype=torch.bool)
        A[self.position[keep], column[self.feature[keep]]] = True
        return A

    def unique_tokens(self) -> Int[Tensor, " d_sae"]:
        """Number of distinct token ids at the positions where each feature is active."""
        pairs = torch.unique(self.tokens[self.position] * self.d_sae + self.feature)
        return torch.bincount(pairs % self.d_sae, minlength=self.d_sae)


@torch.no_grad()
def layer_activity(loaded: LoadedPreset, windows: Int[Tensor, "w pos"],
                   layers: list[int]) -> dict[int, LayerActivity]:
    """Forward passes over ``windows`` (``preset.window_batch`` at a time) recording, per layer,
    every (position, feature) with activation above the preset's threshold."""
    model, preset = loaded.model, loaded.preset
    found: dict[int, list[tuple[Tensor, Tensor]]] = {layer: [] for layer in layers}
    captured: dict[int, Tensor] = {}

    def keep(value: Tensor, hook, layer: int) -> None:
        captured[layer] = value

    for start in range(0, len(windows), preset.window_batch):
        batch = windows[start:start + preset.window_batch]
        model.run_with_hooks(batch.to(model.cfg.device), return_type=None,
                             stop_at_layer=max(layers) + 1,
                             fwd_hooks=[(loaded.hooks[layer], partial(keep, layer=layer))
                                        for layer in layers])
        for layer in layers:
            sae = loaded.saes[layer]
            feats = sae.encode(captured[layer].flatten(0, 1).to(sae.W_enc.dtype))
            position, feature = torch.nonzero(feats > preset.threshold, as_tuple=True)
            found[layer].append((position.cpu() + start * windows.shape[1], feature.cpu()))
    return {layer: LayerActivity(layer, torch.cat([p for p, _ in found[layer]]),
                                 torch.cat([f for _, f in found[layer]]), windows.flatten(),
                                 loaded.saes[layer].cfg.d_sae)
            for layer in layers}


def indicator_correlation(A: Bool[Tensor, "n k"]) -> tuple[Float[Tensor, "k k"], Float[Tensor, "k k"]]:
    """``(C, r)``: the covariance C_ab = <A^a A^b> - <A^a><A^b> of binary indicators over
    positions and the correlation coefficients r_ab = C_ab / sqrt(C_aa C_bb)."""
    A = A.double()
    p = A.mean(0)
    C = A.T @ A / len(A) - torch.outer(p, p)
    sd = C.diagonal().clamp_min(0).sqrt()
    return C, C / torch.outer(sd, sd).clamp_min(1e-300)


def off_diagonal(M: Float[Tensor, "k k"]) -> Float[Tensor, " pairs"]:
    """The entries above the diagonal (each unordered pair once)."""
    i, j = torch.triu_indices(len(M), len(M), offset=1)
    return M[i, j]


@dataclass
class GeometryTest:
    """Decoder cosine against the H_pos gap over pairs of features, with its null.

    Args:
        abs_cosine: shape ``(pairs,)``: |cos| of the two decoder vectors of each pair.
        gap: shape ``(pairs,)``: |H_a - H_b| (bits).
        rho: Spearman's rho(|cos|, gap).
        null: shape ``(permutations,)``: rho with H_pos permuted over the features.
    """

    abs_cosine: np.ndarray
    gap: np.ndarray
    rho: float
    null: np.ndarray

    def quantile(self, q: float) -> float:
        return float(np.quantile(self.null, q))

    @property
    def p_two_sided(self) -> float:
        """Fraction of the null at least as far from 0 as rho (the source's ``p_perm``)."""
        return float((np.abs(self.null) >= abs(self.rho)).mean())

    @property
    def z(self) -> float:
        return float((self.rho - self.null.mean()) / self.null.std())


def spearman_rows(x_rank: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's rho of one ranked vector ``x_rank`` (n,) against each row of ``y`` (m, n)."""
    y_rank = rankdata(y, axis=1)
    xc = x_rank - x_rank.mean()
    yc = y_rank - y_rank.mean(1, keepdims=True)
    return (yc @ xc) / np.sqrt((yc ** 2).sum(1) * (xc ** 2).sum())


def decoder_geometry(W_dec: Float[Tensor, "k d"], H: np.ndarray, seed: int,
                     permutations: int = NULL_PERMUTATIONS) -> GeometryTest:
    """Spearman's rho between |cos| of decoder rows and |ΔH_pos| over all pairs of the ``k``
    features, and its null over ``permutations`` seeded permutations of ``H`` (bits, (k,))."""
    W = W_dec.detach().double()
    W = W / W.norm(dim=1, keepdim=True).clamp_min(1e-12)
    i, j = np.triu_indices(len(H), k=1)
    abs_cosine = (W @ W.T).abs().numpy()[i, j]
    rng = np.random.default_rng(seed)
    shuffled = np.stack([H] + [rng.permutation(H) for _ in range(permutations)])
    rhos = spearman_rows(rankdata(abs_cosine), np.abs(shuffled[:, i] - shuffled[:, j]))
    return GeometryTest(abs_cosine, np.abs(H[i] - H[j]), float(rhos[0]), rhos[1:])
