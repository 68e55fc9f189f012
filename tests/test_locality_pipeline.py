"""Unit tests of the H_pos pipeline (replication/locality): fast, offline, no cache."""

from __future__ import annotations

import math
from dataclasses import replace

import pandas as pd
import pytest
import torch
from sae_lens import SAE
from transformer_lens import HookedTransformer, HookedTransformerConfig

from replication.cache import ArtifactCache
from replication.locality import sweep
from replication.locality.artefacts import save_table
from replication.locality.corpus import is_heldout, sample_windows, split_stdlib
from replication.locality.entropy import positional_entropy
from replication.locality.influence import batch_influence
from replication.locality.presets import LoadedPreset, get_preset, resolve_layers
from replication.locality.sweep import (
    context_summary,
    corpus_stream,
    depth_sweep,
    depth_trend,
    feature_means,
    influence_table,
    layer_summary,
    leading,
)

N, D = 6, 8


ARCHITECTURES = {"standard": {}, "jumprelu": {}, "topk": {"k": 6},
                 "layer_norm": {"architecture": "topk", "k": 6, "normalize_activations": "layer_norm"}}


def relu_sae(d_in: int, d_sae: int, seed: int, architecture: str = "standard") -> SAE:
    """A random SAE (ReLU by default) whose encoder bias keeps most features active."""
    g = torch.Generator().manual_seed(seed)
    sae = SAE.from_dict({"architecture": architecture, "d_in": d_in, "d_sae": d_sae,
                         **ARCHITECTURES[architecture]})
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(d_in, d_sae, generator=g))
        sae.W_dec.copy_(torch.randn(d_sae, d_in, generator=g) / d_in ** 0.5)
        sae.b_enc.copy_(torch.full((d_sae,), 5.0))
        sae.b_dec.zero_()
        if architecture == "jumprelu":
            sae.threshold.copy_(torch.rand(d_sae, generator=g) * 6)
    return sae.eval()


def attention_only_model(seed: int) -> HookedTransformer:
    cfg = HookedTransformerConfig(n_layers=1, d_model=D, n_heads=1, d_head=D, n_ctx=N,
                                  d_vocab=11, attn_only=True, normalization_type=None,
                                  positional_embedding_type="standard", seed=seed)
    return HookedTransformer(cfg).eval()


