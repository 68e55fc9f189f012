"""Influence of input positions on SAE features and on the reconstructed token vector.

For a window of N tokens, x[t', mu] is the residual stream entering block 0 (token plus
positional embedding; ``blocks.0.hook_resid_pre``) and y = resid at the hooked layer and the
read-out position t (the last one by default). For f = SAE.encode(y) and the reconstruction
y~ = SAE.decode(f) (sae-analysis, paper/paper.tex, eqs. influence_strength and
token_influence)

    J_a(t') = sum_mu (d f_a / d x[t', mu])^2           (feature influence)
    R(t')   = sum_nu sum_mu (d y~_nu / d x[t', mu])^2  (token-vector influence)

One forward pass per window serves every layer; per layer, every active feature and every
direction of y~ get their gradients from one batched backward (``torch.autograd.grad`` with
``is_grads_batched=True``, a vmap over the backward pass), not one backward each.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from sae_lens import SAE
from torch import Tensor
from transformer_lens import HookedTransformer

INPUT_HOOK = "blocks.0.hook_resid_pre"


@dataclass
class LayerInfluence:
    """What one layer's read-out position depends on, for one window.

    Args:
        layer: the layer index.
        features: indices of the SAE features active at the read-out (activation > threshold).
        activations: their activations, shape ``(k,)``.
        feature_influence: J, shape ``(k, pos)``: squared input-gradient norm per position.
        token_influence: R, shape ``(pos,)``: the same for the reconstructed vector y~.
        frequency: shape ``(d_sae,)``: at how many of the window's positions each feature is
            active (the count behind the paper's activation frequency).
    """

    layer: int
    features: Int[Tensor, " k"]
    activations: Float[Tensor, " k"]
    feature_influence: Float[Tensor, "k pos"]
    token_influence: Float[Tensor, " pos"]
    frequency: Int[Tensor, " d_sae"]


def squared_input_gradients(
    outputs: Float[Tensor, " n_out"], x: Float[Tensor, "*batch pos d"],
    cotangents: Float[Tensor, "m n_out"], *, batched: bool = True, chunk: int | None = None,
) -> Float[Tensor, "m pos"]:
    """``G[i, t'] = sum_mu ((cotangents[i] @ d outputs / d x)[t', mu])^2``.

    With ``batched`` the vector-Jacobian products of all cotangent rows (``chunk`` rows at a
    time, all at once by default) come from one vmapped backward pass; without it, from one
    backward pass per row (the naive baseline the batched form is measured against).
    """
    step = (chunk or len(cotangents)) if batched else 1
    rows = []
    for i in range(0, len(cotangents), step):
        block = cotangents[i:i + step]
        (grad,) = torch.autograd.grad(outputs, x, block if batched else block[0],
                                      retain_graph=True, is_grads_batched=batched)
        grad = grad if batched else grad[None]
        rows.append(grad.float().pow(2).sum(-1).reshape(len(block), -1))
    return torch.cat(rows)


def read_out_cotangents(n_features: int, d_model: int, token_probes: int | None,
                        generator: torch.Generator | None) -> Float[Tensor, "m n_out"]:
    """Cotangents on ``cat(active features, y~)``: one-hot per feature, then the token vector's
    rows: one-hot per direction of y~ (exact R), or ``token_probes`` Gaussian probes
    scaled by 1/sqrt(probes) (the Hutchinson estimate of R, for wide models)."""
    if token_probes is None:
        return torch.eye(n_features + d_model)
    probes = torch.randn(token_probes, d_model, generator=generator) / token_probes ** 0.5
    return torch.block_diag(torch.eye(n_features), probes)


def window_influence(
    model: HookedTransformer, saes: dict[int, SAE], hooks: dict[int, str], threshold: float,
    tokens: Int[Tensor, " pos"], *, read_pos: int = -1, token_probes: int | None = None,
    chunk: int | None = None, batched: bool = True, generator: torch.Generator | None = None,
) -> list[LayerInfluence]:
    """Feature and token-vector influence at every layer of ``saes`` for one window.

    Args:
        model: the transformer; ``hooks[layer]`` names the hook each ``saes[layer]`` reads.
        threshold: a feature counts as active when its activation exceeds this.
        tokens: the window, shape ``(pos,)``.
        read_pos: the read-out position (default: the last).
        token_probes: ``None`` for the exact R, else the number of random probes.
        chunk: most cotangent rows per backward pass (bounds memory on wide models).
        batched: False runs the per-output backward loop instead (the baseline).
    """
    captured: dict[str, Tensor] = {}

    def make_leaf(value: Tensor, hook) -> Tensor:
        captured["x"] = value.detach().requires_grad_(True)
        return captured["x"]

    def keep(value: Tensor, hook) -> None:
        captured[hook.name] = value

    layers = sorted(saes)
    with torch.enable_grad():
        model.run_with_hooks(
            tokens[None].to(model.cfg.device), return_type=None, stop_at_layer=layers[-1] + 1,
            fwd_hooks=[(INPUT_HOOK, make_leaf), *((hooks[layer], keep) for layer in layers)],
        )
        results = []
        for layer in layers:
            resid = captured[hooks[layer]][0]                          # (pos, d_model)
            with torch.no_grad():
                frequency = (saes[layer].encode(resid) > threshold).sum(0)  # (d_sae,)
            feats = saes[layer].encode(resid[read_pos])
            active = torch.nonzero(feats > threshold).flatten()
            reconstruction = saes[layer].decode(feats)
            outputs = torch.cat([feats[active], reconstruction])
            cot = read_out_cotangents(len(active), reconstruction.numel(), token_probes,
                                      generator)
            grads = squared_input_gradients(outputs, captured["x"],
                                            cot.to(outputs.device, outputs.dtype),
                                            batched=batched, chunk=chunk)
            results.append(LayerInfluence(
                layer=layer, features=active.cpu(),
                activations=feats[active].detach().float().cpu(),
                feature_influence=grads[:len(active)].cpu(),
                token_influence=grads[len(active):].sum(0).cpu(),
                frequency=frequency.cpu(),
            ))
    return results
