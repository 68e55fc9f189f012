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


# --- Superposition in a privileged basis: the ReLU hidden layer model -------------------------

def in_band(densities, band) -> np.ndarray:
    """Indices of the densities inside a threshold's ``[low, high]`` band (the paper's regime)."""
    low, high = band.value
    return np.nonzero((densities >= low) & (densities <= high))[0]


@pytest.mark.claim(
    id="tms.privileged-basis.mono-to-poly", paper=PAPER, section="Superposition in a privileged basis",
    source="'Superposition in a Privileged Basis' → 'Visualizing Superposition in Terms of Neurons', "
           "the ReLU hidden layer model (n=10, m=5, I_i=0.75^i) over feature sparsity",
    quote="\"The most important thing to pay attention to is how there's a shift from monosemantic "
          "to polysemantic neurons as sparsity increases.\"",
    statement="In the ReLU hidden layer model h = ReLU(Wx), x' = ReLU(Wᵀh + b) (n=10, m=5, "
              "I=0.75^i), every neuron stores a single feature in the paper's all-monosemantic "
              "regime (1−S ≳ 0.5), the number of polysemantic neurons never falls as sparsity "
              "grows, and in its 'features are pairs of neurons' regime (1−S ≲ 0.04) every neuron "
              "is polysemantic.",
)
def test_privileged_basis_mono_to_poly(tms_privileged, record):
    W, m = tms_privileged.W, tms_privileged.config.n_hidden
    densities = np.asarray(tms_privileged.config.feature_probability)
    mono, poly = (c.numpy() for c in metrics.neuron_semantics(
        W, record.threshold("neuron_threshold").value))
    dense = in_band(densities, record.threshold("monosemantic_band"))
    sparse = in_band(densities, record.threshold("pairs_band"))
    record.metric("densities 1−S", densities)
    record.metric("monosemantic neurons", mono)
    record.metric("polysemantic neurons", poly)
    record.check("monosemantic neurons in the all-monosemantic regime, per density", mono[dense],
                 "==", "all_neurons", unit="neurons")
    record.check("largest fall of the polysemantic count between neighbouring densities",
                 -np.diff(poly).min(), "<=", "poly_fall_max", unit="neurons")
    record.check("polysemantic neurons in the pairs-of-neurons regime, per density", poly[sparse],
                 "==", "all_neurons", unit="neurons")
    record.note(f"Lowest-loss of {tms_privileged.config.replicates} models per density (the paper: "
                f"of 1000). m = {m} neurons.")
    record.figure(figures.neuron_stacks(W, [f"1−S = {d:g}" for d in densities],
                                        record.threshold("neuron_threshold").value,
                                        "ReLU hidden layer model, n=10, m=5, I=0.75^i", heatmap=True),
                  "neurons")


PRIVILEGED_REGIMES = ("monosemantic", "three_in_two", "five_in_three", "six_in_four",
                      "eight_in_five", "pairs")


