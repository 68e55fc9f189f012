"""Claims of Elhage et al. 2022, Toy Models of Superposition (TMS).

Source: transformer-circuits.pub/2022/toy_model. Every model is trained in the session fixtures
of fixtures/toy.py (the best of several instances per configuration, as the paper does for its
hard-to-optimise small models); every threshold is in claims/expected/tms.yaml.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from replication.toy import figures, metrics, phase

PAPER = "Elhage et al. 2022, Toy Models of Superposition"


def per_density(values, mask) -> list[float]:
    """Mean of ``values`` over the entries of ``mask``, per density (NaN where none)."""
    return [float(v[m].mean()) if m.any() else float("nan") for v, m in zip(values, mask, strict=True)]


@pytest.mark.claim(
    id="tms.linear.top-m-features", paper=PAPER, section="Basic results",
    source="'Demonstrating Superposition' → 'Basic Results', the figure comparing the linear model "
           "with ReLU-output models (n=20, m=5, I_i=0.7^i)",
    quote="\"As our standard intuitions would expect, the linear model always learns the top-m most "
          "important features, analogous to learning the top principal components.\"",
    statement="At every density, the linear model (n=20, m=5, I=0.7^i) represents the m=5 most "
              "important features with ‖W_i‖ ≈ 1 and mutually orthogonal (WᵀW ≈ identity on "
              "them), and no other feature: ‖W‖_F² ≈ m.",
)
def test_linear_model_learns_top_m_features(tms_linear, record):
    W, m = tms_linear.W, tms_linear.config.n_hidden
    norms = metrics.feature_norms(W)
    overlap = metrics.projections(W[:, :, :m]).abs()  # (densities, m, m): |Ŵ_i · W_j|
    off_diagonal = (overlap - overlap.diagonal(dim1=-2, dim2=-1).diag_embed()).amax((1, 2))
    record.metric("densities", tms_linear.config.feature_probability)
    record.check("min ‖W_i‖ of the top m, per density", norms[:, :m].min(1).values, ">", "top_norm_min")
    record.check("max ‖W_i‖ of the others, per density", norms[:, m:].max(1).values, "<",
                 "rest_norm_max")
    record.check("max |Ŵ_i·W_j| between two of the top m, per density", off_diagonal, "<",
                 "top_overlap_max")
    record.check("‖W‖_F², per density", (W**2).sum((1, 2)), "≈", "frobenius")
    record.note(f"Best of {tms_linear.config.replicates} instances per density (lowest loss).")
    record.figure(figures.basic_results(tms_linear, "Linear model"), "weights")


@pytest.mark.claim(
    id="tms.relu.superposition-grows-with-sparsity", paper=PAPER, section="Basic results",
    source="'Demonstrating Superposition' → 'Basic Results', the ReLU-output figure (n=20, m=5, "
           "I_i=0.7^i) and its 'high sparsity' caption",
    quote="\"In the high sparsity regime, models put all features in superposition, and continue "
          "packing more.\"",
    statement="The ReLU-output model (n=20, m=5, I=0.7^i) represents exactly the top m features "
              "without interference when dense (1−S = 1); the number of represented features "
              "rises with sparsity; in the high-sparsity regime every represented feature is in "
              "superposition (interference above the no-interference cut) and the represented "
              "features' biases are negative on average.",
)
def test_relu_superposition_grows_with_sparsity(tms_relu, record):
    W, b, m = tms_relu.W, tms_relu.b, tms_relu.config.n_hidden
    densities = np.asarray(tms_relu.config.feature_probability)
    shown = metrics.represented(W, record.threshold("represented_norm").value)
    interference = metrics.interference(W)
    counts = shown.sum(1).numpy()
    mean_bias = np.array(per_density(b, shown))
    sparse = densities <= record.threshold("high_sparsity_density").value
    record.metric("densities", densities)
    record.metric("features represented", counts)
    record.check("dense: represented set is exactly the top m", bool(shown[0, :m].all() and
                 not shown[0, m:].any()), "==", "dense_top_m")
    record.check("dense: max interference among represented", interference[0][shown[0]].max(), "<=",
                 "dedicated_interference")
    record.check("largest fall of the count between neighbouring densities", -np.diff(counts).min(),
                 "<=", "count_drop_max", unit="features (negative: it rose at every step)")
    record.check("features gained, sparsest vs dense", counts[-1] - counts[0], ">", "count_gain_min",
                 unit="features")
    record.check("high sparsity: min interference among represented, per density",
                 [float(interference[k][shown[k]].min()) for k in np.nonzero(sparse)[0]], ">",
                 "dedicated_interference")
    record.check("high sparsity: mean bias of the represented features, per density",
                 mean_bias[sparse], "<", "bias_max")
    record.metric("mean bias of the represented features, every density", mean_bias)
    record.note(f"Best of {tms_relu.config.replicates} instances per density (lowest loss). High "
                f"sparsity: densities {densities[sparse].tolist()}.")
    record.figure(figures.basic_results(tms_relu, "ReLU-output model"), "weights")
    record.figure(figures.represented_counts(densities, counts, m,
                                             record.threshold("represented_norm").value), "counts")


@pytest.mark.claim(
    id="tms.relu.least-important-dropped", paper=PAPER, section="Basic results",
    source="'Demonstrating Superposition' → 'Basic Results', the ReLU-output figure (n=20, m=5, "
           "I_i=0.7^i) and the paragraph after it",
    quote="\"It starts with less important features, and gradually affects the most important "
          "ones.\"",
    statement="As sparsity grows, superposition starts with the less important features: in the "
              "kept (lowest-loss) ReLU-output model at every density, the features still dedicated "
              "(represented, no interference) are the most important ones — a prefix of the "
              "importance order — and their number never rises with sparsity.",
)
def test_relu_superposition_starts_with_least_important(tms_relu, record):
    W = tms_relu.W
    dedicated = metrics.dedicated(W, record.threshold("represented_norm").value,
                                  record.threshold("dedicated_interference").value)
    counts = dedicated.sum(1).numpy()
    record.metric("densities", tms_relu.config.feature_probability)
    record.metric("dedicated features", counts)
    record.check("dedicated set is a prefix of the importance order, per density",
                 metrics.is_prefix(dedicated), "==", "dedicated_is_prefix")
    record.check("largest rise of the dedicated count between neighbouring densities",
                 np.diff(counts).max(), "<=", "dedicated_rise_max", unit="features")
    record.note(f"Judged on the kept instance per density, the lowest-loss of "
                f"{tms_relu.config.replicates}, as the paper shows one model per density.")
    record.figure(figures.basic_results(tms_relu, "ReLU-output model"), "weights")


def plateau(dims_per_feature, densities, threshold) -> tuple[list[float], float]:
    """The longest run of sweep points within the threshold's band: its densities and its width
    in decades of 1/(1−S)."""
    near = np.abs(dims_per_feature - threshold.value) <= threshold.tolerance
    start, length = metrics.longest_run(near)
    run = densities[start : start + length]
    return run.tolist(), float(np.log10(run[0] / run[-1])) if length else float("nan")


@pytest.mark.claim(
    id="tms.dimensionality.sticky-half", paper=PAPER, section="Feature dimensionality",
    source="'The Geometry of Superposition' → 'Uniform Superposition', the plot of m/‖W‖_F² "
           "against 1/(1−S) (n=400, m=30, I_i=1)",
    quote='"Surprisingly, we find that this graph is "sticky" at 1 and 1/2."',
    statement="With all features equally important, the dimensions per feature m/‖W‖_F² fall as "
              "sparsity grows and stay on a plateau at 1 (dense) and at 1/2 (antipodal pairs): "
              "each plateau spans at least a tenth of a decade of 1/(1−S).",
)
def test_dimensions_per_feature_sticky_at_one_and_half(tms_dimensionality, record):
    sweep = tms_dimensionality
    densities = np.asarray(sweep.config.feature_probability)
    dpf = metrics.dimensions_per_feature(sweep.W).numpy()
    record.metric("1/(1−S)", 1 / densities)
    record.metric("dimensions per feature m/‖W‖_F²", dpf)
    record.check("Spearman ρ(1/(1−S), m/‖W‖_F²)", spearmanr(1 / densities, dpf).statistic, "<=",
                 "rho_max")
    for key, label in (("one", "1"), ("half", "1/2")):
        run, width = plateau(dpf, densities, record.threshold(key))
        record.metric(f"densities on the plateau at {label}", run)
        record.check(f"plateau at {label}: width", width, ">=", "plateau_decades_min",
                     unit="decades of 1/(1−S)")
    record.note(f"n={sweep.config.n_features}, m={sweep.config.n_hidden}, importance 1, "
                f"{sweep.config.training.steps} steps, batch {sweep.config.training.batch_size}.")
    record.figure(figures.feature_dimensionality(sweep, metrics.GEOMETRY_FRACTIONS,
                                                 metrics.REPRESENTED_NORM), "dimensionality")


@pytest.mark.claim(
    id="tms.dimensionality.geometric-fractions", paper=PAPER, section="Feature dimensionality",
    source="'The Geometry of Superposition' → 'Feature Dimensionality' scatter plot and 'Why these "
           "geometric structures?'",
    quote="\"The feature dimensionalities cluster at certain fractions, so we draw lines for "
          "those.\"",
    statement="Leaving out the dense sweep points (m/‖W‖_F² ≈ 1, where the paper says basis "
              "features are indistinguishable) and those past the named polytopes "
              "(m/‖W‖_F² < 3/8), the represented features' D_i cluster at 1, 3/4, 2/3, 1/2, 2/5, "
              "3/8: the share of them away from every fraction is at most half of what a uniform "
              "spread over the observed range of D_i would leave away.",
)
def test_feature_dimensionality_clusters_at_fractions(tms_dimensionality, record):
    sweep = tms_dimensionality
    D, shown = metrics.dimensionality(sweep.W), metrics.represented(sweep.W, metrics.REPRESENTED_NORM)
    dpf = metrics.dimensions_per_feature(sweep.W).numpy()
    dense = record.threshold("dense")
    judged = (np.abs(dpf - dense.value) > dense.tolerance) & \
        (dpf >= record.threshold("polytope_dpf_min").value)
    tolerance = record.threshold("fraction_tolerance").value
    pooled = np.concatenate([D[k][shown[k]].numpy() for k in np.nonzero(judged)[0]])
    near = metrics.near_fraction(torch.as_tensor(pooled), tolerance=tolerance).numpy()
    null = metrics.uniform_share_near(pooled.min(), pooled.max(), tolerance=tolerance)
    record.metric("densities judged", np.asarray(sweep.config.feature_probability)[judged])
    record.check("sweep points judged", int(judged.sum()), ">=", "points_min", unit="points")
    record.metric("represented features judged", len(pooled), unit="features")
    record.metric("observed range of D_i", [float(pooled.min()), float(pooled.max())])
    record.metric("share near a fraction", float(near.mean()))
    record.metric("share near a fraction under a uniform spread over that range", null)
    record.check("share away from every fraction / the uniform spread's",
                 (1 - near.mean()) / (1 - null), "<=", "off_fraction_ratio_max")
    record.note("Fractions: 1 (dedicated), 3/4 (tetrahedron), 2/3 (triangle), 1/2 (antipodal), "
                "2/5 (pentagon), 3/8 (square antiprism).")
    record.figure(figures.feature_dimensionality(sweep, metrics.GEOMETRY_FRACTIONS,
                                                 metrics.REPRESENTED_NORM), "fractions")


@pytest.mark.claim(
    id="tms.pentagon", paper=PAPER, section="Geometry: non-uniform superposition",
    source="'The Geometry of Superposition' → 'Non-Uniform Superposition' → 'Perturbing a single "
           "feature' (n=5, m=2, I_i=1, 1−S=0.05, the uniform case)",
    quote="\"In the uniform case, with importance I=1 and activation density 1-S=0.05, we get a "
          "regular pentagon.\"",
    statement="With n=5, m=2, I=1 and density 0.05, the five features form a regular pentagon "
              "(neighbouring directions 72° apart, D_i = 2/5), with negative biases and off the "
              "unit circle, outside it (‖W_i‖ > 1).",
)
def test_pentagon(tms_pentagon, record):
    W, b = tms_pentagon.W[0], tms_pentagon.b[0]
    record.check("angular gaps between neighbouring features", metrics.angular_gaps_deg(W), "≈",
                 "gap_deg", unit="degrees")
    record.check("feature dimensionality D_i", metrics.dimensionality(W), "≈", "dimensionality")
    record.check("bias b_i", b, "<", "bias_max")
    record.check("‖W_i‖", metrics.feature_norms(W), ">", "norm_min")
    record.metric("replicate losses", tms_pentagon.replicate_loss[0])
    record.note(f"Best (lowest-loss) of {tms_pentagon.config.replicates} instances: the paper "
                "notes that m=2 optimises poorly and fits each model several times.")
    record.figure(figures.hidden_directions(W, "n=5, m=2, density 0.05"), "pentagon")


@pytest.mark.claim(
    id="tms.pentagon.norm-bias", paper=PAPER, section="Geometry: non-uniform superposition",
    source="'The Geometry of Superposition' → 'Non-Uniform Superposition' → 'Perturbing a single "
           "feature', the paragraph after the loss-curve figure",
    quote="\"The reason pentagonal solutions are not on the unit circle is because models reduce "
          "the effect of positive interference, setting a slight negative bias to cut off noise and "
          "setting their weights to ||W_i|| = 1/(1−b_i) to compensate.\"",
    statement="In the pentagon (n=5, m=2, I=1, density 0.05), each feature's norm and bias obey "
              "the paper's relation ‖W_i‖ = 1/(1−b_i).",
)
def test_pentagon_norm_bias_relation(tms_pentagon, record):
    W, b = tms_pentagon.W[0], tms_pentagon.b[0]
    norms = metrics.feature_norms(W)
    record.metric("‖W_i‖", norms)
    record.metric("b_i", b)
    record.metric("1/(1−b_i)", 1 / (1 - b))
    record.metric("√(1−b_i): the norm at which a lone feature at x_i = 1 is output as 1", (1 - b).sqrt())
    record.check("‖W_i‖ − 1/(1−b_i)", norms - 1 / (1 - b), "≈", "relation")


@pytest.mark.claim(
    id="tms.phase-diagram.two-features", paper=PAPER, section="Superposition as a phase change",
    source="'Superposition as a Phase Change', the sparsity–relative importance phase diagram "
           "(n=2, m=1) and its theoretical prediction",
    quote="\"But most interestingly, there appears to be a real phase change, observed in both the "
          "empirical and theoretical diagrams!\"",
    statement="For n=2, m=1 (importances 1 and r, density s), the trained solution (feature 2 "
              "ignored, feature 2 only, or an antipodal pair) matches the winner of our closed-form "
              "losses in at least 90% of the grid cells not adjacent to the predicted boundary.",
)
def test_phase_diagram(tms_phase, record):
    config = tms_phase.config
    ratios, densities = config.grid
    trained, predicted = tms_phase.solutions(), tms_phase.predicted()  # (ratios, densities)
    away = phase.away_from_boundary(predicted)
    record.metric("relative importance r", ratios)
    record.metric("density s", densities)
    record.metric("cells away from the boundary", int(away.sum()), unit="cells")
    record.check("agreement away from the boundary", float((trained == predicted)[away].mean()),
                 ">=", "agreement_min")
    record.metric("agreement on every cell", float((trained == predicted).mean()))
    record.metric("cells matching no solution", int((trained == phase.OTHER).sum()), unit="cells")
    record.note(f"{config.replicates} models per cell, aggregated by '{config.aggregation}' "
                f"(replication/toy/phase.py: {phase.AGGREGATIONS[config.aggregation]}). Closed-form "
                "losses (our derivation, Monte-Carlo checked): L[1,0] = r(s/3 − s²/4), "
                "L[0,1] = s/3 − s²/4, L[1,−1] = (1+r)s²/6.")
    record.figure(figures.phase_diagram(ratios, densities, trained, predicted, away,
                                        f"trained ({config.aggregation} of {config.replicates})"),
                  "phases")
