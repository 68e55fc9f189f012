"""Text corpora and the fixed-length token windows the influence is measured on.

``stdlib`` is the Python standard library's own source, the offline stand-in for the
code-python corpus: its files are split (by a hash of their path, so the split is the same on
every machine) into the files the local model trains on and held-out files that evaluation
windows come from. The hub corpora load through ``datasets`` when the hub is reachable.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import os
import sysconfig
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from jaxtyping import Int
from torch import Tensor

from replication.locality.hub import Unavailable, hub_reachable, prepare_hub
from replication.settings import check_choice

EXCLUDED_DIRS = ("site-packages", "test", "tests", "idlelib", "lib2to3", "turtledemo")


@dataclass(frozen=True)
class HubCorpus:
    """A text corpus on the hub: ``datasets.load_dataset(path, name, split=split)``.

    Args:
        path: dataset repository.
        name: dataset configuration, if any.
        split: the split windows are drawn from.
        fields: text fields of a row, joined by a newline into one document.
    """

    path: str
    name: str | None
    split: str
    fields: tuple[str, ...]


HUB_CORPORA = {
    "wikitext": HubCorpus("wikitext", "wikitext-2-raw-v1", "train", ("text",)),  # paper.tex: train
    "gsm8k": HubCorpus("openai/gsm8k", "main", "test", ("question", "answer")),
    "code-python": HubCorpus("codeparrot/codeparrot-clean-valid", None, "train", ("content",)),
}
CORPORA = ("stdlib", *HUB_CORPORA)


@functools.cache
def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_files() -> list[Path]:
    """The standard library's ``.py`` files (no tests, no site-packages), sorted; excluded
    folders are pruned from the walk, not listed and filtered."""
    found = []
    for folder, subfolders, files in os.walk(stdlib_root()):
        subfolders[:] = [d for d in subfolders if d not in EXCLUDED_DIRS]
        found += [Path(folder) / f for f in files if f.endswith(".py")]
    return sorted(found)


def is_heldout(path: Path, heldout_percent: int) -> bool:
    """Whether a stdlib file is held out from training (a stable hash of its relative path)."""
    rel = path.relative_to(stdlib_root()).as_posix()
    return int(hashlib.sha256(rel.encode()).hexdigest(), 16) % 100 < heldout_percent


def split_stdlib(heldout_percent: int) -> tuple[list[Path], list[Path]]:
    """``(train_files, heldout_files)``: disjoint, together every file of :func:`stdlib_files`."""
    files = stdlib_files()
    heldout = [p for p in files if is_heldout(p, heldout_percent)]
    train = [p for p in files if not is_heldout(p, heldout_percent)]
    return train, heldout


def read_texts(paths: Sequence[Path]) -> list[str]:
    return [p.read_text(encoding="utf-8", errors="replace") for p in paths]


def fingerprint(paths: Sequence[Path]) -> str:
    """Hash of the files' relative paths and contents: part of every cache key built on them."""
    digest = hashlib.sha256()
    for p in paths:
        digest.update(p.relative_to(stdlib_root()).as_posix().encode())
        digest.update(p.read_bytes())
    return digest.hexdigest()[:16]


def hub_texts(corpus: str, max_docs: int) -> list[str]:
    """The first ``max_docs`` non-empty documents of a hub corpus: streamed when the hub is
    reachable (nothing beyond them is downloaded), else read from the local ``datasets`` cache
    (filled by :func:`fetch_corpus`); :class:`Unavailable` when neither can provide it."""
    check_choice("corpus", corpus, tuple(HUB_CORPORA))
    spec = HUB_CORPORA[corpus]
    mode = prepare_hub()
    import datasets

    try:
        rows = datasets.load_dataset(spec.path, spec.name, split=spec.split,
                                     streaming=hub_reachable())
        texts = ("\n".join(str(row[f]) for f in spec.fields) for row in rows)
        return list(itertools.islice((t for t in texts if t.strip()), max_docs))
    except OSError as err:
        raise Unavailable(f"corpus {corpus!r} ({spec.path}) not available: {mode}; "
                          f"{type(err).__name__}: {err}") from err


def fetch_corpus(corpus: str) -> None:
    """Download and prepare a hub corpus's split into the local ``datasets`` cache
    (``$HF_HOME/datasets``), where :func:`hub_texts` reads it offline."""
    import datasets

    spec = HUB_CORPORA[check_choice("corpus", corpus, tuple(HUB_CORPORA))]
    datasets.load_dataset(spec.path, spec.name, split=spec.split)


def token_stream(documents: Sequence[Sequence[int]], separator: int) -> Int[Tensor, " n_tokens"]:
    """All documents' token ids in one stream, each document followed by ``separator``."""
    ids: list[int] = []
    for doc in documents:
        ids.extend(doc)
        ids.append(separator)
    return torch.tensor(ids, dtype=torch.long)


def sample_windows(stream: Int[Tensor, " n_tokens"], n_windows: int, length: int,
                   seed: int) -> Int[Tensor, "n_windows length"]:
    """``n_windows`` windows of ``length`` consecutive tokens at seeded random offsets."""
    if stream.numel() < length:
        raise ValueError(f"token stream of {stream.numel()} tokens is shorter than one window "
                         f"of {length}")
    generator = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, stream.numel() - length + 1, (n_windows,), generator=generator)
    return stream[starts[:, None] + torch.arange(length)]
