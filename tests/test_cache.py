"""The artifact cache: round trip, keys that follow the code and upstream artifacts, atomic
writes, and corrupt entries rebuilt with a warning."""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch

import replication.cache
from replication.cache import ArtifactCache, CorruptEntryWarning, code_version, config_hash


def build_w():
    return {"W": torch.arange(6.0).view(2, 3)}, {"loss": 0.5}


def test_round_trip_and_build_once(tmp_path):
    cache = ArtifactCache(tmp_path)
    calls = []

    def build():
        calls.append(1)
        return build_w()

    first = cache.get_or_build("kind", {"n": 3}, build)
    second = cache.get_or_build("kind", {"n": 3}, build)
    assert len(calls) == 1
    assert torch.equal(first[0]["W"], second[0]["W"]) and second[1] == {"loss": 0.5}
    assert config_hash({"n": 3, "p": [0.1]}) == config_hash({"p": [0.1], "n": 3})
    assert [e.built for e in replication.cache.BUILD_LOG[-2:]] == [True, False]


def test_upstream_keys_enter_the_key():
    assert ArtifactCache.key({"a": 1}, build_w, ["toy-1"]) != ArtifactCache.key({"a": 1}, build_w,
                                                                                  ["toy-2"])


def make_builder_package(root, loss_expression: str) -> None:
    package = root / "replication" / "fakefamily"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text("")
    (package / "loss.py").write_text(f"def loss(x):\n    return {loss_expression}\n")
    (package / "builder.py").write_text(textwrap.dedent("""
        import torch
        from replication.fakefamily.loss import loss

        def build():
            return {"y": loss(torch.ones(2))}, {}
    """))


def test_changed_builder_code_is_a_cache_miss(tmp_path, monkeypatch):
    """Editing a module the builder imports (here its loss) changes the key: no stale entry."""
    code = tmp_path / "code"
    make_builder_package(code, "x * 2")
    monkeypatch.syspath_prepend(str(code))
    import replication

    monkeypatch.setattr(replication, "__path__", [*replication.__path__, str(code / "replication")])
    from replication.fakefamily.builder import build

    before = ArtifactCache.key({"a": 1}, build)
    make_builder_package(code, "x * 3")  # the bug fix
    code_version.cache_clear()
    after = ArtifactCache.key({"a": 1}, build)
    assert before != after
    assert code_version("replication.fakefamily.builder") != ""
    for name in [m for m in sys.modules if m.startswith("replication.fakefamily")]:
        monkeypatch.delitem(sys.modules, name)
    code_version.cache_clear()


def test_corrupt_entry_is_rebuilt_with_a_warning(tmp_path):
    cache = ArtifactCache(tmp_path)
    cache.get_or_build("kind", {"a": 1}, build_w)
    entry = cache.entry_dir("kind", ArtifactCache.key({"a": 1}, build_w))
    tensors = entry / replication.cache.TENSORS_FILE
    tensors.write_bytes(tensors.read_bytes()[:20])  # truncated, as a killed copy leaves it
    with pytest.warns(CorruptEntryWarning, match=str(entry)):
        rebuilt, meta = cache.get_or_build("kind", {"a": 1}, build_w)
    assert torch.equal(rebuilt["W"], build_w()[0]["W"]) and meta == {"loss": 0.5}
    assert replication.cache.BUILD_LOG[-1].built


def test_interrupted_write_leaves_no_entry(tmp_path, monkeypatch):
    def write_half_then_die(tensors, path):
        path.write_bytes(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(replication.cache, "save_file", write_half_then_die)
    cache = ArtifactCache(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        cache.get_or_build("kind", {"a": 1}, build_w)
    assert cache.load("kind", ArtifactCache.key({"a": 1}, build_w)) is None
    assert not any(p.is_dir() for p in (tmp_path / "kind").iterdir())  # no temp folder left


class Doubler:
    """A minimal artifact config of the protocol in replication.artifact."""

    kind = "doubler"

    def __init__(self, n: int):
        self.n = n

    def to_dict(self):
        return {"n": self.n}

    def train(self, device, *upstream):
        offset = sum(float(u.y.sum()) for u in upstream)
        return Doubled(self, torch.arange(self.n, device=device) * 2.0 + offset)

    def from_tensors(self, tensors, meta):
        return Doubled(self, tensors["y"])


class Doubled:
    def __init__(self, config, y):
        self.config, self.y = config, y

    def tensors(self):
        return {"y": self.y}


def test_load_or_train_keys_by_config_code_and_upstream(tmp_path):
    from replication.artifact import load_or_train

    cache = ArtifactCache(tmp_path)
    base = load_or_train(Doubler(3), cache, "cpu")
    again = load_or_train(Doubler(3), cache, "cpu")
    assert torch.equal(base.y, again.y) and base.cache_key == again.cache_key
    downstream = load_or_train(Doubler(2), cache, "cpu", upstream=[base])
    assert torch.equal(downstream.y, torch.tensor([6.0, 8.0]))  # trained from its upstream
    assert downstream.cache_key != load_or_train(Doubler(2), cache, "cpu").cache_key
    assert replication.cache.BUILD_LOG[-1].built  # a different upstream is a different entry
