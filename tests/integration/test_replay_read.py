"""Reading stored input events back: with the next rows fetched in a thread, the same events.

The store (embedded PostgreSQL) holds a small simulated cohort; rows are
fetched a few at a time so that a read takes many batches.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from services.embedded.postgres import EmbeddedPostgres
from services.replay import query
from services.replay.query import EventQuery, read_input_events
from services.simulator import simulate_cohort
from tests.integration.pg_fixtures import arrival_order, loaded_store

pytest_plugins = ("tests.integration.pg_fixtures",)
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cohort() -> list[Any]:
    start = datetime(2026, 1, 5, tzinfo=UTC)
    return list(simulate_cohort(3, 6, seed=9, start=start, samples_per_hour=2).events())


@pytest.fixture(scope="module")
def loaded(embedded_pg: EmbeddedPostgres, cohort: list[Any]) -> Iterator[str]:
    with loaded_store(embedded_pg, cohort, "replay_read") as url:
        yield url


@pytest.fixture
def conn(loaded: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[psycopg.Connection[Any]]:
    monkeypatch.setattr(query, "FETCH_ROWS", 7)
    with psycopg.connect(loaded, autocommit=True) as connection:
        connection.execute("SET TIME ZONE 'UTC'")
        yield connection


def _fetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "psymon-replay-fetch"]


def test_prefetching_reads_the_same_events_in_the_same_order(
    conn: psycopg.Connection[Any], cohort: list[Any]
) -> None:
    expected = [e.model_dump_json() for e in arrival_order(cohort)]
    assert len(expected) > 10 * query.FETCH_ROWS

    plain = [e.model_dump_json() for e in read_input_events(conn, EventQuery())]
    ahead = [e.model_dump_json() for e in read_input_events(conn, EventQuery(), prefetch=True)]

    assert plain == ahead == expected
    assert not _fetch_threads()


def test_a_read_stopped_early_ends_its_thread_and_leaves_the_connection_usable(
    conn: psycopg.Connection[Any],
) -> None:
    events = read_input_events(conn, EventQuery(), prefetch=True)
    first = [next(events) for _ in range(3 * query.FETCH_ROWS + 2)]
    assert _fetch_threads()
    events.close()

    assert len(first) == 3 * query.FETCH_ROWS + 2
    assert not _fetch_threads()
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert conn.execute("SELECT 1").fetchone() == (1,)


def test_a_failed_fetch_is_raised_to_the_reader(
    conn: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    fetched = 0
    fetchmany = psycopg.ServerCursor.fetchmany

    def failing_on_the_third(cursor: psycopg.ServerCursor[Any], size: int = 0) -> list[Any]:
        nonlocal fetched
        fetched += 1
        if fetched == 3:
            raise psycopg.OperationalError("the server went away")
        return fetchmany(cursor, size)

    monkeypatch.setattr(psycopg.ServerCursor, "fetchmany", failing_on_the_third)
    read = 0
    with pytest.raises(psycopg.OperationalError, match="went away"):
        for _ in read_input_events(conn, EventQuery(), prefetch=True):
            read += 1

    assert read == 2 * query.FETCH_ROWS
    assert not _fetch_threads()
    assert conn.execute("SELECT 1").fetchone() == (1,)


def test_a_read_stopped_during_a_slow_fetch_cancels_it_and_ends_its_thread(
    conn: psycopg.Connection[Any], loaded: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fetchmany = psycopg.ServerCursor.fetchmany
    started = threading.Event()
    cancelled: list[bool] = []

    def slow_after_the_first(cursor: psycopg.ServerCursor[Any], size: int = 0) -> list[Any]:
        if started.is_set():
            # What a long query does on the server, here in the fetch itself.
            try:
                cursor.connection.execute("SELECT pg_sleep(30)")
            except psycopg.errors.QueryCanceled:
                cancelled.append(True)
                raise
        started.set()
        return fetchmany(cursor, size)

    monkeypatch.setattr(psycopg.ServerCursor, "fetchmany", slow_after_the_first)
    events = read_input_events(conn, EventQuery(), prefetch=True)
    next(events)
    with psycopg.connect(loaded, autocommit=True) as watcher:
        for _ in range(500):  # until the server runs the sleep (at most ~5 s)
            row = watcher.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE state = 'active' AND query = 'SELECT pg_sleep(30)'"
            ).fetchone()
            if row == (1,):
                break
            time.sleep(0.01)
    events.close()

    assert cancelled == [True]
    assert not _fetch_threads()
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert conn.execute("SELECT 1").fetchone() == (1,)
