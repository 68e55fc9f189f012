"""The ReLU-output toy model's closed-form loss and gradients on packed, sparse training sets.

Same model and loss as :class:`~replication.toy.model.ToyModel` (h = W x, x' = ReLU(Wᵀh + b),
Σ_points w Σ_feats I (x − x')²), computed so that the 99%-zero inputs cost only their non-zero
entries. With r = ReLU(Wᵀh + b), the live mask r > 0 and E = (r − x)·[r > 0]:

* the encoder h = W x and its gradient Wᵀ-side, ∂L/∂W[:, f] += Σ (∂L/∂h) x_f, are sums over
  the non-zero entries of x;
* the dense work is three batched products per chunk group: r = [h; 1]ᵀ[W; b] (ReLU'd),
  M = r (I ∘ [W; b])ᵀ and [h; 1] diag(w) r, the decoder-and-bias gradient. Every term with x
  is a correction at the non-zero entries;
* the loss needs no extra pass over r: Σ_f I_f r_f² = Σ_f I_f r_f (Wᵀh + b)_f = [h; 1] · M.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from replication.double_descent.packing import PackedSets, with_values
from replication.settings import check_choice
from replication.toy.model import ToyModel


class PackedToyModel(ToyModel):
    """A ReLU-output :class:`ToyModel` whose training batches are :class:`PackedSets`.

    ``forward``, ``hidden`` and ``loss`` take dense inputs as in the base class (evaluation);
    :meth:`loss_and_grads` takes the packed training sets, so ``replication.toy.train.train``
    drives it unchanged with a batch source returning ``(packed_sets, None)``.
    """

    def __init__(self, n_instances: int, n_features: int, n_hidden: int, activation: str = "relu",
                 generator: torch.Generator | None = None, device: torch.device | str = "cpu"):
        check_choice("activation of a packed toy model", activation, ("relu",))
        super().__init__(n_instances, n_features, n_hidden, activation, generator, device)

    @torch.no_grad()
    def loss_and_grads(
        self, x: PackedSets, importance: Float[Tensor, "inst feats"],
        example_weight: None = None,
    ) -> tuple[Float[Tensor, " inst"], Float[Tensor, "inst hidden feats"],
               Float[Tensor, "inst 1 feats"]]:
        """Loss per instance and its gradients with respect to W and b (closed form).

        The example weights are the packed sets' own (1/T per point, 0 on padding).
        """
        if example_weight is not None:
            raise ValueError("packed training sets carry their own example weights; pass None")
        n_inst, m, n = self.W.shape
        if (x.n_instances, x.n_features) != (n_inst, n):
            raise ValueError(f"packed sets of {x.n_instances} instances × {x.n_features} features "
                             f"do not fit a model of {n_inst} instances × {n} features")
        C, value = x.chunk_size, x.entry_value
        decoder = torch.cat([self.W, self.b], 1)  # (inst, m+1, feats): [W; b]
        owner_decoder = decoder[x.chunk_instance]  # (chunks, m+1, feats)
        owner_decoder_imp = (decoder * importance[:, None, :])[x.chunk_instance]
        w_rows = self.W.transpose(1, 2).reshape(n_inst * n, m)  # W[k, :, f] at row k·n + f
        weight = x.slot_weight.view(-1)  # (slots,)

        h1 = torch.cat([x.inputs @ w_rows, torch.ones_like(weight)[:, None]], 1)  # [h; 1]
        weighted_h1 = (h1 * weight[:, None]).view(-1, C, m + 1).transpose(1, 2)

        # Σ_f I_f [W; b]_f r_f per slot, laid out (chunks, m+1, C)
        M_t = torch.empty(len(owner_decoder), m + 1, C, device=self.W.device)
        chunk_grad = torch.empty_like(owner_decoder)  # [h; 1] diag(w) r per chunk
        r_entry = torch.empty_like(value)  # r at the non-zero entries of x
        for c0, c1, e0, e1 in x.groups:  # cache-sized groups of chunks, not a loop over T
            h1_g = h1[c0 * C:c1 * C].view(-1, C, m + 1)
            r = torch.bmm(h1_g, owner_decoder[c0:c1]).clamp_min_(0)  # (chunks, C, feats)
            torch.bmm(owner_decoder_imp[c0:c1], r.transpose(1, 2), out=M_t[c0:c1])
            torch.bmm(weighted_h1[c0:c1], r, out=chunk_grad[c0:c1])
            r_entry[e0:e1] = r.view(-1)[x.entry_in_group[e0:e1]]
        M = M_t.transpose(1, 2).reshape(-1, m + 1)  # (slots, m+1)

        entry_imp = importance.reshape(-1)[x.entry_row]
        live_imp = torch.where(r_entry > 0, entry_imp, 0.0)  # I · [r > 0] at the entries

        # Loss: Σ w Σ_f I_f r_f² − 2 Σ_entries w I r x + Σ_entries w I x².
        loss = torch.zeros(n_inst, device=self.W.device)
        loss.index_add_(0, x.chunk_instance, (weight * (M * h1).sum(1)).view(-1, C).sum(1))
        loss.index_add_(0, x.entry_instance,
                        x.entry_weight * entry_imp * value * (value - 2 * r_entry))

        # ∂L/∂h = 2 w W (I ∘ E): the dense part from M, minus the x part at the entries.
        grad_h = M[:, :m] - with_values(x.inputs, value * live_imp) @ w_rows
        grad_h.mul_(2 * weight[:, None])
        # ∂L/∂[W; b] = 2 I ∘ ([h; 1] diag(w) Eᵀ) from the decoder, + (∂L/∂h) xᵀ from the encoder.
        decoder_x_part = -2 * x.entry_weight * value * live_imp
        sparse_grad = with_values(x.inputs_t, decoder_x_part[x.transposed_order]) @ h1
        sparse_grad[:, :m] += x.inputs_t @ grad_h
        grad = torch.zeros_like(decoder).index_add_(0, x.chunk_instance, chunk_grad)
        grad.mul_(2 * importance[:, None, :])
        grad += sparse_grad.view(n_inst, n, m + 1).transpose(1, 2)
        return loss, grad[:, :m].contiguous(), grad[:, m:].contiguous()
