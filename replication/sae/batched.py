"""Many sae-lens training SAEs run as one: stacked parameters, the library's own step under vmap.

sae-lens trains one SAE per optimizer (its ``MultiSAETrainer`` steps one ``SAETrainer`` per SAE in
a Python loop). At toy sizes (5 inputs, 10–30 latents) a step is a few tiny matrix products, so
K SAEs stepped one after the other cost K times the per-step dispatch of autograd, hooks and the
optimizer. Here K SAEs of one architecture are stacked (``torch.func.stack_module_state``) and the
library's ``TrainingSAE.training_forward_pass`` runs once under ``torch.func.vmap`` over the
instance axis: the same code and losses as the library, one dispatch for all K
(``benchmarks/test_sae_batching.py`` measures the gain; ``tests/test_sae_train.py`` checks the
result equals sae-lens's ``SAETrainer`` step by step).

What vmap cannot batch: code that branches on the host on a tensor's value. sae-lens's TopK
auxiliary loss counts the dead latents with ``int(dead_neuron_mask.sum())``, so batched TopK SAEs
run without it (``dead_neuron_mask=None``, the library's own path when nothing is dead).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from jaxtyping import Float
from sae_lens import (
    StandardTrainingSAE,
    StandardTrainingSAEConfig,
    TopKTrainingSAE,
    TopKTrainingSAEConfig,
)
from sae_lens.saes.sae import TrainingSAE, TrainStepInput
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from replication.settings import check_choice

ARCHITECTURES = ("standard", "topk")


@dataclass(frozen=True)
class SAEArchitecture:
    """The sae-lens training SAE every instance of a stack shares.

    Args:
        kind: ``standard`` (ReLU latents, L1 penalty weighted by decoder norms) or ``topk``.
        d_in: input width (the toy model's hidden size m).
        d_sae: latents per SAE.
        k: active latents per input (``topk`` only).
        decoder_init_norm: initial decoder row norm (sae-lens default 0.1).
    """

    kind: str
    d_in: int
    d_sae: int
    k: int | None = None
    decoder_init_norm: float | None = 0.1

    def __post_init__(self):
        check_choice("SAE architecture", self.kind, ARCHITECTURES)
        if (self.kind == "topk") != (self.k is not None):
            raise ValueError(
                f"k is set for topk SAEs and only for them; got kind={self.kind!r}, k={self.k!r}"
            )
        if self.k is not None and not 1 <= self.k <= self.d_sae:
            raise ValueError(f"k must lie in [1, d_sae={self.d_sae}], got {self.k}")

    def build(self, l1_coefficient: float = 1.0, l1_warm_up_steps: int = 0) -> TrainingSAE:
        """One freshly initialised sae-lens training SAE (initialised from torch's global RNG)."""
        common = dict(d_in=self.d_in, d_sae=self.d_sae, decoder_init_norm=self.decoder_init_norm)
        if self.kind == "topk":
            return TopKTrainingSAE(TopKTrainingSAEConfig(k=self.k, **common))
        return StandardTrainingSAE(
            StandardTrainingSAEConfig(
                l1_coefficient=l1_coefficient, l1_warm_up_steps=l1_warm_up_steps, **common
            )
        )


class _TrainingStep(nn.Module):
    """``sae.training_forward_pass`` as a ``forward``, so ``functional_call`` can run it."""

    def __init__(self, sae: TrainingSAE):
        super().__init__()
        self.sae = sae

    def forward(self, sae_in: Tensor, coefficients: dict[str, Tensor], step: int):
        out = self.sae.training_forward_pass(
            TrainStepInput(
                sae_in=sae_in,
                coefficients=coefficients,
                dead_neuron_mask=None,
                n_training_steps=step,
                is_logging_step=False,
            )
        )
        return out.loss, out.losses, out.sae_out, out.feature_acts


class _Inference(nn.Module):
    """``sae.encode`` and ``sae.decode`` as one ``forward`` (latents and reconstruction)."""

    def __init__(self, sae: TrainingSAE):
        super().__init__()
        self.sae = sae

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        acts = self.sae.encode(x)
        return acts, self.sae.decode(acts)


class SAEStack:
    """K sae-lens training SAEs of one architecture with their parameters stacked on axis 0.

    Attributes:
        params: sae-lens parameter name → ``(inst, *shape)`` leaf tensor (``W_enc: (inst, d_in,
            d_sae)``, ``W_dec: (inst, d_sae, d_in)``, ``b_enc: (inst, d_sae)``, ``b_dec: (inst,
            d_in)``), trained in place.
        coefficient_values: ``name → (inst,)`` final value of each SAE's loss coefficients as its
            config states them (``l1`` for standard SAEs; TopK SAEs have none).
        coefficient_warm_up: ``name → steps`` of the coefficient's linear warm-up (shared).
        configs: every SAE's sae-lens config.
    """

    def __init__(self, saes: list[TrainingSAE]):
        shapes = {
            (type(s).__name__, s.cfg.d_in, s.cfg.d_sae, getattr(s.cfg, "k", None)) for s in saes
        }
        if len(shapes) != 1:
            raise ValueError(f"a stack needs SAEs of one class and shape, got {sorted(shapes)}")
        self.template = copy.deepcopy(saes[0])
        self.configs = [copy.deepcopy(s.cfg) for s in saes]
        stacked, _ = stack_module_state(saes)
        self.params = {name: value.detach().requires_grad_() for name, value in stacked.items()}
        coefficients = [s.get_coefficients() for s in saes]
        self.coefficient_values = {
            name: torch.tensor(
                [float(getattr(c[name], "value", c[name])) for c in coefficients],
                device=self.device,
            )
            for name in coefficients[0]
        }
        warm_ups = {
            name: {int(getattr(c[name], "warm_up_steps", 0)) for c in coefficients}
            for name in coefficients[0]
        }
        if any(len(steps) != 1 for steps in warm_ups.values()):
            raise ValueError(f"SAEs of a stack share their coefficient warm-up, got {warm_ups}")
        self.coefficient_warm_up = {name: steps.pop() for name, steps in warm_ups.items()}

    @property
    def n_instances(self) -> int:
        return next(iter(self.params.values())).shape[0]

    @property
    def device(self) -> torch.device:
        return next(iter(self.params.values())).device

    def to(self, device: torch.device | str) -> SAEStack:
        """Move the stacked parameters (as fresh leaves) and coefficients to ``device``."""
        self.params = {k: v.detach().to(device).requires_grad_() for k, v in self.params.items()}
        self.coefficient_values = {k: v.to(device) for k, v in self.coefficient_values.items()}
        self.template = self.template.to(device)
        return self

    def _vmap(self, module: nn.Module, *args, in_dims: tuple):
        prefixed = {f"sae.{name}": value for name, value in self.params.items()}
        return vmap(lambda p, *a: functional_call(module, p, a), in_dims=(0, *in_dims))(
            prefixed, *args
        )

    def training_forward_pass(
        self,
        sae_in: Float[Tensor, "inst batch d_in"],
        coefficients: dict[str, Float[Tensor, " inst"]],
        step: int,
    ) -> tuple[
        Float[Tensor, " inst"],
        dict[str, Float[Tensor, " inst"]],
        Float[Tensor, "inst batch d_in"],
        Float[Tensor, "inst batch d_sae"],
    ]:
        """Every SAE's ``training_forward_pass`` at once: (loss, losses, sae_out, feature_acts)."""
        return self._vmap(
            _TrainingStep(self.template), sae_in, coefficients, step, in_dims=(0, 0, None)
        )

    def __call__(
        self, x: Float[Tensor, "inst batch d_in"]
    ) -> tuple[Float[Tensor, "inst batch d_sae"], Float[Tensor, "inst batch d_in"]]:
        """(latents, reconstructions) of every SAE on its own inputs (``encode``, ``decode``)."""
        return self._vmap(_Inference(self.template), x, in_dims=(0,))

    @torch.no_grad()
    def unstack(self) -> list[TrainingSAE]:
        """The K SAEs as ordinary sae-lens modules (copies) holding the current weights."""
        saes = []
        for i, config in enumerate(self.configs):
            sae = copy.deepcopy(self.template)
            sae.cfg = copy.deepcopy(config)
            sae.cfg.device = self.template.cfg.device
            sae.load_state_dict({name: value[i] for name, value in self.params.items()})
            saes.append(sae)
        return saes