def test_closed_form_on_attention_only_model():
    """With a hand-set attention pattern A, y_t = x_t + sum_t' A[t, t'] x_t' M (M = W_V W_O),
    so d y_{N-1} / d x_t' = G_t' = A[N-1, t'] M + [t' = N-1] I, J_a(t') = |G_t' w_a|^2 and,
    for the reconstruction y~ = decode(encode(y)) with Jacobian K = d y~ / d y at the read-out,
    R(t') = |G_t' K^T|_F^2, where w_a is feature a's encoder column."""
    model, sae = attention_only_model(0), relu_sae(D, 5, 1)
    g = torch.Generator().manual_seed(2)
    pattern = torch.rand(N, N, generator=g).tril()
    pattern = pattern / pattern.sum(-1, keepdim=True)

    def set_pattern(value, hook):
        return pattern.expand_as(value)

    tokens = torch.randint(0, 11, (N,), generator=g)
    with model.hooks(fwd_hooks=[("blocks.0.attn.hook_pattern", set_pattern)]):
        (res,) = batch_influence(model, {0: sae}, {0: "blocks.0.hook_resid_post"}, 0.0,
                                 tokens[None])
        _, cache = model.run_with_cache(tokens[None])
    y = cache["blocks.0.hook_resid_post"][0, -1].detach()

    M = model.W_V[0, 0] @ model.W_O[0, 0]                                # (D, D)
    G = pattern[-1][:, None, None] * M + torch.eye(D) * (torch.arange(N) == N - 1)[:, None, None]
    w = sae.W_enc[:, res.features].detach()                             # (D, k)
    K = torch.autograd.functional.jacobian(lambda v: sae.decode(sae.encode(v)), y)  # (D, D)
    J = torch.einsum("tmn,nk->ktm", G, w).pow(2).sum(-1)                # (k, N)
    R = torch.einsum("tmn,vn->tmv", G, K).pow(2).sum((1, 2))            # (N,)
    assert len(res.features) > 0
    torch.testing.assert_close(res.feature_influence, J.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(res.token_influence[0], R.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(positional_entropy(res.feature_influence),
                               positional_entropy(J.detach()), rtol=1e-5, atol=1e-6)


def small_model_and_saes(seed: int = 0, architecture: str = "standard"):
    cfg = HookedTransformerConfig(n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=32,
                                  n_ctx=12, d_vocab=50, act_fn="gelu", normalization_type="LN",
                                  seed=seed)
    model = HookedTransformer(cfg).eval()
    saes = {layer: relu_sae(16, 32, seed + layer, architecture) for layer in (0, 1)}
    return model, saes, {layer: f"blocks.{layer}.hook_resid_post" for layer in saes}


@pytest.mark.parametrize(("form", "token_probes", "architecture"), [
    ("features", None, "standard"), ("features", None, "jumprelu"), ("features", None, "topk"),
    (None, None, "layer_norm"), ("probes", None, "standard"), ("probes", 7, "standard")])
def test_batched_windows_equal_the_per_row_loop_one_window_at_a_time(form, token_probes,
                                                                     architecture):
    """Each batched form over 3 windows at once (chunked or not) gives the naive per-row
    backward loop's J and R (one window, one output row at a time: the active features and
    every direction of y~, or the same probes), for ReLU, JumpReLU and TopK SAEs; an SAE that
    layer-normalises its input takes the probes form by itself."""
    model, saes, hooks = small_model_and_saes(architecture=architecture)
    windows = torch.randint(0, 50, (3, 12), generator=torch.Generator().manual_seed(3))

    def run(tokens, batched, chunk, form):
        return batch_influence(model, saes, hooks, 0.2, tokens, batched=batched, chunk=chunk,
                               form=form, token_probes=token_probes,
                               generator=torch.Generator().manual_seed(4))

    loops = [run(w[None], False, None, "probes") for w in windows]
    for batched in (run(windows, True, None, form), run(windows, True, 5, form)):
        for layer, res in enumerate(batched):
            assert len(res.features) > 0 and res.window.unique().tolist() == [0, 1, 2]
            for w, loop in enumerate(loops):
                mine = res.window == w
                assert torch.equal(res.features[mine], loop[layer].features)
                torch.testing.assert_close(res.feature_influence[mine],
                                           loop[layer].feature_influence, rtol=1e-6, atol=1e-9)
                torch.testing.assert_close(res.token_influence[w], loop[layer].token_influence[0],
                                           rtol=1e-6, atol=1e-9)


def test_unknown_influence_form_raises_naming_the_accepted():
    model, saes, hooks = small_model_and_saes()
    with pytest.raises(ValueError, match="features"):
        batch_influence(model, saes, hooks, 0.2, torch.zeros(1, 12, dtype=torch.long),
                        form="jacobian")


def test_causality_positions_after_read_out_have_no_influence():
    model, saes, hooks = small_model_and_saes()
    windows = torch.randint(0, 50, (2, 12), generator=torch.Generator().manual_seed(5))
    for res in batch_influence(model, saes, hooks, 0.2, windows, read_pos=7):
        assert (res.feature_influence[:, 8:] == 0).all()
        assert (res.token_influence[:, 8:] == 0).all()
        assert (res.token_influence[:, :8] > 0).all()


def test_entropy_one_hot_uniform_zero_and_bounds():
    one_hot = torch.zeros(3, 16)
    one_hot[torch.arange(3), torch.tensor([0, 7, 15])] = 2.5
    assert positional_entropy(one_hot).abs().max() == 0
    assert torch.allclose(positional_entropy(torch.full((16,), 0.3)), torch.tensor(4.0))
    assert positional_entropy(torch.zeros(16)).item() == 0  # guard: no NaN
    h = positional_entropy(torch.rand(100, 16))
    assert ((h >= 0) & (h <= math.log2(16) + 1e-6)).all()


def test_unknown_preset_and_layer_raise_value_error_listing_accepted():
    with pytest.raises(ValueError, match="gpt2-small"):
        get_preset("gpt-5")
    with pytest.raises(ValueError, match="0..11"):
        resolve_layers(get_preset("gpt2-small"), [3, 12])
    with pytest.raises(ValueError, match="'all', 'default'"):
        resolve_layers(get_preset("gpt2-small"), "most")
    assert resolve_layers(get_preset("llama-3-8b"), "default") == list(range(0, 31, 2))


def test_windows_are_seeded_and_heldout_files_disjoint():
    stream = torch.arange(1000)
    a, b = sample_windows(stream, 5, 16, seed=1), sample_windows(stream, 5, 16, seed=1)
    assert torch.equal(a, b) and a.shape == (5, 16)
    assert ((a[:, 1:] - a[:, :-1]) == 1).all()
    train, heldout = split_stdlib(10)
    assert heldout and train and not set(train) & set(heldout)
    assert all(is_heldout(p, 10) for p in heldout)


def tiny_loaded_preset() -> LoadedPreset:
    model, saes, hooks = small_model_and_saes()
    return LoadedPreset(preset=get_preset("local-stdlib"), model=model, saes=saes, hooks=hooks,
                        encode=lambda text: [b % 49 + 1 for b in text.encode()[:200]],
                        separator=0, decode_token=str)


def test_influence_table_summary_and_cache_round_trip(tmp_path):
    loaded = tiny_loaded_preset()
    stream = corpus_stream(loaded, "stdlib")
    assert (stream == 0).sum() == len(split_stdlib(10)[1])  # one separator per held-out file
    cache = ArtifactCache(tmp_path)
    run = depth_sweep(cache, loaded, "stdlib", n_windows=3, length=12, seed=0)
    table = run.table
    assert list(table.columns) == ["preset", "corpus", *sweep.NUMERIC_COLUMNS]
    events = table[table.feature >= 0]
    assert ((events.frequency > 0) & (events.frequency <= 1)).all()
    assert set(table.layer) == {0, 1} and set(table.window) == {0, 1, 2}
    J = run.influence[12]
    assert events.event.tolist() == list(range(len(J))) and run.windows.shape == (3, 12)
    torch.testing.assert_close(positional_entropy(J).double(),
                               torch.tensor(events.H_pos.to_numpy()))
    assert (J.argmax(-1).numpy() == events.peak_pos.to_numpy()).all()
    torch.testing.assert_close(J.sum(-1).double(), torch.tensor(events.J_sum.to_numpy()))
    again = depth_sweep(cache, tiny_loaded_preset(), "stdlib", n_windows=3, length=12, seed=0)
    pd.testing.assert_frame_equal(table, again.table)
    assert torch.equal(J, again.influence[12]) and torch.equal(run.windows, again.windows)
    summary = layer_summary(table)
    assert list(summary.index) == [0, 1]
    assert set(depth_trend(summary)) == {"min_step_bits", "spearman", "rise_bits"}
    save_table(table, tmp_path / "t.csv")
    assert len(pd.read_csv(tmp_path / "t.csv")) == len(table)


def test_window_without_active_feature_keeps_its_token_entropy():
    loaded = tiny_loaded_preset()
    loaded.preset = replace(loaded.preset, threshold=1e9)
    table, J = influence_table(loaded, torch.randint(1, 50, (2, 12)), "stdlib", seed=0)
    assert (table.feature == -1).all() and (table.event == -1).all() and J.shape == (0, 12)
    assert table.H_pos.isna().all()
    assert table.token_H.notna().all() and len(table) == 4  # 2 windows x 2 layers


def event_table(rows: list[tuple[int, int, int, int, float, float, float]]) -> pd.DataFrame:
    """A hand-made influence table from (n_tokens, layer, window, feature, H_pos, token_H,
    frequency) rows."""
    table = pd.DataFrame(rows, columns=["n_tokens", "layer", "window", "feature", "H_pos",
                                        "token_H", "frequency"])
    return table.assign(activation=1.0, preset="p", corpus="c")


def test_layer_summary_is_the_mean_over_leading_features_of_per_feature_means():
    """Feature 0 (active twice, H 1 and 3) and feature 1 (H 4) are leading; feature 2 fires at
    0.05% of positions and is left out; the token vector's entropy is 3.5 bits."""
    table = event_table([(64, 0, 0, 0, 1.0, 3.5, 0.2), (64, 0, 1, 0, 3.0, 3.5, 0.2),
                         (64, 0, 0, 1, 4.0, 3.5, 0.01), (64, 0, 1, 2, 0.0, 3.5, 0.0005)])
    summary = layer_summary(table).loc[0]
    assert summary.n_leading == 2 and summary.n_events == 4
    assert summary.mean_H == pytest.approx(3.0)            # mean of (2, 4), not of events
    assert summary.std_H == pytest.approx(math.sqrt(2))
    assert summary.below_token == pytest.approx(0.5)       # feature 0 below 3.5, feature 1 not
    assert summary.top20_H == pytest.approx(3.0)
    with pytest.raises(ValueError, match="context_summary"):
        layer_summary(pd.concat([table, table.assign(n_tokens=32)]))


def test_leading_keeps_the_most_frequent_up_to_the_cap(monkeypatch):
    monkeypatch.setattr(sweep, "LEADING_TOP", 2)
    table = event_table([(64, 0, 0, f, float(f), 2.0, 0.01 * (f + 1)) for f in range(4)])
    assert list(leading(feature_means(table)).index.get_level_values("feature")) == [3, 2]


def test_context_summary_follows_the_longest_windows_leading_features():
    """Feature 5 is leading at N=64 only, feature 6 at N=8 only: each N's mean is over the
    N=64 set (feature 5), whatever is frequent at shorter N."""
    table = event_table([(8, 2, 0, 5, 1.0, 2.0, 0.0001), (8, 2, 0, 6, 3.0, 2.0, 0.5),
                         (64, 2, 0, 5, 2.0, 2.0, 0.3), (64, 2, 1, 6, 5.0, 2.0, 0.0001)])
    curves = context_summary(table)
    assert curves.loc[8, 2] == pytest.approx(1.0) and curves.loc[64, 2] == pytest.approx(2.0)


def test_stacked_local_saes_equal_sae_lens_multi_sae_trainer():
    """The local SAEs' stacked training is sae-lens's MultiSAETrainer (same seeds, batches,
    input scaling, schedules): equal weights after training, up to float rounding."""
    from sae_lens import StandardTrainingSAE, StandardTrainingSAEConfig
    from sae_lens.config import SAETrainerConfig
    from sae_lens.training.multi_sae_trainer import MultiSAETrainer

    from replication.locality.local_saes import (
        NORM_ESTIMATE_BATCHES,
        LocalSAEConfig,
        shuffled_batches,
        train_saes,
    )

    cfg = LocalSAEConfig(steps=40, batch_size=32, seed=3)
    g = torch.Generator().manual_seed(0)
    acts = {f"blocks.{i}.hook_resid_post": torch.randn(512, 8, generator=g) * (i + 1) + 0.5
            for i in range(2)}
    stacked = train_saes(cfg, acts, torch.device("cpu"))
    torch.manual_seed(cfg.seed)
    reference = {hook: StandardTrainingSAE(StandardTrainingSAEConfig(
        d_in=8, d_sae=32, l1_coefficient=cfg.l1_coefficient, l1_warm_up_steps=cfg.steps // 10,
        normalize_activations="expected_average_only_in")) for hook in acts}
    MultiSAETrainer(SAETrainerConfig(
        total_training_samples=cfg.steps * cfg.batch_size, train_batch_size_samples=cfg.batch_size,
        lr=cfg.lr, lr_end=cfg.lr, lr_warm_up_steps=cfg.steps // 20, lr_decay_steps=cfg.steps // 5,
        device="cpu", n_batches_for_norm_estimate=NORM_ESTIMATE_BATCHES,
        dead_feature_window=cfg.steps, feature_sampling_window=cfg.steps),
        reference, {h: h for h in acts},
        shuffled_batches(acts, cfg.batch_size, torch.Generator().manual_seed(cfg.seed))).fit()
    for hook, sae in stacked.items():
        assert sae.cfg.normalize_activations == reference[hook].cfg.normalize_activations == "none"
        for name, value in reference[hook].state_dict().items():
            torch.testing.assert_close(sae.state_dict()[name], value, rtol=1e-4, atol=1e-6)
