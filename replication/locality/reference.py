"""Published and prototype reference values of H_pos (``published.json``), as data."""

from __future__ import annotations

import functools
import json
from pathlib import Path

from replication.locality.presets import get_preset

REFERENCE_FILE = Path(__file__).with_name("published.json")


@functools.cache
def reference() -> dict:
    return json.loads(REFERENCE_FILE.read_text())


def min_rise_bits(preset_name: str) -> float:
    """The depth claim's minimum last-minus-first-layer rise: 0.5 bit for the local preset,
    1.5 bits for real ones (the published rises are 1.3-4.5 bits)."""
    kind = "local" if get_preset(preset_name).is_local else "real"
    return reference()["depth_claim"]["min_rise_bits"][kind]


def min_spearman() -> float:
    return reference()["depth_claim"]["min_spearman"]


def published(preset_name: str) -> dict:
    """First/last-layer mean H_pos, tolerance and plateau layer of a real preset."""
    get_preset(preset_name)
    return reference()["presets"][preset_name]


def prototype(preset_name: str) -> dict | None:
    """Our prototype's first/last-layer values for a local preset, if any."""
    return reference()["prototype"].get(preset_name)
