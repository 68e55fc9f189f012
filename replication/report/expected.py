"""Thresholds as data: every number a claim asserts, declared once with its provenance.

Each claim family keeps one YAML file (``claims/expected/<family>.yaml``) keyed by claim id::

    tms.pentagon:
      gap_deg:
        value: 72
        tolerance: 3
        provenance: derived
        why: "a regular pentagon has 360/5 = 72 degree gaps; ±3 is our tolerance for optimisation"

A threshold whose number depends on the scale gives ``value: {cpu: ..., paper: ...}``. An id
with its parameter (``sae.critical-sparsity[n10-m5]``) is looked up before the bare id, so a
parametrized claim can override one threshold for one parameter.

Provenance is one of:
    paper:   the number is in the source (``why`` says where);
    derived: it follows from the source by the calculation that ``why`` states;
    ours:    a reading we chose (``why`` gives the reason).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from replication.settings import check_choice

PROVENANCES = ("paper", "derived", "ours")


def within(value: np.ndarray, threshold: Threshold) -> np.ndarray:
    return np.abs(value - threshold.value) <= threshold.tolerance


def in_band(value: np.ndarray, threshold: Threshold) -> np.ndarray:
    low, high = threshold.value
    return (value >= low) & (value <= high)


def comparison(op: Callable[[Any, Any], Any]) -> Callable[[np.ndarray, Threshold], np.ndarray]:
    return lambda value, threshold: op(value, threshold.value)


OPERATORS: dict[str, Callable[[Any, Threshold], Any]] = {
    "<": comparison(operator.lt),
    "<=": comparison(operator.le),
    ">": comparison(operator.gt),
    ">=": comparison(operator.ge),
    "==": comparison(operator.eq),
    "≈": within,  # |value − threshold| <= tolerance
    "in": in_band,  # low <= value <= high, threshold [low, high]
}


@dataclass(frozen=True)
class Threshold:
    """One asserted number and where it comes from.

    Args:
        name: the key in the claim's entry.
        value: the number (a ``[low, high]`` pair for the ``in`` operator, a bool for ``==``).
        provenance: ``paper``, ``derived`` or ``ours``.
        why: where the number is in the source, the calculation, or the reason for our reading.
        tolerance: the half-width of the ``≈`` operator, in the value's unit.
    """

    name: str
    value: Any
    provenance: str
    why: str
    tolerance: float | None = None

    def holds(self, value: Any, op: str) -> bool:
        """True when ``value op threshold`` holds for every element of a scalar, list or dict
        of plain numbers (NaN, written None, never holds; an empty value never holds)."""
        check_choice("operator", op, tuple(OPERATORS))
        if op == "≈" and self.tolerance is None:
            raise ValueError(f"threshold {self.name!r} is used with ≈ but declares no tolerance")
        if isinstance(value, Mapping):
            value = list(value.values())
        result = np.asarray(OPERATORS[op](np.array(value, dtype=float), self))
        return bool(result.size > 0 and result.all())

    def describe(self, op: str) -> str:
        """The threshold as a reader sees it, e.g. ``≈ 72 ± 3`` or ``in [0.82, 0.87]``."""
        if op == "≈":
            return f"≈ {self.value} ± {self.tolerance}"
        return f"{op} {self.value}"


def parse_threshold(claim: str, name: str, entry: Mapping, scale: str, source: Path) -> Threshold:
    where = f"{source}: {claim}.{name}"
    if not isinstance(entry, Mapping) or "value" not in entry:
        raise ValueError(f"{where}: a threshold is a mapping with value, provenance and why")
    provenance = entry.get("provenance")
    if provenance not in PROVENANCES:
        raise ValueError(f"{where}: provenance {provenance!r}; accepted: {', '.join(PROVENANCES)}")
    if not str(entry.get("why", "")).strip():
        raise ValueError(f"{where}: provenance {provenance} needs a 'why' (source place, "
                         "calculation or reason)")
    value = entry["value"]
    if isinstance(value, Mapping):
        value = value[check_choice(f"scale of {where}", scale, tuple(value))]
    return Threshold(name, value, provenance, str(entry["why"]).strip(), entry.get("tolerance"))


class ExpectedValues:
    """Every family's thresholds for one scale, read from a folder of YAML files."""

    def __init__(self, entries: dict[str, dict[str, Threshold]], folder: Path):
        self.entries = entries
        self.folder = folder

    @classmethod
    def load(cls, folder: Path, scale: str) -> ExpectedValues:
        entries: dict[str, dict[str, Threshold]] = {}
        for path in sorted(Path(folder).glob("*.yaml")):
            for claim, thresholds in (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).items():
                if claim in entries:
                    raise ValueError(f"{path}: claim {claim!r} is declared in two expected-value files")
                entries[claim] = {name: parse_threshold(claim, name, entry, scale, path)
                                  for name, entry in (thresholds or {}).items()}
        return cls(entries, Path(folder))

    def threshold(self, claim_id: str, name: str) -> Threshold:
        """The threshold ``name`` of ``claim_id`` (``id[param]`` first, then the bare id)."""
        base = claim_id.split("[", 1)[0]
        for key in (claim_id, base):
            if name in self.entries.get(key, {}):
                return self.entries[key][name]
        declared = sorted({*self.entries.get(claim_id, {}), *self.entries.get(base, {})})
        raise LookupError(f"no threshold {name!r} for claim {claim_id!r} in {self.folder}; "
                          f"declared: {', '.join(declared) or 'none'}")
