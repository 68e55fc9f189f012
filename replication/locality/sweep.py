"""Sweeps: the influence table over layers (depth) and over window lengths (context).

The tidy table has one row per event (a feature active at a window's read-out position, at
one layer): preset, corpus, n_tokens (window length N), layer, window, event (the row of the
event's J in the sweep's raw influence, numbered per N), feature, activation, H_pos (bits),
peak_pos (the position t' of J's largest value, 0 = the window's first token, N - 1 = the
read-out), peak_J and J_sum (that value and sum_t' J), token_H (the entropy of the
reconstructed token vector at that window and layer) and frequency (the feature's
activation frequency at that layer: the fraction of all positions of the sweep's windows
where it is active). A window and layer without any active feature keeps one row with
feature and event -1 and no H_pos, so its token-vector entropy still counts. A
:class:`Sweep` holds the table, the raw J of every event and the windows' token ids; it is
cached as tensors and written as shareable artefacts by :mod:`replication.locality.artefacts`.

The statistics follow sae-analysis, paper/paper.tex, section 'Experimental setup': per
feature, H_pos averaged over the windows where it is active; the *leading* features of a
layer are those active at more than 0.1% of positions, at most the 500 most frequent; a
layer's statistic is the mean (and standard deviation) over its leading features of their
per-feature means.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float, Int
from scipy.stats import spearmanr
from torch import Tensor
from tqdm.auto import tqdm

from replication import smoke
from replication.cache import ArtifactCache
from replication.locality.corpus import (
    CORPORA,
    hub_texts,
    read_texts,
    sample_windows,
    split_stdlib,
    token_stream,
)
from replication.locality.entropy import positional_entropy
from replication.locality.influence import batch_influence
from replication.locality.presets import LoadedPreset
from replication.settings import check_choice

NUMERIC_COLUMNS = ("n_tokens", "layer", "window", "event", "feature", "activation", "H_pos",
                   "peak_pos", "peak_J", "J_sum", "token_H", "frequency")
INTEGER_COLUMNS = ("n_tokens", "layer", "window", "event", "feature")
LEADING_MIN_FREQUENCY = 1e-3  # paper.tex, 'Leading features': "exceeds 0.1%"
LEADING_TOP = 500  # paper.tex, 'Leading features': "the top 500 features by activation frequency"
TOP_FEATURES = 20  # paper.tex, Figure entropy_vs_depth: "the average entropy of the top-20 features"


@dataclass
class Sweep:
    """An influence sweep.

    Args:
        table: the tidy table (module docstring), rows in (n_tokens, window, layer, feature)
            order.
        influence: raw J per window length N: shape ``(events, N)``, row ``event`` of the table.
        windows: the windows' token ids, shape ``(w, max N)``; a window of length N is the last
            N tokens of its row.
    """

    table: pd.DataFrame
    influence: dict[int, Float[Tensor, "events pos"]]
    windows: Int[Tensor, "w pos"]


def corpus_stream(loaded: LoadedPreset, corpus: str, heldout_percent: int = 10,
                  max_docs: int = 2000) -> Int[Tensor, " n"]:
    """The token stream windows are drawn from: held-out stdlib files, or a hub corpus."""
    check_choice("corpus", corpus, CORPORA)
    if corpus == "stdlib":
        if loaded.stdlib_heldout is not None:
            return loaded.stdlib_heldout
        texts = read_texts(split_stdlib(heldout_percent)[1])
    else:
        texts = hub_texts(corpus, max_docs)
    return token_stream([loaded.encode(t) for t in texts], loaded.separator)


def influence_table(loaded: LoadedPreset, windows: Int[Tensor, "w pos"], corpus: str,
                    seed: int) -> tuple[pd.DataFrame, Float[Tensor, "events pos"]]:
    """Every event of every window at every layer of ``loaded.saes`` (batches of
    ``preset.window_batch`` windows: one forward, and per layer one batched backward, each);
    the table (module docstring) and the events' raw J."""
    preset = loaded.preset
    generator = torch.Generator().manual_seed(seed)
    n = windows.shape[1]
    frames, influence, counts = [], [], {}
    description = f"H_pos {preset.name} N={n}"
    batches = range(0, len(windows), preset.window_batch)
    for start in tqdm(smoke.timed_loop(batches, description), desc=description,
                      total=smoke.steps_to_run(len(batches))):
        batch = windows[start:start + preset.window_batch]
        for res in batch_influence(loaded.model, loaded.saes, loaded.hooks, preset.threshold,
                                   batch, token_probes=preset.token_probes, chunk=preset.chunk,
                                   generator=generator):
            counts[res.layer] = counts.get(res.layer, 0) + res.frequency
            token_h = positional_entropy(res.token_influence).numpy()        # (w,)
            silent = np.setdiff1d(np.arange(len(batch)), res.window.numpy())
            peak_J, peak_pos = res.feature_influence.max(-1)
            frames += [pd.DataFrame({
                "window": start + res.window.numpy(), "feature": res.features.numpy(),
                "activation": res.activations.numpy(),
                "H_pos": positional_entropy(res.feature_influence).numpy(),
                "peak_pos": peak_pos.numpy(), "peak_J": peak_J.numpy(),
                "J_sum": res.feature_influence.sum(-1).numpy(),
                "token_H": token_h[res.window.numpy()], "layer": res.layer,
                "order": sum(map(len, influence)) + np.arange(len(res.features))}),
                pd.DataFrame({"window": start + silent, "feature": -1,
                              "token_H": token_h[silent], "layer": res.layer})]
            influence.append(res.feature_influence)
    table = pd.concat(frames, ignore_index=True).sort_values(["window", "layer", "feature"],
                                                             kind="stable")
    table = table.assign(n_tokens=n, event=-1).reset_index(drop=True)
    hits = table.feature.to_numpy() >= 0
    table.loc[hits, "event"] = np.arange(hits.sum())
    J = torch.cat(influence)[torch.as_tensor(table.order[hits].to_numpy(np.int64))]
    frequency = np.full(len(table), np.nan)
    for layer, count in counts.items():                          # count: (d_sae,) positions
        at = ((table.layer == layer) & hits).to_numpy()
        frequency[at] = count.numpy()[table.feature[at]] / windows.numel()
    table["frequency"] = frequency
    table = table.astype({c: "int64" for c in INTEGER_COLUMNS})
    return table.assign(preset=preset.name, corpus=corpus)[["preset", "corpus",
                                                            *NUMERIC_COLUMNS]], J