@pytest.mark.claim(
    id="tms.privileged-basis.regimes", paper=PAPER, section="Superposition in a privileged basis",
    source="'Superposition in a Privileged Basis' → 'Visualizing Superposition in Terms of Neurons', "
           "the six regimes named under the figure (n=10, m=5, I_i=0.75^i)",
    quote="\"They transition from monosemantic, to only representing a few features, to gradually "
          "representing more.\"",
    statement="At a density inside each regime the paper names, the kept model has the paper's "
              "(monosemantic, polysemantic neurons, features represented): (5, 0, 5) at 1−S ≳ 0.5; "
              "(3, 2, 6) at 0.2–0.5; (2, 3, 7) at 0.15; (1, 4, 7) at 0.12; (0, 5, 8) at "
              "0.05–0.08; and at ≲ 0.04 all 10 features, each stored by exactly two neurons.",
)
def test_privileged_basis_regimes(tms_privileged, record):
    W = tms_privileged.W
    densities = np.asarray(tms_privileged.config.feature_probability)
    threshold = record.threshold("neuron_threshold").value
    mono, poly = (c.numpy() for c in metrics.neuron_semantics(W, threshold))
    shown = metrics.represented(W, record.threshold("represented_norm").value)
    represented = shown.sum(-1).numpy()
    for regime in PRIVILEGED_REGIMES:
        for k in in_band(densities, record.threshold(f"{regime}_band")):
            record.check(f"(monosemantic, polysemantic, represented) at 1−S = {densities[k]:g}",
                         [int(mono[k]), int(poly[k]), int(represented[k])], "==", f"{regime}_code")
    neurons_per_feature = metrics.neuron_features(W, threshold).sum(-2)  # (densities, feats)
    for k in in_band(densities, record.threshold("pairs_band")):
        record.check(f"neurons storing each represented feature at 1−S = {densities[k]:g}",
                     neurons_per_feature[k][shown[k]], "==", "pair_size", unit="neurons")
    record.metric("densities 1−S", densities)
    record.metric("replicate losses, per density", tms_privileged.replicate_loss)
    record.note(f"Kept model: the lowest-loss of {tms_privileged.config.replicates} per density "
                "(the paper: of 1000). Represented: ‖W_i‖ > "
                f"{record.threshold('represented_norm').value}; a neuron stores the features "
                f"whose weight is at least {threshold} of its largest.")
    record.figure(figures.neuron_stacks(W, [f"1−S = {d:g}" for d in densities], threshold,
                                        "ReLU hidden layer model: kept model per density",
                                        heatmap=True), "regimes")


# --- Computation in superposition: the absolute-value model ------------------------------------

def absolute_value_figure(sweep, threshold: float):
    densities = sweep.config.feature_probability
    return figures.neuron_stacks(sweep.W, [f"1−S = {d:g}" for d in densities], threshold,
                                 "Absolute value, n=100, m=40, I=0.8^i: |W₁| per neuron "
                                 "(sorted by importance of its largest feature)",
                                 magnitudes=True, columns=4)


@pytest.mark.claim(
    id="tms.computation.dense-monosemantic", paper=PAPER, section="Computation in superposition",
    source="'Computation in Superposition' → 'Superposition vs Sparsity', the absolute value model "
           "h = ReLU(W₁x), y' = ReLU(W₂h + b) with x_i ∈ [−1, 1] (n=100, m=40, I_i=0.8^i), its "
           "panels at 1−S = 1 and 0.3",
    quote="\"In the dense regime, we end up with each neuron representing a single feature, and we "
          "can read feature values directly off of neuron activations.\"",
    statement="Computing |x| (n=100, m=40, I=0.8^i), every neuron stores a single feature at "
              "1−S = 1 and 0.3 (captions: \"all neurons are monosemantic\", \"continue to be "
              "monosemantic to moderate sparsity levels\").",
)
def test_absolute_value_dense_monosemantic(tms_absolute, record):
    W, m = tms_absolute.W, tms_absolute.config.n_hidden
    densities = np.asarray(tms_absolute.config.feature_probability)
    threshold = record.threshold("neuron_threshold").value
    mono, poly = (c.numpy() for c in metrics.neuron_semantics(W, threshold))
    dense = in_band(densities, record.threshold("monosemantic_band"))
    record.metric("densities 1−S", densities)
    record.metric("monosemantic neurons", mono)
    record.metric("polysemantic neurons", poly)
    record.check("monosemantic neurons at the dense densities", mono[dense], "==", "all_neurons",
                 unit="neurons")
    record.note(f"One model per density; m = {m}. A neuron stores the features whose input weight "
                f"is at least {threshold} of its largest.")
    record.figure(absolute_value_figure(tms_absolute, threshold), "neurons")


