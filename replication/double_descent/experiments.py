"""The double-descent sweeps, one table keyed by scale.

``paper``: the paper's n=10,000, S=0.999, 50,000 steps with 2,500 warm-up, and the T range
carried on to 100,000. The generalising regime needs each feature to recur in training: at cpu
scale it appears once T·(1 − S) reaches tens of occurrences (T ≈ 1000–3000 at 1 − S = 0.01),
which at 1 − S = 0.001 means T ≈ 10,000–30,000.

``cpu``: the ARENA/Hobbhahn reduction (n=1000, S=0.99), 3 independent training sets per T
(the paper averages its test loss over dataset seeds), one model each, 10,000 steps with 500
warm-up. Measured with the earlier protocol (one training set per T, best of 2 initialisations,
seed 0 unless said): the T-gons (T <= 10) and the pentagon (T >= 2000) are there from 2,000
steps on, but the test-loss bump of the transition (T = 100–500) grows with training (T=200,
test/zero: 1.008 at 2,000 steps, 1.21 at 6,000, 1.48 at 10,000) while the memorising end stays
put (T=3: 1.09–1.15, its positive biases cost loss on every test point). At 6,000 steps the bump
beat that end for 4 of 5 seeds; at 10,000 for all 5. The cost of a step grows with the number
of training points over all sets: 3 sets per T cost 1.5 times the earlier 2 replicates
(estimated from the earlier ≈ 21 ms a step: ≈ 5 minutes for the sweep on one free core).

The weight-decay sweep is the same at m=4 (the paper's weight-decay comment shows m=4, where
its results are more consistent than at small m) with weight decay 1.0.

The model-size sweeps repeat the T sweep at m = 2, 3, 4 (the issue's cpu choice; we have not
read the paper's own m values off its figure, so the paper scale uses the same three), one run per
m: the packed engine's instances share one hidden size, so one run over (m, T, set) would pad
every instance to the largest m and pay for the padding in arithmetic and optimizer state; the
three runs together cost what the one would cost without padding.
"""

from __future__ import annotations

from dataclasses import replace

from replication.double_descent.sweep import DD_TRAIN, DoubleDescentSweep
from replication.settings import for_scale

T_SWEEP = (3, 5, 6, 8, 10, 15, 30, 50, 100, 200, 500, 1000, 2000, 3000)
PAPER_T_SWEEP = T_SWEEP + (5_000, 10_000, 20_000, 50_000, 100_000)
MODEL_SIZES = {"cpu": (2, 3, 4), "paper": (2, 3, 4)}  # m of the model-size sweeps
STRONG_WEIGHT_DECAY = 1.0  # the paper's comment: weight decay 1.0 removes the bump
WEIGHT_DECAY_HIDDEN = 4  # m of the paper's weight-decay comment (more consistent for m > 3)

CPU_STEPS = 10_000

SWEEP = {
    "cpu": DoubleDescentSweep(
        n_features=1000, n_hidden=2, feature_probability=0.01, train_sizes=T_SWEEP, datasets=3,
        training=replace(DD_TRAIN, steps=CPU_STEPS, warmup_steps=CPU_STEPS // 20)),
    "paper": DoubleDescentSweep(
        n_features=10_000, n_hidden=2, feature_probability=0.001, train_sizes=PAPER_T_SWEEP,
        datasets=4, training=DD_TRAIN),
}


def sweep(scale: str, seed: int, weight_decay: float | None = None,
          n_hidden: int | None = None) -> DoubleDescentSweep:
    """The T sweep of ``scale``, optionally with another AdamW weight decay or hidden size m."""
    config = replace(for_scale(SWEEP, scale), seed=seed)
    if n_hidden is not None:
        config = replace(config, n_hidden=n_hidden)
    if weight_decay is not None:
        config = replace(config, training=replace(config.training, weight_decay=weight_decay))
    return config


def model_size_sweeps(scale: str, seed: int) -> dict[int, DoubleDescentSweep]:
    """The T sweep of ``scale`` at every m of :data:`MODEL_SIZES` (weight decay as the paper's)."""
    return {m: sweep(scale, seed, n_hidden=m) for m in for_scale(MODEL_SIZES, scale)}
