"""What a claim test records: metrics against their thresholds, figures and notes.

A :class:`ClaimRecord` is filled by the test through the ``record`` fixture and travels to
the report as a plain dict (JSON-serialisable), so pytest-xdist can ship it between processes.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

VERDICTS = (
    "replicated",
    "not replicated",
    "known divergence",
    "unexpected pass",
    "not run",
    "error",
)


def slug(text: str) -> str:
    """File-name-safe form of a claim id or figure name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


def to_jsonable(value: Any) -> Any:
    """Tensors, arrays and numpy scalars as plain Python numbers and lists; NaN as None."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return [to_jsonable(v) for v in value.tolist()] if value.ndim else to_jsonable(value.item())
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 6)
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    return value


@dataclass
class Metric:
    """One measured quantity. ``expect`` states the threshold in words, e.g. ``">= 10"``."""

    name: str
    value: Any
    expect: str | None = None
    unit: str | None = None


@dataclass
class ClaimRecord:
    """Numbers, figures and notes of one claim test.

    Args:
        claim_id: the claim's stable id (with the parameter id for parametrized claims).
        figure_dir: folder the figures are saved into (the report's ``figures/``).
        seeds: the seeds the claim's numbers come from.
    """

    claim_id: str
    figure_dir: Path
    seeds: list[int] = field(default_factory=list)
    metrics: list[Metric] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def metric(self, name: str, value: Any, expect: str | None = None, unit: str | None = None):
        """Record a measured value (scalar, list, tensor or array) and its threshold."""
        self.metrics.append(Metric(name, to_jsonable(value), expect, unit))
        return value

    def figure(self, fig, name: str = "figure") -> Path:
        """Save a matplotlib figure as PNG into the report and close it."""
        import matplotlib.pyplot as plt

        self.figure_dir.mkdir(parents=True, exist_ok=True)
        path = self.figure_dir / f"{slug(self.claim_id)}-{slug(name)}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        self.figures.append(f"{self.figure_dir.name}/{path.name}")
        return path

    def note(self, text: str) -> None:
        """A sentence for the reader, e.g. how many instances the best was chosen from."""
        self.notes.append(text)

    def set_seeds(self, seeds: list[int]) -> None:
        self.seeds = [int(s) for s in seeds]

    def to_dict(self) -> dict:
        return {
            "seeds": self.seeds,
            "metrics": [asdict(m) for m in self.metrics],
            "figures": list(self.figures),
            "notes": list(self.notes),
        }
