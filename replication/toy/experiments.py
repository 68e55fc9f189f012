"""The Toy Models of Superposition sweeps, one table per experiment keyed by scale.

``cpu`` keeps each sweep to seconds on two cores while still showing the phenomenon; ``paper``
uses the paper's sizes (n=400, m=30 for feature dimensionality) and more replicates.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from replication.settings import for_scale
from replication.toy.phase import PhaseSweep
from replication.toy.sweep import ToySweep, geometric_importance
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