@pytest.mark.claim(
    id="tms.computation.in-superposition", paper=PAPER, section="Computation in superposition",
    source="'Computation in Superposition' → 'Superposition vs Sparsity', the paragraph after the "
           "figure and the captions of its sparse panels (n=100, m=40, I_i=0.8^i)",
    quote="\"However, once the features become sufficiently sparse, this model, too, uses "
          "superposition to represent more features than it has neurons.\"",
    statement="At the sparse densities (1−S ≤ 0.01) the absolute value model computes |x| on more "
              "features than it has neurons (m = 40): fed one feature alone, it returns at least "
              "three quarters of |x| on more than 40 features; meanwhile the number of "
              "polysemantic neurons never falls as sparsity grows and at 1−S = 0.001 every neuron "
              "is polysemantic (\"Eventually, all neurons are highly polysemantic\").",
)
def test_absolute_value_in_superposition(tms_absolute, record):
    W = tms_absolute.W
    densities = np.asarray(tms_absolute.config.feature_probability)
    sparse = densities <= record.threshold("sparse_density_max").value
    explained = metrics.absolute_value_explained(tms_absolute.model())  # (densities, feats)
    computed = (explained >= record.threshold("computed_share").value).sum(-1).numpy()
    _, poly = (c.numpy() for c in metrics.neuron_semantics(
        W, record.threshold("neuron_threshold").value))
    record.metric("densities 1−S", densities)
    record.metric("features computed, every density", computed, unit="features")
    record.metric("polysemantic neurons, every density", poly, unit="neurons")
    record.metric("share of |x| computed on each feature alone, sparsest density", explained[-1])
    record.check("features computed, sparse densities", computed[sparse], ">", "neurons",
                 unit="features")
    record.check("largest fall of the polysemantic count between neighbouring densities",
                 -np.diff(poly).min(), "<=", "poly_fall_max", unit="neurons")
    record.check("polysemantic neurons at the sparsest density", poly[-1], "==", "neurons",
                 unit="neurons")
    record.note("Share of |x| computed on feature i alone: 1 − E[(y'_i − |t|)²]/E[t²] for "
                "x = t·e_i, t on [−1, 1] (1: |x|; 0.5: one side, ReLU(±x); 0: the zero output). "
                "The neuron checks stand beside the computation one: a model that has not learnt "
                "also has every neuron 'polysemantic'.")
    record.figure(absolute_value_figure(tms_absolute, record.threshold("neuron_threshold").value),
                  "neurons")


# --- Correlated and anticorrelated features ------------------------------------------------------

def set_colours_note(sweep) -> str:
    sets = sweep.config.feature_sets[0]
    return (f"Features in {sets.kind} sets of {sets.size} (consecutive indices, one colour per set); "
            f"best of {sweep.config.replicates} models per configuration (lowest loss).")


def judge_pairs(part, record, name: str, cos, op: str, key: str):
    """Every feature of the n=4 model of ``part`` represented, and ``cos`` (its pairs' cosines,
    or their magnitudes) ``op`` the threshold ``key``; with the pairs' density and figure."""
    W = part.W[0]
    record.check("‖W_i‖", metrics.feature_norms(W), ">", "represented_norm")
    record.check(name, cos(metrics.within_set_cosines(W, 2)), op, key)
    record.metric("density of each set 1−S", part.config.feature_probability[0])
    record.note(set_colours_note(part))
    kind = part.config.feature_sets[0].kind
    record.figure(figures.direction_panels(part.W, [f"2 {kind} pairs"], 2, f"{kind} sets in m=2"),
                  "directions")


@pytest.mark.claim(
    id="tms.correlated.orthogonal", paper=PAPER, section="Correlated and anticorrelated features",
    source="'Correlated and Anticorrelated Features' → 'Organization of Correlated and Anticorrelated "
           "Features': 2 sets of 2 correlated features (n=4), m=2",
    quote="\"Models prefer to represent correlated features in orthogonal dimensions.\"",
    statement="With two sets of two correlated features (a set's features are zero or not "
              "together) in m=2 dimensions, every feature is represented and the two features of "
              "each set are orthogonal (|cos| below our cut).",
)
def test_correlated_features_orthogonal(tms_two_dimensional, record):
    judge_pairs(tms_two_dimensional.part("correlated"), record,
                "|cos| between the two features of each set", torch.abs, "<", "orthogonal_cos_max")


