"""The Toy Models of Superposition sweeps, one table per experiment keyed by scale.

``cpu`` keeps each sweep to seconds on two cores while still showing the phenomenon; ``paper``
uses the paper's sizes (n=400, m=30 for feature dimensionality) and more replicates.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from replication.settings import for_scale
from replication.toy.bundle import ToyBundle
from replication.toy.phase import PhaseSweep
from replication.toy.sweep import FeatureSets, ToySweep, geometric_importance
from replication.toy.train import TrainConfig

BASIC_DENSITIES = (1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001)

BASIC = {  # 'Basic results': n=20, m=5, I=0.7^i
    "cpu": ToySweep(20, 5, BASIC_DENSITIES, (geometric_importance(20, 0.7),), replicates=4,
                    training=TrainConfig(steps=10_000, batch_size=1024)),
    "paper": ToySweep(20, 5, BASIC_DENSITIES, (geometric_importance(20, 0.7),), replicates=10,
                      training=TrainConfig(steps=20_000, batch_size=1024)),
}


def dimensionality_densities(count: int, decades: float) -> tuple[float, ...]:
    """Densities from 1 down to 10^−decades, evenly spaced in log(1/(1−S))."""
    return tuple(float(d) for d in np.logspace(0, -decades, count))


DIMENSIONALITY = {  # 'Feature dimensionality': importance 1, many sparsities
    # cpu: the decade from dedicated dimensions (density 1) through the antipodal plateau
    # (≈ 0.5–0.25) to where most features share a dimension with several others (0.1).
    "cpu": ToySweep(200, 20, dimensionality_densities(16, 1.0), (geometric_importance(200, 1.0),),
                    replicates=1, training=TrainConfig(steps=6_000, batch_size=256)),
    "paper": ToySweep(400, 30, dimensionality_densities(40, 2.0), (geometric_importance(400, 1.0),),
                      replicates=1, training=TrainConfig(steps=50_000, batch_size=1024)),
}

PENTAGON = {  # n=5, m=2, I=1, density 0.05; m=2 optimises poorly, so keep the best of many
    "cpu": ToySweep(5, 2, (0.05,), (geometric_importance(5, 1.0),), replicates=16,
                    training=TrainConfig(steps=10_000, batch_size=1024)),
    "paper": ToySweep(5, 2, (0.05,), (geometric_importance(5, 1.0),), replicates=64,
                      training=TrainConfig(steps=20_000, batch_size=1024)),
}

PHASE_RELATIVE_IMPORTANCE = {"cpu": np.logspace(-1, 1, 11), "paper": np.logspace(-1, 1, 21)}
PHASE_DENSITY = {"cpu": np.logspace(-2, 0, 11), "paper": np.logspace(-2, 0, 21)}
PHASE_TRAIN = {"cpu": TrainConfig(steps=6_000, batch_size=1024),
               "paper": TrainConfig(steps=20_000, batch_size=2048)}
# Replicates per cell and how they give the cell's solution (replication/toy/phase.py).
# paper: the paper's protocol, ten models per point, the highest-loss one discarded, the rest
# averaged (as a vote). cpu: four models per point, the lowest-loss one kept.
PHASE_REPLICATES = {"cpu": 4, "paper": 10}
PHASE_AGGREGATION = {"cpu": "best", "paper": "drop-worst-vote"}


def basic_sweep(activation: str, scale: str, seed: int) -> ToySweep:
    return replace(for_scale(BASIC, scale), activation=activation, seed=seed)


def dimensionality_sweep(scale: str, seed: int) -> ToySweep:
    return replace(for_scale(DIMENSIONALITY, scale), seed=seed)


def pentagon_sweep(scale: str, seed: int) -> ToySweep:
    return replace(for_scale(PENTAGON, scale), seed=seed)


def phase_sweep(scale: str, seed: int) -> PhaseSweep:
    """n=2, m=1 over the (relative importance, density) grid of the phase diagram."""
    return PhaseSweep(
        ratios=tuple(float(r) for r in for_scale(PHASE_RELATIVE_IMPORTANCE, scale)),
        densities=tuple(float(s) for s in for_scale(PHASE_DENSITY, scale)),
        replicates=for_scale(PHASE_REPLICATES, scale),
        aggregation=for_scale(PHASE_AGGREGATION, scale),
        training=for_scale(PHASE_TRAIN, scale),
        seed=seed,
    )


# 'Superposition in a Privileged Basis': the ReLU hidden layer model, n=10, m=5, I_i=0.75^i. One
# density inside each regime the paper names: all monosemantic (1−S ≳ 0.5: 1 and 0.7), three
# features in two neurons (0.2–0.5: 0.3), five in three (0.15), six in four (0.12), eight in
# five (0.05–0.08: 0.065), pairs of neurons (≤ 0.04: 0.03).
PRIVILEGED_DENSITIES = (1.0, 0.7, 0.3, 0.15, 0.12, 0.065, 0.03)
PRIVILEGED = {
    # The paper keeps the lowest-loss of 1000 models per density. cpu: the lowest of 8, 4,000
    # steps of batch 256 at lr 1e-2. The dense models converge slowest (at 1−S = 1 the
    # all-monosemantic optimum is reached by every replicate after 16,000 steps at lr 3e-3, by
    # none after 4,000); at 1e-2 they reach it within the 4,000. The narrow codes of 0.15–0.03
    # differ in loss by about 1%, so the replicates of a density are scored on one shared
    # evaluation sample (8 × 7 instances is about a quarter of the family's cpu time).
    "cpu": ToySweep(10, 5, PRIVILEGED_DENSITIES, (geometric_importance(10, 0.75),), replicates=8,
                    hidden_activation="relu", shared_evaluation=True,
                    training=TrainConfig(steps=4_000, batch_size=256, lr=1e-2)),
    "paper": ToySweep(10, 5, PRIVILEGED_DENSITIES, (geometric_importance(10, 0.75),),
                      replicates=1000, hidden_activation="relu", shared_evaluation=True,
                      training=TrainConfig(steps=10_000, batch_size=1024)),
}

# 'Computation in Superposition': h = ReLU(W₁x), y' = ReLU(W₂h + b), x_i ∈ [−1, 1], target |x|,
# n=100, m=40, I_i=0.8^i, at the seven densities of the paper's figure.
ABSOLUTE_DENSITIES = (1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001)
ABSOLUTE = {
    # One model per density, as the figure shows. cpu: 4,000 steps of batch 128 at lr 1e-2, the
    # family's costliest run (four 40×100 products per instance and step); at 1e-2 the dense
    # models settle into one feature per neuron within it (at 3e-3, 35 of 40 at 1−S = 0.3).
    "cpu": ToySweep(100, 40, ABSOLUTE_DENSITIES, (geometric_importance(100, 0.8),),
                    hidden_activation="relu", tied=False, task="absolute-value",
                    training=TrainConfig(steps=4_000, batch_size=128, lr=1e-2)),
    "paper": ToySweep(100, 40, ABSOLUTE_DENSITIES, (geometric_importance(100, 0.8),), replicates=4,
                      hidden_activation="relu", tied=False, task="absolute-value",
                      training=TrainConfig(steps=20_000, batch_size=1024)),
}

# 'Correlated and Anticorrelated Features' (m=2, importance 1; the paper gives no density for
# the first three, we use 0.05) and 'Perturbing a single feature' (n=5, m=2, I=1, 1−S=0.05 with
# one feature sparser). All share m=2 and train as one bundle (replication/toy/bundle.py).
PAIRED_DENSITY = 0.05
INDEPENDENT = FeatureSets()
# 'Collapsing of correlated features' (three correlated pairs): one density inside each of the
# paper's bands, most PCA-like (≳ 0.5), all sets collapsed (0.25–0.5), two (0.15–0.2), one
# (0.05–0.15), none (≲ 0.05).
COLLAPSE_DENSITIES = (0.7, 0.35, 0.175, 0.1, 0.03)
# Density of the varied feature relative to the others' 0.05, around the paper's critical ~1/2.5.
RELATIVE_DENSITIES = (1.0, 0.6, 0.4, 0.33, 0.25, 0.2, 0.15, 0.1)
TWO_DIMENSIONAL_TRAIN = {
    # cpu: best of 6 per configuration (the paper: "fitting each model multiple times and taking
    # the solution with the lowest loss"), 4,000 steps of batch 256. The replicates of a
    # configuration are scored on one evaluation sample: the collapse and pentagon/digon
    # solutions differ by 1-2% in loss, less than two independent 16k-sample draws do.
    "cpu": (6, TrainConfig(steps=4_000, batch_size=256)),
    "paper": (32, TrainConfig(steps=20_000, batch_size=1024)),
}


def two_dimensional_bundle(scale: str, seed: int) -> ToyBundle:
    """Every m=2 experiment of the correlated-features and non-uniform sections, as one run."""
    replicates, training = for_scale(TWO_DIMENSIONAL_TRAIN, scale)

    def sweep(n: int, densities, sets: FeatureSets = INDEPENDENT) -> ToySweep:
        return ToySweep(n, 2, densities, (geometric_importance(n, 1.0),), replicates=replicates,
                        training=training, seed=seed, feature_sets=(sets,), shared_evaluation=True)

    return ToyBundle((
        ("correlated", sweep(4, (PAIRED_DENSITY,), FeatureSets("correlated", 2))),
        ("anticorrelated", sweep(4, (PAIRED_DENSITY,), FeatureSets("anticorrelated", 2))),
        ("collapse", sweep(6, COLLAPSE_DENSITIES, FeatureSets("correlated", 2))),
        ("non-uniform", sweep(5, tuple((PAIRED_DENSITY,) * 4 + (PAIRED_DENSITY * r,)
                                       for r in RELATIVE_DENSITIES))),
    ))


LOCAL_BASIS = {  # 'Local almost-orthogonal bases': two sets of 10 correlated features, m=10
    # The paper gives no density or importance; 0.03 and 1 are ours (every feature represented).
    "cpu": ToySweep(20, 10, (0.03,), (geometric_importance(20, 1.0),), replicates=2,
                    feature_sets=(FeatureSets("correlated", 10),),
                    training=TrainConfig(steps=3_000, batch_size=256)),
    "paper": ToySweep(20, 10, (0.03,), (geometric_importance(20, 1.0),), replicates=8,
                      feature_sets=(FeatureSets("correlated", 10),),
                      training=TrainConfig(steps=20_000, batch_size=1024)),
}


def privileged_sweep(scale: str, seed: int) -> ToySweep:
    return replace(for_scale(PRIVILEGED, scale), seed=seed)


def absolute_sweep(scale: str, seed: int) -> ToySweep:
    return replace(for_scale(ABSOLUTE, scale), seed=seed)


def local_basis_sweep(scale: str, seed: int) -> ToySweep:
    return replace(for_scale(LOCAL_BASIS, scale), seed=seed)
