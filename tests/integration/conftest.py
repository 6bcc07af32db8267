"""Fixtures for tests that need a real broker and real stream workers.

One embedded Tansu broker serves the whole session; one stream worker
subprocess too (tests restart it where they need to). Every fixture checks
that the processes it started are gone afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from services.embedded import EmbeddedBroker
from tests.integration.workers import PARTITIONS, WorkerProcess, process_alive


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    """The session's embedded broker, with psymon's topics created."""
    embedded = EmbeddedBroker(partitions=PARTITIONS).start()
    pid = embedded.pid
    assert pid is not None
    yield embedded
    embedded.stop()
    assert not process_alive(pid), "the embedded broker outlived its fixture"


@pytest.fixture(scope="session")
def worker(
    broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    """One stream worker for the session (consumer group ``psymon-it-<random>``)."""
    base = tmp_path_factory.mktemp("worker")
    process = WorkerProcess(
        bootstrap=broker.bootstrap,
        app_id=f"psymon-it-{uuid.uuid4().hex[:8]}",
        data_dir=base / "data",
        log_path=base / "worker.log",
    ).start()
    try:
        process.wait_ready()
    except BaseException:  # Ctrl-C or a failed start: teardown will not run, stop it here
        process.stop()
        raise
    yield process
    code = process.stop()
    leftovers = [pid for pid in process.pids if process_alive(pid)]
    assert not leftovers, f"worker processes outlived the session: {leftovers}"
    assert code == 0, f"the worker did not stop cleanly (exit {code}):\n{process.log_tail()}"
