"""Run settings shared by every claim: scale, device, seed and where artifacts go.

A *scale* is a named set of configurations (``cpu``: minutes on two CPU cores; ``paper``:
the papers' own hyper-parameters). Each claim family keeps one table keyed by scale and
reads it with :func:`for_scale`, so no claim branches on the scale itself.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch

SCALES = ("cpu", "paper")
DEVICES = ("auto", "cpu", "cuda")
DEFAULT_CACHE_DIR = Path(os.environ.get("REPLICATION_CACHE", Path.cwd() / ".cache" / "artifacts"))

T = TypeVar("T")


def check_choice(name: str, value: str, accepted: tuple[str, ...] | list[str]) -> str:
    """Return ``value`` if it is one of ``accepted``, else raise a ValueError naming both."""
    if value not in accepted:
        raise ValueError(f"unknown {name} {value!r}; accepted: {', '.join(map(str, accepted))}")
    return value


def for_scale(table: Mapping[str, T], scale: str) -> T:
    """Pick the configuration of ``scale`` from a per-scale table."""
    check_choice("scale", scale, tuple(table))
    return table[scale]


def parse_seeds(text: str) -> tuple[int, ...]:
    """Seeds from ``"0-4"`` (a range, both ends included), ``"0,2,7"`` or ``"3"``."""
    try:
        if "-" in text.strip("-"):
            low, high = (int(v) for v in text.split("-"))
            seeds = tuple(range(low, high + 1))
        else:
            seeds = tuple(int(v) for v in text.split(","))
    except ValueError:
        seeds = ()
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise ValueError(f"bad seeds {text!r}; accepted: a range '0-4', a list '0,2,7' or one "
                         "seed '3' (non-negative, no repeats)")
    return seeds


def cpuinfo(field: str) -> str:
    """The value of ``field`` (e.g. ``"model name"``, ``"flags"``) in /proc/cpuinfo; empty where
    unknown."""
    try:
        with open("/proc/cpuinfo") as info:
            line = next((line for line in info if line.split(":")[0].strip() == field), "")
    except OSError:
        return ""
    return line.partition(":")[2].strip()


def usable_cores() -> int:
    """The CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def worker_threads(workers: int) -> int:
    """Torch threads for each of ``workers`` processes sharing the usable cores: an even share,
    at least 1 (OpenMP threads of processes sharing a core spin against each other)."""
    return max(1, usable_cores() // workers)


def machine() -> str:
    """The CPU model and the usable cores, for the report (e.g. ``"Intel(R) Xeon(R) Processor
    @ 2.50GHz, 2 cores"``)."""
    return f"{cpuinfo('model name') or platform.processor() or platform.machine()}, " \
           f"{usable_cores()} cores"


def resolve_device(device: str) -> torch.device:
    """Map ``auto``/``cpu``/``cuda`` to a torch device; ``cuda`` without a GPU is an error."""
    check_choice("device", device, DEVICES)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but torch sees no CUDA device; use 'cpu' or 'auto'")
    return torch.device(device)


@dataclass(frozen=True)
class RunSettings:
    """What one run of the suite was asked for.

    Args:
        scale: one of :data:`SCALES`.
        device: the torch device every model trains and runs on.
        seed: the base seed; every configuration derives its own seed from it.
        seeds: the seeds a robustness run repeats every claim for (``(seed,)`` otherwise).
        cache_dir: where trained artifacts are cached (safetensors + json).
        report_dir: where the report and its figures are written.
        smoke: a smoke run (:mod:`replication.smoke`): a few steps per loop, checks not judged.
    """

    scale: str
    device: torch.device
    seed: int
    cache_dir: Path
    report_dir: Path
    seeds: tuple[int, ...] = ()
    smoke: bool = False

    @property
    def robustness(self) -> bool:
        """True when every claim runs once per seed of ``seeds``."""
        return len(self.seeds) > 1
