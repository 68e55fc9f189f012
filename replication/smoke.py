"""Smoke mode: every configuration end to end for a few optimizer steps, measured.

``pytest --smoke`` runs the claims at the paper's scale, but every training loop stops after
:data:`DEFAULT_STEPS` steps: those driven by :func:`replication.toy.train.chunked_loop` (toy
models, double descent, toy SAEs, the locality SAEs), the local LM's
(:func:`replication.locality.tiny_lm.train_lm`) and, through :func:`timed_loop`, the H_pos
sweeps' loops over batches of windows. Fixtures, metrics and figures run as usual;
the checks are recorded but not judged. Each artifact built meanwhile records:

* its peak memory above what the process held when the build began: on CUDA the allocator's
  peak; on CPU the resident set size, sampled every few milliseconds after the free heap is
  handed back to the OS (a short spike between two samples can be missed);
* the seconds per step of each of its loops and the projected full run: the build's measured
  time plus the steps it skipped at the measured rate, on the device it ran on.

The state is per process (each pytest-xdist worker enables it for itself).
"""

from __future__ import annotations

import ctypes
import gc
import os
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import TypeVar

import torch

DEFAULT_STEPS = 3  # optimizer steps per loop in a smoke run (the first is not timed)
SAMPLE_SECONDS = 0.005  # RSS sampling interval on CPU
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

_steps: int | None = None
T = TypeVar("T")


def enable(steps: int = DEFAULT_STEPS) -> None:
    """Turn smoke mode on for this process: loops run at most ``steps`` steps (at least 2)."""
    global _steps
    if steps < 2:
        raise ValueError(f"a smoke run needs at least 2 steps per loop (one untimed), got {steps}")
    _steps = steps


def enabled() -> bool:
    return _steps is not None


def steps_to_run(planned: int) -> int:
    """How many of a loop's ``planned`` steps to run: all of them unless in smoke mode."""
    return planned if _steps is None else min(planned, _steps)


@dataclass(frozen=True)
class LoopTiming:
    """One training loop of a smoke run: ``seconds_per_step`` timed after its first step."""

    description: str
    planned_steps: int
    steps_run: int
    seconds_per_step: float

    @property
    def skipped_seconds(self) -> float:
        return (self.planned_steps - self.steps_run) * self.seconds_per_step


LOOPS: list[LoopTiming] = []  # this process's smoke loops, in order


def note_loop(description: str, planned_steps: int, steps_run: int, timed_seconds: float) -> None:
    """Record a loop that ran ``steps_run`` of ``planned_steps`` steps, the last
    ``steps_run − 1`` of them in ``timed_seconds``."""
    if enabled():
        LOOPS.append(LoopTiming(description, planned_steps, steps_run,
                                timed_seconds / max(1, steps_run - 1)))


def trim_heap() -> None:
    """Hand the C heap's free pages back to the OS (glibc ``malloc_trim``; a no-op elsewhere),
    so that a build reusing memory an earlier one freed still shows in the resident set."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def timed_loop(items: Sequence[T], description: str) -> Iterator[T]:
    """Iterate over ``items`` as the steps of a loop: all of them, or in a smoke run the first
    :func:`steps_to_run` of them, timed from the second and recorded with :func:`note_loop`
    once the loop ends."""
    run = steps_to_run(len(items))
    timed_from = time.perf_counter()
    for i, item in enumerate(items[:run]):
        if i == 1:  # the first step (allocation, warm-up) is not timed
            timed_from = time.perf_counter()
        yield item
    note_loop(description, len(items), run, time.perf_counter() - timed_from)


def resident_bytes() -> int:
    """This process's resident set size (Linux ``/proc/self/statm``; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * PAGE_BYTES
    except OSError:
        return 0


@dataclass
class BuildMeasurement:
    """What one artifact build cost in a smoke run (see the module docstring)."""

    device: str
    peak_bytes: int = 0
    seconds: float = 0.0
    loops: list[LoopTiming] = field(default_factory=list)

    @property
    def projected_seconds(self) -> float:
        return self.seconds + sum(loop.skipped_seconds for loop in self.loops)

    def to_dict(self) -> dict:
        return {"device": self.device, "peak_bytes": self.peak_bytes,
                "seconds": round(self.seconds, 2),
                "projected_seconds": round(self.projected_seconds, 2),  # as seconds: never below it
                "loops": [asdict(loop) for loop in self.loops]}


@contextmanager
def measure_build(device: torch.device | str) -> Iterator[BuildMeasurement]:
    """Measure the build inside the ``with`` block: ``with measure_build(device) as m: ...``."""
    device = torch.device(device)
    measurement = BuildMeasurement(str(device))
    first_loop, start = len(LOOPS), time.perf_counter()
    stop = threading.Event()

    def sample(baseline: int) -> None:
        while not stop.wait(SAMPLE_SECONDS):
            measurement.peak_bytes = max(measurement.peak_bytes, resident_bytes() - baseline)

    if device.type == "cuda":
        torch.cuda.synchronize(device)
        baseline = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    else:
        gc.collect()
        trim_heap()
        sampler = threading.Thread(target=sample, args=(resident_bytes(),), daemon=True)
        sampler.start()
    try:
        yield measurement
    finally:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            measurement.peak_bytes = torch.cuda.max_memory_allocated(device) - baseline
        else:
            stop.set()
            sampler.join()
        measurement.seconds = time.perf_counter() - start
        measurement.loops = LOOPS[first_loop:]
