"""One SAE per layer of the local model, trained with sae-lens's training classes.

The residual stream (``blocks.L.hook_resid_post``) of every layer is collected in one forward
pass per batch over training-file sequences; all layers' sae-lens ``StandardTrainingSAE``
(ReLU, L1) then train in lockstep on that shared buffer, as sae-lens's ``MultiSAETrainer``
trains them (the same batches, input scaling, schedules, Adam and gradient clipping), but as
one stack: the library's own training step under ``torch.func.vmap``
(:mod:`replication.sae.batched`), one dispatch for the six SAEs instead of six. Each SAE is
scored on held-out activations: fraction of variance unexplained (FVU), L0 and the fraction
of latents that never fire (dead).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass

import torch
from jaxtyping import Float, Int
from sae_lens import SAE, StandardTrainingSAE, StandardTrainingSAEConfig
from torch import Tensor
from transformer_lens import HookedTransformer

from replication.cache import ArtifactCache
from replication.locality.corpus import sample_windows
from replication.sae.batched import SAEStack
from replication.sae.metrics import fraction_variance_unexplained, l0
from replication.sae.train import SAETrainConfig, train_stack

NORM_ESTIMATE_BATCHES = 16  # batches the input scaling is estimated on (n_batches_for_norm_estimate)


@dataclass(frozen=True)
class LocalSAEConfig:
    """SAE training on the local model's residual stream.

    Args:
        expansion: latents per residual dimension (d_sae = expansion * d_model).
        l1_coefficient: weight of the decoder-norm-weighted L1 penalty (inputs normalised to
            mean norm sqrt(d_model)).
        lr: Adam learning rate (linear warm-up over 5% of the steps, linear decay to 0 over
            the last 20%).
        steps: training steps; batch_size: activations per step.
        train_sequences: training-file sequences (of n_ctx tokens) whose activations form the
            buffer; eval_sequences: held-out sequences the metrics are measured on.
        seed: sequence sampling, SAE initialisation and batch order.
    """

    expansion: int = 4
    l1_coefficient: float = 1.5
    lr: float = 1e-3
    steps: int = 2000
    batch_size: int = 512
    train_sequences: int = 1024
    eval_sequences: int = 128
    seed: int = 0


def resid_hook(layer: int) -> str:
    return f"blocks.{layer}.hook_resid_post"


@torch.no_grad()
def residual_activations(model: HookedTransformer, tokens: Int[Tensor, "batch pos"],
                         hooks: list[str], batch: int = 64) -> dict[str, Float[Tensor, "n d"]]:
    """Activations at ``hooks`` for every token of ``tokens``, flattened over batch and pos."""
    parts: dict[str, list[Tensor]] = {h: [] for h in hooks}
    last = max(int(h.split(".")[1]) for h in hooks)
    for i in range(0, len(tokens), batch):
        _, acts = model.run_with_cache(tokens[i:i + batch].to(model.cfg.device),
                                       names_filter=hooks, stop_at_layer=last + 1)
        for h in hooks:
            parts[h].append(acts[h].flatten(0, 1).cpu())
    return {h: torch.cat(v) for h, v in parts.items()}


def shuffled_batches(acts: dict[str, Tensor], batch_size: int,
                     generator: torch.Generator) -> Iterator[dict[str, Tensor]]:
    """Endless seeded epochs over the buffer; every hook sees the same rows."""
    n = len(next(iter(acts.values())))
    while True:
        order = torch.randperm(n, generator=generator)
        for i in range(0, n - batch_size + 1, batch_size):
            idx = order[i:i + batch_size]
            yield {h: a[idx] for h, a in acts.items()}


@torch.no_grad()
def sae_metrics(sae: SAE, acts: Float[Tensor, "n d"]) -> dict[str, float]:
    """FVU, L0 (mean latents > 0 per token), dead fraction and live latents on ``acts``."""
    feats = sae.encode(acts)
    fired = (feats > 0).any(0)
    return {"fvu": fraction_variance_unexplained(acts, sae.decode(feats)).item(),
            "l0": l0(feats).item(),
            "dead_fraction": 1.0 - fired.float().mean().item(),
            "live_latents": int(fired.sum().item()), "d_sae": sae.cfg.d_sae}


def train_saes(cfg: LocalSAEConfig, acts: dict[str, Tensor],
               device: torch.device) -> dict[str, StandardTrainingSAE]:
    """Train one SAE per hook of ``acts`` in lockstep, as sae-lens's ``MultiSAETrainer`` does:
    the first ``NORM_ESTIMATE_BATCHES`` batches set each hook's input scale sqrt(d_in) / mean
    norm (``expected_average_only_in``), the following ``steps`` batches train, and the scale is
    folded into the trained weights."""
    torch.manual_seed(cfg.seed)
    d_in = next(iter(acts.values())).shape[-1]
    saes = [StandardTrainingSAE(StandardTrainingSAEConfig(
        d_in=d_in, d_sae=cfg.expansion * d_in, l1_coefficient=cfg.l1_coefficient,
        l1_warm_up_steps=cfg.steps // 10, normalize_activations="expected_average_only_in",
        device=str(device))) for _ in acts]
    batches = shuffled_batches(acts, cfg.batch_size, torch.Generator().manual_seed(cfg.seed))
    estimate = [next(batches) for _ in range(NORM_ESTIMATE_BATCHES)]
    factors = [d_in ** 0.5 * sum(len(b[h]) for b in estimate)
               / sum(b[h].norm(dim=-1).float().sum().item() for b in estimate) for h in acts]
    scale = torch.tensor(factors, device=device)[:, None, None]
    stack = SAEStack(saes).to(device)

    def next_batch() -> Float[Tensor, "hooks batch d_in"]:
        batch = next(batches)
        return torch.stack([batch[h] for h in acts]).to(device) * scale

    train_stack(stack, next_batch, SAETrainConfig(
        steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, lr_warm_up_steps=cfg.steps // 20,
        lr_decay_steps=cfg.steps // 5, l1_warm_up_steps=cfg.steps // 10),
        description=f"local SAEs x{len(acts)}")
    trained = dict(zip(acts, stack.unstack(), strict=True))
    for sae, factor in zip(trained.values(), factors, strict=True):
        sae.fold_activation_norm_scaling_factor(factor)
    return trained


def local_saes(cache: ArtifactCache, cfg: LocalSAEConfig, model: HookedTransformer,
               train_stream: Int[Tensor, " n"], heldout_stream: Int[Tensor, " m"],
               model_key: str) -> tuple[dict[int, SAE], dict[int, dict[str, float]], str]:
    """Build (or load) an SAE for every layer of ``model``; returns ``(saes, metrics)`` by layer
    and the entry's key.

    ``model_key`` is the key of ``model``'s cache entry (upstream of this one).
    """
    layers = list(range(model.cfg.n_layers))
    hooks = [resid_hook(layer) for layer in layers]
    device = torch.device(model.cfg.device)
    config = asdict(cfg)

    def build():
        train_windows = sample_windows(train_stream, cfg.train_sequences, model.cfg.n_ctx, cfg.seed)
        eval_windows = sample_windows(heldout_stream, cfg.eval_sequences, model.cfg.n_ctx, cfg.seed)
        trained = train_saes(cfg, residual_activations(model, train_windows, hooks), device)
        eval_acts = residual_activations(model, eval_windows, hooks)
        tensors, meta = {}, {}
        for layer, hook in zip(layers, hooks, strict=True):
            sae = inference_sae(trained[hook].cfg.get_inference_sae_cfg_dict(),
                                trained[hook].state_dict(), device)
            tensors.update({f"{layer}.{k}": v for k, v in sae.state_dict().items()})
            meta[str(layer)] = {"cfg": sae.cfg.to_dict(),
                                "metrics": sae_metrics(sae, eval_acts[hook].to(device))}
        return tensors, meta

    tensors, meta = cache.get_or_build("locality-sae", config, build, upstream=[model_key])
    saes = {layer: inference_sae(meta[str(layer)]["cfg"],
                                 {k.split(".", 1)[1]: v for k, v in tensors.items()
                                  if k.split(".", 1)[0] == str(layer)}, device)
            for layer in layers}
    metrics = {layer: meta[str(layer)]["metrics"] for layer in layers}
    return saes, metrics, ArtifactCache.key(config, build, [model_key])


def inference_sae(cfg_dict: dict, state: dict[str, Tensor], device: torch.device) -> SAE:
    """An inference SAE (sae-lens class chosen by ``cfg_dict['architecture']``) with ``state``."""
    sae = SAE.from_dict({**cfg_dict, "device": str(device)})
    sae.load_state_dict({k: v.to(device) for k, v in state.items()})
    return sae.eval()
