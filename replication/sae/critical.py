"""The 'critical sparsity' analysis: per-run curves over the sparsity grid and where they peak.

The dissertation's "reconstruction loss" can be read as the SAE's (sae-lens's MSE of h against
ĥ) or as the toy model's (its importance-weighted loss, which is itself an autoencoder's). Both
are kept here, each also normalised (the SAE's as FVU, the toy model's relative to the
all-zero output, Σ_i I_i E[x_i²] = p Σ_i I_i / 3), next to the SAE-vs-activations Procrustes
similarity whose minimum locates the claimed critical sparsity.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from replication.sae.evaluation import SAEEvaluation
from replication.toy.sweep import TrainedSweep

#: curve name → (description, which extremum the claim locates)
CURVES = {
    "sae_mse": ("SAE reconstruction loss (sae-lens MSE, Σ_hidden, mean over inputs)", "max"),
    "sae_fvu": ("SAE fraction of variance unexplained", "max"),
    "toy_loss": ("toy model loss (importance-weighted squared error)", "max"),
    "toy_relative_loss": ("toy model loss / loss of the all-zero output", "max"),
    "procrustes": ("Procrustes similarity of h and the SAE's reconstruction", "min"),
}


@dataclass
class CriticalCurves:
    """Every curve of :data:`CURVES` as ``(runs, sparsities)``, and the grid of sparsities."""

    sparsities: Float[Tensor, " sparsities"]
    curves: dict[str, Float[Tensor, "runs sparsities"]]

    @classmethod
    def measure(
        cls, toy: TrainedSweep, evaluation: SAEEvaluation, sparsities: tuple[float, ...]
    ) -> CriticalCurves:
        """Curves of a critical-sparsity sweep (configuration = run × sparsity, one SAE each)."""
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
        return cls(torch.tensor(sparsities), {k: v.reshape(shape) for k, v in curves.items()})

    def locations(self, name: str) -> Float[Tensor, " runs"]:
        """The sparsity of each run's extremum of curve ``name`` (max, or min for similarity)."""
        values = self.curves[name]
        index = values.argmax(-1) if CURVES[name][1] == "max" else values.argmin(-1)
        return self.sparsities[index]

    def runs_in_band(self, name: str, band: tuple[float, float]) -> int:
        """How many runs put the extremum of ``name`` inside ``band`` (inclusive)."""
        where = self.locations(name)
        return int(((where >= band[0] - 1e-9) & (where <= band[1] + 1e-9)).sum())
