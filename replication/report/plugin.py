"""The pytest plugin of the suite: options, the ``claim`` marker, the ``record`` fixture, the report.

A claim is a test marked ``@pytest.mark.claim(id=, paper=, section=, source=, quote=,
statement=)`` that judges its numbers with ``record.check`` against thresholds declared in
``claims/expected/*.yaml``. When the body returns, the plugin fails it with an
``AssertionError`` naming every check that did not hold (and with an error if it made none).

Known divergences are declared only in the register (``claims/divergences.yaml``): the plugin
marks a claim ``xfail(strict=True, raises=AssertionError)`` for exactly the (scale, seed)
pairs the register lists, so an exception is always an *error*, never a divergence.

Claim metadata and records travel through ``report.user_properties``, the channel pytest-xdist
ships from workers to the controller, so ``pytest -n 2`` writes the same report as a serial run.
Only the controller (or a serial run) writes the report, at the end of the session.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

from replication import smoke  # noqa: E402
from replication.cache import BUILD_LOG  # noqa: E402
from replication.report.divergences import DivergenceRegister  # noqa: E402
from replication.report.expected import ExpectedValues  # noqa: E402
from replication.report.records import ClaimRecord  # noqa: E402
from replication.report.writer import write_report  # noqa: E402
from replication.settings import (  # noqa: E402
    DEFAULT_CACHE_DIR,
    DEVICES,
    SCALES,
    RunSettings,
    parse_seeds,
    resolve_device,
    worker_threads,
)

CLAIM_KEY = "replication.claim"
RECORD_KEY = "replication.record"
OUTCOME_KEY = "replication.outcome"
ARTIFACTS_KEY = "replication.artifacts"
CLAIM_FIELDS = ("id", "paper", "section", "source", "quote", "statement")
record_key = pytest.StashKey[ClaimRecord]()
settings_key = pytest.StashKey[RunSettings]()
expected_key = pytest.StashKey[ExpectedValues]()
register_key = pytest.StashKey[DivergenceRegister]()
# Artifacts (cache builds and loads) requested while each fixture was last set up, by fixture
# name: a fixture has one live instance at a time, so this is the instance the next test uses.
FIXTURE_ARTIFACTS: dict[str, list[dict]] = {}


class ClaimProtocolError(Exception):
    """A claim test that breaks the claim protocol (e.g. it judged nothing)."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("replication", "superposition replication suite")
    group.addoption("--scale", choices=SCALES, default="cpu",
                    help="configuration set: cpu (minutes on 2 cores) or paper (papers' own sizes)")
    group.addoption("--device", choices=DEVICES, default="auto",
                    help="torch device for training and inference (auto: cuda if available)")
    group.addoption("--seed", type=int, default=0, help="base seed of every configuration")
    group.addoption("--seeds", default=None,
                    help="robustness run: every claim once per seed, e.g. '0-4' or '0,2,7'")
    group.addoption("--report-dir", default="reports", help="where the report is written")
    group.addoption("--cache-dir", default=str(DEFAULT_CACHE_DIR),
                    help="where trained artifacts are cached")
    group.addoption("--smoke", action="store_true",
                    help="smoke run: every claim at the paper's scale for a few optimizer steps "
                         "per training loop, checks recorded but not judged; records each "
                         "artifact's peak memory and projected full-run time (fresh temporary "
                         "cache)")
    parser.addini("claim_expected_dir", "folder of the expected-value YAML files",
                  default="claims/expected")
    parser.addini("claim_divergences", "the divergence register (YAML)",
                  default="claims/divergences.yaml")


def pytest_unconfigure(config: pytest.Config) -> None:
    """A smoke run's temporary cache (partly trained paper-scale artifacts) goes with it."""
    settings = config.stash.get(settings_key, None)
    if settings is not None and settings.smoke:
        shutil.rmtree(settings.cache_dir, ignore_errors=True)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "claim(id, paper, section, source, quote, statement): "
                                       "a paper claim")
    try:
        device = resolve_device(config.getoption("--device"))
        seeds_option = config.getoption("--seeds")
        seeds = parse_seeds(seeds_option) if seeds_option else (config.getoption("--seed"),)
    except ValueError as err:
        raise pytest.UsageError(str(err)) from err
    smoke_run = config.getoption("--smoke")
    if smoke_run:
        smoke.enable()
    settings = RunSettings(
        scale="paper" if smoke_run else config.getoption("--scale"),
        device=device,
        seed=seeds[0],
        cache_dir=(Path(tempfile.mkdtemp(prefix="replication-smoke-")) if smoke_run
                   else Path(config.getoption("--cache-dir"))),
        report_dir=Path(config.getoption("--report-dir")),
        seeds=seeds,
        smoke=smoke_run,
    )
    config.stash[settings_key] = settings
    root = config.rootpath
    config.stash[expected_key] = ExpectedValues.load(root / config.getini("claim_expected_dir"),
                                                     settings.scale)
    config.stash[register_key] = DivergenceRegister.load(root / config.getini("claim_divergences"))
    if hasattr(config, "workerinput"):  # an xdist worker: share the cores, don't oversubscribe
        workers = int(config.workerinput["workercount"])
        torch.set_num_threads(worker_threads(workers))
    else:  # serial run or xdist controller
        config.pluginmanager.register(ReportCollector(settings, config.stash[register_key]),
                                      "replication-report")


