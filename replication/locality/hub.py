"""Access to the Hugging Face hub: a quick reachability check and offline mode.

Real presets and hub corpora need the hub (or its local cache). When the hub cannot be
reached within a couple of seconds we switch the hub libraries to offline mode, so a missing
model fails at once from the local cache instead of retrying for half a minute; the caller
turns the failure into a :class:`Unavailable` with its reason (a ``skip`` in the claims).
"""

from __future__ import annotations

import functools
import os
import socket
from urllib.parse import urlparse

HUB_TIMEOUT_S = 2.0


class Unavailable(RuntimeError):
    """A model, SAE or corpus that cannot be had here (offline, gated, not cached)."""


@functools.cache
def hub_reachable(timeout_s: float = HUB_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the hub's endpoint opens within ``timeout_s`` seconds.

    An explicit ``HF_HUB_OFFLINE=1`` counts as unreachable. The answer is cached per process.
    """
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def set_offline() -> None:
    """Put huggingface_hub, datasets and transformers into offline mode for this process."""
    import datasets.config
    import huggingface_hub.constants

    os.environ["HF_HUB_OFFLINE"] = "1"
    huggingface_hub.constants.HF_HUB_OFFLINE = True
    datasets.config.HF_HUB_OFFLINE = True
    datasets.config.HF_DATASETS_OFFLINE = True


def prepare_hub() -> str:
    """Check the hub once and go offline if it is unreachable; returns a phrase for messages."""
    if hub_reachable():
        return "hub reachable"
    set_offline()
    return "hub unreachable, offline mode (local cache only)"