def context_sweep_of(loaded: LoadedPreset, stream: Int[Tensor, " n"], lengths: Sequence[int],
                     n_windows: int, corpus: str, seed: int) -> Sweep:
    """Influence tables for window lengths ``lengths``, stacked. The windows are nested: each
    length takes the last N tokens of the same seeded ``max(lengths)``-token windows, so every
    N reads out the same tokens and only the context before them grows."""
    windows = sample_windows(stream, n_windows, max(lengths), seed)
    parts = {n: influence_table(loaded, windows[:, -n:], corpus, seed) for n in lengths}
    return Sweep(pd.concat([table for table, _ in parts.values()], ignore_index=True),
                 {n: J for n, (_, J) in parts.items()}, windows)


def sweep_key(loaded: LoadedPreset, corpus: str, seed: int, **sizes) -> dict:
    """Cache configuration of a sweep: what was measured (preset, layers, corpus, sizes, seed);
    the preset's build enters the key as the upstream artifact (see :func:`cached_sweep`)."""
    return {"preset": loaded.preset.name, "layers": sorted(loaded.saes),
            "corpus": corpus, "seed": seed, **sizes}


def depth_sweep(cache: ArtifactCache, loaded: LoadedPreset, corpus: str, n_windows: int,
                length: int, seed: int) -> Sweep:
    """The (cached) influence sweep of ``n_windows`` seeded windows of ``length`` tokens."""
    def build() -> Sweep:
        windows = sample_windows(corpus_stream(loaded, corpus), n_windows, length, seed)
        table, J = influence_table(loaded, windows, corpus, seed)
        return Sweep(table, {length: J}, windows)

    key = sweep_key(loaded, corpus, seed, sweep="depth", windows=n_windows, length=length)
    return cached_sweep(cache, key, build, preset_build(loaded))


def context_sweep(cache: ArtifactCache, loaded: LoadedPreset, corpus: str,
                  lengths: Sequence[int], n_windows: int, seed: int) -> Sweep:
    """The (cached) influence sweeps for windows of each length in ``lengths``, stacked."""
    def build() -> Sweep:
        return context_sweep_of(loaded, corpus_stream(loaded, corpus), lengths, n_windows,
                                corpus, seed)

    key = sweep_key(loaded, corpus, seed, sweep="context", windows=n_windows,
                    lengths=list(lengths))
    return cached_sweep(cache, key, build, preset_build(loaded))


def preset_build(loaded: LoadedPreset) -> list[str]:
    """The cache key of a local preset's build (its SAEs, hence its model and tokenizer), as
    the upstream of its tables; real presets come from the hub and have none."""
    return [loaded.details["key"]] if "key" in loaded.details else []


