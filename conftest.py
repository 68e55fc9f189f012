"""Root conftest: loads the claim plugin and every fixture module in ``fixtures/``, and orders
the files for ``pytest -n 2 --dist loadfile``."""

from pathlib import Path

import pytest

pytest_plugins = [
    "replication.report.plugin",
    "pytester",
    *(f"fixtures.{p.stem}" for p in sorted((Path(__file__).parent / "fixtures").glob("[!_]*.py"))),
]

# The claim files whose fixtures train, in the order the workers should start them. xdist hands
# a worker its next file when that worker has at most two tests left, so this is a greedy
# schedule. Cold seconds of each file (its builds and tests), measured with -n 2 on the 2-vCPU
# box (both workers busy): model sizes 407 (m = 4 and 3; m = 2 comes from the cache), toy models
# 373, locality 345, weight decay 242 (m = 4 at weight decay 1.0; its m = 4 reference is the
# model-size sweep's), SAEs 186, the m = 2 sweep 132. With this order one worker runs model
# sizes, weight decay and SAEs, the other the m = 2 sweep (first, so that the model-size claim
# finds it cached), locality and toy models: the claims took 860 s for 1685 s of work. Every
# other file follows, in collection order.
BUILD_ORDER = (
    "claims/test_double_descent_sizes.py",
    "claims/test_double_descent.py",
    "claims/test_double_descent_weight_decay.py",
    "claims/test_locality.py",
    "claims/test_sae_recovery.py",
    "claims/test_toy_models.py",
)


def pytest_configure(config: pytest.Config) -> None:
    # xdist's loadfile would otherwise send the files with the most tests first, whatever
    # they cost (the 67 cheap kernel cases before a 7-minute sweep)
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Sort the files of :data:`BUILD_ORDER` first, in its order (a stable sort: the tests of
    a file keep theirs)."""
    rank = {path: i for i, path in enumerate(BUILD_ORDER)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))
