"""Speed of the batched SAE step (one vmap over K sae-lens SAEs) against sae-lens's own loop.

The reference is what sae-lens offers for many SAEs: one ``SAETrainer`` per SAE, each stepped in
turn on its own batch (its ``MultiSAETrainer`` does exactly this). Both train the same K SAEs
(the size of the recovery claim: 7 densities × 3 L1 values, 20 latents on 5 inputs, batch 256)
for the same steps in the same run; the ratio is reported, never asserted (run with
``--benchmark-enable`` to time it).
"""

from __future__ import annotations

import pytest
import torch
from sae_lens.config import SAETrainerConfig
from sae_lens.training.sae_trainer import SAETrainer

from replication.sae.batched import SAEArchitecture, SAEStack
from replication.sae.train import SAETrainConfig, train_stack

K, D_IN, D_SAE, BATCH, STEPS = 21, 5, 20, 256, 50
ARCHITECTURES = {
    "standard": SAEArchitecture("standard", D_IN, D_SAE),
    "topk": SAEArchitecture("topk", D_IN, D_SAE, k=2),
}


def build(kind: str):
    torch.manual_seed(0)
    return [ARCHITECTURES[kind].build(0.1) for _ in range(K)]


def data() -> torch.Tensor:
    return torch.rand(K, BATCH, D_IN, generator=torch.Generator().manual_seed(0))


def sae_lens_loop(kind: str, steps: int) -> None:
    config = SAETrainerConfig(
        total_training_samples=steps * BATCH, train_batch_size_samples=BATCH, lr=3e-3, lr_end=3e-3
    )
    trainers = [SAETrainer(config, sae, data_provider=iter(())) for sae in build(kind)]
    batch = data()
    for _ in range(steps):
        for i, trainer in enumerate(trainers):
            trainer.step(batch[i])
            trainer.n_training_steps += 1


def batched(kind: str, steps: int) -> None:
    batch = data()
    train_stack(SAEStack(build(kind)), lambda: batch, SAETrainConfig(steps=steps, batch_size=BATCH))


@pytest.mark.parametrize("kind", list(ARCHITECTURES))
def test_batched_saes_against_sae_lens_loop(benchmark, speed, kind):
    loop = speed.best_seconds(lambda: sae_lens_loop(kind, STEPS), warmup=lambda: sae_lens_loop(kind, 5))
    stacked = speed.best_seconds(lambda: batched(kind, STEPS), warmup=lambda: batched(kind, 5))
    speed.ratio(f"{K} {kind} SAEs: sae-lens loop vs batched", loop, stacked, per=STEPS, unit="step")
    benchmark.pedantic(batched, args=(kind, STEPS), rounds=1, iterations=1)
