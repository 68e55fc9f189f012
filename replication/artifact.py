"""One shape for everything the suite trains and caches.

A *config* is a frozen dataclass that knows how to train its artifact and how to rebuild it
from cached tensors::

    @dataclass(frozen=True)
    class ToySweep:
        kind: ClassVar[str] = "toy-sweep"               # the cache folder
        ...
        def to_dict(self) -> dict: ...                  # JSON-serialisable: the key's config
        def train(self, device, *upstream) -> TrainedSweep: ...   # upstream: see below
        def from_tensors(self, tensors, meta) -> TrainedSweep: ...

and an *artifact* is what training returns: it carries its ``config``, its layout (the grid,
the L1 list: whatever a claim needs to read it), ``tensors()`` for the cache, and optionally
``meta()`` (JSON).

:func:`load_or_train` is the one way in: the cached artifact, or a trained one. Its key is
the config, the code of the config's module and everything that imports (see
:mod:`replication.cache`), and the keys of the upstream artifacts; the returned artifact
carries its own key in ``cache_key`` so that downstream artifacts can name it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Protocol, TypeVar

import torch

from replication.cache import ArtifactCache

A = TypeVar("A")


class ArtifactConfig(Protocol[A]):
    kind: ClassVar[str]

    def to_dict(self) -> dict[str, Any]: ...

    def train(self, device: torch.device, *upstream: Any) -> A: ...

    def from_tensors(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> A: ...


def load_or_train(config: ArtifactConfig[A], cache: ArtifactCache, device: torch.device | str,
                  upstream: Sequence[Any] = ()) -> A:
    """The artifact of ``config``, from the cache or trained now on ``device`` (then cached).

    Args:
        config: the artifact's configuration (see the module docstring).
        cache: where artifacts are kept.
        device: where training runs; a loaded artifact's tensors are on the CPU.
        upstream: the artifacts this one is built from (e.g. the toy model under an SAE): they
            are passed to ``config.train`` and their ``cache_key`` enters this one's key.
    """

    def build():
        trained = config.train(torch.device(device), *upstream)
        return trained.tensors(), (trained.meta() if hasattr(trained, "meta") else {})

    code, upstream_keys = type(config).__module__, [a.cache_key for a in upstream]
    tensors, meta = cache.get_or_build(config.kind, config.to_dict(), build, upstream=upstream_keys,
                                       code=code, device=device)
    artifact = config.from_tensors(tensors, meta)
    artifact.cache_key = cache.key(config.to_dict(), code, upstream_keys)
    return artifact
