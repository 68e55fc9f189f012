"""Claims of Henighan et al. 2023, 'Superposition, Memorization, and Double Descent'.

Setup (the ARENA/Hobbhahn reduction at cpu scale): n=1000 features, m=2 hidden dimensions,
S=0.99, unit-norm inputs, a fixed training set of T points per configuration, AdamW with weight
decay 1e-2, warm-up then cosine decay; the best of several replicates per T by training loss.
Thresholds are the issue's: "small" dimensionality means below 0.2, the pentagon's 2/5 bounds
the generalising features, and the all-zero predictor is the baseline for test loss.
"""

from __future__ import annotations

import pytest
import torch

from replication.double_descent import experiments, figures
from replication.double_descent.metrics import padded
from replication.double_descent.sweep import TrainedDoubleDescent
from replication.toy.metrics import angular_gaps_deg

PAPER = "Henighan et al. 2023, Superposition, Memorization, and Double Descent"
SMALL = 0.2  # the bound for a "small" dimensionality
MEMORISING_T = 10  # claim 1 looks at T <= 10
T_GON_TOLERANCE = 0.15  # mean data dimensionality within 15% of m/T
PENTAGON_FEATURES, PENTAGON_DIMENSIONALITY = 5, 2 / 5


def describe(record, run: TrainedDoubleDescent) -> None:
    config = run.config
    record.note(f"n={config.n_features}, m={config.n_hidden}, "
                f"S={1 - config.feature_probability:g}, {config.train.steps} steps, "
                f"weight decay {config.train.weight_decay:g}; best of "
                f"{config.replicates} replicates per T by training loss; test set of "
                f"{config.test_size} fresh points.")


def memorising(run: TrainedDoubleDescent) -> tuple[list[int], torch.Tensor]:
    """The T <= 10 configurations and their indices."""
    sizes = torch.tensor(run.config.train_sizes)
    index = torch.nonzero(sizes <= MEMORISING_T).squeeze(1)
    return sizes[index].tolist(), index


@pytest.mark.claim(
    id="dd.memorising.t-gon",
    paper=PAPER, section="Data set size sweep: small training sets",
    statement="For small training sets (T <= 10) the training points' hidden vectors form a "
              "T-gon: the mean data dimensionality D_X = |h_i|^2 / sum_j (h^_i . h_j)^2 is "
              "within 15% of m/T.",
)
def test_memorising_points_form_a_t_gon(dd_sweep, record):
    sizes, index = memorising(dd_sweep)
    m = dd_sweep.config.n_hidden
    data = dd_sweep.data_dimensionality()
    mean = torch.stack([data[i, :t].mean() for i, t in zip(index.tolist(), sizes, strict=True)])
    expected = m / torch.tensor(sizes, dtype=torch.float32)
    error = (mean - expected).abs() / expected
    record.metric("T", sizes)
    record.metric("mean data dimensionality", mean, expect="within 15% of m/T")
    record.metric("m/T", expected)
    record.metric("relative error", error, expect=f"<= {T_GON_TOLERANCE}")
    if m == 2:
        hidden = padded(dd_sweep.hidden, dd_sweep.sizes)
        gaps = [angular_gaps_deg(hidden[i, :, :t]) for i, t in zip(index.tolist(), sizes, strict=True)]
        record.metric("largest angular gap minus 360°/T",
                      [float((g - 360 / len(g)).abs().max()) for g in gaps], unit="degrees")
        record.note("A mean D_X near m/T also holds for any evenly spread cloud of T vectors; the "
                    "angular gaps between consecutive training points say how regular the T-gon is.")
    describe(record, dd_sweep)
    record.figure(figures.geometry(dd_sweep), "geometry")
    record.figure(figures.dimensionalities(dd_sweep), "dimensionalities")
    assert torch.all(error <= T_GON_TOLERANCE), f"relative errors {error.tolist()}"


@pytest.mark.xfail(strict=True, reason=(
    "at cpu scale (10,000 steps, seed 0) the largest feature dimensionality for T = 3, 5, 6, 8, "
    "10 is 0.14, 0.15, 0.43, 0.15, 0.21: a memorised point with few active features gives each "
    "of them a large share of its direction (D_i ~ x_i^2 / |x|^2). Seed-dependent: the largest "
    "over T <= 10 is 0.43, 0.16, 0.22, 0.28, 0.26 for seeds 0-4 (seed 1 holds). Early in "
    "training the untrained features' initial weights still dominate the denominators "
    "(2,000 steps, seed 0: max 0.195)"))
@pytest.mark.claim(
    id="dd.memorising.features-small",
    paper=PAPER, section="Data set size sweep: small training sets",
    statement="For small training sets (T <= 10) every feature dimensionality is small "
              "(below 0.2): the model stores points, not features.",
)
def test_memorising_features_are_small(dd_sweep, record):
    sizes, index = memorising(dd_sweep)
    largest = dd_sweep.feature_dimensionality()[index].max(1).values
    record.metric("T", sizes)
    record.metric("largest feature dimensionality", largest, expect=f"< {SMALL}")
    describe(record, dd_sweep)
    record.figure(figures.dimensionalities(dd_sweep), "dimensionalities")
    assert torch.all(largest < SMALL), f"largest feature dimensionalities {largest.tolist()}"


