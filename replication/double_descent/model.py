"""The ReLU-output toy model's closed-form loss and gradients on packed, sparse training sets.

Same model and loss as :class:`~replication.toy.model.ToyModel` (h = W x, x' = ReLU(Wᵀh + b),
Σ_points w Σ_feats I (x − x')²), computed so that the 99%-zero inputs cost only their non-zero
entries. With r = ReLU(Wᵀh + b), the live mask r > 0 and E = (r − x)·[r > 0]:

* the encoder h = W x and its gradient Wᵀ-side, ∂L/∂W[:, f] += Σ (∂L/∂h) x_f, are sums over
  the non-zero entries of x;
* the dense work is two sums of r: M = r (I ∘ [W; b])ᵀ per slot and [h; 1] diag(w) r per chunk,
  the decoder-and-bias gradient. Every term with x is a correction at the non-zero entries;
* the loss needs no extra pass over r: Σ_f I_f r_f² = Σ_f I_f r_f (Wᵀh + b)_f = [h; 1] · M.

On CPU the whole step is one fused pass (:mod:`replication.double_descent.kernel`); elsewhere
(or where the kernel cannot be compiled) it is the portable torch code below: sparse products and
batched matrix products over memory-sized groups of chunks.

:class:`PackedBatches` is the batch source that hands these gradients to
:func:`replication.toy.train.train`; the model itself is a plain :class:`ToyModel`.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from replication.double_descent.kernel import fused_available, fused_packed_step
from replication.double_descent.packing import PackedSets, with_values
from replication.toy.model import ToyModel
from replication.toy.train import Gradients


def grouped_dense_products(
    h1: Float[Tensor, "slots K"], sets: PackedSets, decoder: Float[Tensor, "inst K feats"],
    decoder_imp: Float[Tensor, "inst K feats"],
) -> tuple[Float[Tensor, "slots K"], Float[Tensor, "chunks K feats"]]:
    """M = r (I ∘ [W; b])ᵀ per slot and [h; 1] diag(w) r per chunk, as three batched products
    per group of chunks."""
    C, K = sets.chunk_size, h1.shape[1]
    chunks = len(sets.chunk_instance)
    weighted_h1 = (h1 * sets.slot_weight.view(-1, 1)).view(chunks, C, K).transpose(1, 2)
    M_t = torch.empty(chunks, K, C, device=h1.device)
    G = torch.empty(chunks, K, decoder.shape[2], device=h1.device)
    for c0, c1 in sets.groups:  # memory-sized groups of chunks, not a loop over T
        owner = sets.chunk_instance[c0:c1]
        r = torch.bmm(h1[c0 * C:c1 * C].view(-1, C, K), decoder[owner]).clamp_min_(0)
        torch.bmm(decoder_imp[owner], r.transpose(1, 2), out=M_t[c0:c1])
        torch.bmm(weighted_h1[c0:c1], r, out=G[c0:c1])
    return M_t.transpose(1, 2).reshape(-1, K), G


def packed_loss_and_grads(model: ToyModel, sets: PackedSets,
                          importance: Float[Tensor, "inst feats"]) -> Gradients:
    """Loss per instance and its gradients with respect to W and b (closed form).

    The example weights are the packed sets' own (1/T per point, 0 on padding).
    """
    if model.activation != "relu":
        raise ValueError(f"packed training needs a 'relu' toy model, got {model.activation!r}")
    n_inst, m, n = model.W.shape
    if (sets.n_instances, sets.n_features) != (n_inst, n):
        raise ValueError(f"packed sets of {sets.n_instances} instances × {sets.n_features} "
                         f"features do not fit a model of {n_inst} instances × {n} features")
    if fused_available(model.W.device, m):
        return fused_loss_and_grads(model, sets, importance)
    return portable_loss_and_grads(model, sets, importance)


@torch.no_grad()
def fused_loss_and_grads(model: ToyModel, sets: PackedSets,
                         importance: Float[Tensor, "inst feats"]) -> Gradients:
    """:func:`packed_loss_and_grads` by the fused CPU kernel."""
    m = model.W.shape[1]
    decoder = torch.cat([model.W, model.b], 1)  # (inst, m+1, feats): [W; b]
    loss, grad, encoder_grad = fused_packed_step(decoder, importance, sets)
    grad.mul_(2 * importance[:, None, :])
    grad[:, :m] += encoder_grad
    return loss, grad[:, :m].contiguous(), grad[:, m:].contiguous()


@torch.no_grad()
def portable_loss_and_grads(model: ToyModel, sets: PackedSets,
                            importance: Float[Tensor, "inst feats"]) -> Gradients:
    """:func:`packed_loss_and_grads` in torch operations (any device)."""
    n_inst, m, n = model.W.shape
    value, weight = sets.entry_value, sets.slot_weight.view(-1)  # weight: (slots,)
    decoder = torch.cat([model.W, model.b], 1)  # (inst, m+1, feats): [W; b]
    decoder_imp = decoder * importance[:, None, :]
    decoder_rows = decoder.transpose(1, 2).reshape(n_inst * n, m + 1)  # [W; b][k, :, f] at k·n + f
    w_rows = decoder_rows[:, :m]

    h1 = torch.cat([sets.inputs @ w_rows, torch.ones_like(weight)[:, None]], 1)  # [h; 1]
    M, chunk_grad = grouped_dense_products(h1, sets, decoder, decoder_imp)
    # r at the non-zero entries of x, and I · [r > 0] there
    r_entry = (h1.index_select(0, sets.entry_slot) * decoder_rows.index_select(0, sets.entry_row)
               ).sum(1).clamp_min_(0)
    entry_imp = importance.reshape(-1)[sets.entry_row]
    live_imp = torch.where(r_entry > 0, entry_imp, 0.0)

    # Loss: Σ w Σ_f I_f r_f² − 2 Σ_entries w I r x + Σ_entries w I x².
    loss = torch.zeros(n_inst, device=model.W.device)
    loss.index_add_(0, sets.chunk_instance,
                    (weight * (M * h1).sum(1)).view(-1, sets.chunk_size).sum(1))
    loss.index_add_(0, sets.entry_instance,
                    sets.entry_weight * entry_imp * value * (value - 2 * r_entry))

    # ∂L/∂h = 2 w W (I ∘ E): the dense part from M, minus the x part at the entries.
    grad_h = M[:, :m] - with_values(sets.inputs, value * live_imp) @ w_rows
    grad_h.mul_(2 * weight[:, None])
    # ∂L/∂[W; b] = 2 I ∘ ([h; 1] diag(w) Eᵀ) from the decoder, + (∂L/∂h) xᵀ from the encoder.
    decoder_x_part = -2 * sets.entry_weight * value * live_imp
    sparse_grad = with_values(sets.inputs_t, decoder_x_part[sets.transposed_order]) @ h1
    sparse_grad[:, :m] += sets.inputs_t @ grad_h
    grad = torch.zeros_like(decoder).index_add_(0, sets.chunk_instance, chunk_grad)
    grad.mul_(2 * importance[:, None, :])
    grad += sparse_grad.view(n_inst, n, m + 1).transpose(1, 2)
    return loss, grad[:, :m].contiguous(), grad[:, m:].contiguous()


class PackedBatches:
    """The batch source of full-batch training on fixed, packed training sets.

    Every step sees the same sets; :meth:`loss_and_grads` is the closed form above, given to
    :func:`~replication.toy.train.train` in place of the model's own dense one.
    """

    def __init__(self, sets: PackedSets):
        self.sets = sets

    def __call__(self) -> tuple[PackedSets, None]:
        return self.sets, None

    def loss_and_grads(self, model: ToyModel, sets: PackedSets,
                       importance: Float[Tensor, "inst feats"], example_weight: None) -> Gradients:
        if example_weight is not None:
            raise ValueError("packed training sets carry their own example weights; pass None")
        return packed_loss_and_grads(model, sets, importance)
