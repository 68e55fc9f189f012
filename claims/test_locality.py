"""Claims of the H_pos study: feature locality across depth (DESIGN.md, 'H_pos').

Every claim runs on the local preset (a 6-layer d_model=64 model trained here on stdlib code,
one SAE per layer) and, where the claim is about any preset, on each real preset whose
weights can be had (skipped offline with the reason; ``hub``, and ``gpu`` where a CPU would
take too long). Thresholds come from the issue and DESIGN.md; reference values live in
``replication/locality/published.json``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from replication.locality.corpus import sample_windows
from replication.locality.figures import (
    bounds_figure,
    comparison_figure,
    context_figure,
    depth_figure,
    sae_figure,
)
from replication.locality.influence import window_influence
from replication.locality.presets import PRESETS, REAL_PRESETS
from replication.locality.reference import min_rise_bits, min_spearman, prototype, published
from replication.locality.sweep import corpus_stream, depth_trend, layer_summary

PAPER = "sae-analysis: feature locality H_pos across depth (six language models, public SAEs)"
OURS = "This suite's own control (DESIGN.md, H_pos; prototype on stdlib code)"
SECTION = "H_pos: feature locality across depth"
CAUSAL_WINDOWS = 2  # windows of the by-construction causality check (exact zeros expected)


def preset_param(name: str, divergence: str | None = None):
    """A preset as a test parameter: real presets marked ``hub`` (and ``gpu``); a measured
    divergence of the claim on this preset as a strict xfail carrying the numbers."""
    marks = [] if PRESETS[name].is_local else [pytest.mark.hub]
    if PRESETS[name].needs_gpu:
        marks.append(pytest.mark.gpu)
    if divergence:
        marks.append(pytest.mark.xfail(strict=True, reason=divergence))
    return pytest.param(name, id=name, marks=marks)


def presets(local_divergence: str | None = None) -> list:
    return [preset_param("local-stdlib", local_divergence),
            *(preset_param(n) for n in REAL_PRESETS)]


ALL_PRESETS = presets()
REAL_ONLY = [preset_param(n) for n in REAL_PRESETS]
DEPTH_DIVERGENCE = (
    "local-stdlib rises monotonically but by less than 0.5 bit: cpu scale (1000 steps, 32 "
    "windows) 1.27 -> 1.55 bits, rise 0.28, rho 1.0; 1500 steps (prototype length, 16 "
    "windows) 1.39 -> 1.69, rise 0.30. The prototype had 0.94 -> 1.72: our final layer "
    "matches, our first layer is less local (token vector 1.28 vs 1.02).")
CONTEXT_DIVERGENCE = (
    "local-stdlib: mean H_pos rises with N up to 32 and falls at N=64 (the model's full "
    "training context), at every layer: 1.55, 1.64, 1.74, 1.41 bits for N = 8, 16, 32, 64 "
    "(32 nested windows, cpu scale); it stays far below log2 N.")


def per_layer(summary, column: str) -> dict[str, float]:
    return {f"L{layer}": float(v) for layer, v in summary[column].items()}


@pytest.mark.claim(
    id="locality.causality-and-bounds", paper=PAPER, section=SECTION,
    statement="J_a(t') = 0 for every input position after the read-out position (causal "
              "attention, checked by construction), and 0 <= H_pos <= log2 N for every event.")
@pytest.mark.parametrize("preset_under_test", ALL_PRESETS, indirect=True)
def test_causality_and_bounds(preset_under_test, depth_table, locality_scale, run_settings,
                              record):
    loaded = preset_under_test
    n = locality_scale.window_length
    read_pos = n // 2 - 1
    corpus = depth_table.corpus.iloc[0]
    windows = sample_windows(corpus_stream(loaded, corpus), CAUSAL_WINDOWS, n, run_settings.seed)
    results = [res for tokens in windows
               for res in window_influence(loaded.model, loaded.saes, loaded.hooks,
                                           loaded.preset.threshold, tokens, read_pos=read_pos,
                                           token_probes=loaded.preset.token_probes,
                                           chunk=loaded.preset.chunk,
                                           generator=torch.Generator().manual_seed(0))]
    j = torch.cat([res.feature_influence for res in results])
    after = j[:, read_pos + 1:].abs().max().item() if len(j) else 0.0
    before = j[:, :read_pos + 1].sum(-1)
    events = depth_table[depth_table.feature >= 0]
    record.set_seeds([run_settings.seed])
    record.metric("max J after the read-out position", after, expect="== 0 exactly")
    record.metric("checked (window, layer) pairs", len(results))
    record.metric("checked events with J > 0 up to the read-out", f"{int((before > 0).sum())}"
                  f" of {len(before)}", expect="all (the gradients are not trivially zero)")
    record.metric("events", len(events))
    record.metric("min H_pos", events.H_pos.min(), expect=">= 0", unit="bits")
    record.metric("max H_pos", events.H_pos.max(), expect=f"<= log2 {n} = {math.log2(n):g}",
                  unit="bits")
    record.figure(bounds_figure(depth_table, f"{loaded.preset.name}: H_pos of every event"),
                  "bounds")
    assert after == 0
    assert len(before) > 0 and (before > 0).all()
    assert len(events) > 0
    assert events.H_pos.min() >= 0
    assert events.H_pos.max() <= math.log2(n) + 1e-5


@pytest.mark.claim(
    id="locality.depth.hpos-rises-with-depth", paper=PAPER, section=SECTION,
    statement="The per-layer mean feature H_pos rises with depth: Spearman rho(layer, mean "
              "H_pos) >= 0.8 and last-minus-first-layer rise >= 0.5 bit (local preset) or "
              ">= 1.5 bits (real presets; published rises 1.3-4.5 bits).")
@pytest.mark.parametrize("preset_under_test", presets(DEPTH_DIVERGENCE), indirect=True)
def test_hpos_rises_with_depth(preset_under_test, depth_table, run_settings, record):
    name = preset_under_test.preset.name
    summary = layer_summary(depth_table)
    trend = depth_trend(summary)
    rise_min, rho_min = min_rise_bits(name), min_spearman()
    record.set_seeds([run_settings.seed])
    record.metric("mean feature H_pos per layer", per_layer(summary, "mean_H"), unit="bits")
    record.metric("top-20 frequent features' mean H_pos", per_layer(summary, "top20_H"),
                  unit="bits")
    record.metric("token-vector H per layer", per_layer(summary, "token_H"), unit="bits")
    record.metric("events per layer", per_layer(summary, "n_events"))
    record.metric("Spearman rho(layer, mean H_pos)", trend["spearman"], expect=f">= {rho_min}")
    record.metric("last - first layer", trend["rise_bits"], expect=f">= {rise_min}", unit="bits")
    reference = prototype(name) or (published(name) if name in REAL_PRESETS else None)
    if reference:
        record.metric("reference (first, last layer)", reference)
    record.note(f"{len(depth_table.window.unique())} windows of "
                f"{int(depth_table.n_tokens.iloc[0])} tokens from {depth_table.corpus.iloc[0]}; "
                f"threshold {preset_under_test.preset.threshold}.")
    record.figure(depth_figure(depth_table, f"{name}: H_pos by layer"), "depth")
    assert trend["spearman"] >= rho_min
    assert trend["rise_bits"] >= rise_min


@pytest.mark.claim(
    id="locality.depth.token-vector-tracks-features", paper=PAPER, section=SECTION,
    statement="At every layer the mean feature H_pos is within 1 bit of the token-vector "
              "entropy (which of the two is larger is reported per layer).")
@pytest.mark.parametrize("preset_under_test", ALL_PRESETS, indirect=True)
def test_token_vector_tracks_features(preset_under_test, depth_table, run_settings, record):
    summary = layer_summary(depth_table)
    gap = summary.mean_H - summary.token_H
    larger = {f"L{layer}": ("features" if g > 0 else "token vector") for layer, g in gap.items()}
    record.set_seeds([run_settings.seed])
    record.metric("mean feature H_pos minus token-vector H", per_layer(gap.to_frame("g"), "g"),
                  expect="|.| <= 1 at every layer", unit="bits")
    record.metric("larger entropy per layer", larger)
    record.note("Original hypothesis: features are a lower-entropy decomposition of the "
                "residual vector (token vector larger). Our prototype found the token vector "
                f"larger at every layer; here it is larger at {sum(g < 0 for g in gap)} of "
                f"{len(gap)} layers.")
    record.figure(comparison_figure({preset_under_test.preset.name: summary},
                                    "features vs token vector", band=1.0), "token-vector")
    assert (gap.abs() <= 1.0).all()


@pytest.mark.claim(
    id="locality.training-sharpens-locality", paper=OURS, section=SECTION,
    statement="The same architecture untrained, with SAEs trained on its activations the same "
              "way, has a higher mean feature H_pos at every layer than the trained model.")
def test_training_sharpens_locality(local_preset, untrained_preset, local_depth_table,
                                    untrained_depth_table, run_settings, record):
    trained, untrained = layer_summary(local_depth_table), layer_summary(untrained_depth_table)
    margin = untrained.mean_H - trained.mean_H
    record.set_seeds([run_settings.seed])
    record.metric("trained: mean feature H_pos", per_layer(trained, "mean_H"), unit="bits")
    record.metric("untrained: mean feature H_pos", per_layer(untrained, "mean_H"), unit="bits")
    record.metric("untrained minus trained", per_layer(margin.to_frame("m"), "m"),
                  expect="> 0 at every layer", unit="bits")
    for preset in (local_preset, untrained_preset):
        record.metric(f"{preset.preset.name}: held-out LM loss",
                      preset.details["lm"]["heldout_loss_nats"], unit="nats/token")
        record.metric(f"{preset.preset.name}: SAE FVU per layer",
                      {f"L{layer}": m["fvu"] for layer, m in preset.details["saes"].items()})
    record.metric("prototype reference", {n: prototype(n)["feature_H"]
                                          for n in ("local-stdlib", "local-stdlib-untrained")})
    record.figure(comparison_figure({"trained": trained, "untrained": untrained},
                                    "training sharpens locality"), "trained-vs-untrained")
    assert (margin > 0).all()


@pytest.mark.claim(
    id="locality.context.hpos-grows-with-window", paper=PAPER, section=SECTION,
    statement="Mean feature H_pos grows with the window length N and stays below log2 N.")
@pytest.mark.parametrize("preset_under_test", presets(CONTEXT_DIVERGENCE), indirect=True)
def test_hpos_grows_with_window(preset_under_test, context_table, run_settings, record):
    events = context_table[context_table.feature >= 0]
    overall = events.groupby("n_tokens").H_pos.mean()
    by_layer = events.groupby(["n_tokens", "layer"]).H_pos.mean()
    bound = np.log2(by_layer.index.get_level_values("n_tokens"))
    record.set_seeds([run_settings.seed])
    record.metric("mean H_pos per N (all layers)", {f"N={n}": v for n, v in overall.items()},
                  expect="strictly increasing in N", unit="bits")
    record.metric("log2 N minus the largest per-layer mean",
                  {f"N={n}": math.log2(n) - by_layer.loc[n].max() for n in overall.index},
                  expect="> 0 for every N", unit="bits")
    record.figure(context_figure(context_table, f"{preset_under_test.preset.name}: "
                                                "H_pos against window length"), "context")
    assert (np.diff(overall.to_numpy()) > 0).all()
    assert (by_layer.to_numpy() < bound).all()


@pytest.mark.claim(
    id="locality.superposition.sae-more-latents-than-dims", paper=OURS, section=SECTION,
    statement="At each layer of the local model, an SAE with 4-8x d_model latents reaches "
              "held-out FVU <= 0.25 with more live latents than d_model dimensions.")
def test_sae_superposition(local_preset, run_settings, record):
    metrics = local_preset.details["saes"]
    d_model = local_preset.model.cfg.d_model
    fvu = {f"L{layer}": m["fvu"] for layer, m in metrics.items()}
    live = {f"L{layer}": m["live_latents"] for layer, m in metrics.items()}
    expansion = {m["d_sae"] / d_model for m in metrics.values()}
    record.set_seeds([run_settings.seed])
    record.metric("held-out LM loss", local_preset.details["lm"]["heldout_loss_nats"],
                  unit="nats/token")
    record.metric("expansion d_sae / d_model", sorted(expansion), expect="4 to 8")
    record.metric("FVU per layer", fvu, expect="<= 0.25 at every layer")
    record.metric("L0 per layer", {f"L{layer}": m["l0"] for layer, m in metrics.items()},
                  unit="latents > 0 per token")
    record.metric("dead fraction per layer",
                  {f"L{layer}": m["dead_fraction"] for layer, m in metrics.items()})
    record.metric("live latents per layer", live, expect=f"> d_model = {d_model}")
    record.figure(sae_figure(metrics, d_model, "local-stdlib SAEs (held-out)"), "saes")
    assert all(4 <= e <= 8 for e in expansion)
    assert all(v <= 0.25 for v in fvu.values())
    assert all(v > d_model for v in live.values())


@pytest.mark.claim(
    id="locality.depth.matches-published-values", paper=PAPER, section=SECTION,
    statement="First- and last-layer mean feature H_pos match the published values within "
              "their tolerance, and presets with a published plateau rise no more than that "
              "tolerance after it.")
@pytest.mark.parametrize("preset_under_test", REAL_ONLY, indirect=True)
def test_matches_published_values(preset_under_test, depth_table, run_settings, record):
    ref = published(preset_under_test.preset.name)
    mean_h = layer_summary(depth_table).mean_H
    tol = ref["tolerance_bits"]
    measured = {end: float(mean_h.loc[ref[end]["layer"]]) for end in ("first", "last")}
    record.set_seeds([run_settings.seed])
    for end in ("first", "last"):
        record.metric(f"{end} layer (L{ref[end]['layer']}) mean H_pos", measured[end],
                      expect=f"{ref[end]['mean_H']} +- {tol}", unit="bits")
    checks = [abs(measured[end] - ref[end]["mean_H"]) <= tol for end in ("first", "last")]
    if ref["plateau_from"] is not None:
        after = float(mean_h.iloc[-1] - mean_h.loc[ref["plateau_from"]])
        record.metric(f"rise after the plateau (L{ref['plateau_from']} to last)", after,
                      expect=f"<= {tol}", unit="bits")
        checks.append(after <= tol)
    record.figure(depth_figure(depth_table, f"{preset_under_test.preset.name}: H_pos by layer"),
                  "depth")
    assert all(checks)
