"""Sweeps: the influence table over layers (depth) and over window lengths (context).

The tidy table has one row per event (a feature active at a window's read-out position, at
one layer): preset, corpus, n_tokens (window length N), layer, window, feature, activation,
H_pos, and token_H, the entropy of the token vector at that window and layer. A window and
layer without any active feature keeps one row with feature -1 and no H_pos, so its token-
vector entropy still counts. Tables are cached (numeric columns as tensors) and saved as CSV.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from jaxtyping import Int
from scipy.stats import spearmanr
from torch import Tensor
from tqdm.auto import tqdm

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
from replication.locality.influence import window_influence
from replication.locality.presets import LoadedPreset
from replication.settings import check_choice

NUMERIC_COLUMNS = ("n_tokens", "layer", "window", "feature", "activation", "H_pos", "token_H")
TOP_FEATURES = 20
TABLE_VERSION = 2  # part of every cached table's key: bump when the computation changes


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
                    seed: int) -> pd.DataFrame:
    """Every event of every window at every layer of ``loaded.saes`` (one forward and, per
    layer, one batched backward per window); see the module docstring for the columns."""
    preset = loaded.preset
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for w, tokens in enumerate(tqdm(windows, desc=f"H_pos {preset.name} N={windows.shape[1]}")):
        for res in window_influence(loaded.model, loaded.saes, loaded.hooks, preset.threshold,
                                    tokens, token_probes=preset.token_probes,
                                    chunk=preset.chunk, generator=generator):
            token_h = positional_entropy(res.token_influence).item()
            h = positional_entropy(res.feature_influence).tolist()
            events = zip(res.features.tolist(), res.activations.tolist(), h, strict=True)
            rows += [(windows.shape[1], res.layer, w, f, a, hf, token_h) for f, a, hf in events]
            if not len(res.features):
                rows.append((windows.shape[1], res.layer, w, -1, np.nan, np.nan, token_h))
    table = pd.DataFrame(rows, columns=list(NUMERIC_COLUMNS))
    return table.assign(preset=preset.name, corpus=corpus)[["preset", "corpus", *NUMERIC_COLUMNS]]


def context_table(loaded: LoadedPreset, stream: Int[Tensor, " n"], lengths: Sequence[int],
                  n_windows: int, corpus: str, seed: int) -> pd.DataFrame:
    """Influence tables for window lengths ``lengths``, stacked. The windows are nested: each
    length takes the last N tokens of the same seeded ``max(lengths)``-token windows, so every
    N reads out the same tokens and only the context before them grows."""
    windows = sample_windows(stream, n_windows, max(lengths), seed)
    return pd.concat([influence_table(loaded, windows[:, -n:], corpus, seed) for n in lengths],
                     ignore_index=True)


def sweep_key(loaded: LoadedPreset, corpus: str, seed: int, **sizes) -> dict:
    """Cache key of a sweep: what was measured (preset build, layers, corpus, sizes, seed)."""
    return {"version": TABLE_VERSION, "preset": loaded.preset.name,
            "build": loaded.details.get("key"), "layers": sorted(loaded.saes),
            "corpus": corpus, "seed": seed, **sizes}


def depth_sweep(cache: ArtifactCache, loaded: LoadedPreset, corpus: str, n_windows: int,
                length: int, seed: int) -> pd.DataFrame:
    """The (cached) influence table of ``n_windows`` seeded windows of ``length`` tokens."""
    def build() -> pd.DataFrame:
        windows = sample_windows(corpus_stream(loaded, corpus), n_windows, length, seed)
        return influence_table(loaded, windows, corpus, seed)

    key = sweep_key(loaded, corpus, seed, sweep="depth", windows=n_windows, length=length)
    return cached_table(cache, "locality-table", key, build)


def context_sweep(cache: ArtifactCache, loaded: LoadedPreset, corpus: str,
                  lengths: Sequence[int], n_windows: int, seed: int) -> pd.DataFrame:
    """The (cached) influence tables for windows of each length in ``lengths``, stacked."""
    def build() -> pd.DataFrame:
        return context_table(loaded, corpus_stream(loaded, corpus), lengths, n_windows,
                             corpus, seed)

    key = sweep_key(loaded, corpus, seed, sweep="context", windows=n_windows,
                    lengths=list(lengths))
    return cached_table(cache, "locality-table", key, build)


def layer_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per layer: events, distinct features, mean H_pos over events, mean of per-feature mean
    H_pos, mean H_pos of the 20 most frequent features, and mean token-vector entropy."""
    events = table[table.feature >= 0]
    per_feature = events.groupby(["layer", "feature"]).H_pos.agg(["mean", "size"])

    def top(group: pd.DataFrame) -> float:
        return group.nlargest(TOP_FEATURES, "size")["mean"].mean()

    token = table.drop_duplicates(["layer", "window"]).groupby("layer").token_H.mean()
    return pd.DataFrame({
        "n_events": events.groupby("layer").size(),
        "n_features": per_feature.groupby("layer").size(),
        "mean_H": events.groupby("layer").H_pos.mean(),
        "feature_mean_H": per_feature.groupby("layer")["mean"].mean(),
        "top20_H": per_feature.groupby("layer").apply(top),
        "token_H": token,
    })


def depth_trend(summary: pd.DataFrame) -> dict[str, float]:
    """Spearman rho of (layer, mean H_pos) and the last-minus-first-layer rise in bits."""
    rho = spearmanr(summary.index, summary.mean_H).statistic
    return {"spearman": float(rho),
            "rise_bits": float(summary.mean_H.iloc[-1] - summary.mean_H.iloc[0])}


def cached_table(cache: ArtifactCache, kind: str, config: dict,
                 build: Callable[[], pd.DataFrame]) -> pd.DataFrame:
    """A table built once per configuration: numeric columns as tensors, the rest in meta."""
    def build_entry():
        table = build()
        tensors = {c: torch.tensor(table[c].to_numpy(np.float64)) for c in NUMERIC_COLUMNS}
        labels = {c: table[c].iloc[0] if len(table) else "" for c in ("preset", "corpus")}
        return tensors, labels

    tensors, labels = cache.get_or_build(kind, config, build_entry)
    table = pd.DataFrame({c: tensors[c].numpy() for c in NUMERIC_COLUMNS})
    table = table.astype({c: "int64" for c in ("n_tokens", "layer", "window", "feature")})
    return table.assign(**labels)[["preset", "corpus", *NUMERIC_COLUMNS]]


def save_table(table: pd.DataFrame, path: Path) -> Path:
    """Write ``table`` as CSV atomically (parallel workers may write the same file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    table.to_csv(tmp, index=False)
    os.replace(tmp, path)
    return path