@pytest.mark.claim(
    id="tms.anticorrelated.antipodal", paper=PAPER, section="Correlated and anticorrelated features",
    source="'Correlated and Anticorrelated Features' → 'Organization of Correlated and Anticorrelated "
           "Features': 2 sets of 2 anticorrelated features (n=4), m=2",
    quote="\"Models prefer to represent anticorrelated features in opposite directions.\"",
    statement="With two sets of two anticorrelated features (at most one feature of a set active) "
              "in m=2 dimensions, every feature is represented and the two features of each set "
              "point in opposite directions (cos near −1).",
)
def test_anticorrelated_features_antipodal(tms_two_dimensional, record):
    judge_pairs(tms_two_dimensional.part("anticorrelated"), record,
                "cos between the two features of each set", lambda cos: cos, "<", "antipodal_cos_max")


@pytest.mark.claim(
    id="tms.correlated.local-orthogonal-basis", paper=PAPER,
    section="Correlated and anticorrelated features",
    source="'Correlated and Anticorrelated Features' → 'Local Almost-Orthogonal Bases': 2 sets of 10 "
           "correlated features (n=20), m=10, and its WᵀW",
    quote="\"Within each set of correlated featuers, the model creates a local orthogonal basis, "
          "having each feature be represented orthogonally.\"",
    statement="With two sets of ten correlated features in m=10 dimensions, all 20 features are "
              "represented (so the model as a whole is in superposition: 20 > m), and within each "
              "set every pair of features is orthogonal (|cos| below our cut).",
)
def test_correlated_local_orthogonal_basis(tms_local_basis, record):
    W, config = tms_local_basis.W[0], tms_local_basis.config
    size = config.feature_sets[0].size
    cos = metrics.cosines(W)
    across = cos[:size, size:].abs()
    record.check("features represented (‖W_i‖ > cut)",
                 int(metrics.represented(W, record.threshold("represented_norm").value).sum()), ">",
                 "superposed_min", unit="features")
    record.check("largest |cos| between two features of one set",
                 metrics.within_set_cosines(W, size).abs().max(), "<", "orthogonal_cos_max")
    record.metric("largest |cos| between features of different sets", across.max())
    record.metric("mean |cos| between features of different sets", across.mean())
    record.note(f"m = {config.n_hidden}; density of each set {config.feature_probability[0]}; best of "
                f"{config.replicates} models.")
    record.figure(figures.gram_matrix(W, size, "WᵀW: 2 sets of 10 correlated features, m=10"), "gram")


def split_sets(W, represented_norm: float, collapsed_cos: float) -> int:
    """Correlated pairs whose two features are both represented and not collapsed onto one
    direction (cos ≤ ``collapsed_cos``)."""
    both = metrics.represented(W, represented_norm).view(-1, 2).all(-1)
    return int((both & (metrics.within_set_cosines(W, 2) <= collapsed_cos)).sum())


COLLAPSE_BANDS = ("pca", "all_collapsed", "two_collapsed", "one_collapsed", "none_collapsed")


