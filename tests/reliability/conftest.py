"""Fixtures of the reliability suite, and the summary table printed after it.

``make reliability`` runs ``pytest tests/reliability``. Each test writes its
figures to ``test-artifacts/reliability/<test>.json``; :func:`pytest_terminal_summary`
prints them as one table (:mod:`tests.reliability.report` prints the same table
from the files afterwards).

The session's embedded PostgreSQL comes from tests/integration/pg_fixtures.py
(a fresh migrated database per test); brokers are per test, because tests
restart them.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from services.embedded import EmbeddedBroker
from tests.integration.pg_fixtures import (  # noqa: F401  (fixtures, used by name)
    embedded_pg,
    empty_database_url,
    pg_data_dir,
    store_url,
)
from tests.integration.workers import process_alive
from tests.reliability.harness import ARTIFACTS, Pipeline
from tests.reliability.report import load_figures, summary_lines

_SESSION_STARTED: list[float] = []


def pytest_configure(config: pytest.Config) -> None:
    # Also registered in pyproject.toml; here so that the suite runs before that line exists.
    config.addinivalue_line(
        "markers", "reliability: faults, hostile input and security checks (make reliability)"
    )


def pytest_sessionstart(session: pytest.Session) -> None:
    import time

    _SESSION_STARTED.append(time.time())


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Print the table of faults survived and inputs tried, from this session's figures."""
    since = _SESSION_STARTED[0] if _SESSION_STARTED else 0.0
    figures = load_figures(ARTIFACTS, since=since)
    if not figures:
        return
    terminalreporter.section("psymon reliability")
    for line in summary_lines(figures):
        terminalreporter.write_line(line)


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A scratch directory outside pytest's tmp tree (processes outlive nothing here)."""
    path = Path(tempfile.mkdtemp(prefix="psymon-reliability-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def make_broker() -> Iterator[Callable[..., EmbeddedBroker]]:
    """Start embedded brokers for the test; every one is stopped and gone afterwards."""
    started: list[EmbeddedBroker] = []

    def start(partitions: int = 2, port: int | None = None) -> EmbeddedBroker:
        broker = EmbeddedBroker(port=port, partitions=partitions).start()
        started.append(broker)
        return broker

    yield start
    for broker in started:
        pid = broker.pid
        broker.stop()
        assert pid is None or not process_alive(pid), "a broker outlived its test"


@pytest.fixture
def make_pipeline(
    store_url: str,  # noqa: F811
    scratch: Path,
) -> Iterator[Callable[..., Pipeline]]:
    """Pipelines (workers + sink) on a broker and the test's store; stopped after the test."""
    made: list[Pipeline] = []

    def build(bootstrap: str, *, partitions: int = 2, app_id: str | None = None) -> Pipeline:
        pipeline = Pipeline(
            bootstrap=bootstrap,
            database_url=store_url,
            base=scratch / f"pipeline-{len(made) + 1}",
            partitions=partitions,
            app_id=app_id or f"psymon-rel-{uuid.uuid4().hex[:8]}",
        )
        pipeline.base.mkdir(parents=True)
        made.append(pipeline)
        return pipeline

    yield build
    for pipeline in made:
        pipeline.stop()
