"""Run settings: the threads each pytest-xdist worker takes."""

import os

import pytest
import torch

from replication.settings import worker_threads


@pytest.mark.parametrize(("workers", "cores", "threads"),
                         [(2, 2, 1), (2, 16, 8), (3, 2, 1), (1, 2, 2), (4, 15, 3)])
def test_workers_share_the_cores(workers, cores, threads):
    assert worker_threads(workers, cores) == threads


def test_a_bad_worker_count_names_the_accepted_values():
    with pytest.raises(ValueError, match="bad worker count 0; accepted"):
        worker_threads(0, 2)


@pytest.mark.skipif("PYTEST_XDIST_WORKER_COUNT" not in os.environ or "OMP_NUM_THREADS" in os.environ,
                    reason="checks an xdist worker (pytest -n N) whose threads the user left unset")
def test_this_xdist_worker_runs_on_its_share_of_the_cores():
    """The root conftest's setting, in the worker running this test (``tox -e ci`` runs -n 2)."""
    assert torch.get_num_threads() == worker_threads(int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
