"""Batched toy models: h = W x, x' = ReLU(Wᵀh + b) (or linear), one (W, b) per instance.

Two options give the paper's other toy models ('Superposition in a Privileged Basis',
'Computation in Superposition'): a ReLU on the hidden layer, h = ReLU(W x) (the "ReLU hidden
layer" or neuron model), and untied weights, x' = ReLU(W_outᵀ h + b) with its own W_out (the
paper's W_2 = W_outᵀ). A target other than the input (|x| for the absolute-value task) can be
given to the loss.

Training uses the closed-form gradient of the importance-weighted squared error instead of
autograd: at toy sizes a step is a handful of small matrix products, and autograd's dispatch
would cost more than the arithmetic (see benchmarks/). On CPU the closed form is one fused C++
pass (:mod:`replication.toy.kernel`). ``loss`` below is the plain autograd-compatible definition
both are tested against.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor, nn

from replication.settings import check_choice
from replication.toy.kernel import fused_available, fused_loss_and_grads

ACTIVATIONS = ("relu", "linear")


class ToyModel(nn.Module):
    """``n_instances`` independent toy models trained side by side.

    Args:
        n_instances, n_features, n_hidden: the instance axis, n and m.
        activation: output activation, ``relu`` or ``linear``.
        generator: seeds the initialisation (xavier-normal per instance, as in ARENA).
        device: where the parameters live.
        hidden_activation: ``linear`` (h = W x) or ``relu`` (h = ReLU(W x), the neuron model).
        tied: decode with W itself (default) or with a separate ``W_out``.

    Attributes:
        W: ``(inst, hidden, feats)`` — column ``W[k, :, i]`` is feature i's direction; row
            ``W[k, j]`` is neuron j's input weights.
        b: ``(inst, 1, feats)`` output bias (broadcasts over the batch axis).
        W_out: ``(inst, hidden, feats)`` decoder of an untied model (``None`` when tied):
            x' = act(W_outᵀ h + b).
    """

    def __init__(self, n_instances: int, n_features: int, n_hidden: int, activation: str = "relu",
                 generator: torch.Generator | None = None, device: torch.device | str = "cpu",
                 hidden_activation: str = "linear", tied: bool = True):
        super().__init__()
        self.activation = check_choice("activation", activation, ACTIVATIONS)
        self.hidden_activation = check_choice("hidden activation", hidden_activation, ACTIVATIONS)
        self.W = nn.Parameter(self.xavier(n_instances, n_hidden, n_features, generator, device))
        self.b = nn.Parameter(torch.zeros(n_instances, 1, n_features, device=device))
        self.W_out = None if tied else nn.Parameter(
            self.xavier(n_instances, n_hidden, n_features, generator, device))

    @staticmethod
    def xavier(n_instances: int, n_hidden: int, n_features: int, generator, device) -> Tensor:
        W = torch.empty(n_instances, n_hidden, n_features, device=device)
        for k in range(n_instances):  # xavier-normal per instance, as in ARENA
            nn.init.xavier_normal_(W[k], generator=generator)
        return W

    @classmethod
    def from_tensors(cls, W: Float[Tensor, "inst hidden feats"], b: Float[Tensor, "inst feats"],
                     activation: str, hidden_activation: str = "linear",
                     W_out: Float[Tensor, "inst hidden feats"] | None = None) -> ToyModel:
        model = cls(W.shape[0], W.shape[2], W.shape[1], activation, device=W.device,
                    hidden_activation=hidden_activation, tied=W_out is None)
        with torch.no_grad():
            model.W.copy_(W)
            model.b.copy_(b.view(model.b.shape))
            if W_out is not None:
                model.W_out.copy_(W_out)
        return model

    @property
    def decoder(self) -> Float[Tensor, "inst hidden feats"]:
        """The weights x' is read out with: W when tied, else W_out."""
        return self.W if self.W_out is None else self.W_out

    def hidden(self, x: Float[Tensor, "inst batch feats"]) -> Float[Tensor, "inst batch hidden"]:
        h = torch.bmm(x, self.W.transpose(1, 2))
        return torch.relu(h) if self.hidden_activation == "relu" else h

    def forward(self, x: Float[Tensor, "inst batch feats"]) -> Float[Tensor, "inst batch feats"]:
        out = torch.baddbmm(self.b, self.hidden(x), self.decoder)
        return torch.relu(out) if self.activation == "relu" else out

    def loss(self, x: Float[Tensor, "inst batch feats"], importance: Float[Tensor, "inst feats"],
             example_weight: Float[Tensor, "inst batch"] | None = None,
             target: Float[Tensor, "inst batch feats"] | None = None) -> Float[Tensor, " inst"]:
        """Σ_batch w Σ_feats I (y − x')² per instance, with target y = x unless given (e.g. |x|);
        ``w`` defaults to 1/batch (the mean)."""
        y = x if target is None else target
        per_example = (importance[:, None, :] * (y - self(x)) ** 2).sum(-1)
        if example_weight is None:
            return per_example.mean(1)
        return (per_example * example_weight).sum(1)

    @torch.no_grad()
    def loss_and_grads(
        self, x: Float[Tensor, "inst batch feats"], importance: Float[Tensor, "inst feats"],
        example_weight: Float[Tensor, "inst batch"] | None = None,
        target: Float[Tensor, "inst batch feats"] | None = None,
    ) -> tuple[Tensor, ...]:
        """:meth:`loss` and its gradient with respect to each parameter, in closed form.

        Returns: the loss ``(inst,)``, then one gradient per parameter in ``parameters()``
        order: W ``(inst, hidden, feats)``, b ``(inst, 1, feats)`` and, untied, W_out.

        On CPU in float32 this is one fused pass (:mod:`replication.toy.kernel`) up to its
        hidden size; elsewhere :meth:`portable_loss_and_grads`.
        """
        if x.dtype == self.W.dtype == torch.float32 and fused_available(x.device, self.W.shape[1]):
            return fused_loss_and_grads(self.W, self.W_out, self.b, self.activation == "relu",
                                        self.hidden_activation == "relu", x, importance,
                                        example_weight, target)
        return self.portable_loss_and_grads(x, importance, example_weight, target)

    @torch.no_grad()
    def portable_loss_and_grads(
        self, x: Float[Tensor, "inst batch feats"], importance: Float[Tensor, "inst feats"],
        example_weight: Float[Tensor, "inst batch"] | None = None,
        target: Float[Tensor, "inst batch feats"] | None = None,
    ) -> tuple[Tensor, ...]:
        """:meth:`loss_and_grads` in torch operations (any device).

        Works on the transposed (feature-major) view, ``(inst, feats, batch)``, where the
        batched matrix products with a small hidden size are fastest; ``x`` stored that way
        (as the samplers of :mod:`replication.toy.data` return it) needs no copy.
        """
        W, decoder, x_t = self.W, self.decoder, x.transpose(1, 2)  # x_t: (inst, feats, batch)
        y_t = x_t if target is None else target.transpose(1, 2)
        n_inst, batch, _ = x.shape
        h_t = torch.bmm(W, x_t)  # (inst, hidden, batch)
        if self.hidden_activation == "relu":
            h_t.clamp_min_(0)
        pre_t = torch.baddbmm(self.b.transpose(1, 2), decoder.transpose(1, 2), h_t)
        # 2·I·w, the factor of the squared error's derivative: (inst, feats, 1 or batch)
        if example_weight is None:
            factor = importance[:, :, None] * (2.0 / batch)
        else:
            factor = importance[:, :, None] * (2.0 * example_weight[:, None, :])
        out_t = pre_t.clamp_min(0) if self.activation == "relu" else pre_t
        residual = out_t - y_t
        grad_out = residual.mul_(factor)  # ∂loss/∂x' (residual is not needed any more)
        loss = 0.5 * (grad_out * (out_t - y_t)).sum((1, 2))
        if self.activation == "relu":
            # ∂loss/∂pre: zero where the ReLU is off. sign(ReLU) is that 0/1 mask as floats;
            # comparisons producing bool tensors are several times slower on CPU.
            grad_out.mul_(out_t.sign())
        grad_b = grad_out.sum(2).unsqueeze(1)
        grad_decoder = torch.bmm(h_t, grad_out.transpose(1, 2))  # through the decoder
        grad_h = torch.bmm(decoder, grad_out)  # (inst, hidden, batch)
        if self.hidden_activation == "relu":
            grad_h.mul_(h_t.sign())  # h = ReLU(W x) ≥ 0, so sign(h) is the hidden ReLU's mask
        if self.W_out is None:  # tied: W gets both the decoder's and the encoder's gradient
            return loss, grad_decoder.baddbmm_(grad_h, x_t.transpose(1, 2)), grad_b
        return loss, torch.bmm(grad_h, x_t.transpose(1, 2)), grad_b, grad_decoder
