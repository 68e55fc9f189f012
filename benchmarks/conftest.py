"""Shared timing for the speed benchmarks: a candidate against its baseline, in the same run.

The ``speed`` fixture times callables (best of a few rounds) and records the ratio
baseline/candidate in pytest-benchmark's ``extra_info`` (``--benchmark-json`` keeps it) and
on stdout. Ratios are never asserted: speed depends on the machine and its load.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import torch


class SpeedComparison:
    """Timing helpers bound to one benchmark test."""

    def __init__(self, benchmark):
        self.benchmark = benchmark

    @staticmethod
    def best_seconds(run: Callable[[], object], rounds: int = 3,
                     warmup: Callable[[], object] | None = None) -> float:
        """Fastest of ``rounds`` timed calls of ``run`` (after one call of ``warmup``, if given)."""
        if warmup is not None:
            warmup()
        timings = []
        for _ in range(rounds):
            start = time.perf_counter()
            run()
            timings.append(time.perf_counter() - start)
        return min(timings)

    def ratio(self, label: str, baseline_s: float, candidate_s: float, per: int | None = None,
              unit: str = "call") -> float:
        """Store and print both times and baseline/candidate; with ``per`` (e.g. the number of
        steps) the times are also given in ms per ``unit``."""
        ratio = baseline_s / candidate_s
        self.benchmark.extra_info.update({f"{label}: baseline_s": baseline_s,
                                          f"{label}: candidate_s": candidate_s,
                                          f"{label}: speed-up": ratio})
        detail = (f"{1e3 * baseline_s / per:.2f} vs {1e3 * candidate_s / per:.2f} ms/{unit}"
                  if per else f"{baseline_s:.3f} vs {candidate_s:.3f} s")
        print(f"\n{label}: baseline vs candidate {detail}, speed-up {ratio:.1f}x "
              f"({torch.get_num_threads()} threads)")
        return ratio


@pytest.fixture
def speed(benchmark) -> SpeedComparison:
    return SpeedComparison(benchmark)
