"""Small C++ libraries compiled on first use and called through :mod:`ctypes`.

The fused CPU kernels (:mod:`replication.double_descent.kernel`, :mod:`replication.toy.kernel`)
are plain C++ with no torch headers: they compile in seconds with the system C++ compiler
(``$CXX``, default ``c++``). Each library is cached under ``$REPLICATION_KERNELS`` (default
``~/.cache/replication/kernels``), keyed by its source, the flags, the compiler's version and the
CPU (``-march=native`` compiles for it), and written atomically (a temporary file, then a
rename). Where a library cannot be built, :func:`load` warns and returns None, and the caller
runs its portable torch path.

ctypes releases the GIL during a call, so :func:`over_instances` runs a kernel on contiguous
ranges of instances in ``torch.get_num_threads()`` threads. Each instance is one call's, so the
results do not depend on the thread count.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import itertools
import os
import platform
import subprocess
import tempfile
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from jaxtyping import Int
from torch import Tensor

from replication.settings import cpuinfo

FLAGS = ("-O3", "-march=native", "-ffast-math", "-fopenmp-simd", "-shared", "-fPIC")


def compiler() -> str:
    return os.environ.get("CXX", "c++")


def library_path(name: str, source: str) -> Path:
    """Where the library ``name`` built from ``source`` on this compiler and CPU lives."""
    version = subprocess.run([compiler(), "--version"], capture_output=True, text=True,
                             check=True).stdout
    key = hashlib.sha256("\n".join(
        [source, " ".join(FLAGS), version, platform.machine(), cpuinfo("flags")]).encode())
    root = Path(os.environ.get("REPLICATION_KERNELS",
                               Path.home() / ".cache" / "replication" / "kernels"))
    return root / f"{name}-{key.hexdigest()[:16]}.so"


def build(source: str, path: Path) -> None:
    """Compile ``source`` to ``path``: into a temporary directory beside it, then renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as scratch:
        source_file, built = Path(scratch) / "kernel.cpp", Path(scratch) / path.name
        source_file.write_text(source)
        result = subprocess.run([compiler(), *FLAGS, str(source_file), "-o", str(built)],
                                capture_output=True, text=True)
        if result.returncode:
            raise RuntimeError(f"compiling {path.name} failed:\n{result.stderr[-2000:]}")
        os.replace(built, path)


@functools.cache
def load(name: str, source: str, fallback: str) -> ctypes.CDLL | None:
    """The library ``name`` compiled from ``source``, built on first call; None, with a warning
    that names ``fallback`` (what runs instead), where it cannot be built."""
    try:
        path = library_path(name, source)
        if not path.exists():
            build(source, path)
        return ctypes.CDLL(str(path))
    except (RuntimeError, OSError, subprocess.SubprocessError) as err:  # no compiler, …
        warnings.warn(f"the fused kernel {name} could not be built ({err}); using {fallback}",
                      stacklevel=3)
        return None


def pointer(tensor: Tensor | None, dtype: torch.dtype = torch.float32,
            contiguous: bool = True) -> int | None:
    """The address of a CPU ``tensor`` of ``dtype`` for a kernel (None for None); contiguous
    unless the caller passes its strides itself (``contiguous=False``)."""
    if tensor is None:
        return None
    if (tensor.dtype != dtype or tensor.device.type != "cpu"
            or (contiguous and not tensor.is_contiguous())):
        raise ValueError(f"a fused kernel takes {'contiguous ' * contiguous}{dtype} CPU tensors, "
                         f"got {tensor.dtype} on {tensor.device} (contiguous: "
                         f"{tensor.is_contiguous()})")
    return tensor.data_ptr()


def instance_ranges(cumulative_cost: Int[Tensor, " inst_plus_1"], parts: int
                    ) -> list[tuple[int, int]]:
    """At most ``parts`` contiguous ranges of instances of about equal cost, from the running
    total of the instances' costs (``cumulative_cost[k]`` = cost of instances before k)."""
    targets = torch.linspace(0, int(cumulative_cost[-1]), parts + 1)[1:-1].long()
    bounds = torch.searchsorted(cumulative_cost, targets)
    return list(itertools.pairwise(sorted({0, *bounds.tolist(), len(cumulative_cost) - 1})))


@functools.cache
def thread_pool(threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(threads, thread_name_prefix="native-kernel")


def over_instances(run: Callable[[int, int], int], cumulative_cost: Int[Tensor, " inst_plus_1"]
                   ) -> list[int]:
    """``run(k0, k1)`` over ranges of instances in ``torch.get_num_threads()`` threads; returns
    each call's return code."""
    ranges = instance_ranges(cumulative_cost, torch.get_num_threads())
    if len(ranges) == 1:
        return [run(*ranges[0])]
    return list(thread_pool(len(ranges)).map(lambda bounds: run(*bounds), ranges))
