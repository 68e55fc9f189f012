"""Figures of the H_pos claims (matplotlib; the caller saves and closes them)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from replication.locality.sweep import layer_summary


def depth_figure(table: pd.DataFrame, title: str) -> Figure:
    """Violins of per-feature mean H_pos per layer, with the mean over events, the top-20
    most frequent features' mean and the token-vector entropy as lines (the published
    figure's layout)."""
    events = table[table.feature >= 0]
    summary = layer_summary(table)
    per_feature = events.groupby(["layer", "feature"]).H_pos.mean()
    layers = list(summary.index)
    fig = Figure(figsize=(min(14.0, 2.0 + 0.6 * len(layers)), 4.2), layout="constrained")
    ax = fig.subplots()
    data = [per_feature.loc[layer].to_numpy() for layer in layers]
    parts = ax.violinplot(data, positions=layers, widths=0.8, showextrema=False)
    for body in parts["bodies"]:
        body.set_facecolor("#9ecae1")
        body.set_alpha(0.6)
    ax.plot(layers, summary.mean_H, "o-", color="#08519c", label="mean feature H_pos")
    ax.plot(layers, summary.top20_H, "s--", color="#6a51a3", label="top-20 frequent features")
    ax.plot(layers, summary.token_H, "^-", color="#d94801", label="token vector")
    n = int(table.n_tokens.iloc[0])
    ax.axhline(math.log2(n), color="grey", ls=":", lw=1, label=f"log2 N = {math.log2(n):g}")
    ax.set(xlabel="layer", ylabel="H_pos (bits)", xticks=layers, title=title)
    ax.legend(fontsize=8, loc="best")
    return fig


def comparison_figure(summaries: dict[str, pd.DataFrame], title: str,
                      band: float | None = None) -> Figure:
    """Mean feature H_pos (solid) and token-vector entropy (dashed) per layer, per model;
    with ``band``, the token-vector entropy +- band bits shaded (a claim's tolerance)."""
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    for (name, summary), colour in zip(summaries.items(), ("#08519c", "#a50f15", "#238b45"),
                                       strict=False):
        ax.plot(summary.index, summary.mean_H, "o-", color=colour, label=f"{name}: features")
        ax.plot(summary.index, summary.token_H, "^--", color=colour, alpha=0.7,
                label=f"{name}: token vector")
        if band is not None:
            ax.fill_between(summary.index, summary.token_H - band, summary.token_H + band,
                            color=colour, alpha=0.12, label=f"token vector +- {band:g} bit")
    ax.set(xlabel="layer", ylabel="mean H_pos (bits)", title=title,
           xticks=list(next(iter(summaries.values())).index))
    ax.legend(fontsize=8)
    return fig


def context_figure(table: pd.DataFrame, title: str) -> Figure:
    """Mean feature H_pos against window length N, one line per layer, with log2 N."""
    events = table[table.feature >= 0]
    means = events.groupby(["n_tokens", "layer"]).H_pos.mean().unstack("layer")
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    for layer in means.columns:
        ax.plot(means.index, means[layer], "o-", label=f"layer {layer}")
    ax.plot(means.index, events.groupby("n_tokens").H_pos.mean(), "k-", lw=2.5,
            label="all layers")
    ax.plot(means.index, np.log2(means.index), color="grey", ls=":", label="log2 N")
    ax.set_xscale("log", base=2)
    ax.set(xlabel="window length N (tokens)", ylabel="mean H_pos (bits)", title=title)
    ax.set_xticks(means.index, [str(n) for n in means.index])
    ax.minorticks_off()
    ax.legend(fontsize=8, ncol=2)
    return fig


def sae_figure(metrics: dict[int, dict[str, float]], d_model: int, title: str) -> Figure:
    """Per layer: FVU, and live latents against the residual width d_model."""
    layers = sorted(metrics)
    fig = Figure(figsize=(8, 3.4), layout="constrained")
    ax_fvu, ax_live = fig.subplots(1, 2)
    ax_fvu.bar(layers, [metrics[layer]["fvu"] for layer in layers], color="#6baed6")
    ax_fvu.axhline(0.25, color="#a50f15", ls="--", label="FVU 0.25")
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
