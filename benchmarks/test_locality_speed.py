"""Speed: the H_pos influence as the sweeps compute it (``features`` form: one batched backward
per window and layer, one row per nonzero latent) against the naive per-row loop (one backward
per active feature and per direction of y~, the paper's appendix), on the local preset and
the same windows.

In CI (``--benchmark-disable``) this runs once and only checks that both give the same
numbers; with ``--benchmark-enable`` pytest-benchmark times the fast form, and the test
prints the loop-over-fast ratio (also in ``extra_info``). No wall-clock is asserted.
"""

from __future__ import annotations

import torch

from replication.locality.corpus import sample_windows
from replication.locality.influence import batch_influence

WINDOWS = 4
ROUNDS = 3


def influence(loaded, windows, batched: bool):
    form = "features" if batched else "probes"
    return [batch_influence(loaded.model, loaded.saes, loaded.hooks, loaded.preset.threshold,
                            tokens[None], batched=batched, form=form) for tokens in windows]


def test_batched_influence_vs_per_row_loop(benchmark, speed, local_preset, locality_scale, seed):
    windows = sample_windows(local_preset.stdlib_heldout, WINDOWS, locality_scale.window_length,
                             seed)
    fast = benchmark(influence, local_preset, windows, True)
    loop = influence(local_preset, windows, False)
    for per_window_f, per_window_l in zip(fast, loop, strict=True):
        for f, ref in zip(per_window_f, per_window_l, strict=True):
            torch.testing.assert_close(f.feature_influence, ref.feature_influence,
                                       rtol=1e-5, atol=1e-8)
            torch.testing.assert_close(f.token_influence, ref.token_influence,
                                       rtol=1e-4, atol=1e-7)
    t_fast = speed.best_seconds(lambda: influence(local_preset, windows, True), rounds=ROUNDS)
    t_loop = speed.best_seconds(lambda: influence(local_preset, windows, False), rounds=ROUNDS)
    rows = sum(len(r.features) + local_preset.model.cfg.d_model for w in loop for r in w)
    benchmark.extra_info.update({"naive_gradient_rows": rows, "windows": WINDOWS})
    speed.ratio(f"H_pos influence, {WINDOWS} windows x {len(local_preset.saes)} layers, {rows} "
                "naive gradient rows: features form vs per-row loop", t_loop, t_fast)
