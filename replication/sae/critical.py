"""The 'critical sparsity' analysis: per-run curves over the sparsity grid and where they peak.

The dissertation's "reconstruction loss" is its toy autoencoder's (x → Wx → ReLU(Wᵀz + b), the
importance-weighted squared error): ``toy_loss``, the curve the claim locates. The other
readings are kept beside it: the toy loss relative to the all-zero output
(Σ_i I_i E[x_i²] = p Σ_i I_i / 3), the SAE's loss (sae-lens's MSE of h against ĥ) and FVU, and
the SAE-vs-activations Procrustes similarity.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from replication.sae.evaluation import EvaluatedSAEs
from replication.sae.train import ToySAESweep
from replication.toy.sweep import ToySweep

#: curve name → (description, which extremum the claim locates)
CURVES = {
    "toy_loss": ("toy model loss (importance-weighted squared error)", "max"),
    "toy_relative_loss": ("toy model loss / loss of the all-zero output", "max"),
    "sae_mse": ("SAE reconstruction loss (sae-lens MSE, Σ_hidden, mean over inputs)", "max"),
    "sae_fvu": ("SAE fraction of variance unexplained", "max"),
    "procrustes": ("Procrustes similarity of h and the SAE's reconstruction", "min"),
}


@dataclass
class CriticalCurves:
    """Every curve of :data:`CURVES` as ``(runs, sparsities)``, the grid of sparsities, the
    number of toy features, and the configurations the curves were measured on (if known)."""

    n_features: int
    sparsities: Float[Tensor, " sparsities"]
    curves: dict[str, Float[Tensor, "runs sparsities"]]
    toy_config: ToySweep | None = None
    sae_config: ToySAESweep | None = None

    @classmethod
    def measure(cls, run: EvaluatedSAEs, sparsities: tuple[float, ...]) -> CriticalCurves:
        """Curves of a critical-sparsity sweep (toy configuration ``run * len(sparsities) + i``
        is run ``run`` at ``sparsities[i]``; one SAE each)."""
        toy, evaluation = run.toy, run.evaluation
        if len(run.saes) != 1 or run.n_variants != 1:
            raise ValueError("a critical-sparsity sweep has one SAE sweep with one SAE per run")
        shape = (-1, len(sparsities))
        p = torch.tensor(toy.config.feature_probability)
        importance = torch.tensor(toy.config.importance).expand(len(p), -1).sum(-1)
        zero_output_loss = p * importance / 3.0
        curves = {
            "sae_mse": evaluation.mse,
            "sae_fvu": evaluation.fvu,
            "toy_loss": toy.loss,
            "toy_relative_loss": toy.loss / zero_output_loss,
            "procrustes": evaluation.procrustes,
        }
        return cls(
            toy.config.n_features,
            torch.tensor(sparsities, dtype=torch.float64),  # exact grid values, compared to bands
            {k: v.reshape(shape) for k, v in curves.items()},
            toy.config,
            run.saes[0].config,
        )

    @property
    def runs(self) -> int:
        return next(iter(self.curves.values())).shape[0]

    def locations(self, name: str) -> Float[Tensor, " runs"]:
        """The sparsity of each run's extremum of curve ``name`` (max, or min for similarity)."""
        return self._extremum(name, self.curves[name])

    def mean_location(self, name: str) -> float:
        """The sparsity of the extremum of curve ``name`` averaged over runs (as the repository
        reports its seeds' means)."""
        return float(self._extremum(name, self.curves[name].mean(0)))

    def _extremum(self, name: str, values: Float[Tensor, "... sparsities"]) -> Tensor:
        index = values.argmax(-1) if CURVES[name][1] == "max" else values.argmin(-1)
        return self.sparsities[index]
