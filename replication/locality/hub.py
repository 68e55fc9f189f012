"""Access to the Hugging Face hub: a quick reachability check, offline mode, the local cache.

Real presets and hub corpora need the hub (or its local cache: ``HF_HUB_CACHE``, by default
``$HF_HOME/hub``). When the hub cannot be reached within a couple of seconds we switch the hub
libraries to offline mode, so a missing model fails at once from the local cache instead of
retrying for half a minute; :func:`missing_from_cache` names the files the cache lacks before
anything loads. The caller turns the failure into a :class:`Unavailable` with its reason (a
``skip`` in the claims).
"""

from __future__ import annotations

import functools
import json
import os
import socket
from collections.abc import Sequence
from pathlib import Path
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


def hub_cache() -> str:
    """The folder the hub libraries read and write their cache in (``HF_HUB_CACHE``)."""
    import huggingface_hub.constants

    return huggingface_hub.constants.HF_HUB_CACHE


def missing_from_cache(needs: Sequence[tuple[str, Sequence[str]]]) -> list[str]:
    """The needs the local hub cache cannot serve, as ``repo/file`` strings.

    Args:
        needs: ``(repo_id, alternatives)`` pairs; a need is met when one of the alternative
            files is cached. A cached ``*.index.json`` (sharded weights) also needs every shard
            it lists.
    """
    from huggingface_hub import try_to_load_from_cache

    missing = []
    for repo, alternatives in needs:
        found = next((path for name in alternatives
                      if isinstance(path := try_to_load_from_cache(repo, name), str)), None)
        if found is None:
            missing.append(f"{repo}/{' or '.join(alternatives)}")
        elif found.endswith(".index.json"):
            shards = sorted(set(json.loads(Path(found).read_text())["weight_map"].values()))
            missing += [f"{repo}/{shard}" for shard in shards
                        if not isinstance(try_to_load_from_cache(repo, shard), str)]
    return missing
