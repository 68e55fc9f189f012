"""SAEs on superposed toy features: recovery of the ground truth, and the 'critical sparsity' claim.

The ground truth of a toy model is its feature directions W_i; an SAE trained on the hidden
activations h = W x (m = 5 inputs → n latents) recovers feature i when one of its decoder rows
has |cos| > 0.9 with W_i. The SAEs are sae-lens ``StandardTrainingSAE``s (ReLU, L1), all SAEs of
a claim trained in one batched pass (replication/sae/batched.py).
"""

from __future__ import annotations

import pytest
import torch

from replication.sae import experiments
from replication.sae.critical import CURVES, CriticalCurves
from replication.sae.evaluation import sparsest_within
from replication.sae.figures import (
    plot_cosine_heatmaps,
    plot_critical_curves,
    plot_intro,
    plot_recovery,
)
from replication.toy.metrics import feature_norms, represented, unit_columns

SHARKEY = (
    "Sharkey, Braun & Millidge 2022, 'Taking features out of superposition with sparse "
    "autoencoders' (ground-truth recovery, MMCS), on the TMS model of Elhage et al. 2022"
)
DISSERTATION = "Dissertation on SAEs in toy models of superposition (cited in issue 4)"
TMS = "Elhage et al. 2022, Toy Models of Superposition"
SPARSE_DENSITY = 0.1  # claim 1 is tested at densities at or below this
# Known divergences, measured at cpu scale with seed 0 (all numbers in the report's records).
DENSE_DIVERGENCE = (
    "cpu scale, seed 0: at density 1 no L1 value (0.1, 0.2, 0.3) recovers any of the 5 "
    "represented features (recovery 0, MMCS features→latents 0.56); the kept SAE (L1 0.2, FVU "
    "0.095) has 20 live latents, all mixtures of the five directions: 0 of 20 extra latents are "
    "dead or duplicates"
)
CRITICAL_DIVERGENCE = {
    10: "cpu scale, seed 0, 5 runs: SAE loss max at S=0.1 (5/5 runs), Procrustes similarity min "
    "at S=0.1 (5/5): 0/5 runs in [0.82, 0.87]. Other readings: SAE FVU max at 0.1, toy loss max "
    "at 0.3, toy loss relative to the zero output max at 0.5-0.7",
    20: "cpu scale, seed 0, 5 runs: SAE loss max at S=0.1-0.3, Procrustes similarity min at "
    "S=0.1-0.3: 0/5 runs in [0.82, 0.87]. Other readings: SAE FVU max at 0.1, toy loss max at "
    "0.3, relative toy loss max at 0.5-0.82 (1/5 in the band)",
    30: "cpu scale, seed 0, 5 runs: SAE loss max at S=0.1-0.3, Procrustes similarity min at "
    "S=0.1-0.3: 0/5 runs in [0.82, 0.87]. Other readings: SAE FVU max at 0.1, toy loss max at "
    "0.3, relative toy loss max at 0.7 (5/5)",
}
ORTHOGONAL_COS = 0.1  # |cos| below this: the two dense features sit within ~6° of a right angle


def kept(run, scale: str):
    """Per density, the index of the kept SAE (sparsest with FVU < 0.1) and its evaluation."""
    l1 = experiments.recovery_setup(scale).l1_coefficients
    selected = sparsest_within(run.evaluation, len(l1), experiments.RECOVERY_MAX_FVU)
    index = torch.arange(len(selected)) * len(l1) + selected
    return l1, selected, run.evaluation.select(index)


def record_selection(record, run, scale: str, l1, selected, best) -> None:
    setup = experiments.recovery_setup(scale)
    record.metric("densities", run.toy.config.feature_probability)
    record.metric("l1_kept", [l1[i] for i in selected.tolist()])
    record.metric("represented_features", best.n_represented, expect="‖W_i‖ > 0.5")
    record.metric(
        "recovery_all_l1",
        run.evaluation.grid("recovery", len(l1)),
        unit="rows: densities, columns: L1 values " + ", ".join(map(str, l1)),
    )
    record.metric(
        "recovery_signed", best.recovery_signed, unit="cos > 0.9: an antipode does not count"
    )
    record.metric("mmcs_features_to_latents", best.mmcs_features)
    record.metric("mmcs_latents_to_features", best.mmcs_latents)
    record.metric("l0", best.l0, unit="active latents per input")
    record.metric("dead_latents", best.dead, unit="of 20")
    record.metric("dense_latents", best.dense, unit="of 20, firing > 2× a true feature's density")
    record.metric("procrustes_similarity", best.procrustes)
    record.note(
        "Standard (ReLU + L1) sae-lens SAEs with n=20 latents on h = W x of the TMS 'basic' ReLU "
        "models (fixture tms_relu, shared with the TMS claims), activations drawn on the fly. Per "
        f"density an L1 sweep {l1} trained in one batched pass; the kept SAE is the sparsest "
        "(lowest L0) with FVU < 0.1, chosen without looking at the ground truth. Samples: "
        f"{setup.train.steps} steps × {setup.train.batch_size}; below density "
        f"{setup.sparse_below}, where almost every input is all-zero, {setup.sparse_train.steps} "
        f"× {setup.sparse_train.batch_size}. Recovery uses |cos| as stated, so one latent on an "
        "antipodal pair recovers both features; recovery_signed does not allow that."
    )


