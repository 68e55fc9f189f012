"""Batched toy models: h = W x, x' = ReLU(Wᵀh + b) (or linear), one (W, b) per instance.

Training uses the closed-form gradient of the importance-weighted squared error instead of
autograd: at toy sizes a step is a handful of small matrix products, and autograd's dispatch
would cost more than the arithmetic (see benchmarks/). ``loss`` below is the plain
autograd-compatible definition the closed form is tested against.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor, nn

from replication.settings import check_choice

ACTIVATIONS = ("relu", "linear")


class ToyModel(nn.Module):
    """``n_instances`` independent toy models trained side by side.

    Attributes:
        W: ``(inst, hidden, feats)`` — column ``W[k, :, i]`` is feature i's direction.
        b: ``(inst, 1, feats)`` output bias (broadcasts over the batch axis).
    """

    def __init__(self, n_instances: int, n_features: int, n_hidden: int, activation: str = "relu",
                 generator: torch.Generator | None = None, device: torch.device | str = "cpu"):
        super().__init__()
        self.activation = check_choice("activation", activation, ACTIVATIONS)
        W = torch.empty(n_instances, n_hidden, n_features, device=device)
        for k in range(n_instances):  # xavier-normal per instance, as in ARENA
            nn.init.xavier_normal_(W[k], generator=generator)
        self.W = nn.Parameter(W)
        self.b = nn.Parameter(torch.zeros(n_instances, 1, n_features, device=device))

    @classmethod
    def from_tensors(cls, W: Float[Tensor, "inst hidden feats"], b: Float[Tensor, "inst feats"],
                     activation: str) -> ToyModel:
        model = cls(W.shape[0], W.shape[2], W.shape[1], activation, device=W.device)
        with torch.no_grad():
            model.W.copy_(W)
            model.b.copy_(b.view(model.b.shape))
        return model

    def hidden(self, x: Float[Tensor, "inst batch feats"]) -> Float[Tensor, "inst batch hidden"]:
        return torch.bmm(x, self.W.transpose(1, 2))

    def forward(self, x: Float[Tensor, "inst batch feats"]) -> Float[Tensor, "inst batch feats"]:
        out = torch.baddbmm(self.b, self.hidden(x), self.W)
        return torch.relu(out) if self.activation == "relu" else out

    def loss(self, x: Float[Tensor, "inst batch feats"], importance: Float[Tensor, "inst feats"],
             example_weight: Float[Tensor, "inst batch"] | None = None) -> Float[Tensor, " inst"]:
        """Σ_batch w Σ_feats I (x − x')² per instance; ``w`` defaults to 1/batch (the mean)."""
        per_example = (importance[:, None, :] * (x - self(x)) ** 2).sum(-1)
        if example_weight is None:
            return per_example.mean(1)
        return (per_example * example_weight).sum(1)

    @torch.no_grad()
    def loss_and_grads(
        self, x: Float[Tensor, "inst batch feats"], importance: Float[Tensor, "inst feats"],
        example_weight: Float[Tensor, "inst batch"] | None = None,
    ) -> tuple[Float[Tensor, " inst"], Float[Tensor, "inst hidden feats"], Float[Tensor, "inst 1 feats"]]:
        """:meth:`loss` and its gradients with respect to W and b, in closed form.

        Works on the transposed (feature-major) view, ``(inst, feats, batch)``, where the
        batched matrix products with a small hidden size are fastest; ``x`` stored that way
        (as :class:`~replication.toy.data.SparseFeatureSampler` returns it) needs no copy.
        """
        W, x_t = self.W, x.transpose(1, 2)  # x_t: (inst, feats, batch)
        n_inst, batch, _ = x.shape
        h_t = torch.bmm(W, x_t)  # (inst, hidden, batch)
        pre_t = torch.baddbmm(self.b.transpose(1, 2), W.transpose(1, 2), h_t)
        # 2·I·w, the factor of the squared error's derivative: (inst, feats, 1 or batch)
        if example_weight is None:
            factor = importance[:, :, None] * (2.0 / batch)
        else:
            factor = importance[:, :, None] * (2.0 * example_weight[:, None, :])
        out_t = pre_t.clamp_min(0) if self.activation == "relu" else pre_t
        residual = out_t - x_t
        grad_out = residual.mul_(factor)  # ∂loss/∂x' (residual is not needed any more)
        loss = 0.5 * (grad_out * (out_t - x_t)).sum((1, 2))
        if self.activation == "relu":
            # ∂loss/∂pre: zero where the ReLU is off. sign(ReLU) is that 0/1 mask as floats;
            # comparisons producing bool tensors are several times slower on CPU.
            grad_out.mul_(out_t.sign())
        grad_b = grad_out.sum(2).unsqueeze(1)
        grad_W = torch.bmm(h_t, grad_out.transpose(1, 2))  # through the decoder Wᵀ
        grad_h = torch.bmm(W, grad_out)  # (inst, hidden, batch)
        grad_W.baddbmm_(grad_h, x_t.transpose(1, 2))  # through the encoder W
        return loss, grad_W, grad_b
