"""Reference values of H_pos (``published.json``), as data: the numbers printed in the paper,
values read off the later presets' figures (approximate), and our prototype's."""

from __future__ import annotations

import functools
import json
from pathlib import Path

from replication.locality.presets import get_preset

REFERENCE_FILE = Path(__file__).with_name("published.json")


@functools.cache
def reference() -> dict:
    return json.loads(REFERENCE_FILE.read_text())


def paper_values(preset_name: str) -> dict | None:
    """The paper's printed per-layer values for a preset (``mean_H``, ``std_H``, ``n_leading``,
    ``token_H``, each keyed by layer as an int, and ``where``), or None if it prints none."""
    get_preset(preset_name)
    entry = reference()["paper"].get(preset_name)
    if entry is None:
        return None
    return {k: ({int(layer): v for layer, v in val.items()} if k != "where" else val)
            for k, val in entry.items()}


def figure_values(preset_name: str) -> dict | None:
    """First/last-layer mean H_pos and plateau layer read off a later preset's figure."""
    get_preset(preset_name)
    return reference()["figures"].get(preset_name)


def prototype(preset_name: str) -> dict | None:
    """Our prototype's first/last-layer values for a local preset, if any."""
    return reference()["prototype"].get(preset_name)
