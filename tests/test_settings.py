"""Run settings: the threads of a pytest-xdist worker."""

import os

import pytest
import torch

from replication.settings import usable_cores, worker_threads


@pytest.mark.skipif("PYTEST_XDIST_WORKER_COUNT" not in os.environ,
                    reason="checks an xdist worker (pytest -n N)")
def test_this_xdist_worker_runs_on_its_share_of_the_cores():
    """The report plugin sets each worker's torch threads to its share of the cores (``tox -e
    ci`` runs -n 2): two processes of 2 threads each on 2 vCPUs, training the basic toy sweep side
    by side, spun against each other 12 times slower than one alone."""
    workers = int(os.environ["PYTEST_XDIST_WORKER_COUNT"])
    assert torch.get_num_threads() == worker_threads(workers)


def test_workers_share_the_usable_cores():
    assert worker_threads(1) == usable_cores()
    assert worker_threads(usable_cores() + 1) == 1