@pytest.mark.claim(
    id="sae.recovery.sparse",
    paper=SHARKEY,
    section="ground-truth recovery in the TMS toy model",
    statement="For a TMS model n=20, m=5, I=0.7^i at densities ≤ 0.1, an SAE with n latents "
    "recovers at least 90% of the represented features (|cos| > 0.9) with FVU below 0.1.",
)
def test_sae_recovers_sparse_features(sae_recovery, run_settings, record):
    l1, selected, best = kept(sae_recovery, run_settings.scale)
    densities = torch.tensor(sae_recovery.toy.config.feature_probability)
    sparse = densities <= SPARSE_DENSITY
    record_selection(record, sae_recovery, run_settings.scale, l1, selected, best)
    record.metric("recovery", best.recovery, expect=">= 0.9 at every density <= 0.1")
    record.metric("fvu", best.fvu, expect="< 0.1 at every density <= 0.1")
    record.figure(
        plot_recovery(
            sae_recovery.toy.config.feature_probability,
            sae_recovery.evaluation,
            l1,
            selected,
            experiments.RECOVERY_MAX_FVU,
        ),
        "recovery",
    )
    shown = (int(torch.nonzero(densities == SPARSE_DENSITY)[0]), 0)
    titles = [
        f"density {densities[i]:g}, L1 {l1[selected[i]]:g}: recovery {best.recovery[i]:.2f}"
        for i in shown
    ]
    record.figure(plot_cosine_heatmaps(best, list(zip(shown, titles, strict=True))), "cosines")
    assert (best.recovery[sparse] >= 0.9).all(), f"recovery {best.recovery[sparse].tolist()}"
    assert (best.fvu[sparse] < experiments.RECOVERY_MAX_FVU).all(), (
        f"FVU {best.fvu[sparse].tolist()}"
    )


@pytest.mark.claim(
    id="sae.recovery.dense-extra-latents",
    paper=SHARKEY,
    section="ground-truth recovery in the TMS toy model",
    statement="At density 1 (dense, no superposition) the SAE's extra latents (beyond one per "
    "represented feature) are dead or duplicates; recovery of the 5 represented features "
    "is possible (recorded).",
)
@pytest.mark.xfail(strict=True, reason=DENSE_DIVERGENCE)
def test_dense_sae_extra_latents_are_dead_or_duplicates(sae_recovery, run_settings, record):
    l1, selected, best = kept(sae_recovery, run_settings.scale)
    dense = int(torch.nonzero(torch.tensor(sae_recovery.toy.config.feature_probability) == 1.0)[0])
    record_selection(record, sae_recovery, run_settings.scale, l1, selected, best)
    record.metric("recovery_at_density_1", best.recovery[dense], expect="recorded (possible)")
    record.metric("extra_latents", best.extra[dense], unit="of 20")
    record.metric(
        "extra_latents_dead_or_duplicate", best.extra_harmless[dense], expect="== extra_latents"
    )
    title = (
        f"density 1, L1 {l1[selected[dense]]:g}: recovery {best.recovery[dense]:.2f}, "
        f"{int(best.extra_harmless[dense])}/{int(best.extra[dense])} extra latents dead/duplicate"
    )
    record.figure(plot_cosine_heatmaps(best, [(dense, title)]), "cosines-dense")
    assert best.extra_harmless[dense] == best.extra[dense], (
        f"{int(best.extra[dense] - best.extra_harmless[dense])} of {int(best.extra[dense])} extra "
        "latents are alive and match no represented feature"
    )


