"""A database outage of 30 s mid-stream: the sink pauses and resumes, nothing lost or doubled.

The embedded PostgreSQL is stopped (fast shutdown) while a cohort streams
through the broker, a worker and a ``psymon sink`` subprocess, and started
again 30 s later on the same data directory and the same port
(``EmbeddedPostgres(data_dir, port=port)``), where its clients expect it.
During the outage two patients the store has never seen start sending, so
the worker must wait for the store to rebuild (or learn there is nothing to
rebuild) rather than start them from an empty state or fall over.

Afterwards the store holds every record that is on the topics (inputs and
the worker's outputs), each once, and both consumer groups have caught up.
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from schemas.topics import ALL_TOPICS
from services.embedded.postgres import EmbeddedPostgres
from services.sink import SinkRecord, decode_record
from services.store.migrate import migrate
from tests.integration.pg_fixtures import TEST_SERVER_SETTINGS, process_alive
from tests.reliability.harness import (
    SEED,
    START,
    BrokerProbe,
    Census,
    Pipeline,
    cohort,
    expected_rows,
    record_figures,
    send,
    store_holds,
    timer,
    wait_until,
)

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

#: How long the database stays away (the brief: about 30 s; the only slow test for it).
OUTAGE = 30.0


def on_topics(bootstrap: str) -> list[Any]:
    """Every record on every topic, decoded as the sink decodes it."""
    return [
        decode_record(SinkRecord(topic, value, 0))
        for topic, _, value in BrokerProbe(bootstrap).records(ALL_TOPICS)
    ]


def test_the_sink_waits_out_a_database_outage_and_loses_nothing(
    make_broker: Any, pg_data_dir: Path, scratch: Path
) -> None:
    events = cohort(4, 21, SEED + 2)
    patients = sorted({e.patient_id for e in events})
    first_day, second_day = START + timedelta(days=7), START + timedelta(days=14)
    phase = [
        0
        if e.patient_id in patients[:2] and e.received_at < first_day
        else 1
        if e.received_at < second_day
        else 2
        for e in events
    ]
    before, during, after = (
        [e for e, p in zip(events, phase, strict=True) if p == n] for n in range(3)
    )
    newcomers = {e.patient_id for e in during} - {e.patient_id for e in before}
    assert len(newcomers) >= 2, "two patients should start during the outage"

    server = EmbeddedPostgres(pg_data_dir, server_settings=TEST_SERVER_SETTINGS).start()
    port, url = server.port, server.url
    with psycopg.connect(url, autocommit=True) as conn:
        migrate(conn)
    broker = make_broker(partitions=2)
    pipeline = Pipeline(broker.bootstrap, url, scratch / "pipeline", app_id="psymon-outage")
    pipeline.base.mkdir()
    figures: dict[str, Any] = {
        "title": f"database outage of {OUTAGE:.0f} s",
        "fault_rounds": 1,
        "crashes": 0,
        "events": {"before": len(before), "during": len(during), "after": len(after)},
    }
    census = None
    with timer() as took:
        try:
            pipeline.add_worker()
            sink = pipeline.start_sink()
            pipeline.worker.wait_ready()
            send(broker.bootstrap, before)
            wait_until(lambda: store_holds(url, expected_rows(before)), "the first events")

            down = time.monotonic()
            server.stop()
            send(broker.bootstrap, during)
            wait_until(
                lambda: "database is unavailable" in sink.log(),
                "the sink to notice the outage and pause",
                timeout=OUTAGE,
            )
            while time.monotonic() - down < OUTAGE:
                alive = pipeline.processes_alive()
                assert all(alive.values()), f"died during the outage: {alive}\n{pipeline.logs()}"
                time.sleep(1.0)
            server = EmbeddedPostgres(
                pg_data_dir, port=port, server_settings=TEST_SERVER_SETTINGS
            ).start()
            assert server.url == url, "the database came back somewhere else"
            up = time.monotonic()
            figures["outage_s"] = round(up - down, 1)
            wait_until(
                lambda: store_holds(url, expected_rows([*before, *during])),
                "the sink to store what arrived during the outage",
            )
            figures["resumed_after_s"] = round(time.monotonic() - up, 1)
            send(broker.bootstrap, after)
            wait_until(lambda: store_holds(url, expected_rows(events)), "every input stored")
            wait_until(
                lambda: pipeline.worker_lag() == 0 and pipeline.sink_lag() == 0,
                "both consumer groups to catch up",
            )
            figures["drained_after_s"] = round(time.monotonic() - up, 1)
            expected = expected_rows(on_topics(broker.bootstrap))
            wait_until(lambda: store_holds(url, expected), "every output stored")
            time.sleep(1.0)
            census = Census.take(url, expected)
            figures["sink_retries"] = sink.log().count("database is unavailable")
            alive = pipeline.processes_alive()
            figures["crashes"] = sum(1 for up_ in alive.values() if not up_)
            assert all(alive.values()), f"a process died: {alive}\n{pipeline.logs()}"
        finally:
            if census is not None:
                totals = census.totals()
                figures.update(
                    events_sent=totals["sent"],
                    events_stored=totals["stored"],
                    duplicated=totals["duplicated"],
                    extra=totals["extra"],
                    lost=totals["lost"],
                )
            figures["seconds"] = took()
            record_figures("database_outage", figures)
            pipeline.stop()
            pid = server.pid
            server.stop()
            assert pid is None or not process_alive(pid)

    assert census is not None
    assert census.totals()["lost"] == 0 and census.totals()["duplicated"] == 0, census.problems()
    assert census.totals()["extra"] == 0, census.problems()
    assert census.sent["dead_letters"] == 0, "the outage turned events into dead letters"
    assert census.sent["course_updates"] > 0, "the worker derived nothing"
