"""The double-descent figures: geometry per T, dimensionalities, losses and norms against T."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from replication.double_descent.sweep import TrainedDoubleDescent

COLOURS = ("tab:blue", "tab:orange", "tab:green")  # one per run compared in a loss figure
# Vectors drawn per geometry panel: the longest ones. Every vector at cpu scale (n = 1000,
# T <= 3000); at paper scale (n = 10,000, T up to 100,000) the rest sit at the origin, under these,
# and drawing them took most of a smoke run's figure time.
MAX_DRAWN = 3000


def _segments(ax, vectors: np.ndarray, colour: str) -> int:
    """Draw 2-D vectors ``(2, items)`` as segments from the origin, on a square symmetric frame:
    the :data:`MAX_DRAWN` longest. Returns how many were left out."""
    ends = vectors.T
    left_out = max(0, len(ends) - MAX_DRAWN)
    if left_out:
        ends = ends[np.argsort(-np.linalg.norm(ends, axis=1), kind="stable")[:MAX_DRAWN]]
    ax.add_collection(LineCollection([[(0.0, 0.0), tuple(e)] for e in ends], colors=colour,
                                     linewidths=0.8, alpha=0.8))
    ax.scatter(ends[:, 0], ends[:, 1], s=4, color=colour, zorder=3)
    reach = float(np.abs(ends).max()) * 1.1 or 1.0
    ax.set_xlim(-reach, reach)
    ax.set_ylim(-reach, reach)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    return left_out


def geometry(run: TrainedDoubleDescent, dataset: int = 0) -> Figure:
    """(a) Feature directions W_i (top), training points' hidden vectors h = W x (bottom), per T,
    for training set ``dataset`` of each T."""
    sizes = run.config.train_sizes
    if run.config.n_hidden != 2:
        raise ValueError(f"the geometry figure draws 2-D hidden spaces, got m={run.config.n_hidden}")
    hidden = run.hidden_columns()[:, dataset]
    fig, axes = plt.subplots(2, len(sizes), figsize=(1.25 * len(sizes), 2.9))
    left_out = 0
    for j, size in enumerate(sizes):
        left_out += _segments(axes[0, j], run.W[j, dataset].numpy(), "tab:blue")
        left_out += _segments(axes[1, j], hidden[j, :, :size].numpy(), "tab:red")
        axes[0, j].set_title(f"T={size}", fontsize=8)
    axes[0, 0].set_ylabel("features W", fontsize=8)
    axes[1, 0].set_ylabel("training h", fontsize=8)
    fig.suptitle("Feature directions and training-point hidden vectors per T (training set "
                 f"{dataset})" + (f"; the {MAX_DRAWN} longest of a panel drawn" if left_out else ""))
    return fig


def dimensionalities(run: TrainedDoubleDescent) -> Figure:
    """(b) Every feature's and every training point's dimensionality against T (every training
    set), with m/T."""
    sizes = np.array(run.config.train_sizes)
    m = run.config.n_hidden
    features, data = run.feature_dimensionality().numpy(), run.data_dimensionality().numpy()
    fig, (ax_f, ax_d) = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for j, size in enumerate(sizes):
        ax_f.scatter(np.full(features[j].size, size), features[j], s=6, alpha=0.4,
                     color="tab:blue")
        ax_d.scatter(np.full(data[j, :, :size].size, size), data[j, :, :size], s=6, alpha=0.4,
                     color="tab:red")
    ax_f.axhline(2 / 5, color="grey", lw=0.8, ls=":", label="2/5 (pentagon)")
    titles = ("feature dimensionality $D_i$", "data dimensionality $D_{X_i}$")
    for ax, title in zip((ax_f, ax_d), titles, strict=True):
        ax.plot(sizes, m / sizes, "k--", lw=1, label="m/T")
        ax.set_xscale("log")
        ax.set_xlabel("training-set size T")
        ax.set_title(title)
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=8)
    return fig


def losses(runs: dict[str, TrainedDoubleDescent]) -> Figure:
    """(c) Test and training loss against T (mean over training sets; dots: each set) with the
    all-zero predictor; right: the test/zero ratio."""
    fig, (ax_l, ax_r) = plt.subplots(1, 2, figsize=(11, 4))
    for (label, run), colour in zip(runs.items(), COLOURS, strict=False):
        sizes = np.array(run.config.train_sizes)
        every = np.repeat(sizes, run.config.datasets)
        ax_l.plot(sizes, run.test_loss.mean(1), "o-", color=colour, label=f"test {label}")
        ax_l.plot(sizes, run.kept_train_loss.mean(1), "s--", color=colour, alpha=0.6,
                  label=f"train {label}")
        ax_r.plot(sizes, run.test_over_zero.mean(1), "o-", color=colour, label=f"test {label}")
        ax_r.scatter(every, run.test_over_zero.flatten(), s=8, alpha=0.4, color=colour)
    zero = float(next(iter(runs.values())).zero_loss)
    ax_l.axhline(zero, color="k", lw=1, ls=":", label="all-zero predictor")
    ax_r.axhline(1.0, color="k", lw=1, ls=":", label="all-zero predictor")
    ax_l.set_ylabel("loss (mean over points and features)")
    ax_r.set_ylabel("test loss / all-zero predictor")
    for ax in (ax_l, ax_r):
        ax.set_xscale("log")
        ax.set_xlabel("training-set size T")
        ax.legend(fontsize=8)
    return fig


def norms(run: TrainedDoubleDescent) -> Figure:
    """(d) ‖W‖_F and ‖b‖ of the kept models against T (mean over training sets; dots: each set)."""
    sizes = np.array(run.config.train_sizes)
    every = np.repeat(sizes, run.config.datasets)
    fig, ax = plt.subplots(figsize=(6, 4))
    for values, marker, label in ((run.weight_norm, "o", r"$\|W\|_F$"),
                                  (run.bias_norm, "s", r"$\|b\|$")):
        line, = ax.plot(sizes, values.mean(1), marker + "-", label=label)
        ax.scatter(every, values.flatten(), s=8, alpha=0.4, color=line.get_color())
    ax.set_xscale("log")
    ax.set_xlabel("training-set size T")
    ax.set_ylabel("norm")
    ax.legend()
    return fig


def model_size_plane(runs: dict[int, TrainedDoubleDescent]) -> Figure:
    """(e) The (T, m) plane: mean test loss / all-zero predictor per (m, T) as a map (left) and
    as one curve per m with each training set's value (right)."""
    hidden = sorted(runs)
    sizes = np.array(runs[hidden[0]].config.train_sizes)
    plane = np.stack([runs[m].test_over_zero.mean(1).numpy() for m in hidden])  # (m, T)
    fig, (ax_map, ax_curves) = plt.subplots(1, 2, figsize=(12, 4),
                                            gridspec_kw={"width_ratios": [1.2, 1]})
    image = ax_map.imshow(plane, aspect="auto", cmap="viridis", origin="lower")
    ax_map.set_xticks(range(len(sizes)), [str(t) for t in sizes], fontsize=7, rotation=45)
    ax_map.set_yticks(range(len(hidden)), [f"m={m}" for m in hidden])
    ax_map.set_xlabel("training-set size T")
    fig.colorbar(image, ax=ax_map, label="test loss / all-zero predictor")
    for j in range(len(hidden)):
        for i in range(len(sizes)):
            ax_map.text(i, j, f"{plane[j, i]:.3f}", ha="center", va="center", fontsize=5,
                        color="white")
    for m in hidden:
        run = runs[m]
        line, = ax_curves.plot(sizes, run.test_over_zero.mean(1), "o-", label=f"m={m}")
        ax_curves.scatter(np.repeat(sizes, run.config.datasets), run.test_over_zero.flatten(),
                          s=6, alpha=0.4, color=line.get_color())
    ax_curves.axhline(1.0, color="k", lw=1, ls=":", label="all-zero predictor")
    ax_curves.set_xscale("log")
    ax_curves.set_xlabel("training-set size T")
    ax_curves.set_ylabel("test loss / all-zero predictor")
    ax_curves.legend(fontsize=8)
    return fig
