"""The per-scale configurations of the H_pos claims (one table, read with ``for_scale``).

``cpu``: the local presets built in about five minutes on two CPU cores; ``paper``: the
prototype's 1500 training steps and more windows. Real presets use ``real_*``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from replication.locality.bpe import BPEConfig
from replication.locality.local_saes import LocalSAEConfig
from replication.locality.presets import LocalConfig
from replication.locality.tiny_lm import TinyLMConfig


@dataclass(frozen=True)
class LocalityScale:
    """Args:
    local: how the local presets are built.
    windows: windows of the depth sweep; window_length: their N.
    context_lengths: the Ns of the context sweep; context_windows: windows per N.
    real_windows: windows per real preset; real_corpus: the corpus they come from.
    real_context_lengths: the Ns of a real preset's context sweep.
    """

    local: LocalConfig
    windows: int
    window_length: int
    context_lengths: tuple[int, ...]
    context_windows: int
    real_windows: int
    real_corpus: str
    real_context_lengths: tuple[int, ...]


LOCALITY_SCALES = {
    "cpu": LocalityScale(
        local=LocalConfig(BPEConfig(), TinyLMConfig(steps=1000), LocalSAEConfig()),
        windows=32, window_length=64, context_lengths=(8, 16, 32, 64), context_windows=32,
        real_windows=8, real_corpus="wikitext", real_context_lengths=(8, 16, 32, 64, 128),
    ),
    "paper": LocalityScale(
        local=LocalConfig(BPEConfig(), TinyLMConfig(steps=1500),
                          LocalSAEConfig(steps=4000, train_sequences=2048)),
        windows=128, window_length=64, context_lengths=(8, 16, 32, 64), context_windows=64,
        real_windows=50, real_corpus="wikitext", real_context_lengths=(8, 16, 32, 64, 128),
    ),
}


def with_seed(scale: LocalityScale, seed: int) -> LocalityScale:
    """``scale`` with every seeded configuration of the local presets set to ``seed``."""
    local = scale.local
    return replace(scale, local=replace(local, lm=replace(local.lm, seed=seed),
                                        sae=replace(local.sae, seed=seed)))
