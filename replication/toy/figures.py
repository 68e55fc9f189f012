"""Figures of the TMS claims, drawn like the paper's."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap

from replication.toy import metrics
from replication.toy.phase import SOLUTIONS
from replication.toy.sweep import TrainedSweep


def basic_results(sweep: TrainedSweep, title: str):
    """Per density: WᵀW (top) and ‖W_i‖ bars coloured by interference (bottom)."""
    W = sweep.W
    densities = sweep.config.feature_probability
    fig, axes = plt.subplots(2, len(densities), figsize=(2.1 * len(densities), 5.2),
                             gridspec_kw={"height_ratios": [1, 1.3]})
    norms, interference = metrics.feature_norms(W), metrics.interference(W)
    for k, p in enumerate(densities):
        gram = (W[k].T @ W[k]).numpy()
        axes[0, k].imshow(gram, cmap="RdBu", vmin=-1, vmax=1)
        axes[0, k].set_title(f"1−S = {p:g}", fontsize=9)
        axes[0, k].set_xticks([]), axes[0, k].set_yticks([])
        colours = plt.cm.viridis(np.clip(interference[k].numpy(), 0, 1))
        feats = np.arange(W.shape[-1])
        axes[1, k].barh(feats, norms[k].numpy(), color=colours)
        axes[1, k].invert_yaxis()
        axes[1, k].set_xlim(0, 1.3)
        axes[1, k].set_xlabel("‖W_i‖", fontsize=8)
        axes[1, k].tick_params(labelsize=7)
    axes[0, 0].set_ylabel("WᵀW")
    axes[1, 0].set_ylabel("feature i (importance ↓)")
    fig.suptitle(f"{title}: bar colour = interference Σ_j≠i (Ŵ_i·W_j)² (yellow ≥ 1: superposed)")
    fig.tight_layout()
    return fig


def represented_counts(densities, counts, n_hidden: int, represented_norm: float):
    """Features represented (‖W_i‖ > ``represented_norm``) per density, against m and 2m."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(densities, counts, "o-", label=f"features with ‖W_i‖ > {represented_norm:g}")
    ax.axhline(n_hidden, ls="--", c="gray", label=f"m = {n_hidden}")
    ax.axhline(2 * n_hidden, ls=":", c="gray", label=f"2m = {2 * n_hidden}")
    ax.set_xscale("log"), ax.invert_xaxis()
    ax.set_xlabel("feature density 1−S"), ax.set_ylabel("features represented")
    ax.legend(fontsize=8)
    return fig


def feature_dimensionality(sweep: TrainedSweep, fractions, represented_norm: float):
    """Dimensions per feature (line) and the D_i of each represented feature (‖W_i‖ >
    ``represented_norm``; dots) against 1/(1−S), with a line at each of ``fractions``."""
    W = sweep.W
    inverse_density = 1 / np.asarray(sweep.config.feature_probability)
    D, shown = metrics.dimensionality(W).numpy(), metrics.represented(W, represented_norm).numpy()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for k, x in enumerate(inverse_density):
        d = D[k][shown[k]]
        ax.scatter(np.full(len(d), x), d, s=6, alpha=0.35, c="tab:blue", lw=0)
    ax.plot(inverse_density, metrics.dimensions_per_feature(W).numpy(), "k-", lw=2,
            label="m / ‖W‖²_F (dimensions per feature)")
    for f in fractions:
        ax.axhline(f, ls=":", c="gray", lw=0.8)
        ax.text(inverse_density[-1] * 1.05, f, f"{f:.3g}", va="center", fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("1/(1−S)"), ax.set_ylabel("dimensionality")
    ax.set_title(f"n={W.shape[-1]}, m={W.shape[-2]}: feature dimensionalities D_i (dots)")
    ax.legend(fontsize=8, loc="upper right")
    return fig


def hidden_directions(W, title: str):
    """Feature directions of a 2-D hidden space as arrows from the origin."""
    W = np.asarray(W)
    fig, ax = plt.subplots(figsize=(4, 4))
    for i in range(W.shape[1]):
        ax.annotate("", xy=W[:, i], xytext=(0, 0), arrowprops={"arrowstyle": "->", "lw": 1.5})
        ax.text(*(W[:, i] * 1.12), str(i), ha="center", va="center", fontsize=9)
    lim = 1.3 * max(1.0, np.abs(W).max())
    ax.set_xlim(-lim, lim), ax.set_ylim(-lim, lim), ax.set_aspect("equal")
    ax.axhline(0, c="#ddd", lw=0.5), ax.axvline(0, c="#ddd", lw=0.5)
    ax.set_title(title, fontsize=10)
    return fig


def phase_diagram(ratios, densities, trained, predicted, away, trained_title: str = "trained"):
    """Trained solution class next to the closed-form prediction on the (s, r) grid."""
    cmap = ListedColormap(["#bbbbbb", "#4c72b0", "#dd8452", "#55a868"])  # other, 0, 1, 2
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.3), sharey=True)
    log_s, log_r = np.log10(densities), np.log10(ratios)
    half_s, half_r = (log_s[1] - log_s[0]) / 2, (log_r[1] - log_r[0]) / 2
    extent = [log_s[0] - half_s, log_s[-1] + half_s, log_r[0] - half_r, log_r[-1] + half_r]
    for ax, grid, title in ((axes[0], trained, trained_title),
                            (axes[1], predicted, "closed-form winner")):
        ax.imshow(grid + 1, origin="lower", cmap=cmap, vmin=0, vmax=3, extent=extent,
                  aspect="auto", interpolation="nearest")
        ax.set_title(title), ax.set_xlabel("log10 density s")
    rows, cols = np.nonzero((trained != predicted) & away)
    axes[0].scatter(log_s[cols], log_r[rows], marker="x", c="k", label="mismatch")
    axes[0].set_ylabel("log10 relative importance r")
    handles = [plt.Rectangle((0, 0), 1, 1, color=cmap(i + 1)) for i in range(3)]
    fig.legend(handles, SOLUTIONS, loc="lower center", ncol=3, fontsize=8)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig
