"""Unit tests of the engine's additions for the later TMS sections: the hidden-ReLU and untied
models, signed inputs and the absolute-value target, feature sets (correlated, anticorrelated,
per-feature density), bundles of sweeps, and the neuron and set metrics."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

import pytest
import torch

from replication.artifact import load_or_train
from replication.cache import ArtifactCache
from replication.toy import experiments, metrics
from replication.toy.bundle import ToyBundle
from replication.toy.data import FeatureSetSampler, SparseFeatureSampler, signed
from replication.toy.model import ToyModel
from replication.toy.sweep import FeatureSets, ToySweep, fit, geometric_importance
from replication.toy.train import TrainConfig, train


def binomial_tolerance(p: float, n: int) -> float:
    """Five binomial standard errors (a false alarm below 1 in 10^6) plus one count."""
    return 5 * math.sqrt(p * (1 - p) / n) + 1 / n


def draw(kinds, sizes, p, n_features, batch=40_000, seed=0):
    p = torch.tensor(p, dtype=torch.float32).expand(len(kinds), n_features)
    generator = torch.Generator().manual_seed(seed)
    return FeatureSetSampler(p.contiguous(), kinds, sizes, batch, generator)()


def test_correlated_sets_switch_together_with_independent_values():
    x = draw(("correlated",), (2,), 0.3, 4)[0]  # sets {0, 1}, {2, 3}
    active = x > 0
    n = len(x)
    assert torch.equal(active[:, 0], active[:, 1]) and torch.equal(active[:, 2], active[:, 3])
    for rate in active.float().mean(0):
        assert abs(rate - 0.3) <= binomial_tolerance(0.3, n)
    both = active[:, 0] & active[:, 2]  # different sets: independent
    assert abs(both.float().mean() - 0.09) <= binomial_tolerance(0.09, n)
    on = x[active[:, 0]]
    values = on[:, :2]
    assert abs(values.mean() - 0.5) < 5 * math.sqrt(1 / 12 / values.numel())
    assert abs(torch.corrcoef(values.T)[0, 1]) < 5 / math.sqrt(len(values))  # values uncorrelated


def test_anticorrelated_sets_have_at_most_one_active_member_chosen_uniformly():
    x = draw(("anticorrelated",), (3,), 0.6, 6)[0]
    active = (x > 0).view(len(x), 2, 3)
    per_set = active.sum(-1)
    assert per_set.max() == 1
    n = len(x)
    assert abs(per_set.float().mean() - 0.6) <= binomial_tolerance(0.6, n)
    for rate in active.float().mean(0).flatten():  # each member: 0.6 / 3
        assert abs(rate - 0.2) <= binomial_tolerance(0.2, n)
    values = x[x > 0]
    assert abs(values.var() - 1 / 12) < 0.005 and values.max() <= 1


def test_independent_per_feature_density_and_padding():
    p = torch.tensor([[0.5, 0.1, 0.02, 0.0]])
    x = FeatureSetSampler(p, ("independent",), (1,), 50_000, torch.Generator().manual_seed(1))()[0]
    rates = (x > 0).float().mean(0)
    for rate, q in zip(rates.tolist(), p[0].tolist(), strict=True):
        assert abs(rate - q) <= binomial_tolerance(q, 50_000)
    assert (x[:, 3] == 0).all()  # density 0: never active (padding)


def test_instances_keep_their_own_set_kind_and_size():
    p = torch.full((2, 4), 0.5)
    x = FeatureSetSampler(p, ("correlated", "anticorrelated"), (4, 2), 20_000,
                          torch.Generator().manual_seed(2))()
    active = x > 0
    assert (active[0].all(-1) | ~active[0].any(-1)).all()  # one set of 4, together
    assert active[1].view(-1, 2, 2).sum(-1).max() == 1


def test_feature_set_sampler_rejects_bad_layouts():
    generator = torch.Generator()
    with pytest.raises(ValueError, match="'clustered'.*independent, correlated, anticorrelated"):
        FeatureSetSampler(torch.full((1, 4), 0.1), ("clustered",), (2,), 8, generator)
    with pytest.raises(ValueError, match="do not tile 5 features"):
        FeatureSetSampler(torch.full((1, 5), 0.1), ("correlated",), (2,), 8, generator)
    with pytest.raises(ValueError, match="members of a feature set need one density"):
        FeatureSetSampler(torch.tensor([[0.1, 0.2]]), ("correlated",), (2,), 8, generator)
    with pytest.raises(ValueError, match="densities must lie in"):
        FeatureSetSampler(torch.tensor([[1.5]]), ("independent",), (1,), 8, generator)


def test_signed_values_are_uniform_on_minus_one_one_and_zeros_stay():
    x = SparseFeatureSampler(torch.tensor([0.2]), 10, 50_000, torch.Generator().manual_seed(3))()
    active = x > 0
    s = signed(x.clone())
    assert torch.equal(s != 0, active)
    values = s[active]
    assert values.min() >= -1 and values.max() <= 1
    se = math.sqrt(1 / 3 / len(values))
    assert abs(values.mean()) < 5 * se and abs(values.var() - 1 / 3) < 0.01
    assert abs((values < 0).float().mean() - 0.5) <= binomial_tolerance(0.5, len(values))


def test_hidden_relu_and_untied_forward_against_hand_computation():
    W = torch.tensor([[[1.0, -2.0], [0.5, 1.0]]])  # one instance, m=2 neurons, n=2 features
    W_out = torch.tensor([[[2.0, 0.0], [1.0, 1.0]]])
    b = torch.tensor([[-0.5, 0.25]])
    x = torch.tensor([[[1.0, 1.0], [-1.0, 0.5]]])
    # tied, hidden ReLU: input 1: Wx = (−1, 1.5) → h = (0, 1.5); x' = ReLU(Wᵀh + b) =
    # ReLU((0.75, 1.5) + b) = (0.25, 1.75). Input 2: Wx = (−2, 0) → h = 0 → x' = ReLU(b).
    tied = ToyModel.from_tensors(W, b, "relu", hidden_activation="relu")
    expected = torch.tensor([[[0.25, 1.75], [0.0, 0.25]]])
    torch.testing.assert_close(tied(x), expected)
    # untied: x' = ReLU(W_outᵀh + b); input 1: W_outᵀh = (1.5, 1.5) → (1.0, 1.75).
    untied = ToyModel.from_tensors(W, b, "relu", "relu", W_out)
    torch.testing.assert_close(untied(x), torch.tensor([[[1.0, 1.75], [0.0, 0.25]]]))
    # the absolute-value loss: target |x| = ((1, 1), (1, 0.5)), importance (1, 2), mean of two
    loss = untied.loss(x, torch.tensor([[1.0, 2.0]]), target=x.abs())
    hand = ((0.0 + 2 * 0.75**2) + (1.0 + 2 * 0.25**2)) / 2
    assert loss.item() == pytest.approx(hand)


@pytest.mark.parametrize("hidden", ["linear", "relu"])
@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("weighted", [False, True])
def test_closed_form_gradients_match_autograd_for_every_variant(hidden, tied, weighted):
    generator = torch.Generator().manual_seed(4)
    model = ToyModel(3, 12, 4, "relu", generator=generator, hidden_activation=hidden, tied=tied)
    with torch.no_grad():
        model.b.normal_(generator=generator)
    x = signed(SparseFeatureSampler(torch.tensor([1.0, 0.3, 0.05]), 12, 64, generator)())
    importance = torch.rand(3, 12, generator=generator)
    weight = torch.rand(3, 64, generator=generator) if weighted else None
    loss, *grads = model.loss_and_grads(x, importance, weight, x.abs())
    reference = model.loss(x, importance, weight, target=x.abs())
    reference.sum().backward()
    torch.testing.assert_close(loss, reference.detach(), rtol=1e-5, atol=1e-6)
    assert len(grads) == len(list(model.parameters())) == (2 if tied else 3)
    for grad, parameter in zip(grads, model.parameters(), strict=True):
        torch.testing.assert_close(grad, parameter.grad, rtol=1e-4, atol=1e-5)


def test_fit_matches_train_number_for_number_on_a_tied_model():
    """The sweep's model-agnostic loop gives replication.toy.train.train's numbers exactly."""
    sweep = ToySweep(6, 2, (1.0, 0.1), (geometric_importance(6, 0.9),), replicates=2,
                     training=TrainConfig(steps=300, batch_size=32), seed=7)
    p, importance = sweep.instance_tensors("cpu")

    def model_and_batches() -> tuple[ToyModel, Callable]:
        generator = torch.Generator().manual_seed(7)
        model = ToyModel(sweep.n_instances, 6, 2, "relu", generator=generator)
        sampler = SparseFeatureSampler(p, 6, 32, generator)
        return model, lambda: (sampler(), None)

    fitted, batches = model_and_batches()
    fit_history = fit(fitted, batches, importance, sweep.training)
    trained, batches = model_and_batches()
    train_history = train(trained, batches, importance, sweep.training)
    assert torch.equal(fitted.W, trained.W) and torch.equal(fit_history, train_history)


def test_untied_absolute_value_sweep_learns_and_round_trips(tmp_path):
    sweep = ToySweep(4, 8, (1.0, 0.3), (geometric_importance(4, 0.9),), hidden_activation="relu",
                     tied=False, task="absolute-value",
                     training=TrainConfig(steps=1500, batch_size=128, lr=3e-3), seed=2)
    trained = load_or_train(sweep, ArtifactCache(tmp_path), "cpu")
    assert trained.W_out.shape == trained.W.shape == (2, 8, 4)
    history = trained.loss_history[:, :, 0]
    assert (history[-1] < 0.5 * history[0]).all()
    explained = metrics.absolute_value_explained(trained.model())
    assert (explained > 0.5).float().mean() > 0.5  # 8 neurons: room for |x| on all 4 features
    again = load_or_train(sweep, ArtifactCache(tmp_path), "cpu")
    assert torch.equal(again.W_out, trained.W_out)


def test_sweep_validates_its_new_fields():
    with pytest.raises(ValueError, match="'cube'.*reconstruct, absolute-value"):
        ToySweep(2, 1, (0.5,), ((1.0, 1.0),), task="cube")
    with pytest.raises(ValueError, match="'tanh'.*relu, linear"):
        ToySweep(2, 1, (0.5,), ((1.0, 1.0),), hidden_activation="tanh")
    with pytest.raises(ValueError, match="feature_sets needs 1 or 2 rows"):
        ToySweep(2, 1, (0.5, 0.1), ((1.0, 1.0),), feature_sets=(FeatureSets(),) * 3)
    with pytest.raises(ValueError, match="per-feature density needs 3 values"):
        ToySweep(3, 1, ((0.5, 0.1),), ((1.0,) * 3,))


def test_bundle_parts_equal_their_own_layout_and_padding_is_inert():
    training = TrainConfig(steps=200, batch_size=32)
    small = ToySweep(3, 2, (0.1, 0.2), (geometric_importance(3, 1.0),), replicates=2,
                     training=training, seed=5)
    pairs = ToySweep(4, 2, (0.05,), (geometric_importance(4, 1.0),), replicates=2, training=training,
                     seed=5, feature_sets=(FeatureSets("correlated", 2),))
    bundle = ToyBundle((("small", small), ("pairs", pairs)))
    merged = bundle.sweep
    assert merged.n_features == 4 and merged.n_configs == 3
    assert merged.feature_probability[0] == (0.1, 0.1, 0.1, 0.0)
    assert merged.importance[1] == (1.0, 1.0, 1.0, 0.0)
    trained = bundle.train()
    part = trained.part("small")
    assert part.config == small and part.W.shape == (2, 2, 3) and part.b.shape == (2, 3)
    assert part.loss_history.shape[1:] == (2, 2) and trained.part("pairs").W.shape == (1, 2, 4)
    # the padded feature never activates and carries no importance: its column keeps its init
    generator = torch.Generator().manual_seed(5)
    initial = ToyModel(merged.n_instances, 4, 2, "relu", generator=generator).W.detach()
    torch.testing.assert_close(trained.sweep.replicate_W[:2, :, :, 3],
                               initial.view(3, 2, 2, 4)[:2, :, :, 3])
    with pytest.raises(ValueError, match="unknown part 'big'; accepted: small, pairs"):
        trained.part("big")
    with pytest.raises(ValueError, match="has n_hidden=3"):
        ToyBundle((("a", small), ("b", ToySweep(3, 3, (0.1,), ((1.0,) * 3,), replicates=2,
                                                training=training, seed=5))))


def test_two_dimensional_bundle_and_new_sweeps_build_at_both_scales():
    for scale in ("cpu", "paper"):
        bundle = experiments.two_dimensional_bundle(scale, seed=3)
        assert [name for name, _ in bundle.parts] == ["correlated", "anticorrelated", "collapse",
                                                      "non-uniform"]
        assert bundle.sweep.n_features == 6
        for sweep in (experiments.privileged_sweep(scale, 3), experiments.absolute_sweep(scale, 3),
                      experiments.local_basis_sweep(scale, 3)):
            assert sweep.seed == 3


def test_neuron_metrics_on_a_hand_made_code():
    # neuron 0: feature 0 only; neuron 1: features 1 and 2 (±); neuron 2: feature 2 with a stray
    # weight below the cut; neuron 3: dead
    W = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.8, -1.0], [0.05, 0.0, 0.9], [0.0, 0.0, 0.0]])
    stored = metrics.neuron_features(W, 0.2)
    assert stored.tolist() == [[True, False, False], [False, True, True], [False, False, True],
                               [False, False, False]]
    mono, poly = metrics.neuron_semantics(W, 0.2)
    assert (mono.item(), poly.item()) == (2, 1)


def test_within_set_cosines():
    W = torch.tensor([[1.0, 0.0, 1.0, -1.0], [0.0, 2.0, 0.0, 0.0]])
    assert metrics.within_set_cosines(W, 2).tolist() == [0.0, -1.0]
    three = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]])  # pairs (0,1), (0,2), (1,2)
    torch.testing.assert_close(metrics.within_set_cosines(three, 3),
                               torch.tensor([1 / math.sqrt(2), 0.0, 1 / math.sqrt(2)]))
    with pytest.raises(ValueError, match="sets of 3 do not tile 4 features"):
        metrics.within_set_cosines(W, 3)


def test_absolute_value_explained_of_exact_and_one_sided_models():
    # neurons ReLU(x_0) and ReLU(−x_0) both read out to output 0 (|x_0| exactly); neuron 2 is
    # ReLU(x_1) read out to output 1 (one side); neuron 3 is dead; features 2, 3 get nothing
    W = torch.zeros(1, 4, 4)
    W[0, 0, 0], W[0, 1, 0], W[0, 2, 1] = 1.0, -1.0, 1.0
    W_out = torch.zeros(1, 4, 4)
    W_out[0, 0, 0], W_out[0, 1, 0], W_out[0, 2, 1] = 1.0, 1.0, 1.0
    model = ToyModel.from_tensors(W, torch.zeros(1, 4), "relu", "relu", W_out)
    explained = metrics.absolute_value_explained(model)[0]
    torch.testing.assert_close(explained, torch.tensor([1.0, 0.5, 0.0, 0.0]))


def test_shared_evaluation_scores_the_replicates_of_a_configuration_on_one_sample():
    sweep = ToySweep(4, 2, (0.5, 0.2), (geometric_importance(4, 1.0),), replicates=3,
                     shared_evaluation=True, task="absolute-value")
    x, target = sweep.evaluation_batch(torch.Generator().manual_seed(0), "cpu", size=64)
    assert x.shape == (6, 64, 4) and torch.equal(target, x.abs())
    assert torch.equal(x[0], x[1]) and torch.equal(x[0], x[2]) and torch.equal(x[3], x[5])
    assert not torch.equal(x[0], x[3])
    independent = replace(sweep, shared_evaluation=False)
    y, _ = independent.evaluation_batch(torch.Generator().manual_seed(0), "cpu", size=64)
    assert not torch.equal(y[0], y[1])