@pytest.mark.claim(
    id="dd.generalising.pentagon",
    paper=PAPER, section="Data set size sweep: large training sets",
    statement="At the largest T the model generalises: a pentagon of features (5 for m=2) carries "
              "the large dimensionalities, all below 2/5; every data dimensionality is small; "
              "the test loss is below the all-zero predictor's.",
)
def test_generalising_regime(dd_sweep, record):
    features = dd_sweep.feature_dimensionality()[-1]
    large = features >= SMALL
    data = dd_sweep.data_dimensionality()[-1, : dd_sweep.config.train_sizes[-1]]
    record.metric("T", dd_sweep.config.train_sizes[-1])
    record.metric("features with dimensionality >= 0.2", int(large.sum()),
                  expect=f"== {PENTAGON_FEATURES} (a pentagon)")
    record.metric("their dimensionalities", features[large].sort(descending=True).values,
                  expect=f"< {PENTAGON_DIMENSIONALITY:g}")
    record.metric("next largest feature dimensionality", features[~large].max())
    if dd_sweep.config.n_hidden == 2 and large.any():
        record.metric("angular gaps between them", angular_gaps_deg(dd_sweep.W[-1][:, large]),
                      unit="degrees")
    record.metric("largest data dimensionality", data.max(), expect=f"< {SMALL}")
    record.metric("test loss", dd_sweep.test_loss[-1], expect="< all-zero predictor")
    record.metric("all-zero predictor", dd_sweep.zero_loss)
    describe(record, dd_sweep)
    record.figure(figures.geometry(dd_sweep), "geometry")
    record.figure(figures.dimensionalities(dd_sweep), "dimensionalities")
    assert int(large.sum()) == PENTAGON_FEATURES
    assert torch.all(features < PENTAGON_DIMENSIONALITY)
    assert data.max() < SMALL
    assert dd_sweep.test_loss[-1] < dd_sweep.zero_loss


def interior_peak(values: torch.Tensor) -> bool:
    """True when the maximum lies strictly inside the sweep and above both ends."""
    peak = int(values.argmax())
    above_ends = bool(values[peak] > values[0]) and bool(values[peak] > values[-1])
    return 0 < peak < len(values) - 1 and above_ends


@pytest.mark.claim(
    id="dd.transition.test-loss-bump",
    paper=PAPER, section="Double descent",
    statement="Between the memorising and generalising regimes the test loss rises above the "
              "all-zero predictor's (the bump), and its maximum over T lies strictly inside the "
              "sweep, above both ends.",
)
def test_test_loss_bump(dd_sweep, record):
    ratio = dd_sweep.test_over_zero
    peak = int(ratio.argmax())
    record.metric("T", list(dd_sweep.config.train_sizes))
    record.metric("test loss / all-zero predictor", ratio,
                  expect="max > 1, strictly inside the sweep")
    record.metric("training loss / all-zero predictor",
                  dd_sweep.kept_train_loss / dd_sweep.zero_loss)
    record.metric("T of the largest test loss", dd_sweep.config.train_sizes[peak],
                  expect=f"strictly between {dd_sweep.config.train_sizes[0]} and "
                         f"{dd_sweep.config.train_sizes[-1]}")
    describe(record, dd_sweep)
    record.figure(figures.losses({"wd 1e-2": dd_sweep}), "losses")
    assert ratio.max() > 1
    assert interior_peak(ratio), f"test/zero ratios {ratio.tolist()}"


@pytest.mark.claim(
    id="dd.transition.weight-norm-peak",
    paper=PAPER, section="Double descent",
    statement="|W|_F over T peaks at an intermediate T (the paper: near T = 30), not at "
              "either end.",
)
def test_weight_norm_peak(dd_sweep, record):
    norm = dd_sweep.weight_norm
    record.metric("T", list(dd_sweep.config.train_sizes))
    record.metric("|W|_F", norm)
    record.metric("|b|", dd_sweep.b.norm(dim=1))
    record.metric("T of the largest |W|_F", dd_sweep.config.train_sizes[int(norm.argmax())],
                  expect="strictly inside the sweep (paper: ~30)")
    describe(record, dd_sweep)
    record.figure(figures.norms(dd_sweep), "norms")
    assert interior_peak(norm), f"|W|_F {norm.tolist()}"


@pytest.mark.slow
@pytest.mark.claim(
    id="dd.weight-decay.no-bump",
    paper=PAPER, section="Comments: weight decay",
    statement="With weight decay 1.0 instead of 1e-2 the bump disappears: the test loss no longer "
              "peaks above the all-zero predictor strictly inside the sweep, above both ends "
              "(the bump of dd.transition.test-loss-bump; shown in the paper for m=4).",
)
def test_strong_weight_decay_removes_the_bump(dd_sweep, dd_strong_decay, record):
    ratio, sizes = dd_strong_decay.test_over_zero, dd_strong_decay.config.train_sizes
    record.metric("T", list(sizes))
    record.metric("test loss / all-zero predictor, weight decay 1.0", ratio,
                  expect="no maximum above 1 strictly inside the sweep and above both ends")
    record.metric("test loss / all-zero predictor, weight decay 1e-2", dd_sweep.test_over_zero)
    record.metric("T of the largest test loss, weight decay 1.0", sizes[int(ratio.argmax())])
    record.metric("T above the all-zero predictor, weight decay 1.0",
                  [t for t, r in zip(sizes, ratio.tolist(), strict=True) if r > 1])
    describe(record, dd_strong_decay)
    record.note(f"same sweep as the other claims (m={dd_strong_decay.config.n_hidden}) with weight "
                f"decay {experiments.STRONG_WEIGHT_DECAY:g}; the paper's comment shows it for m=4.")
    record.figure(figures.losses({"wd 1e-2": dd_sweep, "wd 1.0": dd_strong_decay}), "losses")
    assert not (ratio.max() > 1 and interior_peak(ratio)), f"test/zero ratios {ratio.tolist()}"
