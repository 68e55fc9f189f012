"""Figures of the SAE-recovery claims (matplotlib; the report saves and closes them)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from jaxtyping import Float
from matplotlib.figure import Figure
from torch import Tensor

from replication.sae.critical import CURVES, CriticalCurves
from replication.sae.evaluation import EvaluatedSAEs, KeptSAEs, SAEEvaluation


def plot_recovery(run: EvaluatedSAEs, kept: KeptSAEs, min_recovery: float, max_density: float
                  ) -> Figure:
    """Recovery, MMCS and FVU against density: every L1 value thin, the kept SAE bold; the
    claim's bounds (``min_recovery``, ``kept.max_fvu``) dotted, its densities (at or below
    ``max_density``) shaded."""
    x = run.densities.numpy()
    rows = torch.arange(len(x))
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    for name, ax, threshold in (("recovery", axes[0], min_recovery), ("fvu", axes[2], kept.max_fvu)):
        grid = run.grid(name)
        for v, l1 in enumerate(run.l1_coefficients):
            ax.plot(x, grid[:, v], "-", lw=1, alpha=0.6, label=f"L1 {l1:g}")
        ax.plot(x, grid[rows, kept.variant], "ko-", lw=2,
                label=f"kept (lowest L0, FVU<{kept.max_fvu:g})")
        ax.axhline(threshold, color="r", ls=":", lw=1)
    axes[0].set_ylabel(f"recovery (|cos| > {run.recovery_cosine:g})")
    axes[2].set_ylabel("fraction of variance unexplained")
    axes[2].set_yscale("log")
    for name, style in (("mmcs_features", "o-"), ("mmcs_latents", "s--")):
        axes[1].plot(
            x,
            getattr(kept.evaluation, name),
            style,
            label={
                "mmcs_features": "features → latents",
                "mmcs_latents": "alive latents → features",
            }[name],
        )
    axes[1].set_ylabel("MMCS (kept SAE)")
    for ax in axes:
        ax.set_xscale("log")
        ax.invert_xaxis()
        ax.set_xlabel("feature density 1 − S")
        ax.axvspan(max_density, min(x), color="0.9", zorder=0)
        ax.legend(fontsize=7)
    toy = run.toy.config
    fig.suptitle(
        f"SAEs (n={run.d_sae} latents) on TMS n={toy.n_features} → m={toy.n_hidden} activations; "
        "shaded: densities the claim tests"
    )
    fig.tight_layout()
    return fig


def plot_cosine_heatmaps(
    evaluation: SAEEvaluation, panels: list[tuple[int, str]], represented_norm: float
) -> Figure:
    """cos of the represented ground-truth features (rows, ``‖W_i‖ > represented_norm``) ×
    decoder rows (columns), one panel per ``(SAE index, title)``.

    Signed, so an antipodal pair of features (W_j = −c W_i) shows as a blue/red pair of rows.
    Latents are ordered by the feature they match best (|cos|); dead latents go last, marked x.
    """
    fig, axes = plt.subplots(
        1, len(panels), figsize=(6.5 * len(panels), 4.5), squeeze=False, layout="constrained"
    )
    for ax, (index, title) in zip(axes[0], panels, strict=True):
        features = torch.nonzero(evaluation.represented[index]).squeeze(1)
        shown = evaluation.cosines[index, features]
        alive = evaluation.frequency[index] > 0
        best_value, best_feature = shown.abs().max(0)
        key = torch.where(alive, best_feature.float(), float(len(features))) * 2 - best_value
        order = torch.argsort(key, stable=True)
        image = ax.imshow(shown[:, order], vmin=-1, vmax=1, cmap="RdBu_r", aspect="auto")
        ax.set_yticks(range(len(features)), [str(i) for i in features.tolist()])
        dead = [column for column, latent in enumerate(order.tolist()) if not alive[latent]]
        ax.set_xticks(dead, ["x"] * len(dead), color="k")
        ax.set_xlabel("SAE latents, ordered by best-matching feature (x: dead)")
        ax.set_ylabel(f"represented feature i (‖W_i‖ > {represented_norm:g})")
        ax.set_title(title, fontsize=9)
        fig.colorbar(image, ax=ax, label="cos(W_i, decoder row)")
    return fig


def plot_critical_curves(curves: CriticalCurves, band: tuple[float, float], title: str) -> Figure:
    """Per-run curves of every :data:`CURVES` entry against sparsity (the run mean dashed), the
    claimed band shaded, and a last panel with where each run's extreme of each curve falls."""
    fig, axes = plt.subplots(2, 3, figsize=(14, 7))
    s = curves.sparsities.numpy()
    summary = axes[1, 2]
    for row, (ax, (name, (description, extremum))) in enumerate(
        zip(axes.flat, CURVES.items(), strict=False)
    ):
        values = curves.curves[name]
        where = curves.locations(name).numpy()
        for run in range(values.shape[0]):
            (line,) = ax.plot(s, values[run], "-", lw=1, alpha=0.8, label=f"run {run}")
            index = int(np.argmin(np.abs(s - where[run])))
            ax.plot(s[index], values[run, index], "o", color=line.get_color())
        ax.plot(s, values.mean(0), "k--", lw=1.5, label="mean of runs")
        ax.axvspan(*band, color="orange", alpha=0.2, label="claimed band")
        ax.set_title(f"{description}\n(dots: each run's {extremum})", fontsize=8)
        ax.set_xlabel("sparsity S")
        summary.plot(where, np.full_like(where, row) + np.linspace(-0.2, 0.2, len(where)), "o")
    axes[0, 0].legend(fontsize=7)
    summary.axvspan(*band, color="orange", alpha=0.2)
    summary.set_yticks(
        range(len(CURVES)), [f"{name} {kind}" for name, (_, kind) in CURVES.items()], fontsize=7
    )
    summary.set_xlim(0, 1)
    summary.set_xlabel("sparsity S of each run's extreme")
    summary.set_title("where the extremes fall (claimed: toy loss max in the band)", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_intro(
    W: Float[Tensor, "configs 2 feats"], densities: tuple[float, ...], importance: tuple[float, ...]
) -> Figure:
    """The TMS introduction figure: each feature's 2-D direction W_i, one panel per density."""
    fig, axes = plt.subplots(1, len(densities), figsize=(1.9 * len(densities), 2.3))
    colours = plt.cm.viridis(np.linspace(0, 0.9, W.shape[2]))
    lim = 1.2 * float(W.norm(dim=1).max())
    for ax, vectors, density in zip(axes, W, densities, strict=True):
        for i in range(W.shape[2]):
            ax.plot([0, vectors[0, i]], [0, vectors[1, i]], "-", color=colours[i], lw=2)
            ax.plot(vectors[0, i], vectors[1, i], "o", color=colours[i], ms=3)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"1−S = {density:.3g}", fontsize=8)
    fig.suptitle(
        f"W_i in the 2-D hidden space, n=5 features, importance "
        f"{importance[0]:g}…{importance[-1]:.2g} (dark → light)",
        fontsize=9,
    )
    fig.tight_layout()
    return fig
