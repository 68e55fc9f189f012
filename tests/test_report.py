"""The claim plugin and report on a small fake session, serial and under pytest-xdist."""

from __future__ import annotations

import json

import pytest

from replication.cache import ArtifactCache, config_hash
from replication.report.records import to_jsonable

FAKE_CLAIMS = '''
import pytest, matplotlib.pyplot as plt
C = dict(paper="Fake 2024", statement="a statement")

@pytest.mark.claim(id="fake.replicated", **C)
def test_replicated(record):
    record.metric("x", [1.0, 2.0], expect=">= 1")
    fig, ax = plt.subplots(); ax.plot([0, 1]); record.figure(fig, "line")
    assert True

@pytest.mark.claim(id="fake.not-replicated", **C)
def test_not_replicated(record):
    record.metric("y", 0.5, expect=">= 1")
    assert 0.5 >= 1, "y below threshold"

@pytest.mark.claim(id="fake.divergence", **C)
@pytest.mark.xfail(strict=True, reason="measured 0.3, paper 1.0")
def test_divergence(record):
    record.metric("z", 0.3, expect=">= 1")
    assert 0.3 >= 1

@pytest.mark.claim(id="fake.not-run", **C)
def test_not_run(record):
    pytest.skip("weights not available offline")

@pytest.mark.claim(id="fake.param", **C)
@pytest.mark.parametrize("k", [1, 2])
def test_param(record, k):
    record.metric("k", k)

def test_plain_unit_test_is_not_a_claim():
    pass
'''

EXPECTED = {
    "fake.replicated": "replicated",
    "fake.not-replicated": "not replicated",
    "fake.divergence": "known divergence",
    "fake.not-run": "not run",
    "fake.param[1]": "replicated",
    "fake.param[2]": "replicated",
}


def run_fake_session(pytester: pytest.Pytester, *args: str) -> dict:
    pytester.makepyfile(test_fake=FAKE_CLAIMS)
    result = pytester.runpytest_subprocess("-p", "replication.report.plugin", "--report-dir",
                                           "out", "-p", "no:cacheprovider", *args)
    result.assert_outcomes(passed=4, failed=1, skipped=1, xfailed=1)
    out = pytester.path / "out"
    assert (out / "claims.md").exists() and (out / "index.html").exists()
    return json.loads((out / "claims.json").read_text())


def comparable(report: dict) -> list[dict]:
    return [{k: v for k, v in c.items() if k != "runtime_s"} for c in report["claims"]]


def test_report_serial_and_xdist_agree(pytester: pytest.Pytester):
    serial = run_fake_session(pytester)
    assert {c["id"]: c["verdict"] for c in serial["claims"]} == EXPECTED
    by_id = {c["id"]: c for c in serial["claims"]}
    assert by_id["fake.divergence"]["reason"] == "measured 0.3, paper 1.0"
    assert by_id["fake.not-run"]["reason"] == "weights not available offline"
    assert "y below threshold" in by_id["fake.not-replicated"]["reason"]
    assert by_id["fake.replicated"]["metrics"][0] == {"name": "x", "value": [1.0, 2.0],
                                                     "expect": ">= 1", "unit": None}
    figure = by_id["fake.replicated"]["figures"][0]
    assert (pytester.path / "out" / figure).exists()
    html = (pytester.path / "out" / "index.html").read_text()
    assert "known divergence" in html and figure in html and "http" not in html
    parallel = run_fake_session(pytester, "-n", "2")
    assert comparable(parallel) == comparable(serial)


def test_bad_options_name_accepted_values(pytester: pytest.Pytester):
    pytester.makepyfile(test_x="def test_x(): pass")
    result = pytester.runpytest_subprocess("-p", "replication.report.plugin", "--scale", "huge")
    assert result.ret != 0
    result.stderr.fnmatch_lines(["*invalid choice: 'huge' (choose from 'cpu', 'paper')*"])


def test_cache_round_trip_and_build_once(tmp_path):
    import torch

    cache = ArtifactCache(tmp_path)
    config = {"n": 3, "p": [0.1, 0.2]}
    calls = []

    def build():
        calls.append(1)
        return {"W": torch.arange(6.0).view(2, 3)}, {"loss": 0.5}

    first = cache.get_or_build("kind", config, build)
    second = cache.get_or_build("kind", config, build)
    assert len(calls) == 1
    assert torch.equal(first[0]["W"], second[0]["W"]) and second[1] == {"loss": 0.5}
    assert config_hash(config) == config_hash({"p": [0.1, 0.2], "n": 3})


def test_interrupted_write_leaves_no_entry(tmp_path, monkeypatch):
    import torch

    import replication.cache

    def write_half_then_die(tensors, path):
        path.write_bytes(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(replication.cache, "save_file", write_half_then_die)
    cache = ArtifactCache(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        cache.get_or_build("kind", {"a": 1}, lambda: ({"x": torch.zeros(2)}, {}))
    assert cache.load("kind", {"a": 1}) is None
    assert not any(p.is_dir() for p in (tmp_path / "kind").iterdir())  # no temp folder left


def test_to_jsonable_handles_tensors_and_nan():
    import numpy as np
    import torch

    assert to_jsonable(torch.tensor([1.5, float("nan")])) == [1.5, None]
    assert to_jsonable(np.float32(0.25)) == 0.25 and to_jsonable({"a": (1, 2)}) == {"a": [1, 2]}
