"""Unit tests of the smoke mode: loops cut short and timed, builds measured, state restored."""

from __future__ import annotations

import time

import pytest
import torch
from transformer_lens import HookedTransformer

from replication import smoke
from replication.cache import BUILD_LOG, ArtifactCache
from replication.locality.tiny_lm import TinyLMConfig, hooked_config, train_lm
from replication.report.writer import cost_rows
from replication.toy.train import logged_loop


@pytest.fixture
def smoke_mode(monkeypatch):
    """Smoke mode with 3 steps per loop for one test; this process's log left as it was."""
    monkeypatch.setattr(smoke, "_steps", None)
    monkeypatch.setattr(smoke, "LOOPS", [])
    smoke.enable(3)
    return smoke


def run_loop(steps: int) -> list[int]:
    seen = []
    parameter = torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.SGD([parameter], lr=0.1)

    def step(i: int) -> dict[str, torch.Tensor]:
        seen.append(i)
        parameter.grad = torch.ones(2)
        return {"loss": torch.ones(2)}

    logged_loop(steps, step, optimizer, description="unit", log_every=2)
    return seen


def test_a_smoke_loop_runs_a_few_steps_and_projects_the_rest(smoke_mode):
    assert run_loop(1000) == [0, 1, 2]
    (timing,) = smoke_mode.LOOPS
    assert (timing.description, timing.planned_steps, timing.steps_run) == ("unit", 1000, 3)
    assert timing.seconds_per_step > 0
    assert timing.skipped_seconds == pytest.approx(997 * timing.seconds_per_step)


def test_without_smoke_mode_every_step_runs_and_nothing_is_logged(monkeypatch):
    monkeypatch.setattr(smoke, "_steps", None)
    monkeypatch.setattr(smoke, "LOOPS", [])
    assert run_loop(7) == list(range(7))
    assert smoke.LOOPS == []


def test_a_smoke_build_records_its_peak_memory_and_projection(smoke_mode, tmp_path):
    def build():
        big = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched, held for several samples
        time.sleep(20 * smoke.SAMPLE_SECONDS)
        run_loop(100)
        return {"x": big[:4].clone()}, {}

    ArtifactCache(tmp_path).get_or_build("unit", {"a": 1}, build)
    cost = BUILD_LOG[-1].smoke
    assert cost["device"] == "cpu" and cost["peak_bytes"] >= 32 * 2**20
    (loop,) = cost["loops"]
    assert loop["planned_steps"] == 100 and loop["steps_run"] == 3
    assert cost["projected_seconds"] >= cost["seconds"]


def test_a_projection_is_never_written_below_the_measured_time():
    """A build whose skipped steps are cheap must not read as projected < measured."""
    cost = smoke.BuildMeasurement("cpu", seconds=0.13,
                                  loops=[smoke.LoopTiming("unit", 100, 3, 1e-5)]).to_dict()
    assert cost["projected_seconds"] >= cost["seconds"] == 0.13


def test_a_smoke_run_needs_two_steps():
    with pytest.raises(ValueError, match="at least 2 steps per loop"):
        smoke.enable(1)


def test_the_local_lm_trains_a_few_steps_and_projects_the_rest(smoke_mode):
    cfg = TinyLMConfig(n_layers=1, d_model=8, n_heads=2, d_mlp=16, n_ctx=9, steps=50,
                       batch_size=2, warmup_steps=2)
    model = HookedTransformer(hooked_config(cfg, 20, torch.device("cpu")))
    forwards = []
    model.register_forward_pre_hook(lambda *_: forwards.append(1))
    train_lm(model, cfg, torch.arange(2000) % 20, torch.device("cpu"))
    assert len(forwards) == 3
    (timing,) = smoke_mode.LOOPS
    assert (timing.description, timing.planned_steps, timing.steps_run) == ("local LM", 50, 3)
    assert timing.seconds_per_step > 0


def test_the_cost_table_ends_with_the_total_of_its_builds():
    cost = {"kind": "toy", "fixture": "f", "device": "cpu", "claims": ["a"]}
    doc = {"costs": [{**cost, "peak_bytes": 2**30, "seconds": 1.0, "projected_seconds": 3600.0},
                     {**cost, "peak_bytes": 2**31, "seconds": 2.5, "projected_seconds": 7200.0}]}
    *_, total = cost_rows(doc)
    assert total == ["all builds, one after another", "cpu", "2.00 GiB (largest)", "3.5 s",
                     "3.00 h", ""]
    assert cost_rows({"costs": []}) == []


def test_a_timed_loop_runs_every_item_or_a_few_in_a_smoke_run(smoke_mode):
    assert list(smoke.timed_loop(range(0, 100, 10), "windows")) == [0, 10, 20]
    (timing,) = smoke_mode.LOOPS
    assert (timing.description, timing.planned_steps, timing.steps_run) == ("windows", 10, 3)
    smoke_mode._steps = None
    assert list(smoke.timed_loop(range(5), "windows")) == [0, 1, 2, 3, 4]
    assert len(smoke_mode.LOOPS) == 1  # recorded only in a smoke run