def cached_sweep(cache: ArtifactCache, config: dict, build: Callable[[], Sweep],
                 upstream: list[str]) -> Sweep:
    """A sweep built once per configuration and upstream build: numeric columns, raw J (one
    tensor per N) and windows as tensors, the labels in meta."""
    def build_entry():
        sweep = build()
        tensors = {c: torch.tensor(sweep.table[c].to_numpy(np.float64)) for c in NUMERIC_COLUMNS}
        tensors |= {f"influence.{n}": J.contiguous() for n, J in sweep.influence.items()}
        labels = {c: sweep.table[c].iloc[0] if len(sweep.table) else ""
                  for c in ("preset", "corpus")}
        return {**tensors, "windows": sweep.windows}, labels

    tensors, labels = cache.get_or_build("locality-sweep", config, build_entry, upstream=upstream)
    table = pd.DataFrame({c: tensors[c].numpy() for c in NUMERIC_COLUMNS})
    table = table.astype({c: "int64" for c in INTEGER_COLUMNS})
    influence = {int(k.split(".")[1]): v for k, v in tensors.items() if k.startswith("influence.")}
    return Sweep(table.assign(**labels)[["preset", "corpus", *NUMERIC_COLUMNS]], influence,
                 tensors["windows"])


def feature_means(table: pd.DataFrame) -> pd.DataFrame:
    """Per (n_tokens, layer, feature): ``H`` (mean H_pos over the windows where the feature is
    active at the read-out), ``events`` (how many) and ``frequency``, sorted by frequency
    (highest first) within each (n_tokens, layer)."""
    events = table[table.feature >= 0]
    means = events.groupby(["n_tokens", "layer", "feature"]).agg(
        H=("H_pos", "mean"), events=("H_pos", "size"), frequency=("frequency", "first"))
    order = means.reset_index().sort_values(["n_tokens", "layer", "frequency", "feature"],
                                            ascending=[True, True, False, True])
    return order.set_index(["n_tokens", "layer", "feature"])


def leading(means: pd.DataFrame) -> pd.DataFrame:
    """The rows of :func:`feature_means` that are leading features: activation frequency above
    ``LEADING_MIN_FREQUENCY``, the ``LEADING_TOP`` most frequent per (n_tokens, layer)."""
    frequent = means[means.frequency > LEADING_MIN_FREQUENCY]
    return frequent.groupby(level=["n_tokens", "layer"], group_keys=False).head(LEADING_TOP)


def layer_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per layer of a one-N table: leading features (``n_leading``), events, the mean and the
    standard deviation over leading features of their mean H_pos (``mean_H``, ``std_H``),
    the mean of the ``TOP_FEATURES`` most frequent (``top20_H``), the token-vector entropy
    averaged over windows (``token_H``) and the fraction of leading features whose mean is
    below it (``below_token``)."""
    if table.n_tokens.nunique() != 1:
        raise ValueError(f"layer_summary takes a table of one window length; got N = "
                         f"{sorted(table.n_tokens.unique())} (use context_summary)")
    lead = leading(feature_means(table)).droplevel("n_tokens")
    token = table.drop_duplicates(["layer", "window"]).groupby("layer").token_H.mean()
    by_layer = lead.groupby(level="layer")
    return pd.DataFrame({
        "n_leading": by_layer.size(),
        "n_events": table[table.feature >= 0].groupby("layer").size(),
        "mean_H": by_layer.H.mean(),
        "std_H": by_layer.H.std(),
        "top20_H": by_layer.H.apply(lambda h: h.head(TOP_FEATURES).mean()),
        "token_H": token,
        "below_token": (lead.H < token.reindex(lead.index.get_level_values("layer")).to_numpy())
        .groupby(level="layer").mean(),
    })


def context_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Mean H_pos per (n_tokens, layer) over one fixed set of features per layer: the leading
    features of the longest windows (the most positions to count frequencies on), each
    averaged over the windows where it is active at the read-out (paper.tex, Figure
    entropy_vs_batchsize: 'Each curve corresponds to one leading feature')."""
    means = feature_means(table)
    longest = leading(means).xs(table.n_tokens.max(), level="n_tokens")
    keep = pd.MultiIndex.from_arrays([means.index.get_level_values("layer"),
                                      means.index.get_level_values("feature")]).isin(longest.index)
    return means[keep].groupby(level=["n_tokens", "layer"]).H.mean().unstack("layer")


def depth_trend(summary: pd.DataFrame) -> dict[str, float]:
    """How the layer statistic moves with depth: the smallest step between consecutive layers
    (> 0 for a strictly monotone rise), Spearman rho and the last-minus-first rise, in bits."""
    steps = np.diff(summary.mean_H.to_numpy())
    return {"min_step_bits": float(steps.min()),
            "spearman": float(spearmanr(summary.index, summary.mean_H).statistic),
            "rise_bits": float(summary.mean_H.iloc[-1] - summary.mean_H.iloc[0])}
