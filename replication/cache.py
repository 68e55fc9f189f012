"""Content-addressed artifact cache: tensors as safetensors, metadata as JSON.

An entry is a folder ``<root>/<kind>/<key>/`` holding ``tensors.safetensors`` and
``meta.json``. The key is a hash over

- the canonical JSON of the configuration that built it,
- the *code version* of its builder: a hash of the source of the module that defines the
  ``build`` function and of every ``replication`` module it imports, transitively (so a change
  to a loss, a sampler or a trainer is never served an artifact built before the change),
- the keys of its upstream artifacts (toy model → SAE; tokenizer → language model → SAEs).

Entries are written into a temporary folder and renamed into place, so an interrupted run
never leaves a half-written entry, and a file lock keeps two pytest-xdist workers from
building the same entry at once. An entry that cannot be read (truncated, corrupt) is removed
with a warning naming its path, and rebuilt.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from replication import smoke

Tensors = dict[str, torch.Tensor]
TENSORS_FILE = "tensors.safetensors"
META_FILE = "meta.json"
PACKAGE = "replication"


class CorruptEntryWarning(UserWarning):
    """A cache entry could not be read; it is removed and rebuilt."""


def config_hash(config: Mapping[str, Any]) -> str:
    """Stable 16-hex-digit hash of a JSON-serialisable configuration."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def module_file(name: str) -> Path | None:
    """The source file of an importable module, or None (built-ins, missing modules)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    origin = getattr(spec, "origin", None)
    return Path(origin) if origin and origin.endswith(".py") else None


def imported_modules(name: str, path: Path) -> set[str]:
    """``replication`` modules that the module ``name`` at ``path`` imports (static imports,
    anywhere in the file, with their parent packages)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = importlib.util.resolve_name("." * node.level + (node.module or ""),
                                               name.rpartition(".")[0]) if node.level else node.module
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # submodules, if any
    with_parents = {".".join(m.split(".")[:i + 1]) for m in found for i in range(m.count(".") + 1)}
    return {m for m in with_parents if m.split(".")[0] == PACKAGE and module_file(m) is not None}


@functools.cache
def code_version(module: str) -> str:
    """Hash of the source of ``module`` and of every ``replication`` module it imports,
    transitively: the version of the code that builds an artifact."""
    seen: dict[str, Path] = {}
    pending = [module]
    while pending:
        name = pending.pop()
        path = module_file(name)
        if name in seen or path is None:
            continue
        seen[name] = path
        pending.extend(imported_modules(name, path) - seen.keys())
    digest = hashlib.sha256()
    for name in sorted(seen):
        digest.update(name.encode() + b"\0" + seen[name].read_bytes() + b"\0")
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class BuildEvent:
    """One artifact request: ``built`` (trained now, taking ``seconds``) or loaded from cache;
    in a smoke run, ``smoke`` is what the build cost (:class:`replication.smoke.BuildMeasurement`)."""

    kind: str
    key: str
    built: bool
    seconds: float
    smoke: dict | None = None


BUILD_LOG: list[BuildEvent] = []  # this process's artifact requests, in order (for the report)


class ArtifactCache:
    """Cache of built artifacts under ``root``, keyed by kind, config, code and upstream keys."""

    def __init__(self, root: Path | str):
        self.root = Path(root)

    @staticmethod
    def key(config: Mapping[str, Any], build: Callable | str, upstream: Sequence[str] = ()) -> str:
        """The entry key of ``config`` built by ``build`` (a function, or its module's name)
        from the upstream artifacts whose keys are ``upstream``."""
        module = build if isinstance(build, str) else build.__module__
        return config_hash({"config": config, "code": code_version(module),
                            "upstream": list(upstream)})

    def entry_dir(self, kind: str, key: str) -> Path:
        return self.root / kind / key

    def load(self, kind: str, key: str) -> tuple[Tensors, dict] | None:
        """The cached ``(tensors, meta)`` under ``key``, or None if absent or unreadable."""
        entry = self.entry_dir(kind, key)
        if not (entry / META_FILE).exists():
            return None
        try:
            meta = json.loads((entry / META_FILE).read_text())["meta"]
            return load_file(entry / TENSORS_FILE), meta
        except (OSError, ValueError, KeyError, SafetensorError) as err:
            warnings.warn(f"corrupt cache entry {entry} ({type(err).__name__}: {err}); "
                          "removing it and rebuilding", CorruptEntryWarning, stacklevel=2)
            shutil.rmtree(entry, ignore_errors=True)
            return None

    def save(self, kind: str, key: str, config: Mapping[str, Any], tensors: Tensors,
             meta: Mapping) -> Path:
        """Write an entry atomically (temporary folder, then rename) and return its folder."""
        entry = self.entry_dir(kind, key)
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}-", dir=entry.parent))
        try:
            cpu = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
            save_file(cpu, tmp / TENSORS_FILE)
            record = {"kind": kind, "key": key, "config": config, "meta": meta}
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
        upstream: Sequence[str] = (),
        code: str | None = None,
        device: torch.device | str = "cpu",
    ) -> tuple[Tensors, dict]:
        """Return the cached entry, building and saving it first if it is missing.

        Args:
            kind: the artifact family, a folder name (e.g. ``toy-sweep``).
            config: JSON-serialisable configuration.
            build: returns ``(tensors, meta)``; ``meta`` must be JSON-serialisable. Its module
                (and what that imports) versions the entry.
            upstream: keys (:meth:`key`) of the artifacts this one is built from.
            code: the module that versions the entry, when it is not ``build``'s own.
            device: where ``build`` computes (a smoke run measures its memory there).
        """
        key = self.key(config, code or build, upstream)
        self.root.mkdir(parents=True, exist_ok=True)
        lock_dir = self.root / ".locks"
        lock_dir.mkdir(exist_ok=True)
        start = time.perf_counter()
        with FileLock(lock_dir / f"{kind}-{key}.lock"):
            cached = self.load(kind, key)
            if cached is not None:
                BUILD_LOG.append(BuildEvent(kind, key, False, time.perf_counter() - start))
                return cached
            if smoke.enabled():
                with smoke.measure_build(device) as measurement:
                    tensors, meta = build()
                cost = measurement.to_dict()
            else:
                tensors, meta = build()
                cost = None
            self.save(kind, key, config, tensors, meta)
            BUILD_LOG.append(BuildEvent(kind, key, True, time.perf_counter() - start, cost))
            return {k: v.detach().to("cpu") for k, v in tensors.items()}, json.loads(
                json.dumps(meta, default=str)
            )
