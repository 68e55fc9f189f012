"""Shareable artefacts of a sweep: tidy table, raw J vectors and the run's manifest.

For a stem such as ``reports/locality/local-stdlib-stdlib-depth-seed0`` (:func:`sweep_stem`)
a sweep writes

- ``<stem>.csv``: the tidy table, one row per event (columns in :data:`COLUMNS`);
- ``<stem>-J.npz``: ``J_N<n>``, float32 ``(events, n)``: the raw influence J_a(t') of every
  event of window length n (row = the table's ``event``; column t' = position in the window,
  n - 1 = the read-out), and ``windows``, int64 ``(w, max n)``: the windows' token ids;
- ``<stem>-manifest.json``: the run configuration (preset, model, SAE release and ids, hooks,
  threshold, corpus, sizes, seed, device, cache key), the column schema, the files and the
  library versions.

CSV, npz and JSON only (no pickles); each file is written to a temporary name beside it and
renamed into place, so a reader never sees half a file and parallel workers may write the
same artefact. A depth sweep's feature cards (:mod:`replication.locality.cards`) go beside
them as ``<stem>-feature-cards.html``.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd

from replication.locality.sweep import Sweep

COLUMNS = {
    "preset": "preset name (replication.locality.presets)",
    "corpus": "corpus the windows come from",
    "n_tokens": "window length N (tokens)",
    "layer": "layer of the SAE",
    "window": "window index (row of `windows` in the npz)",
    "event": "row of J_N<n_tokens> in the npz; -1: no feature active at this window and layer",
    "feature": "SAE feature id; -1: none active",
    "activation": "feature activation at the read-out (last) position",
    "H_pos": "entropy of J over positions (bits)",
    "peak_pos": "position t' of J's largest value (0 = first token, N - 1 = read-out)",
    "peak_J": "largest J_a(t') (squared gradient norm)",
    "J_sum": "sum over t' of J_a(t') (squared gradient norm)",
    "token_H": "entropy of the reconstructed token vector's influence R at this window and layer (bits)",
    "frequency": "fraction of the sweep's positions where the feature is active at this layer",
}
VERSIONED = ("torch", "transformer-lens", "sae-lens", "transformers", "numpy", "pandas")


def sweep_stem(folder: Path, preset: str, corpus: str, sweep: str, seed: int) -> Path:
    """The artefacts' common stem: ``<folder>/<preset>-<corpus>-<sweep>-seed<seed>``."""
    return folder / f"{preset}-{corpus}-{sweep}-seed{seed}"


def cards_path(stem: Path) -> Path:
    """The feature cards page beside a depth sweep's artefacts."""
    return stem.with_name(f"{stem.name}-feature-cards.html")


def atomic_write(path: Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def save_table(table: pd.DataFrame, path: Path) -> Path:
    """Write ``table`` as CSV atomically."""
    return atomic_write(path, lambda tmp: table.to_csv(tmp, index=False))


def save_sweep(sweep: Sweep, stem: Path, config: dict) -> dict[str, Path]:
    """Write the sweep's table, raw J and manifest (module docstring); returns the paths."""
    paths = {"table": stem.with_name(f"{stem.name}.csv"),
             "influence": stem.with_name(f"{stem.name}-J.npz"),
             "manifest": stem.with_name(f"{stem.name}-manifest.json")}
    save_table(sweep.table, paths["table"])
    arrays = {f"J_N{n}": J.numpy().astype(np.float32) for n, J in sweep.influence.items()}
    atomic_write(paths["influence"], lambda tmp: np.savez_compressed(
        tmp, windows=sweep.windows.numpy().astype(np.int64), **arrays))
    manifest = {
        "config": config,
        "files": {kind: path.name for kind, path in paths.items()},
        "columns": COLUMNS,
        "arrays": {"windows": list(sweep.windows.shape),
                   **{name: list(array.shape) for name, array in arrays.items()}},
        "versions": {"python": platform.python_version(),
                     **{package: version(package) for package in VERSIONED}},
    }
    atomic_write(paths["manifest"], lambda tmp: tmp.write_text(
        json.dumps(manifest, indent=1, sort_keys=True, default=str)))
    return paths
