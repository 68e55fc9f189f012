"""What a claim test records: checks against declared thresholds, context metrics, figures.

A :class:`ClaimRecord` is filled by the test through the ``record`` fixture and travels to
the report as a plain dict (JSON-serialisable), so pytest-xdist can ship it between processes.
``record.check`` records a value beside its declared threshold and judges it in one call, so
the report and the assertion cannot disagree; the plugin fails the claim with an
``AssertionError`` naming every check that did not hold once the test body returns.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from replication.report.expected import ExpectedValues

VERDICTS = (
    "replicated",
    "not replicated",
    "known divergence",
    "seed-dependent",
    "unexpected pass",
    "not run",
    "error",
    "smoke run",
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
    """One measured quantity: context (``check`` None) or judged against a declared threshold.

    ``check`` holds ``op``, ``threshold`` (the reader's form, e.g. ``≈ 72 ± 3``), ``provenance``,
    ``why`` and ``passed``.
    """

    name: str
    value: Any
    unit: str | None = None
    check: dict | None = None


@dataclass
class ClaimRecord:
    """Numbers, figures and notes of one claim test.

    Args:
        claim_id: the claim's stable id (with the parameter id for parametrized claims).
        figure_dir: folder the figures are saved into (the report's ``figures/``).
        seeds: the seeds the claim's numbers come from.
        expected: the declared thresholds (``claims/expected/*.yaml``) of this run's scale.
    """

    claim_id: str
    figure_dir: Path
    seeds: list[int] = field(default_factory=list)
    expected: ExpectedValues | None = None
    figure_suffix: str = ""
    metrics: list[Metric] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    links: list[dict[str, str]] = field(default_factory=list)

    def metric(self, name: str, value: Any, unit: str | None = None):
        """Record a measured value (scalar, list, tensor or array) that no threshold judges."""
        self.metrics.append(Metric(name, to_jsonable(value), unit))
        return value

    def threshold(self, key: str):
        """The declared :class:`~replication.report.expected.Threshold` ``key`` of this claim."""
        if self.expected is None:
            raise LookupError(f"{self.claim_id}: no expected values were loaded")
        return self.expected.threshold(self.claim_id, key)

    def check(self, name: str, value: Any, op: str, key: str, unit: str | None = None) -> bool:
        """Record ``value`` and judge ``value op threshold[key]`` (every element must hold).

        Args:
            name: what the reader sees, e.g. ``"angular gaps between consecutive features"``.
            value: scalar, list, dict of scalars, tensor or array.
            op: one of ``<``, ``<=``, ``>``, ``>=``, ``==``, ``≈`` (within the tolerance),
                ``in`` (inside the closed band ``[low, high]``).
            key: the threshold's name in the claim's entry of the expected-values file.
            unit: the value's unit, if any.

        Returns: whether it held. A claim whose checks do not all hold fails when it returns.
        """
        threshold = self.threshold(key)
        jsonable = to_jsonable(value)
        passed = threshold.holds(jsonable, op)
        self.metrics.append(Metric(name, jsonable, unit, {
            "key": key, "op": op, "threshold": to_jsonable(threshold.value),
            "tolerance": threshold.tolerance,
            "describe": threshold.describe(op), "provenance": threshold.provenance,
            "why": threshold.why, "passed": passed,
        }))
        return passed

    def failed_checks(self) -> list[Metric]:
        return [m for m in self.metrics if m.check is not None and not m.check["passed"]]

    def n_checks(self) -> int:
        return sum(m.check is not None for m in self.metrics)

    def figure(self, fig, name: str = "figure") -> Path:
        """Save a matplotlib figure as PNG into the report and close it."""
        import matplotlib.pyplot as plt

        self.figure_dir.mkdir(parents=True, exist_ok=True)
        stem = "-".join(filter(None, (slug(self.claim_id), slug(name), self.figure_suffix)))
        path = self.figure_dir / f"{stem}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        self.figures.append(f"{self.figure_dir.name}/{path.name}")
        return path

    def note(self, text: str) -> None:
        """A sentence for the reader, e.g. how many instances the best was chosen from."""
        self.notes.append(text)

    def link(self, text: str, href: str) -> None:
        """A page written beside the report (``href`` relative to the report folder), e.g. the
        locality feature cards."""
        self.links.append({"text": text, "href": href})

    def set_seeds(self, seeds: list[int]) -> None:
        self.seeds = [int(s) for s in seeds]

    def to_dict(self) -> dict:
        return {
            "seeds": self.seeds,
            "metrics": [asdict(m) for m in self.metrics],
            "figures": list(self.figures),
            "notes": list(self.notes),
            "links": list(self.links),
        }
