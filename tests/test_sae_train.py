"""Batched SAE training: equal to sae-lens's own trainer, learns, validates input, caches."""

import copy

import pytest
import torch
from sae_lens.config import SAETrainerConfig
from sae_lens.training.sae_trainer import SAETrainer

from replication.artifact import load_or_train
from replication.cache import ArtifactCache
from replication.sae.batched import SAEArchitecture, SAEStack
from replication.sae.train import SAETrainConfig, ToySAESweep, train_stack
from replication.toy.sweep import ToySweep, geometric_importance
from replication.toy.train import TrainConfig

TINY_TOY = ToySweep(
    6,
    3,
    (0.1, 0.3),
    (geometric_importance(6, 0.8),),
    training=TrainConfig(steps=300, batch_size=256, lr=1e-2),
)


@pytest.fixture(scope="module")
def tiny_toy(tmp_path_factory):
    """The tiny toy sweep as the SAE fixtures get it: through the cache, carrying its key."""
    return load_or_train(TINY_TOY, ArtifactCache(tmp_path_factory.mktemp("toy")), "cpu")


@pytest.mark.parametrize(
    "architecture, l1_values",
    [
        (SAEArchitecture("standard", 5, 12), (0.0, 0.3, 1.0)),
        (SAEArchitecture("topk", 5, 12, k=2), (1.0, 1.0)),
    ],
    ids=["standard", "topk"],
)
def test_batched_step_equals_sae_lens_trainer(architecture, l1_values):
    """K SAEs trained as one stack end where sae-lens's SAETrainer leaves each of them."""
    steps, batch, lr = 20, 64, 1e-2
    torch.manual_seed(0)
    saes = [architecture.build(l1, l1_warm_up_steps=5) for l1 in l1_values]
    reference = [copy.deepcopy(s) for s in saes]
    data = torch.rand(steps, len(saes), batch, 5, generator=torch.Generator().manual_seed(1)) * 3

    stack = SAEStack(saes)
    batches = iter(data)
    train_stack(
        stack,
        lambda: next(batches),
        SAETrainConfig(steps=steps, batch_size=batch, lr=lr, lr_decay_steps=5, l1_warm_up_steps=5),
    )

    config = SAETrainerConfig(
        total_training_samples=steps * batch,
        train_batch_size_samples=batch,
        lr=lr,
        lr_end=lr,
        lr_decay_steps=5,
    )
    for i, sae in enumerate(reference):
        trainer = SAETrainer(config, sae, data_provider=iter(()))
        for step in range(steps):
            trainer.step(data[step, i])
            trainer.n_training_steps += 1
        for name, value in sae.state_dict().items():
            torch.testing.assert_close(stack.params[name][i].detach(), value, rtol=1e-4, atol=1e-5)


def test_sae_training_loss_decreases(tiny_toy):
    config = ToySAESweep(
        TINY_TOY,
        SAEArchitecture("standard", 3, 6),
        (0.01, 0.1),
        SAETrainConfig(steps=300, batch_size=128, lr=3e-3),
    )
    history = config.train("cpu", tiny_toy).loss_history
    assert history["mse_loss"].shape == (2, config.n_instances)  # 300 steps, logged every 250
    assert (history["loss"][-1] < 0.5 * history["loss"][0]).all()


def test_same_seed_same_saes_and_cache_round_trip(tiny_toy, tmp_path):
    config = ToySAESweep(
        TINY_TOY,
        SAEArchitecture("topk", 3, 6, k=1),
        (),
        SAETrainConfig(steps=20, batch_size=32),
        seed=3,
    )
    first = config.train("cpu", tiny_toy)
    cache = ArtifactCache(tmp_path)
    cached = load_or_train(config, cache, "cpu", upstream=(tiny_toy,))
    again = load_or_train(config, cache, "cpu", upstream=(tiny_toy,))
    for name, value in first.weights.items():
        assert torch.equal(value, cached.weights[name]) and torch.equal(value, again.weights[name])
    assert len(list((tmp_path / "toy-sae").iterdir())) == 1
    assert cached.cache_key == again.cache_key


def test_the_toy_model_key_enters_the_sae_key(tiny_toy, tmp_path):
    """The SAEs' cache key is built from their upstream toy artifact's own ``cache_key``: another
    toy model (another key) gives another SAE entry."""
    config = ToySAESweep(TINY_TOY, SAEArchitecture("topk", 3, 6, k=1), (), SAETrainConfig(steps=2))
    cache = ArtifactCache(tmp_path)
    computed = load_or_train(config, cache, "cpu", upstream=(tiny_toy,))
    assert computed.cache_key == cache.key(config.to_dict(), type(config).__module__,
                                           [tiny_toy.cache_key])
    other = copy.copy(tiny_toy)
    other.cache_key = "another toy model"
    moved = load_or_train(config, cache, "cpu", upstream=(other,))
    assert moved.cache_key != computed.cache_key
    assert len(list((tmp_path / "toy-sae").iterdir())) == 2


def test_stack_round_trips_to_sae_lens_modules():
    torch.manual_seed(0)
    saes = [SAEArchitecture("standard", 4, 8).build(l1) for l1 in (0.1, 0.2)]
    x = torch.randn(2, 16, 4)
    acts, recon = SAEStack(saes)(x)
    for i, sae in enumerate(SAEStack(saes).unstack()):
        torch.testing.assert_close(acts[i], saes[i].encode(x[i]))
        torch.testing.assert_close(recon[i], sae(x[i]))
        assert sae.cfg.l1_coefficient == saes[i].cfg.l1_coefficient


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(kind="jumprelu", d_in=5, d_sae=10), "accepted: standard, topk"),
        (dict(kind="standard", d_in=5, d_sae=10, k=3), "k is set for topk"),
        (dict(kind="topk", d_in=5, d_sae=10, k=11), "k must lie in"),
    ],
)
def test_bad_architecture_names_the_accepted_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SAEArchitecture(**kwargs)


def test_bad_sweeps_are_rejected():
    with pytest.raises(ValueError, match="d_in 4 != toy hidden size 3"):
        ToySAESweep(TINY_TOY, SAEArchitecture("standard", 4, 6), (0.1,))
    with pytest.raises(ValueError, match="at least one L1 coefficient"):
        ToySAESweep(TINY_TOY, SAEArchitecture("standard", 3, 6), ())
    with pytest.raises(ValueError, match="exceed the 10 training steps"):
        SAETrainConfig(steps=10, lr_warm_up_steps=5, lr_decay_steps=6)
    with pytest.raises(ValueError, match="one class and shape"):
        SAEStack(
            [SAEArchitecture("standard", 3, 6).build(), SAEArchitecture("standard", 3, 7).build()]
        )
