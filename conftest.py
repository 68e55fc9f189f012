"""Root conftest: loads the claim plugin and every fixture module in ``fixtures/``."""

from pathlib import Path

pytest_plugins = [
    "replication.report.plugin",
    "pytester",
    *(f"fixtures.{p.stem}" for p in sorted((Path(__file__).parent / "fixtures").glob("[!_]*.py"))),
]