@pytest.mark.claim(
    id="tms.correlated.collapse", paper=PAPER, section="Correlated and anticorrelated features",
    source="'Correlated and Anticorrelated Features' → 'Collapsing of Correlated Features': three "
           "correlated pairs (n=6) in m=2 over feature sparsity, and the figure's bands",
    quote="\"As we decrease sparsity, the features progressively \"collapse\" into their principal "
          "components.\"",
    statement="With three correlated pairs in m=2, the number of pairs whose two features are "
              "represented apart (not collapsed onto one direction) is, inside each band of the "
              "paper's figure: 0 at 1−S ≳ 0.5 (most PCA-like) and 0.25–0.5 (all sets collapsed), "
              "1 at 0.15–0.2 (two collapsed), 2 at 0.05–0.15 (one collapsed), 3 at ≲ 0.05 (none).",
)
def test_correlated_features_collapse(tms_two_dimensional, record):
    part = tms_two_dimensional.part("collapse")
    densities = np.asarray(part.config.feature_probability)
    norm, cos = record.threshold("represented_norm").value, record.threshold("collapsed_cos").value
    split = np.array([split_sets(W, norm, cos) for W in part.W])
    record.metric("densities 1−S", densities)
    record.metric("pairs represented apart", split)
    record.metric("cos within each pair, per density", metrics.within_set_cosines(part.W, 2))
    for band in COLLAPSE_BANDS:
        for k in in_band(densities, record.threshold(f"{band}_band")):
            record.check(f"pairs represented apart at 1−S = {densities[k]:g}", split[k], "==",
                         f"{band}_split", unit="pairs")
    record.note(set_colours_note(part))
    record.figure(figures.direction_panels(part.W, [f"1−S = {d:g}" for d in densities], 2,
                                           "three correlated pairs in m=2"), "directions")


