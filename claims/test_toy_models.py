"""Claims of Elhage et al. 2022, Toy Models of Superposition (TMS)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from replication.toy import experiments, figures, metrics, phase

PAPER = "Elhage et al. 2022, Toy Models of Superposition"
TOP_M = 5  # m: the hidden size of the basic-results model


@pytest.mark.claim(
    id="tms.linear.top-m-features", paper=PAPER, section="Basic results",
    statement="A linear model (n=20, m=5, I=0.7^i) represents exactly the 5 most important "
              "features, orthogonally, at every sparsity: ‖W_i‖ > 0.9 for i < 5, < 0.1 otherwise, "
              "and ‖W‖_F² = 5 ± 0.1.",
)
def test_linear_model_learns_top_m_features(tms_linear, record):
    norms = metrics.feature_norms(tms_linear.W)
    frobenius = (tms_linear.W**2).sum((1, 2))
    record.metric("densities", tms_linear.config.feature_probability)
    record.metric("min ‖W_i‖, i < 5", norms[:, :TOP_M].min(1).values, expect="> 0.9 at every density")
    record.metric("max ‖W_i‖, i ≥ 5", norms[:, TOP_M:].max(1).values, expect="< 0.1 at every density")
    record.metric("‖W‖_F²", frobenius, expect="5 ± 0.1 at every density")
    record.note(f"Best of {tms_linear.config.replicates} instances per density (lowest loss).")
    record.figure(figures.basic_results(tms_linear, "Linear model"), "weights")
    assert (norms[:, :TOP_M] > 0.9).all()
    assert (norms[:, TOP_M:] < 0.1).all()
    assert ((frobenius - TOP_M).abs() <= 0.1).all()


@pytest.mark.claim(
    id="tms.relu.superposition-grows-with-sparsity", paper=PAPER, section="Basic results",
    statement="A ReLU-output model (n=20, m=5, I=0.7^i) represents exactly the top 5 features "
              "without interference when dense; as features get sparser it represents more (never "
              "falling by more than one), more than 2m=10 at every density ≤ 0.01; at density ≤ 0.1 "
              "most represented features are in superposition (interference Σ_{j≠i}(Ŵ_i·W_j)² > 0.1).",
)
def test_relu_superposition_grows_with_sparsity(tms_relu, record):
    W, densities = tms_relu.W, np.asarray(tms_relu.config.feature_probability)
    shown = metrics.represented(W)
    counts = shown.sum(1).numpy()
    interference = metrics.interference(W)
    superposed_share = np.array([
        (interference[k][shown[k]] > 0.1).float().mean().item() for k in range(len(densities))
    ])
    record.metric("densities", densities)
    record.metric("features represented (‖W_i‖ > 0.5)", counts,
                  expect="5 when dense; > 10 at density ≤ 0.01; never falls by more than 1")
    record.metric("max interference among represented, dense", interference[0][shown[0]].max(),
                  expect="< 0.01 (no interference)")
    record.metric("share of represented features superposed", superposed_share,
                  expect="> 0.5 at density ≤ 0.1")
    record.note(f"Best of {tms_relu.config.replicates} instances per density (lowest loss). "
                "Reference (DESIGN.md): 5, 7–8, 9–10, 10, 11, 13, 12–14 features.")
    record.figure(figures.basic_results(tms_relu, "ReLU-output model"), "weights")
    record.figure(figures.represented_counts(densities, counts, TOP_M), "counts")
    assert counts[0] == TOP_M and interference[0][shown[0]].max() < 0.01
    assert (np.diff(counts) >= -1).all() and counts[-1] > counts[0]
    assert (counts[densities <= 0.01] > 2 * TOP_M).all()
    assert (superposed_share[densities <= 0.1] > 0.5).all()


@pytest.mark.claim(
    id="tms.relu.least-important-dropped", paper=PAPER, section="Basic results",
    statement="The features a ReLU-output model (n=20, m=5, I=0.7^i) leaves out are always the "
              "least important ones: in every trained instance, at every density, the represented "
              "set (‖W_i‖ > 0.5) is a prefix of the importance order.",
)
@pytest.mark.xfail(strict=True, reason=(
    "Measured at cpu scale (10k steps, 4 instances per density, seed 0): the represented set is a "
    "prefix of the importance order in 4, 4, 4, 4, 4, 2, 2 of 4 instances at densities 1 … 0.001. "
    "At 0.003 and 0.001 the least important features (I ≤ 0.7^11 ≈ 0.02) sit at ‖W_i‖ ≈ 0.3–0.6 "
    "with near-equal losses, so which of them cross 0.5 is optimisation noise; judged on the "
    "best instance only, seed 1 holds and seeds 0 and 2 do not."
))
def test_relu_drops_least_important_features(tms_relu, record):
    shown = metrics.represented(tms_relu.replicate_W).numpy()  # (densities, replicates, feats)
    prefix = np.array([[bool(r[: r.sum()].all()) for r in per_density] for per_density in shown])
    record.metric("densities", tms_relu.config.feature_probability)
    record.metric("instances whose represented set is a prefix", prefix.sum(1),
                  expect=f"all {prefix.shape[1]} at every density")
    record.metric("features represented, per instance", shown.sum(-1))
    record.metric("‖W_i‖ of the kept instance, sparsest density",
                  metrics.feature_norms(tms_relu.W)[-1])
    record.metric("instance losses, sparsest density", tms_relu.replicate_loss[-1])
    record.figure(figures.basic_results(tms_relu, "ReLU-output model"), "weights")
    assert prefix.all()


def sticky_half_run(dims_per_feature: np.ndarray, tolerance: float = 0.05) -> int:
    """Longest run of consecutive sweep points with m/‖W‖_F² within ``tolerance`` of 1/2."""
    near = np.abs(dims_per_feature - 0.5) <= tolerance
    longest = current = 0
    for flag in near:
        current = current + 1 if flag else 0
        longest = max(longest, current)
    return longest


@pytest.mark.claim(
    id="tms.dimensionality.sticky-half", paper=PAPER, section="Feature dimensionality",
    statement="Dimensions per feature m/‖W‖_F² is ≈ 1 (±0.05) when dense, falls as sparsity grows "
              "(Spearman ρ with 1/(1−S) ≤ −0.9), and sticks at 1/2 (antipodal pairs): a plateau of "
              "at least 3 consecutive sweep points within ±0.05 of 1/2.",
)
def test_dimensions_per_feature_sticky_at_half(tms_dimensionality, record):
    sweep = tms_dimensionality
    densities = np.asarray(sweep.config.feature_probability)
    dpf = metrics.dimensions_per_feature(sweep.W).numpy()
    rho = spearmanr(1 / densities, dpf).statistic
    plateau = sticky_half_run(dpf)
    record.metric("1/(1−S)", 1 / densities)
    record.metric("dimensions per feature", dpf, expect="≈ 1 dense; plateau at 1/2")
    record.metric("dense dimensions per feature", dpf[0], expect="1 ± 0.05")
    record.metric("Spearman ρ(1/(1−S), m/‖W‖²)", rho, expect="≤ −0.9")
    record.metric("plateau length at 1/2", plateau, expect="≥ 3 consecutive sweep points",
                  unit="points")
    record.note(f"n={sweep.config.n_features}, m={sweep.config.n_hidden}, importance 1, "
                f"{sweep.config.train.steps} steps, batch {sweep.config.train.batch_size}.")
    record.figure(figures.feature_dimensionality(sweep, metrics.GEOMETRY_FRACTIONS), "dimensionality")
    assert abs(dpf[0] - 1) <= 0.05
    assert rho <= -0.9
    assert plateau >= 3


UNIFORM_SHARE = 0.458  # share of U[0, 1] within ±0.05 of one of the six fractions (the null)


@pytest.mark.claim(
    id="tms.dimensionality.geometric-fractions", paper=PAPER, section="Feature dimensionality",
    statement="Individual feature dimensionalities D_i cluster at 1, 3/4, 2/3, 1/2, 2/5, 3/8: at "
              "sparsities where the model stores features as polytopes (m/‖W‖_F² ≥ 3/8), at least 75% "
              "of represented features lie within ±0.05 of one of these fractions (a uniform spread "
              "would put 46% there).",
)
def test_feature_dimensionality_clusters_at_fractions(tms_dimensionality, record):
    sweep = tms_dimensionality
    D, shown = metrics.dimensionality(sweep.W), metrics.represented(sweep.W)
    dpf = metrics.dimensions_per_feature(sweep.W).numpy()
    geometric = dpf >= 3 / 8
    per_density = [metrics.near_fraction(D[k][shown[k]]).float().mean().item() for k in range(len(D))]
    pooled = np.concatenate([metrics.near_fraction(D[k][shown[k]]).numpy()
                             for k in np.nonzero(geometric)[0]])
    share = float(pooled.mean())
    record.metric("densities", sweep.config.feature_probability)
    record.metric("share near a fraction, per density", per_density)
    record.metric("sweep points with m/‖W‖² ≥ 3/8", int(geometric.sum()), unit="points")
    record.metric("share near a fraction, pooled", share, expect="≥ 0.75")
    record.metric("share under a uniform spread", UNIFORM_SHARE)
    record.note("Fractions: 1 (dedicated), 3/4 (tetrahedron), 2/3 (triangle), 1/2 (antipodal), "
                "2/5 (pentagon), 3/8 (square antiprism).")
    record.figure(figures.feature_dimensionality(sweep, metrics.GEOMETRY_FRACTIONS), "fractions")
    assert geometric.sum() >= 3
    assert share >= 0.75


@pytest.mark.claim(
    id="tms.pentagon", paper=PAPER, section="Superposition as a phase change / geometry",
    statement="With n=5, m=2, I=1 and density 0.05, the five features form a regular pentagon: "
              "consecutive directions 72° ± 3° apart, D_i = 0.4 ± 0.05, negative biases.",
)
def test_pentagon(tms_pentagon, record):
    W, b = tms_pentagon.W[0], tms_pentagon.b[0]
    gaps = metrics.angular_gaps_deg(W)
    D = metrics.dimensionality(W)
    record.metric("angular gaps", gaps, expect="72 ± 3 each", unit="degrees")
    record.metric("feature dimensionality D_i", D, expect="0.4 ± 0.05 each")
    record.metric("‖W_i‖", metrics.feature_norms(W), expect="≈ 1.1 (paper)")
    record.metric("bias b_i", b, expect="< 0 each")
    record.metric("replicate losses", tms_pentagon.replicate_loss[0])
    record.note(f"Best (lowest-loss) of {tms_pentagon.config.replicates} instances: m=2 optimises "
                "poorly, as the paper notes.")
    record.figure(figures.hidden_directions(W, "n=5, m=2, density 0.05"), "pentagon")
    assert ((gaps - 72).abs() <= 3).all()
    assert ((D - 0.4).abs() <= 0.05).all()
    assert (b < 0).all()


@pytest.mark.claim(
    id="tms.phase-diagram.two-features", paper=PAPER, section="Superposition as a phase change",
    statement="For n=2, m=1 (importances 1 and r, density s), the trained solution (feature 2 "
              "ignored, feature 2 only, or an antipodal pair) matches the closed-form winner in at "
              "least 90% of grid cells not adjacent to the predicted boundary.",
)
def test_phase_diagram(tms_phase, run_settings, record):
    ratios, densities = experiments.phase_grid(run_settings.scale)
    trained = phase.classify(tms_phase.W).reshape(len(ratios), len(densities))
    predicted = phase.predicted_solution(ratios[:, None], densities[None, :])
    away = phase.away_from_boundary(predicted)
    agreement = float((trained == predicted)[away].mean())
    record.metric("relative importance r", ratios)
    record.metric("density s", densities)
    record.metric("cells away from the boundary", int(away.sum()), unit="cells")
    record.metric("agreement away from the boundary", agreement, expect="≥ 0.9")
    record.metric("agreement on every cell", float((trained == predicted).mean()))
    record.metric("cells matching no solution", int((trained == phase.OTHER).sum()), unit="cells")
    record.note(f"Best of {tms_phase.config.replicates} instances per cell. Closed-form losses: "
                "L[1,0] = r(s/3 − s²/4), L[0,1] = s/3 − s²/4, L[1,−1] = (1+r)s²/6 (our derivation).")
    record.figure(figures.phase_diagram(ratios, densities, trained, predicted, away), "phases")
    assert agreement >= 0.9
