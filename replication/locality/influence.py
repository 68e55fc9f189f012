"""Influence of input positions on SAE features and on the reconstructed token vector.

For a window of N tokens, x[t', mu] is the residual stream entering block 0 (token plus
positional embedding; ``blocks.0.hook_resid_pre``) and y = resid at the hooked layer and the
read-out position t (the last one by default). For f = SAE.encode(y) and the reconstruction
y~ = SAE.decode(f) (sae-analysis, paper/paper.tex, eqs. influence_strength and
token_influence)

    J_a(t') = sum_mu (d f_a / d x[t', mu])^2           (feature influence)
    R(t')   = sum_nu sum_mu (d y~_nu / d x[t', mu])^2  (token-vector influence)

A batch of windows shares one forward pass, which serves every layer. Windows are
independent in a transformer, so one cotangent row can carry a different output of every
window at once: its gradient lands in each window's own slice of x. Per layer, one batched
backward (``torch.autograd.grad`` with ``is_grads_batched=True``, a vmap over the backward
pass) then gives every window's gradients, in one of two forms:

- ``features`` (exact; every SAE whose reconstruction is affine in its latents): one row per
  *nonzero* latent at the read-out. y~ = D f + b moves only with them, so R follows from their
  gradients g and the reconstruction's directions D: R(t') = sum_mu g^T D D^T g. That is L0
  rows, where the direct form needs the active features plus d_model rows of y~ (the local
  SAEs: about 10 rows for 74).
- ``probes`` (SAEs that normalise by their input's own norm or statistics, whose y~ is not
  affine in f): one row per active feature plus one per direction of y~ (exact) or
  ``token_probes`` Gaussian probes of y~ (a Hutchinson estimate of R, for wide models).

The per-row loop (``batched=False``: one backward per output row, as the paper's appendix
computes J) is the naive baseline the batched forms are checked and timed against.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from jaxtyping import Bool, Float, Int
from sae_lens import SAE
from torch import Tensor

from replication.settings import check_choice

INPUT_HOOK = "blocks.0.hook_resid_pre"
INPUT_DEPENDENT_NORMALIZATIONS = ("layer_norm", "constant_norm_rescale")  # decode not affine in f
FORMS = ("features", "probes")


@dataclass
class LayerInfluence:
    """What the read-out positions of a batch of windows depend on, at one layer.

    Args:
        layer: the layer index.
        window: shape ``(k,)``: the window (row of the batch) of each event.
        features: shape ``(k,)``: the SAE feature of each event (active at its window's
            read-out: activation > threshold), windows in order, features ascending.
        activations: shape ``(k,)``: their activations.
        feature_influence: J, shape ``(k, pos)``: squared input-gradient norm per position.
        token_influence: R, shape ``(w, pos)``: the same for each window's reconstruction y~.
        frequency: shape ``(d_sae,)``: at how many of the batch's positions each feature is
            active (the count behind the paper's activation frequency).
    """

    layer: int
    window: Int[Tensor, " k"]
    features: Int[Tensor, " k"]
    activations: Float[Tensor, " k"]
    feature_influence: Float[Tensor, "k pos"]
    token_influence: Float[Tensor, "w pos"]
    frequency: Int[Tensor, " d_sae"]


def input_gradients(outputs: Float[Tensor, "w n_out"], x: Float[Tensor, "w pos d"],
                    cotangents: Float[Tensor, "m w n_out"], *, batched: bool = True,
                    chunk: int | None = None) -> Float[Tensor, "m w pos d"]:
    """Vector-Jacobian products ``cotangents[i] @ d outputs / d x`` for every row ``i``.

    With ``batched`` the rows (``chunk`` at a time, all at once by default) come from one
    vmapped backward pass; without it, from one backward pass per row (the naive baseline).
    """
    step = (chunk or len(cotangents)) if batched else 1
    parts = []
    for i in range(0, len(cotangents), step):
        block = cotangents[i:i + step]
        (grad,) = torch.autograd.grad(outputs, x, block if batched else block[0],
                                      retain_graph=True, is_grads_batched=batched)
        parts.append(grad if batched else grad[None])
    return torch.cat(parts)


def one_hot_rows(n: int, w: int, like: Tensor) -> Float[Tensor, "n w n"]:
    """Cotangent rows ``i``: a one-hot on output ``i`` of every window at once."""
    return torch.eye(n, dtype=like.dtype, device=like.device)[:, None, :].expand(n, w, n)


def active_slots(feats: Float[Tensor, "w d_sae"],
                 threshold: float) -> tuple[Int[Tensor, "w kmax"], Bool[Tensor, "w kmax"]]:
    """Per window, the active features (ascending) padded to the batch's largest count:
    ``(index, valid)``; padded slots point at feature 0 and are not valid."""
    active = feats > threshold
    kmax = int(active.sum(1).max().item()) if active.numel() else 0
    order = torch.sort((~active).to(torch.int8), dim=1, stable=True).indices[:, :kmax]
    return order, active.gather(1, order)


def events(layer: int, feats: Float[Tensor, "w d_sae"], index: Int[Tensor, "w kmax"],
           valid: Bool[Tensor, "w kmax"], influence: Float[Tensor, "w kmax pos"],
           token: Float[Tensor, "w pos"], frequency: Int[Tensor, " d_sae"]) -> LayerInfluence:
    """Flatten the padded per-window slots of one layer into its events."""
    window = torch.arange(len(index), device=index.device)[:, None].expand_as(index)
    return LayerInfluence(
        layer=layer, window=window[valid].cpu(), features=index[valid].cpu(),
        activations=feats.gather(1, index)[valid].detach().float().cpu(),
        feature_influence=influence[valid].detach().float().cpu(),
        token_influence=token.detach().float().cpu(), frequency=frequency.cpu())


def decoder_rows(sae: SAE, index: Int[Tensor, "w k"]) -> Float[Tensor, "w k d"]:
    """The reconstruction's derivative along each of ``index``'s features: decode(e_a) - decode(0)
    (exact, the reconstruction being affine in the latents)."""
    w, k = index.shape
    unit = torch.zeros(w * k + 1, sae.cfg.d_sae, dtype=sae.W_dec.dtype, device=index.device)
    unit[torch.arange(w * k), index.flatten()] = 1
    out = sae.decode(unit)
    return (out[:-1] - out[-1]).reshape(w, k, -1)


def feature_influence(sae: SAE, feats: Float[Tensor, "w d_sae"], x: Float[Tensor, "w pos d"],
                      threshold: float, batched: bool, chunk: int | None,
                      ) -> tuple[Int[Tensor, "w k"], Bool[Tensor, "w k"], Float[Tensor, "w k pos"],
                                 Float[Tensor, "w pos"]]:
    """Exact J and R from one cotangent row per nonzero feature of each window: y~ moves only
    with its nonzero latents (zero ones are locally constant: ReLU, JumpReLU and TopK alike), so
    d y~/dx = sum_a D_a df_a/dx with D_a the reconstruction's direction of latent a, and
    R(t') = sum_mu g(t', mu)^T (D D^T) g(t', mu) over the latents' gradients g. Returns
    ``(index, active, J, R)``: the nonzero latents' slots, which of them exceed ``threshold``,
    their J (every slot) and R."""
    index, valid = active_slots(feats.detach(), 0.0)
    outputs = feats.gather(1, index) * valid
    g = input_gradients(outputs, x, one_hot_rows(index.shape[1], len(feats), outputs),
                        batched=batched, chunk=chunk).float()                # (k, w, pos, d)
    with torch.no_grad():
        D = decoder_rows(sae, index).float() * valid[..., None]
        R = torch.einsum("kwtm,wkl,lwtm->wt", g, D @ D.transpose(1, 2), g)
    return index, valid & (outputs.detach() > threshold), g.pow(2).sum(-1).transpose(0, 1), R


def probe_influence(outputs_feats: Float[Tensor, "w kmax"], reconstruction: Float[Tensor, "w d"],
                    x: Float[Tensor, "w pos d"], token_probes: int | None, batched: bool,
                    chunk: int | None, generator: torch.Generator | None,
                    ) -> tuple[Float[Tensor, "w kmax pos"], Float[Tensor, "w pos"]]:
    """J and R from cotangent rows through the model: one row per active-feature slot, then
    one per direction of y~ (exact) or ``token_probes`` Gaussian probes scaled by
    1/sqrt(probes) (the Hutchinson estimate of R, shared by the batch's windows)."""
    w, kmax = outputs_feats.shape
    d = reconstruction.shape[1]
    if token_probes is None:
        probes = torch.eye(d)
    else:
        probes = torch.randn(token_probes, d, generator=generator) / token_probes ** 0.5
    probes = probes.to(reconstruction.device, reconstruction.dtype)
    cot = torch.zeros(kmax + len(probes), w, kmax + d, dtype=reconstruction.dtype,
                      device=reconstruction.device)
    cot[:kmax, :, :kmax] = one_hot_rows(kmax, w, reconstruction)
    cot[kmax:, :, kmax:] = probes[:, None, :]
    outputs = torch.cat([outputs_feats, reconstruction], dim=1)
    sq = input_gradients(outputs, x, cot, batched=batched, chunk=chunk).float().pow(2).sum(-1)
    return sq[:kmax].transpose(0, 1), sq[kmax:].sum(0)


def batch_influence(
    model, saes: dict[int, SAE], hooks: dict[int, str], threshold: float,
    windows: Int[Tensor, "w pos"], *, read_pos: int = -1, token_probes: int | None = None,
    chunk: int | None = None, batched: bool = True, generator: torch.Generator | None = None,
    form: str | None = None,
) -> list[LayerInfluence]:
    """Feature and token-vector influence at every layer of ``saes`` for a batch of windows.

    Args:
        model: a transformer-lens ``HookedTransformer`` or ``TransformerBridge``;
            ``hooks[layer]`` names the hook each ``saes[layer]`` reads.
        threshold: a feature counts as active when its activation exceeds this.
        windows: token ids, shape ``(w, pos)``.
        read_pos: the read-out position (default: the last).
        token_probes: the ``probes`` form's Gaussian probes of y~ (None: one row per
            direction of y~, exact).
        chunk: most cotangent rows per backward pass (bounds memory on wide models).
        batched: False runs one backward per cotangent row (the naive baseline).
        generator: draws the probes.
        form: ``features`` or ``probes`` (module docstring); None: ``features`` unless the
            SAE's reconstruction depends on its input's norm or statistics.
    """
    if form is not None:
        check_choice("influence form", form, FORMS)
    captured: dict[str, Tensor] = {}

    def make_leaf(value: Tensor, hook) -> Tensor:
        captured["x"] = value.detach().requires_grad_(True)
        return captured["x"]

    def keep(value: Tensor, hook, name: str) -> None:
        captured[name] = value

    layers = sorted(saes)
    results = []
    with torch.enable_grad():
        model.run_with_hooks(
            windows.to(model.cfg.device), return_type=None, stop_at_layer=layers[-1] + 1,
            fwd_hooks=[(INPUT_HOOK, make_leaf),
                       *((hooks[layer], partial(keep, name=hooks[layer])) for layer in layers)],
        )
        for layer in layers:
            sae = saes[layer]
            resid = captured[hooks[layer]].to(sae.W_enc.dtype)                # (w, pos, d_model)
            with torch.no_grad():
                frequency = (sae.encode(resid) > threshold).sum((0, 1))        # (d_sae,)
            y = resid[:, read_pos]
            feats = sae.encode(y)                                              # (w, d_sae)
            affine = sae.cfg.normalize_activations not in INPUT_DEPENDENT_NORMALIZATIONS
            if form == "probes" or not affine:
                index, valid = active_slots(feats.detach(), threshold)
                J, R = probe_influence(feats.gather(1, index) * valid, sae.decode(feats),
                                       captured["x"], token_probes, batched, chunk, generator)
            else:
                index, valid, J, R = feature_influence(sae, feats, captured["x"], threshold,
                                                       batched, chunk)
            results.append(events(layer, feats, index, valid, J, R, frequency))
    return results
