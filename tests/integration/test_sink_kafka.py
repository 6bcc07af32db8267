"""The sink end to end: a real broker, a real PostgreSQL, and a database that goes away."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from schemas.topics import CLINICAL_SCORES, RISK, topic_for_kind
from services.embedded import EmbeddedBroker
from services.embedded.postgres import EmbeddedPostgres
from services.sink import SinkStats, run_sink
from services.store.migrate import migrate
from services.store.tables import Storable
from tests.integration.pg_fixtures import TEST_SERVER_SETTINGS, cohort_events, stored_rows

pytest_plugins = ("tests.integration.pg_fixtures",)
pytestmark = pytest.mark.integration

#: First consumer-group join on the embedded broker takes ~5 s (half the session timeout).
TIMEOUT = 60.0


def produce(bootstrap: str, records: list[tuple[str, bytes | None, bytes]]) -> dict[Any, int]:
    """Send ``(topic, key, value)`` records; return the highest offset written per partition."""
    from kafka import KafkaProducer, TopicPartition

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    try:
        futures = [producer.send(topic, key=key, value=value) for topic, key, value in records]
        producer.flush()
        last: dict[Any, int] = {}
        for future in futures:
            meta = future.get(timeout=10)
            tp = TopicPartition(meta.topic, meta.partition)
            last[tp] = max(last.get(tp, -1), meta.offset)
        return last
    finally:
        producer.close()


def as_messages(events: list[Storable]) -> list[tuple[str, bytes | None, bytes]]:
    return [
        (topic_for_kind(e.kind), (e.patient_id or "").encode(), e.model_dump_json().encode())
        for e in events
    ]


def wait_for(condition: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def stored_ids(url: str, table: str) -> list[Any]:
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            return [r[0] for r in conn.execute(f"SELECT event_id FROM {table}")]
    except psycopg.OperationalError:
        return []


def all_stored(url: str, expected: dict[str, set[Any]]) -> bool:
    return all(ids <= set(stored_ids(url, table)) for table, ids in expected.items())


def assert_stored_once(url: str, expected: dict[str, set[Any]]) -> None:
    for table, ids in expected.items():
        mine = [i for i in stored_ids(url, table) if i in ids]
        assert sorted(mine) == sorted(ids), f"{table}: not every event stored exactly once"


@contextmanager
def running_sink(bootstrap: str, url: str, group: str) -> Iterator[SinkStats]:
    """``run_sink`` in a thread; stopped (and checked to have stopped) on exit."""
    stop = threading.Event()
    stats = SinkStats()
    failure: list[BaseException] = []

    def target() -> None:
        try:
            run_sink(bootstrap, url, stop_event=stop, group_id=group, backoff_max=1.0, stats=stats)
        except BaseException as error:  # reported by the test
            failure.append(error)

    thread = threading.Thread(target=target, name=f"sink-{group}", daemon=True)
    thread.start()
    try:
        yield stats
    finally:
        stop.set()
        thread.join(timeout=30)
        assert not thread.is_alive(), "the sink did not stop within 30 s of the stop event"
    assert not failure, f"the sink failed: {failure[0]!r}"


def committed(bootstrap: str, group: str, partitions: list[Any]) -> dict[Any, int | None]:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        return {tp: consumer.committed(tp) for tp in partitions}
    finally:
        consumer.close(autocommit=False)


def test_the_sink_stores_each_event_once_then_commits_its_offsets(
    broker: EmbeddedBroker, store_url: str
) -> None:
    events = cohort_events(patients=2, days=2, readings_per_day=5, seed=uuid.uuid4().int % 10**6)
    expected = stored_rows(events)
    bad = (CLINICAL_SCORES, None, f'{{"kind": "clinical_score", "x": "{uuid.uuid4()}"'.encode())
    broken_output = (RISK, None, f'{{"kind": "risk_assessment", "n": "{uuid.uuid4()}"}}'.encode())
    group = f"psymon-sink-test-{uuid.uuid4().hex[:8]}"

    written = produce(broker.bootstrap, [*as_messages(events), bad, broken_output])
    with running_sink(broker.bootstrap, store_url, group) as stats:
        wait_for(lambda: all_stored(store_url, expected), "every event in the store")
        # The producer retries: the same events arrive again as new records.
        again = produce(broker.bootstrap, as_messages(events))
        wait_for(
            lambda: all(
                offset < (committed(broker.bootstrap, group, [tp])[tp] or 0)
                for tp, offset in again.items()
            ),
            "the offsets of the repeated records to be committed",
        )
    assert_stored_once(store_url, expected)
    assert sum(stats.duplicates.values()) >= sum(len(ids) for ids in expected.values())
    with psycopg.connect(store_url) as conn:
        letters = conn.execute(
            "SELECT count(*) FROM dead_letters WHERE raw = %s OR raw = %s",
            (bad[2].decode(), broken_output[2].decode()),
        ).fetchone()
    assert letters == (2,)
    # Offsets past everything written were committed.
    positions = committed(broker.bootstrap, group, list(written))
    assert all((positions[tp] or 0) > off for tp, off in written.items())


def test_the_sink_waits_out_a_database_outage_and_loses_nothing(
    broker: EmbeddedBroker, pg_data_dir: Path
) -> None:
    seed = uuid.uuid4().int % 10**6
    batches = [
        cohort_events(patients=1, days=2, readings_per_day=3, seed=seed + n) for n in range(3)
    ]
    expected = [stored_rows(b) for b in batches]
    group = f"psymon-sink-outage-{uuid.uuid4().hex[:8]}"
    server = EmbeddedPostgres(pg_data_dir, server_settings=TEST_SERVER_SETTINGS).start()
    port, url = server.port, server.url
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            migrate(conn)
        with running_sink(broker.bootstrap, url, group) as stats:
            produce(broker.bootstrap, as_messages(batches[0]))
            wait_for(lambda: all_stored(url, expected[0]), "the first batch in the store")

            server.stop()
            produce(broker.bootstrap, as_messages(batches[1]))
            wait_for(lambda: stats.database_retries >= 2, "the sink to retry the database")
            server = EmbeddedPostgres(
                pg_data_dir, port=port, server_settings=TEST_SERVER_SETTINGS
            ).start()
            wait_for(lambda: all_stored(url, expected[1]), "the second batch after the outage")

            server.stop()
            produce(broker.bootstrap, as_messages(batches[2]))
            wait_for(lambda: stats.database_retries >= 4, "the sink to retry again")
        # The sink stopped while the database was away: the third batch was
        # neither stored nor committed, so the next sink of the group reads it.
        server = EmbeddedPostgres(pg_data_dir, port=port, server_settings=TEST_SERVER_SETTINGS)
        server.start()
        assert not all_stored(url, expected[2])
        with running_sink(broker.bootstrap, url, group) as second:
            wait_for(lambda: all_stored(url, expected[2]), "the third batch by the next sink")
        for each in expected:
            assert_stored_once(url, each)
        assert second.database_retries == 0
    finally:
        server.stop()