@pytest.fixture(scope="session")
def run_settings(pytestconfig: pytest.Config) -> RunSettings:
    """Scale, device, seeds, cache and report folders of this run."""
    return pytestconfig.stash[settings_key]


@pytest.fixture(scope="session")
def seed(request: pytest.FixtureRequest, run_settings: RunSettings) -> int:
    """The seed every fixture and claim of this test derives its randomness from. In a
    robustness run (``--seeds``) it is a session-scoped parameter, so each seed trains its own
    fixtures."""
    return getattr(request, "param", run_settings.seed)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    settings = metafunc.config.stash[settings_key]
    if settings.robustness and "seed" in metafunc.fixturenames:
        metafunc.parametrize("seed", settings.seeds, indirect=True, scope="session",
                             ids=[f"seed{s}" for s in settings.seeds])


def claim_id(item: pytest.Item) -> str:
    """The claim's id with its parameters, leaving out the robustness seed."""
    marker = item.get_closest_marker("claim")
    callspec = getattr(item, "callspec", None)
    params = re.sub(r"(^|-)seed\d+(?=-|$)", "", callspec.id).strip("-") if callspec else ""
    return marker.kwargs["id"] + (f"[{params}]" if params else "")


def item_seed(item: pytest.Item) -> int:
    callspec = getattr(item, "callspec", None)
    settings = item.config.stash[settings_key]
    return callspec.params.get("seed", settings.seed) if callspec else settings.seed


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Check each claim's marker; turn the register's entries into strict xfails."""
    settings, register = config.stash[settings_key], config.stash[register_key]
    problems = []
    for item in items:
        marker = item.get_closest_marker("claim")
        if marker is None:
            continue
        missing = [f for f in CLAIM_FIELDS if not marker.kwargs.get(f)]
        if missing:
            problems.append(f"{item.nodeid}: claim marker lacks {', '.join(missing)}")
            continue
        if item.get_closest_marker("xfail") is not None:
            problems.append(f"{item.nodeid}: a claim's divergence is declared in the register "
                            f"({config.getini('claim_divergences')}), not with an xfail mark")
            continue
        entry = register.diverges(claim_id(item), settings.scale, item_seed(item))
        if entry is not None and not settings.smoke:  # a smoke run judges nothing
            item.add_marker(pytest.mark.xfail(strict=True, raises=AssertionError,
                                              reason=entry.summary()))
    if problems:
        raise pytest.UsageError("claim protocol:\n" + "\n".join(problems))


@pytest.fixture
def record(request: pytest.FixtureRequest, seed: int) -> ClaimRecord:
    """The claim's record: ``record.check(...)``, ``record.metric(...)``, ``record.figure(...)``."""
    if request.node.get_closest_marker("claim") is None:
        raise pytest.UsageError(f"{request.node.nodeid} uses `record` but has no claim marker")
    settings = request.config.stash[settings_key]
    rec = ClaimRecord(
        claim_id=claim_id(request.node),
        figure_dir=settings.report_dir / "figures",
        seeds=[seed],
        expected=request.config.stash[expected_key],
    )
    if settings.robustness:
        rec.figure_suffix = f"seed{seed}"
    request.node.stash[record_key] = rec
    return rec


def pytest_runtest_setup(item: pytest.Item) -> None:
    marker = item.get_closest_marker("claim")
    if marker is None:
        return
    settings, register = item.config.stash[settings_key], item.config.stash[register_key]
    entry = register.entry(claim_id(item), settings.scale)
    item.user_properties.append((CLAIM_KEY, {
        "id": claim_id(item),
        **{f: marker.kwargs[f] for f in CLAIM_FIELDS if f != "id"},
        "seed": item_seed(item),
        "scale": settings.scale,
        "device": str(settings.device),
        "markers": sorted(m.name for m in item.iter_markers() if m.name in ("slow", "gpu", "hub")),
        "divergence": entry.to_dict() if entry is not None else None,
    }))


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef, request: pytest.FixtureRequest):
    """Note which cached artifacts this fixture built (and how long it took) or loaded."""
    start = len(BUILD_LOG)
    try:
        return (yield)
    finally:
        FIXTURE_ARTIFACTS[fixturedef.argname] = [
            {"fixture": fixturedef.argname, **asdict(e)} for e in BUILD_LOG[start:]]


