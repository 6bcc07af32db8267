"""The embedded memory broker restarts: the worker rebuilds state from the store and carries on.

Tansu with memory storage forgets everything when it stops: topics, records,
consumer-group offsets and the worker's state changelog. PostgreSQL is the
system of record. Two ways the broker goes away:

1. ``psymon up`` is stopped and started again (or the machine reboots): the
   worker and the sink stop first, then the broker. One wave of the cohort
   is still in flight when they stop: what the broker had acknowledged and
   the store did not hold yet is counted (that is what a restart loses, see
   docs/operations.md), and re-sent afterwards as an operator re-ingests a
   file (event ids are deterministic, so re-sending is harmless). The new
   worker starts with an empty state table and no changelog: it must rebuild
   each patient's state from the store (:class:`services.rebuild.StateRebuilder`).
2. The broker alone restarts (``psymon broker`` restarted, or Tansu
   crashed) while the worker and the sink keep running: they must reconnect,
   the topics must come back with psymon's partition count, the worker must
   carry on, and a worker restarted later must start.

Either way the store must end up holding every event once and the outputs of
an uninterrupted run of the whole history.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from schemas.topics import ALL_TOPICS
from services.embedded import EmbeddedBroker, TopicPartitionMismatch, topic_partitions
from streams.app import changelog_topics
from tests.reliability.harness import (
    SEED,
    Census,
    Pipeline,
    StateWrites,
    cohort,
    compare_with_uninterrupted,
    expected_rows,
    offline_outputs,
    record_figures,
    send,
    store_holds,
    stored_ids,
    timer,
    wait_until,
    waves,
)

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

REBUILT = "rebuilt a patient state"
INPUT_TABLES = ("clinical_scores", "wearable_uploads", "lab_results", "clinical_outcomes")


def _paced(bootstrap: str, app_id: str, patients: set[str], history: list[list[Any]]) -> None:
    writes = StateWrites(bootstrap, app_id, patients)
    sent = 0
    try:
        for wave in history:
            send(bootstrap, wave)
            sent += len(wave)
            writes.wait_for(sent)
    finally:
        writes.close()


def _paced_by_lag(pipeline: Pipeline, history: list[list[Any]]) -> None:
    """Pacing without the changelog: wait for the worker group to commit each wave."""
    for wave in history:
        send(pipeline.bootstrap, wave)
        wait_until(lambda: pipeline.worker_lag() == 0, "the worker to commit a wave", 60)


def _new_broker(make_broker: Any, port: int) -> EmbeddedBroker:
    try:
        broker: EmbeddedBroker = make_broker(partitions=2, port=port)
    except TopicPartitionMismatch as error:
        raise AssertionError(
            "the restarted broker has topics with a partition count psymon did not ask for: "
            "clients still connected re-requested their topics' metadata before "
            f"EmbeddedBroker.start created them, and Tansu auto-created them. {error}"
        ) from None
    return broker


def _ready(pipeline: Pipeline, bootstrap: str) -> None:
    """The (re)started worker becomes ready, or the failure says what is wrong."""
    worker = pipeline.worker
    try:
        worker.wait_ready()
    except AssertionError:
        counts = topic_partitions(bootstrap, [*ALL_TOPICS, *changelog_topics(pipeline.app_id)])
        wrong = {t: n for t, n in counts.items() if n != pipeline.partitions}
        stuck = "No event received for active tp" in worker.log()
        raise AssertionError(
            "the restarted worker did not become ready"
            + (
                " (stuck restoring its changelog: the previous worker, connected across the "
                "broker restart, wrote state records to the new broker's changelog that the "
                "new worker never receives)"
                if stuck
                else ""
            )
            + f"; topics with another partition count: {wrong or 'none'}\n"
            + worker.log_tail(1500)
        ) from None


def _verdict(store_url: str, expected: dict[str, Any], derived: list[Any]) -> list[str]:
    census = Census.take(store_url, expected)
    return compare_with_uninterrupted(store_url, expected, derived, census)


def _figures(figures: dict[str, Any], store_url: str, expected: dict[str, Any]) -> None:
    totals = Census.take(store_url, expected).totals()
    figures.update(
        events_sent=totals["sent"],
        events_stored=totals["stored"],
        duplicated=totals["duplicated"],
        extra=totals["extra"],
        lost=totals["lost"],
    )


def test_a_restarted_pipeline_rebuilds_state_from_the_store_and_carries_on(
    make_broker: Any, make_pipeline: Any, store_url: str
) -> None:
    events = cohort(4, 30, SEED + 3)
    patients = {e.patient_id for e in events}
    history = waves(events)
    half = len(history) // 2
    settled, in_flight, rest = history[:half], history[half], history[half + 1 :]
    first = [e for wave in settled for e in wave]
    derived = offline_outputs(events)
    expected = expected_rows([*events, *derived])
    figures: dict[str, Any] = {"title": "broker restart with psymon up", "fault_rounds": 1}
    broker = make_broker(partitions=2)
    port = broker.port
    pipeline = make_pipeline(broker.bootstrap)
    with timer() as took:
        try:
            pipeline.add_worker()
            sink = pipeline.start_sink()
            pipeline.worker.wait_ready()
            _paced(broker.bootstrap, pipeline.app_id, patients, settled)
            wait_until(
                lambda: store_holds(store_url, expected_rows([*first, *offline_outputs(first)])),
                "the first half to be stored",
            )

            send(broker.bootstrap, in_flight)  # acknowledged by the broker...
            pipeline.worker.stop()  # ...then psymon up stops: children first,
            sink.stop()
            broker.stop()  # then the broker, and what it held is gone
            kept: set[Any] = set()
            for table in INPUT_TABLES:
                kept |= set(stored_ids(store_url, table))
            in_flight_ids = {e.event_id for e in in_flight}
            figures["in_flight_sent"] = len(in_flight_ids)
            figures["in_flight_lost"] = len(in_flight_ids - kept)

            broker = _new_broker(make_broker, port)
            pipeline.worker.start()
            sink.start()
            _ready(pipeline, broker.bootstrap)
            _paced(broker.bootstrap, pipeline.app_id, patients, [in_flight, *rest])
            figures["settle_s"] = round(
                wait_until(lambda: store_holds(store_url, expected), "the whole history stored"),
                1,
            )
            time.sleep(1.0)
            alive = pipeline.processes_alive()
            figures["crashes"] = sum(1 for up in alive.values() if not up)
            assert all(alive.values()), f"a process died: {alive}\n{pipeline.logs()}"
        finally:
            figures["patients_rebuilt"] = pipeline.worker.log().count(REBUILT)
            _figures(figures, store_url, expected)
            figures["seconds"] = took()
            record_figures("broker_restart_pipeline", figures)

    problems = _verdict(store_url, expected, derived)
    rebuilt = figures["patients_rebuilt"]
    if problems and rebuilt == 0:
        problems.append(
            "the restarted worker logged no rebuild ('rebuilt a patient state'): is "
            "services.rebuild.StateRebuilder wired into streams/app.py, and does the worker "
            "get PSYMON_DATABASE_URL?"
        )
    assert not problems, "\n".join(problems)
    assert rebuilt == len(patients), f"{rebuilt} of {len(patients)} patients rebuilt"


def test_a_broker_restarted_under_running_workers_and_sink_loses_nothing(
    make_broker: Any, make_pipeline: Any, store_url: str
) -> None:
    events = cohort(3, 30, SEED + 4)
    patients = {e.patient_id for e in events}
    history = waves(events)
    thirds = len(history) // 3
    derived = offline_outputs(events)
    expected = expected_rows([*events, *derived])
    figures: dict[str, Any] = {
        "title": "broker restart under running clients",
        "fault_rounds": 2,  # the broker restart, then a worker restart
        "crashes": 0,
    }
    broker = make_broker(partitions=2)
    port = broker.port
    pipeline = make_pipeline(broker.bootstrap)
    with timer() as took:
        try:
            worker = pipeline.add_worker()
            pipeline.start_sink()
            worker.wait_ready()
            _paced(broker.bootstrap, pipeline.app_id, patients, history[:thirds])
            done = [e for wave in history[:thirds] for e in wave]
            wait_until(
                lambda: store_holds(store_url, expected_rows([*done, *offline_outputs(done)])),
                "the first third to be stored",
            )
            broker.stop()
            broker = _new_broker(make_broker, port)
            changelog = changelog_topics(pipeline.app_id)[0]
            present = topic_partitions(broker.bootstrap, [changelog])
            figures["changelog_after_restart"] = present.get(changelog)
            # The running worker's state changelog is not on the new broker: pace by the
            # worker group's committed offsets instead of by its state writes.
            _paced_by_lag(pipeline, history[thirds : 2 * thirds])
            present = topic_partitions(broker.bootstrap, [changelog])
            figures["changelog_after_writes"] = present.get(changelog)
            worker.stop()  # a later restart of the worker (a deploy, a reboot)
            worker.start()
            _ready(pipeline, broker.bootstrap)
            _paced(broker.bootstrap, pipeline.app_id, patients, history[2 * thirds :])
            wait_until(lambda: store_holds(store_url, expected), "the whole history stored")
            time.sleep(1.0)
            alive = pipeline.processes_alive()
            figures["crashes"] = sum(1 for up in alive.values() if not up)
            assert all(alive.values()), f"a process died: {alive}\n{pipeline.logs()}"
        finally:
            _figures(figures, store_url, expected)
            figures["seconds"] = took()
            record_figures("broker_restart_running", figures)
    problems = _verdict(store_url, expected, derived)
    assert not problems, "\n".join(problems)