@pytest.mark.claim(
    id="tms.correlated.side-by-side", paper=PAPER, section="Correlated and anticorrelated features",
    source="'Correlated and Anticorrelated Features' → 'Organization of Correlated and Anticorrelated "
           "Features' (3 sets of 2 correlated features, n=6, m=2) and 'Collapsing of Correlated "
           "Features' (the very sparse regime)",
    quote="\"Models prefer to arrange correlated features side by side if they can't be orthogonal.\"",
    statement="With three correlated pairs in m=2 in the sparsest band (1−S ≲ 0.05: \"features "
              "arranged in a hexagon and correlated features side-by-side\"), the six directions "
              "form a hexagon (neighbours 60° apart) in which the two features of each pair are "
              "neighbours.",
)
def test_correlated_features_side_by_side(tms_two_dimensional, record):
    part = tms_two_dimensional.part("collapse")
    densities = np.asarray(part.config.feature_probability)
    for k in in_band(densities, record.threshold("none_collapsed_band")):
        W = part.W[k]
        order = torch.argsort(torch.atan2(W[1], W[0]))
        partner_next = (order // 2 == order.roll(-1) // 2) | (order // 2 == order.roll(1) // 2)
        record.check(f"angular gaps between neighbours at 1−S = {densities[k]:g}",
                     metrics.angular_gaps_deg(W), "≈", "hexagon_gap_deg", unit="degrees")
        record.check(f"every feature next to its pair partner at 1−S = {densities[k]:g}",
                     bool(partner_next.all()), "==", "partners_adjacent")
    record.note(set_colours_note(part))
    record.figure(figures.direction_panels(part.W[-1:], [f"1−S = {densities[-1]:g}"], 2,
                                           "three correlated pairs, sparse"), "hexagon")


# --- Non-uniform superposition: one sparser feature ------------------------------------------------

GEOMETRIES = ("pentagon", "two digons", "other")


def geometry(W, represented_norm: float) -> int:
    """Index into :data:`GEOMETRIES`: all five features represented, or the varied (last) one
    dropped with the other four kept."""
    shown = metrics.represented(W, represented_norm)
    if shown.all():
        return 0
    return 1 if shown[:-1].all() and not shown[-1] else 2


def relative_densities(sweep) -> np.ndarray:
    """The varied (last) feature's density over the others', per configuration."""
    return np.array([p[-1] / p[0] for p in sweep.config.feature_probability])


@pytest.mark.claim(
    id="tms.non-uniform.digons", paper=PAPER, section="Geometry: non-uniform superposition",
    source="'Non-Uniform Superposition' → 'Perturbing a single feature' (n=5, m=2, I=1, 1−S=0.05, "
           "one feature made sparser)",
    quote="\"If we make it sufficiently sparse, there's a phase change, and it collapses from a "
          "pentagon to a pair of digons with the sparser point at zero.\"",
    statement="Making one feature of the pentagon sparser changes its geometry from a pentagon (all "
              "five features represented at the baseline) to two digons: at the sparsest setting (a "
              "tenth of the others' density) the sparser feature's ‖W_i‖ is near 0 and the other "
              "four form two orthogonal antipodal pairs (D_i = 1/2, neighbours 90° apart).",
)
def test_sparser_feature_turns_pentagon_into_digons(tms_two_dimensional, record):
    part = tms_two_dimensional.part("non-uniform")
    relative = relative_densities(part)
    kinds = np.array([geometry(W, record.threshold("represented_norm").value) for W in part.W])
    W = part.W[-1]
    record.metric("relative density of the varied feature", relative)
    record.metric("kept geometry (0 pentagon, 1 two digons, 2 other)", kinds)
    record.check("all five features represented at the baseline (relative density 1)",
                 bool(kinds[0] == 0), "==", "baseline_pentagon")
    record.check("‖W‖ of the sparser feature, sparsest setting", metrics.feature_norms(W)[-1], "<",
                 "at_zero_norm")
    record.check("D_i of the other four, sparsest setting", metrics.dimensionality(W)[:-1], "≈",
                 "digon_dimensionality")
    record.check("angular gaps between the other four, sparsest setting",
                 metrics.angular_gaps_deg(W[:, :-1]), "≈", "digon_gap_deg", unit="degrees")
    record.note(f"Best of {part.config.replicates} models per setting (lowest loss); feature 4 is "
                f"the varied one, the others at 1−S = {part.config.feature_probability[0][0]}. Near "
                "the critical density the two geometries' losses are within a few percent, so the "
                "kept geometry there is recorded, not judged.")
    # sets of 4 for the colours: features 0-3 share one, the varied feature 4 has its own
    record.figure(figures.direction_panels(part.W, [f"relative {r:.2g}" for r in relative], 4,
                                           "n=5, m=2: feature 4 made sparser"), "directions")


@pytest.mark.claim(
    id="tms.non-uniform.critical-density", paper=PAPER, section="Geometry: non-uniform superposition",
    source="'Non-Uniform Superposition' → 'Perturbing a single feature', the figure of digon and "
           "pentagon solutions against relative feature density",
    quote="\"When the sparsity of the varied point falls below a certain critical threshold (~2.5x "
          "less than others) the pentagon solution changes to two digons.\"",
    statement="The kept model turns from a pentagon into two digons when the varied feature's "
              "density falls between about 1/2 and 1/3.1 of the others' (a factor near 2.5): the "
              "critical factor, the geometric mean of the factors of the last pentagon and the first "
              "digons, lies in our band around 2.5.",
)
def test_pentagon_digon_critical_density(tms_two_dimensional, record):
    part = tms_two_dimensional.part("non-uniform")
    relative = relative_densities(part)
    norm = record.threshold("represented_norm").value
    kinds = np.array([geometry(W, norm) for W in part.W])
    first_digons = int(np.argmax(kinds == 1)) if (kinds == 1).any() else None
    critical = (float(np.sqrt(relative[first_digons - 1] * relative[first_digons]))
                if first_digons else float("nan"))
    replicate_kinds = np.array([[geometry(W, norm) for W in cell] for cell in part.replicate_W])
    best = {name: [float(loss[kind == g].min()) if (kind == g).any() else float("nan")
                   for loss, kind in zip(part.replicate_loss, replicate_kinds, strict=True)]
            for g, name in enumerate(GEOMETRIES[:2])}
    record.metric("relative density of the varied feature", relative)
    record.metric("kept geometry (0 pentagon, 1 two digons, 2 other)", kinds)
    for name, losses in best.items():
        record.metric(f"lowest loss of a {name} replicate, per setting", losses)
    record.check("critical factor (others' density / varied feature's)", 1 / critical, "in",
                 "critical_factor", unit="×")
    record.note("The paper reads the phase change as the crossing of the two geometries' loss "
                "curves; the figure plots every replicate's loss by the geometry it settled in.")
    record.figure(figures.geometry_losses(relative, part.replicate_loss, replicate_kinds,
                                          GEOMETRIES, critical), "losses")
