"""Figures of the H_pos claims (matplotlib; the caller saves and closes them)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from replication.locality.sweep import context_summary, feature_means, layer_summary, leading


def depth_figure(table: pd.DataFrame, title: str) -> Figure:
    """Violins of the leading features' mean H_pos per layer, with their mean, the top-20
    most frequent features' mean and the reconstructed token vector's entropy as lines (the
    layout of paper.tex's Figure entropy_vs_depth)."""
    summary = layer_summary(table)
    per_feature = leading(feature_means(table)).H.droplevel("n_tokens")
    layers = list(summary.index)
    fig = Figure(figsize=(min(14.0, 2.0 + 0.6 * len(layers)), 4.2), layout="constrained")
    ax = fig.subplots()
    data = [per_feature.loc[layer].to_numpy() for layer in layers]
    parts = ax.violinplot(data, positions=layers, widths=0.8, showextrema=False)
    for body in parts["bodies"]:
        body.set_facecolor("#9ecae1")
        body.set_alpha(0.6)
    ax.plot(layers, summary.mean_H, "o-", color="#08519c", label="mean over leading features")
    ax.plot(layers, summary.top20_H, "s--", color="#6a51a3", label="top-20 frequent features")
    ax.plot(layers, summary.token_H, "^-", color="#d94801", label="reconstructed token vector")
    n = int(table.n_tokens.iloc[0])
    ax.axhline(math.log2(n), color="grey", ls=":", lw=1, label=f"log2 N = {math.log2(n):g}")
    ax.set(xlabel="layer", ylabel="H_pos (bits)", xticks=layers, title=title)
    ax.legend(fontsize=8, loc="best")
    return fig


def comparison_figure(summaries: dict[str, pd.DataFrame], title: str) -> Figure:
    """Mean over leading features of mean H_pos (solid) and the reconstructed token vector's
    entropy (dashed) per layer, per model."""
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    for (name, summary), colour in zip(summaries.items(), ("#08519c", "#a50f15", "#238b45"),
                                       strict=False):
        ax.plot(summary.index, summary.mean_H, "o-", color=colour, label=f"{name}: features")
        ax.plot(summary.index, summary.token_H, "^--", color=colour, alpha=0.7,
                label=f"{name}: token vector")
    ax.set(xlabel="layer", ylabel="mean H_pos (bits)", title=title,
           xticks=list(next(iter(summaries.values())).index))
    ax.legend(fontsize=8)
    return fig


def context_figure(table: pd.DataFrame, title: str, layer: int) -> Figure:
    """Mean H_pos of each layer's leading features against window length N, one line per
    layer (``layer``, the claim's, in bold), with log2 N."""
    means = context_summary(table)
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    for column in means.columns:
        ax.plot(means.index, means[column], "o-", label=f"layer {column}",
                lw=2.5 if column == layer else 1.0, color="k" if column == layer else None)
    ax.plot(means.index, np.log2(means.index), color="grey", ls=":", label="log2 N")
    ax.set_xscale("log", base=2)
    ax.set(xlabel="window length N (tokens)", ylabel="mean H_pos (bits)", title=title)
    ax.set_xticks(means.index, [str(n) for n in means.index])
    ax.minorticks_off()
    ax.legend(fontsize=8, ncol=2)
    return fig


def sae_figure(metrics: dict[int, dict[str, float]], d_model: int, title: str,
               fvu_max: float) -> Figure:
    """Per layer: FVU against ``fvu_max``, and live latents against the residual width."""
    layers = sorted(metrics)
    fig = Figure(figsize=(8, 3.4), layout="constrained")
    ax_fvu, ax_live = fig.subplots(1, 2)
    ax_fvu.bar(layers, [metrics[layer]["fvu"] for layer in layers], color="#6baed6")
    ax_fvu.axhline(fvu_max, color="#a50f15", ls="--", label=f"FVU {fvu_max:g}")
    ax_fvu.set(xlabel="layer", ylabel="FVU (held-out)", title="reconstruction", xticks=layers)
    ax_fvu.legend(fontsize=8)
    ax_live.bar(layers, [metrics[layer]["live_latents"] for layer in layers], color="#74c476",
                label="live latents")
    ax_live.axhline(d_model, color="#a50f15", ls="--", label=f"d_model = {d_model}")
    ax_live.set(xlabel="layer", ylabel="latents", title="live latents", xticks=layers)
    ax_live.legend(fontsize=8)
    fig.suptitle(title)
    return fig


def bounds_figure(table: pd.DataFrame, title: str) -> Figure:
    """Distribution of every event's H_pos per layer, between the bounds 0 and log2 N."""
    events = table[table.feature >= 0]
    n = int(table.n_tokens.iloc[0])
    fig = Figure(figsize=(6, 3.6), layout="constrained")
    ax = fig.subplots()
    bins = np.linspace(0, math.log2(n), 25)
    for layer, group in events.groupby("layer"):
        ax.hist(group.H_pos, bins=bins, histtype="step", lw=1.5, label=f"layer {layer}")
    for bound in (0, math.log2(n)):
        ax.axvline(bound, color="#a50f15", ls="--", lw=1)
    ax.set(xlabel="H_pos (bits)", ylabel="events", title=title)
    ax.legend(fontsize=8, ncol=2)
    return fig


def correlation_figure(C, r, title: str, elevated: float, shown: int = 100) -> Figure:
    """Left: the covariance C_ab of the ``shown`` most frequent leading features (the paper's
    Figure correlation); right: the distribution of off-diagonal |r_ab| with ``elevated``."""
    k = min(shown, len(C))
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    ax_c, ax_r = fig.subplots(1, 2)
    bound = float(C[:k, :k].abs().max()) if k else 1.0
    image = ax_c.imshow(C[:k, :k].numpy(), cmap="RdBu_r", vmin=-bound, vmax=bound)
    fig.colorbar(image, ax=ax_c, label="C_ab")
    ax_c.set(title=f"covariance, {k} most frequent", xlabel="feature (by frequency)",
             ylabel="feature (by frequency)")
    i, j = np.triu_indices(len(r), k=1)
    ax_r.hist(np.abs(r.numpy()[i, j]), bins=50, color="#6baed6")
    ax_r.axvline(elevated, color="#a50f15", ls="--", label=f"|r| = {elevated:g}")
    ax_r.set(yscale="log", xlabel="off-diagonal |r_ab|", ylabel="pairs",
             title="correlation coefficients")
    ax_r.legend(fontsize=8)
    fig.suptitle(title)
    return fig


def unique_tokens_figure(counts: np.ndarray, title: str) -> Figure:
    """Histogram (log counts) of the number of unique tokens per feature, median marked."""
    fig = Figure(figsize=(6, 3.8), layout="constrained")
    ax = fig.subplots()
    ax.hist(counts, bins=50, color="#74c476")
    ax.axvline(np.median(counts), color="#08519c", ls="--", label=f"median {np.median(counts):g}")
    ax.set(yscale="log", xlabel="unique tokens activating the feature", ylabel="features",
           title=title)
    ax.legend(fontsize=8)
    return fig


def geometry_figure(tests: dict, layer: int, level: float, title: str, bins: int = 20) -> Figure:
    """Left: mean |ΔH_pos| in equal-count bins of |decoder cosine| at ``layer``; right: rho per
    layer against its permutation null (median and the ``level``, 1 - ``level`` quantiles)."""
    test = tests[layer]
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax_b, ax_n = fig.subplots(1, 2)
    edges = np.quantile(test.abs_cosine, np.linspace(0, 1, bins + 1))
    which = np.clip(np.searchsorted(edges, test.abs_cosine, side="right") - 1, 0, bins - 1)
    means = [test.gap[which == b].mean() for b in range(bins) if (which == b).any()]
    centres = [test.abs_cosine[which == b].mean() for b in range(bins) if (which == b).any()]
    ax_b.plot(centres, means, "o-", color="#08519c")
    ax_b.axhline(test.gap.mean(), color="grey", ls=":", label="all pairs")
    ax_b.set(xlabel="|decoder cosine| (equal-count bins)", ylabel="mean |ΔH_pos| (bits)",
             title=f"layer {layer}: rho = {test.rho:+.3f}")
    ax_b.legend(fontsize=8)
    layers = sorted(tests)
    low = [tests[n].quantile(level) for n in layers]
    high = [tests[n].quantile(1 - level) for n in layers]
    ax_n.fill_between(layers, low, high, color="#bdbdbd", label=f"null {level:g}-{1 - level:g}")
    ax_n.plot(layers, [tests[n].quantile(0.5) for n in layers], color="grey", ls=":",
              label="null median")
    ax_n.plot(layers, [tests[n].rho for n in layers], "o-", color="#a50f15", label="measured rho")
    ax_n.set(xlabel="layer", ylabel="Spearman rho(|cos|, |ΔH_pos|)", xticks=layers,
             title="against H_pos permuted over features")
    ax_n.legend(fontsize=8)
    fig.suptitle(title)
    return fig
