"""The pytest plugin of the suite: options, the ``claim`` marker, the ``record`` fixture, the report.

Claim metadata and records travel through ``report.user_properties``, the channel pytest-xdist
ships from workers to the controller, so ``pytest -n 2`` writes the same report as a serial run.
Only the controller (or a serial run) writes the report, at the end of the session.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

from replication.report.records import ClaimRecord  # noqa: E402
from replication.report.writer import write_report  # noqa: E402
from replication.settings import (  # noqa: E402
    DEFAULT_CACHE_DIR,
    DEVICES,
    SCALES,
    RunSettings,
    resolve_device,
)

CLAIM_KEY = "replication.claim"
RECORD_KEY = "replication.record"
CLAIM_FIELDS = ("id", "paper", "statement")
record_key = pytest.StashKey[ClaimRecord]()
settings_key = pytest.StashKey[RunSettings]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("replication", "superposition replication suite")
    group.addoption("--scale", choices=SCALES, default="cpu",
                    help="configuration set: cpu (minutes on 2 cores) or paper (papers' own sizes)")
    group.addoption("--device", choices=DEVICES, default="auto",
                    help="torch device for training and inference (auto: cuda if available)")
    group.addoption("--seed", type=int, default=0, help="base seed of every configuration")
    group.addoption("--report-dir", default="reports", help="where the report is written")
    group.addoption("--cache-dir", default=str(DEFAULT_CACHE_DIR),
                    help="where trained artifacts are cached")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "claim(id, paper, section, statement): a paper claim")
    try:
        device = resolve_device(config.getoption("--device"))
    except ValueError as err:
        raise pytest.UsageError(str(err)) from err
    settings = RunSettings(
        scale=config.getoption("--scale"),
        device=device,
        seed=config.getoption("--seed"),
        cache_dir=Path(config.getoption("--cache-dir")),
        report_dir=Path(config.getoption("--report-dir")),
    )
    config.stash[settings_key] = settings
    if hasattr(config, "workerinput"):  # an xdist worker: share the cores, don't oversubscribe
        workers = int(config.workerinput["workercount"])
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
    else:  # serial run or xdist controller
        config.pluginmanager.register(ReportCollector(settings), "replication-report")



@pytest.fixture(scope="session")
def run_settings(pytestconfig: pytest.Config) -> RunSettings:
    """Scale, device, seed, cache and report folders of this run."""
    return pytestconfig.stash[settings_key]


def claim_id(item: pytest.Item) -> str:
    marker = item.get_closest_marker("claim")
    callspec = getattr(item, "callspec", None)
    return marker.kwargs["id"] + (f"[{callspec.id}]" if callspec else "")


@pytest.fixture
def record(request: pytest.FixtureRequest, run_settings: RunSettings) -> ClaimRecord:
    """The claim's record: ``record.metric(...)``, ``record.figure(...)``, ``record.note(...)``."""
    if request.node.get_closest_marker("claim") is None:
        raise pytest.UsageError(f"{request.node.nodeid} uses `record` but has no claim marker")
    rec = ClaimRecord(
        claim_id=claim_id(request.node),
        figure_dir=run_settings.report_dir / "figures",
        seeds=[run_settings.seed],
    )
    request.node.stash[record_key] = rec
    return rec


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    marker = item.get_closest_marker("claim")
    if marker is None:
        return
    missing = [f for f in CLAIM_FIELDS if not marker.kwargs.get(f)]
    if missing:
        raise pytest.UsageError(f"{item.nodeid}: claim marker lacks {', '.join(missing)}")
    settings = item.config.stash[settings_key]
    item.user_properties.append((CLAIM_KEY, {
        "id": claim_id(item),
        "paper": marker.kwargs["paper"],
        "section": marker.kwargs.get("section", ""),
        "statement": marker.kwargs["statement"],
        "scale": settings.scale,
        "device": str(settings.device),
        "markers": sorted(m.name for m in item.iter_markers() if m.name in ("slow", "gpu", "hub")),
    }))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    rec = item.stash.get(record_key, None)
    if rec is not None and report.when == "call":
        report.user_properties.append((RECORD_KEY, rec.to_dict()))


def failure_message(report: pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None and getattr(crash, "message", None):
        return crash.message
    return str(report.longreprtext).strip().splitlines()[-1] if report.longreprtext else ""


def skip_reason(report: pytest.TestReport) -> str:
    if isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    return failure_message(report)


def verdict_of(report: pytest.TestReport) -> tuple[str, str]:
    """(verdict, reason) of one phase's report; see ``records.VERDICTS``."""
    if report.skipped:
        if hasattr(report, "wasxfail"):
            return "known divergence", report.wasxfail.removeprefix("reason: ")
        return "not run", skip_reason(report)
    if report.failed:
        message = failure_message(report)
        if report.when != "call":
            return "error", f"{report.when}: {message}"
        if "XPASS(strict)" in str(report.longrepr):
            return "unexpected pass", "strict xfail passed: the divergence no longer holds"
        return "not replicated", message
    return "replicated", ""


class ReportCollector:
    """Gathers claim reports (from this process or xdist workers) and writes the report."""

    def __init__(self, settings: RunSettings):
        self.settings = settings
        self.claims: dict[str, dict] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        props = dict(report.user_properties)
        if CLAIM_KEY not in props:
            return
        entry = self.claims.setdefault(report.nodeid, {
            **props[CLAIM_KEY], "nodeid": report.nodeid, "runtime_s": 0.0,
            "verdict": None, "reason": "", "seeds": [], "metrics": [], "figures": [], "notes": [],
        })
        entry["runtime_s"] += report.duration
        if RECORD_KEY in props:
            entry.update(props[RECORD_KEY])
        if report.when == "call" or (report.when == "setup" and not report.passed) or (
            report.when == "teardown" and report.failed and entry["verdict"] != "error"
        ):
            entry["verdict"], entry["reason"] = verdict_of(report)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.claims:
            write_report(list(self.claims.values()), self.settings)
