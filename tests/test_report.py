"""The claim plugin and report on a small fake session, serial and under pytest-xdist."""

from __future__ import annotations

import json

import pytest

from replication.report.records import to_jsonable
from replication.settings import machine

FAKE_CLAIMS = """
import pytest, matplotlib.pyplot as plt
C = dict(paper="Fake 2024", section="Results", source="Fake 2024, §2, Figure 1",
         quote="'It holds.'", statement="a statement")

@pytest.mark.claim(id="fake.replicated", **C)
def test_replicated(record):
    record.check("x", [1.0, 2.0], ">=", "x_min")
    fig, ax = plt.subplots(); ax.plot([0, 1]); record.figure(fig, "line")
    record.link("the cards page", "pages/cards.html")

@pytest.mark.claim(id="fake.not-replicated", **C)
def test_not_replicated(record):
    record.check("y", 0.5, ">=", "y_min")
    record.check("y in band", 0.5, "in", "band")

@pytest.mark.claim(id="fake.divergence", **C)
def test_divergence(record):
    record.check("z", 0.3, "≈", "z_target")

@pytest.mark.claim(id="fake.crash-in-divergence", **C)
def test_crash_in_divergence(record):
    record.check("z", 0.3, "≈", "z_target")
    raise KeyError("engine bug")

@pytest.mark.claim(id="fake.not-run", **C)
def test_not_run(record):
    pytest.skip("weights not available offline")

@pytest.mark.claim(id="fake.judges-nothing", **C)
def test_judges_nothing(record):
    record.metric("w", 1.0)

@pytest.mark.claim(id="fake.param", **C)
@pytest.mark.parametrize("k", [1, 2])
def test_param(record, k):
    record.check("k", k, ">", "k_min")

def test_plain_unit_test_is_not_a_claim():
    pass
"""

FAKE_EXPECTED = """
fake.replicated:
  x_min: {value: 1, provenance: paper, why: "§2 says at least 1"}
fake.not-replicated:
  y_min: {value: 1, provenance: derived, why: "2 × 0.5"}
  band: {value: [0.4, 0.6], provenance: ours, why: "a band we chose"}
fake.divergence:
  z_target: {value: 1.0, tolerance: 0.1, provenance: paper, why: "§2: 1.0"}
fake.crash-in-divergence:
  z_target: {value: 1.0, tolerance: 0.1, provenance: paper, why: "§2: 1.0"}
fake.param:
  k_min: {value: 0, provenance: ours, why: "positive"}
"""

FAKE_REGISTER = """
- claim: fake.divergence
  scale: cpu
  seeds: [0]
  holds_for: [1]
  measured: "seed 0: z = 0.3"
  lift: "more steps"
- claim: fake.crash-in-divergence
  scale: cpu
  seeds: [0, 1]
  measured: "seed 0: z = 0.3"
  lift: "more steps"
"""

EXPECTED = {
    "fake.replicated": "replicated",
    "fake.not-replicated": "not replicated",
    "fake.divergence": "known divergence",
    "fake.crash-in-divergence": "error",
    "fake.not-run": "not run",
    "fake.judges-nothing": "error",
    "fake.param[1]": "replicated",
    "fake.param[2]": "replicated",
}


def make_fake_suite(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_fake=FAKE_CLAIMS)
    (pytester.path / "claims" / "expected").mkdir(parents=True, exist_ok=True)
    (pytester.path / "claims" / "expected" / "fake.yaml").write_text(FAKE_EXPECTED)
    (pytester.path / "claims" / "divergences.yaml").write_text(FAKE_REGISTER)


def run_fake_session(pytester: pytest.Pytester, *args: str) -> dict:
    make_fake_suite(pytester)
    result = pytester.runpytest_subprocess("-p", "replication.report.plugin", "--report-dir",
                                           "out", "-p", "no:cacheprovider", *args)
    result.assert_outcomes(passed=4, failed=3, skipped=1, xfailed=1)
    out = pytester.path / "out"
    assert (out / "claims.md").exists() and (out / "index.html").exists()
    return json.loads((out / "claims.json").read_text())


def comparable(report: dict) -> list[dict]:
    """Claims without what differs between two runs of the same thing (times, timestamps)."""
    timing = ("runtime_s", "training_s", "artifacts")
    return [{**{k: v for k, v in c.items() if k != "run"},
             "per_seed": [{k: v for k, v in s.items() if k not in timing} for s in c["per_seed"]]}
            for c in report["claims"]]


