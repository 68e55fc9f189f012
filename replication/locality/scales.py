"""The per-scale configurations of the H_pos claims (one table, read with ``for_scale``).

``cpu``: the local presets built in about five minutes on two CPU cores; ``paper``: the
prototype's 1500 training steps and more windows. Real presets use ``real_*``.

The local model trains on sequences of 129 tokens (8 per step, about the tokens of 16 sequences
of 64) so that every window of the context sweep, up to N = 128 as in sae-analysis (paper.tex,
'Hyperparameters': "we vary $L$ from 8 to 128"), reads out at a trained position. The last
position of a training sequence has no next token, so nothing trains its positional embedding
(measured at n_ctx = 128: W_pos[127] moved 0.024 from its initialisation, weight decay only,
W_pos[126] moved 0.80); reading out there made mean H_pos fall at N = n_ctx (n_ctx = 64:
1.77 bits at N = 63, 1.42 at N = 64, the read-out token's own share of J 0.70 -> 0.80).
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
    context_layer: the layer the context claim reads (paper.tex, Figure entropy_vs_batchsize:
        layer 2).
    real_windows: windows per real preset; real_corpus: the corpus they come from.
    real_context_lengths: the Ns of a real preset's context sweep.
    stats_windows, stats_length: the windows the feature statistics (activation indicators,
        unique tokens) are counted on (forward passes only).
    """

    local: LocalConfig
    windows: int
    window_length: int
    context_lengths: tuple[int, ...]
    context_windows: int
    context_layer: int
    real_windows: int
    real_corpus: str
    real_context_lengths: tuple[int, ...]
    stats_windows: int
    stats_length: int


CONTEXT_LENGTHS = (8, 16, 32, 64, 128)
LOCAL_LM = TinyLMConfig(n_ctx=129, batch_size=8)
LOCALITY_SCALES = {
    "cpu": LocalityScale(
        local=LocalConfig(BPEConfig(), replace(LOCAL_LM, steps=1000),
                          LocalSAEConfig(train_sequences=512)),
        windows=32, window_length=64, context_lengths=CONTEXT_LENGTHS, context_windows=32,
        context_layer=2, real_windows=8, real_corpus="wikitext",
        real_context_lengths=CONTEXT_LENGTHS, stats_windows=128, stats_length=128,
    ),
    "paper": LocalityScale(
        local=LocalConfig(BPEConfig(), replace(LOCAL_LM, steps=1500),
                          LocalSAEConfig(steps=4000, train_sequences=1024)),
        windows=128, window_length=64, context_lengths=CONTEXT_LENGTHS, context_windows=64,
        context_layer=2, real_windows=50, real_corpus="wikitext",
        real_context_lengths=CONTEXT_LENGTHS, stats_windows=512, stats_length=128,
    ),
}


def with_seed(scale: LocalityScale, seed: int) -> LocalityScale:
    """``scale`` with every seeded configuration of the local presets set to ``seed``."""
    local = scale.local
    return replace(scale, local=replace(local, lm=replace(local.lm, seed=seed),
                                        sae=replace(local.sae, seed=seed)))