@pytest.mark.claim(
    id="sae.critical-sparsity",
    paper=DISSERTATION,
    section="critical sparsity",
    statement="Between sparsity 0.82 and 0.87 the reconstruction loss peaks and the SAE-vs-model "
    "Procrustes similarity is lowest (the 'critical sparsity', about 0.85), for n=10, 20 "
    "and 30 features into m=5, importance 0.7^i: for most seeds both extremes fall in "
    "[0.82, 0.87].",
)
@pytest.mark.parametrize(
    "n_features",
    [
        pytest.param(n, id=f"n{n}-m5", marks=pytest.mark.xfail(strict=True, reason=reason))
        for n, reason in CRITICAL_DIVERGENCE.items()
    ],
)
def test_critical_sparsity(n_features, train_toy, train_saes, run_settings, record):
    setup = experiments.critical_setup(run_settings.scale)
    toy = train_toy(
        experiments.critical_toy_sweep(n_features, run_settings.scale, run_settings.seed)
    )
    run = train_saes(
        [experiments.critical_saes(toy.config, run_settings.scale, run_settings.seed)], toy
    )
    curves = CriticalCurves.measure(toy, run.evaluation, setup.sparsities)
    band = experiments.CRITICAL_BAND
    record.metric("sparsities", setup.sparsities)
    for name, (description, extremum) in CURVES.items():
        record.metric(f"{name}_per_run", curves.curves[name], unit=f"{description}; rows: runs")
        record.metric(
            f"{name}_{extremum}_location_per_run",
            curves.locations(name),
            expect=f"in {list(band)} for most runs"
            if name in ("sae_mse", "procrustes")
            else "recorded (other reading)",
        )
    record.note(
        f"{setup.runs} independent runs (own initialisation and data stream, instances of "
        f"one batched sweep seeded {run_settings.seed}) per sparsity; one toy model and one "
        f"sae-lens L1 SAE (n latents, L1 {setup.l1_coefficient}) per run. Reading "
        "of 'reconstruction loss': the SAE's (sae-lens MSE of h vs ĥ), asserted; the toy "
        "model's loss, both normalised forms and their extremes are recorded beside it."
    )
    record.figure(
        plot_critical_curves(curves, band, f"critical sparsity, n={n_features} → m=5"), "curves"
    )
    most = setup.runs // 2 + 1
    in_band = {name: curves.runs_in_band(name, band) for name in ("sae_mse", "procrustes")}
    assert in_band["sae_mse"] >= most and in_band["procrustes"] >= most, (
        f"runs with the extreme in {band}: loss max {in_band['sae_mse']}/{setup.runs}, "
        f"similarity min {in_band['procrustes']}/{setup.runs}"
    )


@pytest.mark.claim(
    id="sae.tms-intro-figure",
    paper=TMS,
    section="introduction, Figure 1 (n=5 features in m=2 dimensions)",
    statement="With n=5, m=2, I=0.9^i over ten densities 20^-linspace(0,1,10): the dense model "
    "represents 2 features orthogonally, the sparsest represents all 5, and the count "
    "never falls by more than one as density decreases.",
)
def test_tms_intro_figure(train_toy, run_settings, record):
    sweep = train_toy(experiments.intro_sweep(run_settings.scale, run_settings.seed))
    counts = represented(sweep.W).sum(-1)
    dense_features = torch.nonzero(represented(sweep.W[0])).squeeze(1)
    directions = unit_columns(sweep.W[0][:, dense_features])
    dense_cos = (directions.T @ directions)[0, 1].abs() if len(dense_features) == 2 else torch.nan
    steps = counts[1:] - counts[:-1]
    record.metric("densities", sweep.config.feature_probability)
    record.metric("features_represented", counts, expect="2 at density 1, 5 at the sparsest")
    record.metric("feature_norms", feature_norms(sweep.W), unit="rows: densities")
    record.metric("dense_pair_abs_cos", dense_cos, expect=f"< {ORTHOGONAL_COS}")
    record.metric("largest_fall", (-steps).clamp(min=0).max(), expect="<= 1")
    record.note(
        f"Best of {sweep.config.replicates} instances per density (lowest loss), as the "
        "paper keeps the best for the poorly-optimising m=2 models. Represented: ‖W_i‖ > 0.5."
    )
    record.figure(
        plot_intro(sweep.W, sweep.config.feature_probability, sweep.config.importance[0]),
        "features",
    )
    assert counts[0] == 2 and dense_cos < ORTHOGONAL_COS, (
        f"dense: {counts[0]} features, |cos| {dense_cos}"
    )
    assert counts[-1] == 5, f"sparsest: {counts[-1]} features"
    assert (steps >= -1).all(), f"counts {counts.tolist()}"
