"""The divergence register: claims measured not to replicate at a scale, and on which seeds.

One YAML file (``claims/divergences.yaml``) lists every known divergence, in the spirit of
TransformerLens's ``QUARANTINES.md``::

    - claim: dd.memorising.features-small      # the claim id, with its parameter if any
      scale: cpu
      seeds: [0, 2, 3, 4]                       # measured to diverge on these seeds
      holds_for: [1]                            # measured to hold on these (optional)
      measured: "seed 0: largest D_i 0.43 ..."  # the numbers
      lift: "more steps, or ..."                # what would lift it

The plugin marks a claim ``xfail(strict=True, raises=AssertionError)`` exactly when the run's
(claim, scale, seed) is in the register, so the register is the only place a divergence is
declared: the report, the xfail and this file cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from replication.settings import SCALES, check_choice

FIELDS = ("claim", "scale", "seeds", "measured", "lift")


@dataclass(frozen=True)
class Divergence:
    """One register entry; see the module docstring for the fields."""

    claim: str
    scale: str
    seeds: tuple[int, ...]
    measured: str
    lift: str
    holds_for: tuple[int, ...] = field(default=())

    def summary(self) -> str:
        return f"{self.measured.strip()} What would lift it: {self.lift.strip()}"

    def to_dict(self) -> dict:
        return {"scale": self.scale, "seeds": list(self.seeds), "holds_for": list(self.holds_for),
                "measured": self.measured.strip(), "lift": self.lift.strip()}


class DivergenceRegister:
    """The entries of the register, looked up by (claim id, scale, seed)."""

    def __init__(self, entries: list[Divergence]):
        self.entries = entries

    @classmethod
    def load(cls, path: Path) -> DivergenceRegister:
        path = Path(path)
        if not path.exists():
            return cls([])
        entries = []
        for i, raw in enumerate(yaml.safe_load(path.read_text(encoding="utf-8")) or []):
            missing = [f for f in FIELDS if f not in raw]
            if missing:
                raise ValueError(f"{path}, entry {i} ({raw.get('claim', '?')}): missing "
                                 f"{', '.join(missing)}; an entry has {', '.join(FIELDS)}")
            check_choice(f"scale of {path} entry {raw['claim']}", raw["scale"], SCALES)
            entries.append(Divergence(raw["claim"], raw["scale"], tuple(raw["seeds"]),
                                      str(raw["measured"]), str(raw["lift"]),
                                      tuple(raw.get("holds_for", ()))))
        keys = [(d.claim, d.scale) for d in entries]
        duplicated = sorted({k for k in keys if keys.count(k) > 1})
        if duplicated:
            raise ValueError(f"{path}: claims listed twice for one scale: {duplicated}")
        return cls(entries)

    def entry(self, claim_id: str, scale: str) -> Divergence | None:
        """The register's entry for this claim at this scale, whatever the seed."""
        return next((d for d in self.entries if d.claim == claim_id and d.scale == scale), None)

    def diverges(self, claim_id: str, scale: str, seed: int) -> Divergence | None:
        """The entry if this claim is registered to diverge at this scale for this seed."""
        found = self.entry(claim_id, scale)
        return found if found is not None and seed in found.seeds else None
