"""Figures of the TMS claims, drawn like the paper's."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.collections import PolyCollection
from matplotlib.colors import ListedColormap

from replication.toy import metrics
from replication.toy.phase import SOLUTIONS
from replication.toy.sweep import TrainedSweep

STACK_BLOCK_MIN = 0.005  # blocks thinner than this fraction of a neuron's largest weight are not drawn


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


def draw_directions(ax, W, title: str, colours=None):
    """Feature directions of a 2-D hidden space as arrows from the origin, labelled by index."""
    W = np.asarray(W)
    for i in range(W.shape[1]):
        colour = "k" if colours is None else colours[i]
        ax.annotate("", xy=W[:, i], xytext=(0, 0),
                    arrowprops={"arrowstyle": "->", "lw": 1.5, "color": colour})
        ax.text(*(W[:, i] * 1.12), str(i), ha="center", va="center", fontsize=9, color=colour)
    lim = 1.3 * max(1.0, np.abs(W).max())
    ax.set_xlim(-lim, lim), ax.set_ylim(-lim, lim), ax.set_aspect("equal")
    ax.axhline(0, c="#ddd", lw=0.5), ax.axvline(0, c="#ddd", lw=0.5)
    ax.set_title(title, fontsize=10)


def hidden_directions(W, title: str):
    """Feature directions of a 2-D hidden space as arrows from the origin."""
    fig, ax = plt.subplots(figsize=(4, 4))
    draw_directions(ax, W, title)
    return fig


def direction_panels(Ws, titles, set_size: int, title: str):
    """One 2-D panel per model (``Ws``: (models, 2, feats)); features of a set share a colour."""
    colours = [plt.cm.tab10(i // set_size) for i in range(np.asarray(Ws).shape[-1])]
    fig, axes = plt.subplots(1, len(Ws), figsize=(3.2 * len(Ws), 3.4), squeeze=False)
    for ax, W, panel in zip(axes[0], Ws, titles, strict=True):
        draw_directions(ax, W, panel, colours)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def neuron_stacks(W, titles, threshold: float, title: str, heatmap: bool = False,
                  magnitudes: bool = False, columns: int = 7):
    """The paper's neuron stack plots, one panel per model (``W``: (models, neurons, feats)).

    Each neuron's weights are rescaled so that the largest has magnitude 1 (the paper's note 15)
    and stacked as blocks coloured by feature (importance order: dark = most important),
    positive above the axis and negative below, or all as magnitudes above it (``magnitudes``,
    as the paper draws the absolute value model); neurons are sorted by the importance of their
    largest feature and shaded grey when they store more than one feature (weights of at least
    ``threshold`` of their largest). ``heatmap`` adds the raw W above each panel; panels wrap
    after ``columns``.
    """
    W = np.asarray(W)
    n_models, n_neurons, n_feats = W.shape
    colours = plt.cm.viridis(np.linspace(0, 0.95, n_feats))
    columns = min(columns, n_models)
    grid_rows = -(-n_models // columns)
    rows = grid_rows * (2 if heatmap else 1)
    width = max(2.4, 0.11 * n_neurons + 1.2)
    ratios = [1, 1.4] * grid_rows if heatmap else [1] * rows
    fig, axes = plt.subplots(rows, columns, figsize=(width * columns, 2.6 * rows + 0.6),
                             squeeze=False, gridspec_kw={"height_ratios": ratios})
    for ax in axes.flat[n_models * (2 if heatmap else 1):]:
        ax.axis("off")
    for k in range(n_models):
        row, col = divmod(k, columns)
        ax = axes[2 * row + 1 if heatmap else row, col]
        largest = np.abs(W[k]).max(1, keepdims=True)
        scaled = np.divide(W[k], largest, out=np.zeros_like(W[k]), where=largest > 0)
        order = np.argsort(np.abs(scaled).argmax(1), kind="stable")
        scaled = np.abs(scaled[order]) if magnitudes else scaled[order]
        poly = (np.abs(scaled) >= threshold).sum(1) > 1
        for j in np.nonzero(poly)[0]:
            ax.axvspan(j - 0.5, j + 0.5, color="#e6e6e6", zorder=0)
        # all blocks as one collection: positive parts stacked upwards, negative ones downwards
        for part in (np.clip(scaled, 0, None), np.clip(scaled, None, 0)):
            bottom = np.cumsum(part, 1) - part
            neuron, feature = np.nonzero(np.abs(part) > STACK_BLOCK_MIN)
            low, high = bottom[neuron, feature], bottom[neuron, feature] + part[neuron, feature]
            left, right = neuron - 0.4, neuron + 0.4
            corners = np.stack([np.stack([left, low], -1), np.stack([right, low], -1),
                                np.stack([right, high], -1), np.stack([left, high], -1)], 1)
            ax.add_collection(PolyCollection(corners, facecolors=colours[feature], linewidths=0))
        ax.set_ylim(min(-0.1, np.clip(scaled, None, 0).sum(1).min() * 1.05),
                    max(1.1, np.clip(scaled, 0, None).sum(1).max() * 1.05))
        ax.axhline(0, c="k", lw=0.5)
        ax.set_xlim(-0.6, n_neurons - 0.4)
        ax.set_xticks([])
        ax.set_xlabel(f"neurons ({poly.sum()} of {n_neurons} polysemantic)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_title(titles[k], fontsize=9)
        if col == 0:
            ax.set_ylabel(("|weight|" if magnitudes else "weight") + " / neuron's largest", fontsize=8)
        if heatmap:
            top = axes[2 * row, col]
            top.imshow(W[k][order], cmap="RdBu", vmin=-1.5, vmax=1.5, aspect="auto")
            top.set_xticks([]), top.set_yticks([])
            top.set_title(titles[k], fontsize=9)
            if col == 0:
                top.set_ylabel("W (neurons × features)", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def gram_matrix(W, set_size: int, title: str):
    """WᵀW with a line between consecutive feature sets of ``set_size``."""
    W = np.asarray(W)
    n = W.shape[-1]
    fig, ax = plt.subplots(figsize=(4.6, 4))
    image = ax.imshow(W.T @ W, cmap="RdBu", vmin=-1, vmax=1)
    for edge in range(set_size, n, set_size):
        ax.axhline(edge - 0.5, c="k", lw=1), ax.axvline(edge - 0.5, c="k", lw=1)
    fig.colorbar(image, ax=ax, fraction=0.046)
    ax.set_title(title, fontsize=10)
    return fig


def geometry_losses(relative, losses, geometries, names, critical=None):
    """Every replicate's loss against the varied feature's relative density, marked by the
    geometry it settled in (``geometries``: indices into ``names``), with the critical density."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    relative, losses, geometries = map(np.asarray, (relative, losses, geometries))
    x = np.broadcast_to(relative[:, None], losses.shape)
    for g, (name, marker) in enumerate(zip(names, "os^x", strict=False)):
        chosen = geometries == g
        ax.scatter(x[chosen], losses[chosen], marker=marker, s=18, label=name)
    if critical is not None:
        ax.axvline(critical, ls=":", c="gray", label="critical density")
    ax.set_xscale("log"), ax.set_xlabel("relative density of the varied feature")
    ax.set_ylabel("loss"), ax.legend(fontsize=8)
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