def test_report_serial_and_xdist_agree(pytester: pytest.Pytester):
    serial = run_fake_session(pytester)
    assert {c["id"]: c["verdict"] for c in serial["claims"]} == EXPECTED
    by_id = {c["id"]: c for c in serial["claims"]}
    assert by_id["fake.divergence"]["reason"].startswith("seed 0: z = 0.3")
    assert by_id["fake.divergence"]["divergence"]["holds_for"] == [1]
    assert "KeyError" in by_id["fake.crash-in-divergence"]["reason"]
    assert "judged nothing" in by_id["fake.judges-nothing"]["reason"]
    assert by_id["fake.not-run"]["reason"] == "weights not available offline"
    assert "y = 0.5 is not >= 1" in by_id["fake.not-replicated"]["reason"]
    assert "y in band" not in by_id["fake.not-replicated"]["reason"]  # 0.5 is inside [0.4, 0.6]
    check = by_id["fake.replicated"]["per_seed"][0]["metrics"][0]
    assert check["value"] == [1.0, 2.0] and check["check"]["provenance"] == "paper"
    assert check["check"]["passed"] and check["check"]["describe"] == ">= 1"
    assert by_id["fake.replicated"]["quote"] == "'It holds.'"
    figure = by_id["fake.replicated"]["per_seed"][0]["figures"][0]
    assert (pytester.path / "out" / figure).exists()
    html = (pytester.path / "out" / "index.html").read_text()
    assert "known divergence" in html and figure in html and "http" not in html
    assert '<a href="pages/cards.html">the cards page</a>' in html
    assert "smoke run" not in html  # its column only in a smoke run
    assert serial["environment"]["machine"] == machine()  # runtimes come with their machine
    assert machine() in html and machine() in (pytester.path / "out" / "claims.md").read_text()
    parallel = run_fake_session(pytester, "-n", "2")
    assert comparable(parallel) == comparable(serial)


def test_partial_run_keeps_the_other_claims(pytester: pytest.Pytester):
    """Rerunning one claim updates its entry; the others and their figures stay, marked with
    their run; a claim whose test is gone leaves the report."""
    first = run_fake_session(pytester)
    pytester.runpytest_subprocess("-p", "replication.report.plugin", "--report-dir", "out",
                                  "-p", "no:cacheprovider", "-k", "test_not_replicated")
    second = json.loads((pytester.path / "out" / "claims.json").read_text())
    assert {c["id"] for c in second["claims"]} == set(EXPECTED)
    runs = {c["id"]: c["run"] for c in second["claims"]}
    old = {c["id"]: c["run"] for c in first["claims"]}
    assert runs["fake.replicated"] == old["fake.replicated"]
    figure = next(c for c in second["claims"] if c["id"] == "fake.replicated")["per_seed"][0]["figures"][0]
    assert (pytester.path / "out" / figure).exists()
    source = (pytester.path / "test_fake.py").read_text()
    (pytester.path / "test_fake.py").write_text(source.replace("def test_param(", "def test_renamed("))
    pytester.runpytest_subprocess("-p", "replication.report.plugin", "--report-dir", "out",
                                  "-p", "no:cacheprovider", "-k", "test_replicated")
    third = json.loads((pytester.path / "out" / "claims.json").read_text())
    assert "fake.param[1]" not in {c["id"] for c in third["claims"]}


ROBUST_CLAIM = """
import pytest
C = dict(paper="Fake 2024", section="Results", source="S", quote="q", statement="s")

@pytest.mark.claim(id="fake.seedy", **C)
def test_seedy(record, seed):
    record.check("seed parity", seed % 2, "==", "even")

@pytest.mark.claim(id="fake.always", **C)
def test_always(record, seed):
    record.check("one", 1, "==", "one")

@pytest.mark.claim(id="fake.offline", **C)
def test_offline(record):
    pytest.skip("model X: weights not in the local hub cache")
"""


def test_robustness_run_reports_k_of_n(pytester: pytest.Pytester):
    pytester.makepyfile(test_robust=ROBUST_CLAIM)
    (pytester.path / "claims" / "expected").mkdir(parents=True)
    (pytester.path / "claims" / "expected" / "fake.yaml").write_text(
        "fake.seedy:\n  even: {value: 0, provenance: ours, why: w}\n"
        "fake.always:\n  one: {value: 1, provenance: ours, why: w}\n")
    (pytester.path / "claims" / "divergences.yaml").write_text(
        "- {claim: fake.seedy, scale: cpu, seeds: [1, 3], holds_for: [0, 2], measured: m, lift: l}\n")
    result = pytester.runpytest_subprocess("-p", "replication.report.plugin", "--report-dir", "out",
                                           "-p", "no:cacheprovider", "--seeds", "0-3", "-n", "2")
    result.assert_outcomes(passed=6, xfailed=2, skipped=4)
    report = json.loads((pytester.path / "out" / "claims.json").read_text())
    by_id = {c["id"]: c for c in report["claims"]}
    assert by_id["fake.seedy"]["verdict"] == "seed-dependent"
    assert (by_id["fake.seedy"]["held"], by_id["fake.seedy"]["judged"]) == (2, 4)
    assert [s["seed"] for s in by_id["fake.seedy"]["per_seed"]] == [0, 1, 2, 3]
    assert by_id["fake.always"]["verdict"] == "replicated" and by_id["fake.always"]["held"] == 4
    assert by_id["fake.offline"]["verdict"] == "not run"
    page = (pytester.path / "out" / "index.html").read_text()
    assert "held for 2 of 4 seeds" in page and page.count("weights not in the local hub") == 1


