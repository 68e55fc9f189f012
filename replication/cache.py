"""Content-addressed artifact cache: tensors as safetensors, metadata as JSON.

An entry is a folder ``<root>/<kind>/<hash>/`` holding ``tensors.safetensors`` and
``meta.json``; the hash is taken over the canonical JSON of the configuration that built it.
Entries are written into a temporary folder and renamed into place, so an interrupted run
never leaves a half-written entry, and a file lock keeps two pytest-xdist workers from
building the same entry at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock
from safetensors.torch import load_file, save_file

Tensors = dict[str, torch.Tensor]
TENSORS_FILE = "tensors.safetensors"
META_FILE = "meta.json"


def config_hash(config: Mapping[str, Any]) -> str:
    """Stable 16-hex-digit hash of a JSON-serialisable configuration."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class ArtifactCache:
    """Cache of built artifacts under ``root``, keyed by ``(kind, config)``."""

    def __init__(self, root: Path | str):
        self.root = Path(root)

    def entry_dir(self, kind: str, config: Mapping[str, Any]) -> Path:
        return self.root / kind / config_hash(config)

    def load(self, kind: str, config: Mapping[str, Any]) -> tuple[Tensors, dict] | None:
        """The cached ``(tensors, meta)`` for this configuration, or None if absent."""
        entry = self.entry_dir(kind, config)
        if not (entry / META_FILE).exists():
            return None
        meta = json.loads((entry / META_FILE).read_text())
        return load_file(entry / TENSORS_FILE), meta["meta"]

    def save(self, kind: str, config: Mapping[str, Any], tensors: Tensors, meta: Mapping) -> Path:
        """Write an entry atomically (temporary folder, then rename) and return its folder."""
        entry = self.entry_dir(kind, config)
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}-", dir=entry.parent))
        try:
            cpu = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
            save_file(cpu, tmp / TENSORS_FILE)
            record = {"kind": kind, "config": config, "meta": meta}
            (tmp / META_FILE).write_text(json.dumps(record, indent=1, sort_keys=True, default=str))
            if entry.exists():
                shutil.rmtree(entry)
            os.replace(tmp, entry)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return entry

    def get_or_build(
        self,
        kind: str,
        config: Mapping[str, Any],
        build: Callable[[], tuple[Tensors, Mapping]],
    ) -> tuple[Tensors, dict]:
        """Return the cached entry, building and saving it first if it is missing.

        ``build`` returns ``(tensors, meta)``; ``meta`` must be JSON-serialisable.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        lock_dir = self.root / ".locks"
        lock_dir.mkdir(exist_ok=True)
        with FileLock(lock_dir / f"{kind}-{config_hash(config)}.lock"):
            cached = self.load(kind, config)
            if cached is not None:
                return cached
            tensors, meta = build()
            self.save(kind, config, tensors, meta)
            return {k: v.detach().to("cpu") for k, v in tensors.items()}, json.loads(
                json.dumps(meta, default=str)
            )
