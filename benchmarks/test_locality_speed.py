"""Speed: batched influence (one vmapped backward per window and layer) against the naive
per-feature backward loop, on the local preset and the same windows.

In CI (``--benchmark-disable``) this runs once and only checks that both give the same
numbers; with ``--benchmark-enable`` pytest-benchmark times the batched form, and the test
prints the loop-over-batched ratio (also in ``extra_info``). No wall-clock is asserted.
"""

from __future__ import annotations

import torch

from replication.locality.corpus import sample_windows
from replication.locality.influence import window_influence

WINDOWS = 4
ROUNDS = 3


def influence(loaded, windows, batched: bool):
    return [window_influence(loaded.model, loaded.saes, loaded.hooks, loaded.preset.threshold,
                             tokens, batched=batched) for tokens in windows]


def test_batched_influence_vs_per_feature_loop(benchmark, speed, local_preset, locality_scale, seed):
    windows = sample_windows(local_preset.stdlib_heldout, WINDOWS, locality_scale.window_length,
                             seed)
    batched = benchmark(influence, local_preset, windows, True)
    loop = influence(local_preset, windows, False)
    for per_window_b, per_window_l in zip(batched, loop, strict=True):
        for b, ref in zip(per_window_b, per_window_l, strict=True):
            torch.testing.assert_close(b.feature_influence, ref.feature_influence,
                                       rtol=1e-6, atol=1e-9)
            torch.testing.assert_close(b.token_influence, ref.token_influence,
                                       rtol=1e-6, atol=1e-9)
    t_batched = speed.best_seconds(lambda: influence(local_preset, windows, True), rounds=ROUNDS)
    t_loop = speed.best_seconds(lambda: influence(local_preset, windows, False), rounds=ROUNDS)
    rows = sum(len(r.features) + local_preset.model.cfg.d_model for w in batched for r in w)
    benchmark.extra_info.update({"gradient_rows": rows, "windows": WINDOWS})
    speed.ratio(f"H_pos influence, {WINDOWS} windows x {len(local_preset.saes)} layers, {rows} "
                "gradient rows: batched vs per-feature loop", t_loop, t_batched)