def test_register_entry_applies_only_to_its_seeds(pytester: pytest.Pytester):
    """Seed 1 is registered to hold: the claim is judged plainly, and its failure would be red."""
    make_fake_suite(pytester)
    result = pytester.runpytest_subprocess("-p", "replication.report.plugin", "--report-dir", "out",
                                           "-p", "no:cacheprovider", "--seed", "1",
                                           "-k", "test_divergence")
    result.assert_outcomes(failed=1)


def test_claim_with_its_own_xfail_mark_is_refused(pytester: pytest.Pytester):
    make_fake_suite(pytester)
    pytester.makepyfile(test_own_xfail="""
import pytest
@pytest.mark.claim(id="fake.own", paper="P", section="S", source="S", quote="q", statement="s")
@pytest.mark.xfail(strict=True, reason="untracked")
def test_own(record):
    record.check("x", 1, ">=", "x_min")
""")
    result = pytester.runpytest_subprocess("-p", "replication.report.plugin", "test_own_xfail.py")
    assert result.ret != 0
    result.stderr.fnmatch_lines(["*declared in the register*"])


def test_bad_options_name_accepted_values(pytester: pytest.Pytester):
    pytester.makepyfile(test_x="def test_x(): pass")
    result = pytester.runpytest_subprocess("-p", "replication.report.plugin", "--scale", "huge")
    assert result.ret != 0
    result.stderr.fnmatch_lines(["*invalid choice: 'huge' (choose from 'cpu', 'paper')*"])


def test_to_jsonable_handles_tensors_and_nan():
    import numpy as np
    import torch

    assert to_jsonable(torch.tensor([1.5, float("nan")])) == [1.5, None]
    assert to_jsonable(np.float32(0.25)) == 0.25 and to_jsonable({"a": (1, 2)}) == {"a": [1, 2]}


def report_with(verdict: str, value: float, passed: bool) -> dict:
    check = {"op": "≈", "tolerance": 0.1, "describe": "≈ 1 ± 0.1", "passed": passed}
    return {"claims": [{"id": "c", "verdict": verdict, "per_seed": [
        {"seed": 0, "metrics": [{"name": "x", "value": value, "check": check},
                                {"name": "context", "value": value * 100}]}]}]}


def test_report_diff_lists_changed_verdicts_and_moved_metrics(tmp_path, capsys):
    from replication.report.__main__ import diff, main

    lines, changed = diff(report_with("replicated", 1.0, True),
                          report_with("not replicated", 1.3, False), rtol=0.05)
    assert changed == 1 and lines[0] == "c: replicated -> not replicated"
    assert any("no longer holds" in line for line in lines)
    assert any("moved by 0.3" in line for line in lines)
    assert diff(report_with("replicated", 1.0, True), report_with("replicated", 1.05, True),
                rtol=0.05) == ([], 0)  # within the threshold's own tolerance; context ignored
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(json.dumps(report_with("replicated", 1.0, True)))
    new.write_text(json.dumps(report_with("not replicated", 1.3, False)))
    assert main(["diff", str(old), str(new), "--fail-on-change"]) == 1
    assert "1 verdict change(s)" in capsys.readouterr().out


def test_smoke_run_judges_nothing_but_still_errors(pytester: pytest.Pytester, monkeypatch):
    make_fake_suite(pytester)
    scratch = pytester.path / "scratch"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))  # where the smoke run's temporary cache goes
    result = pytester.runpytest_subprocess("-p", "replication.report.plugin", "--report-dir",
                                           "out", "-p", "no:cacheprovider", "--smoke")
    result.assert_outcomes(passed=6, failed=2, skipped=1)  # no check fails, no register xfail
    report = json.loads((pytester.path / "out" / "claims.json").read_text())
    verdicts = {c["id"]: c["verdict"] for c in report["claims"]}
    assert report["smoke"] and report["scale"] == "paper"
    assert verdicts["fake.not-replicated"] == verdicts["fake.divergence"] == "smoke run"
    assert verdicts["fake.crash-in-divergence"] == verdicts["fake.judges-nothing"] == "error"
    assert "smoke run" in (pytester.path / "out" / "index.html").read_text()
    assert not list(scratch.glob("replication-smoke-*"))  # its temporary cache was removed
