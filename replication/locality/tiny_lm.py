"""The local preset's language model: a small transformer-lens model trained on stdlib code.

Trained with transformer-lens's own training loop (``transformer_lens.train``) on
fixed-length chunks of the stdlib training stream; its loss is measured on windows of the
held-out files. The untrained control is the same architecture at the same initialisation.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import torch
from jaxtyping import Int
from torch import Tensor
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformer_lens.train import HookedTransformerTrainConfig, train

from replication import smoke
from replication.cache import ArtifactCache
from replication.locality.corpus import sample_windows


@dataclass(frozen=True)
class TinyLMConfig:
    """Architecture and training of the local model.

    Args:
        n_layers, d_model, n_heads, d_mlp, n_ctx: the transformer (d_head = d_model / n_heads).
        steps: optimiser steps (0 for the untrained control).
        batch_size: sequences of ``n_ctx`` tokens per step.
        lr, weight_decay, warmup_steps: AdamW and its linear warm-up.
        eval_windows: held-out windows the loss is measured on.
        seed: initialisation and data order.
    """

    n_layers: int = 6
    d_model: int = 64
    n_heads: int = 4
    d_mlp: int = 256
    n_ctx: int = 64
    steps: int = 1500
    batch_size: int = 16
    lr: float = 3e-3
    weight_decay: float = 0.01
    warmup_steps: int = 100
    eval_windows: int = 256
    seed: int = 0


def hooked_config(cfg: TinyLMConfig, vocab_size: int,
                  device: torch.device) -> HookedTransformerConfig:
    return HookedTransformerConfig(
        n_layers=cfg.n_layers, d_model=cfg.d_model, n_heads=cfg.n_heads,
        d_head=cfg.d_model // cfg.n_heads, d_mlp=cfg.d_mlp, n_ctx=cfg.n_ctx,
        d_vocab=vocab_size, act_fn="gelu", normalization_type="LN",
        positional_embedding_type="standard", default_prepend_bos=False,
        seed=cfg.seed, device=str(device),
    )


def chunks(stream: Int[Tensor, " n"], n_ctx: int) -> list[dict[str, Tensor]]:
    """The stream cut into consecutive ``n_ctx``-token sequences, as transformer-lens's
    ``train`` expects them (``{"tokens": ...}`` rows)."""
    n = stream.numel() // n_ctx
    return [{"tokens": row} for row in stream[: n * n_ctx].view(n, n_ctx)]


@torch.no_grad()
def lm_loss(model: HookedTransformer, windows: Int[Tensor, "batch pos"], batch: int = 64) -> float:
    """Mean next-token cross-entropy (nats) over ``windows``."""
    losses = [model(windows[i:i + batch].to(model.cfg.device), return_type="loss").item()
              for i in range(0, len(windows), batch)]
    return float(sum(losses) / len(losses))


def train_lm(model: HookedTransformer, cfg: TinyLMConfig, train_stream: Int[Tensor, " n"],
             device: torch.device) -> None:
    """Train ``model`` in place for ``cfg.steps`` steps with transformer-lens's loop (in a smoke
    run, :func:`replication.smoke.steps_to_run` of them, timed from the second step's forward
    pass and recorded with :func:`replication.smoke.note_loop`)."""
    steps = smoke.steps_to_run(cfg.steps)
    started: list[float] = []  # the start of each step (its forward pass)
    timer = model.register_forward_pre_hook(lambda *_: started.append(time.perf_counter()))
    try:
        train(model, HookedTransformerTrainConfig(
            num_epochs=1, batch_size=cfg.batch_size, lr=cfg.lr,
            weight_decay=cfg.weight_decay, optimizer_name="AdamW",
            warmup_steps=cfg.warmup_steps, max_steps=steps - 1, seed=cfg.seed,
            device=device, print_every=None,
        ), chunks(train_stream, cfg.n_ctx))
    finally:
        timer.remove()
    smoke.note_loop("local LM", cfg.steps, steps, time.perf_counter() - started[min(1, steps - 1)])


def tiny_lm(cache: ArtifactCache, cfg: TinyLMConfig, vocab_size: int,
            train_stream: Int[Tensor, " n"], heldout_stream: Int[Tensor, " m"],
            device: torch.device, corpus_key: str) -> tuple[HookedTransformer, dict]:
    """Build (or load) the local model; ``meta`` holds its held-out loss in nats and bits and
    ``key``, its cache entry's key.

    ``corpus_key`` is the key of the tokenizer and token streams' entry (upstream of this one).
    """
    config = {**asdict(cfg), "vocab_size": vocab_size}
    model = HookedTransformer(hooked_config(cfg, vocab_size, device))
    eval_windows = sample_windows(heldout_stream, cfg.eval_windows, cfg.n_ctx, cfg.seed)

    def build():
        if cfg.steps > 0:
            train_lm(model, cfg, train_stream, device)
        model.eval()
        loss = lm_loss(model, eval_windows)
        meta = {"heldout_loss_nats": loss, "heldout_loss_bits": loss / math.log(2),
                "uniform_loss_nats": math.log(vocab_size), "train_steps": cfg.steps,
                "train_tokens": cfg.steps * cfg.batch_size * cfg.n_ctx}
        return dict(model.state_dict()), meta

    tensors, meta = cache.get_or_build("locality-lm", config, build, upstream=[corpus_key])
    model.load_state_dict({k: v.to(device) for k, v in tensors.items()})
    model.eval()
    return model, {**meta, "key": ArtifactCache.key(config, build, [corpus_key])}