def artifacts_of(item: pytest.Item) -> list[dict]:
    """The artifacts the test's fixtures built or loaded, once each."""
    seen, found = set(), []
    for name in item.fixturenames:
        for artifact in FIXTURE_ARTIFACTS.get(name, []):
            if artifact["key"] not in seen:
                seen.add(artifact["key"])
                found.append({**artifact, "seconds": round(artifact["seconds"], 2)})
    return found


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function):
    """After a claim's body returns: fail it on any check that did not hold."""
    result = yield
    rec = pyfuncitem.stash.get(record_key, None)
    if rec is None:
        return result
    if rec.n_checks() == 0:
        raise ClaimProtocolError(f"{rec.claim_id} judged nothing: a claim makes at least one "
                                 "record.check against a declared threshold")
    failed = rec.failed_checks()
    if failed and not pyfuncitem.config.stash[settings_key].smoke:
        raise AssertionError("; ".join(
            f"{m.name} = {m.value} is not {m.check['describe']}" for m in failed))
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if item.get_closest_marker("claim") is None or report.when != "call":
        return report
    rec = item.stash.get(record_key, None)
    if rec is not None:
        report.user_properties.append((RECORD_KEY, rec.to_dict()))
    excinfo = call.excinfo
    report.user_properties.append((OUTCOME_KEY, {
        "exception": None if excinfo is None else excinfo.typename,
        "assertion": excinfo is not None and excinfo.errisinstance(AssertionError),
        "xfail_expected": item.get_closest_marker("xfail") is not None,
    }))
    report.user_properties.append((ARTIFACTS_KEY, artifacts_of(item)))
    return report


def failure_message(report: pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None and getattr(crash, "message", None):
        return crash.message
    return str(report.longreprtext).strip().splitlines()[-1] if report.longreprtext else ""


def skip_reason(report: pytest.TestReport) -> str:
    if isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    return failure_message(report)


def verdict_of(report: pytest.TestReport, smoke_run: bool = False) -> tuple[str, str]:
    """(verdict, reason) of one phase's report, from its outcome; see ``records.VERDICTS``."""
    outcome = dict(report.user_properties).get(OUTCOME_KEY, {})
    if report.skipped:
        if hasattr(report, "wasxfail"):
            return "known divergence", report.wasxfail.removeprefix("reason: ")
        return "not run", skip_reason(report)
    if report.failed:
        message = failure_message(report)
        if report.when != "call":
            return "error", f"{report.when}: {message}"
        if outcome.get("exception") is None and outcome.get("xfail_expected"):
            return "unexpected pass", "the register lists a divergence for this seed, but it held"
        if not outcome.get("assertion"):
            return "error", message
        return "not replicated", message
    if smoke_run:
        return "smoke run", "ran end to end at the paper's configuration; checks not judged"
    return "replicated", ""


class ReportCollector:
    """Gathers claim reports (from this process or xdist workers) and writes the report."""

    def __init__(self, settings: RunSettings, register: DivergenceRegister):
        self.settings = settings
        self.register = register
        self.claims: dict[str, dict] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        props = dict(report.user_properties)
        if CLAIM_KEY not in props:
            return
        entry = self.claims.setdefault(report.nodeid, {
            **props[CLAIM_KEY], "nodeid": report.nodeid, "runtime_s": 0.0,
            "verdict": None, "reason": "", "seeds": [], "metrics": [], "figures": [], "notes": [],
            "links": [], "artifacts": [],
        })
        entry["runtime_s"] += report.duration
        if RECORD_KEY in props:
            entry.update(props[RECORD_KEY])
        if ARTIFACTS_KEY in props:
            entry["artifacts"] = props[ARTIFACTS_KEY]
        if report.when == "call" or (report.when == "setup" and not report.passed) or (
            report.when == "teardown" and report.failed and entry["verdict"] != "error"
        ):
            entry["verdict"], entry["reason"] = verdict_of(report, self.settings.smoke)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.claims:
            write_report(list(self.claims.values()), self.settings, session.config.rootpath)
