"""Replaying the stored history reproduces what the live pipeline produced.

The real live pipeline: the embedded broker, a faust worker subprocess
(``python -m services.worker``) and the sink (``run_sink`` in a thread) into
embedded PostgreSQL. A simulated cohort (4 patients x 30 days, wearable
uploads, scores, labs, duplicates and late uploads) is produced the way the
ingest edge produces it; once the store holds every output, the history is
replayed from the store through the same core, and the replayed outputs
(course updates, daily features, alerts, risk, subgroup changes) must equal the live ones:
same event ids, same content.

The worker reads four input topics; the broker keeps order within a topic
partition only, and faust interleaves partitions as fetches fall. A worker
keeping up with real-time traffic applies each patient's events in arrival
order; the test reproduces that by producing each patient's history in
arrival order and waiting, before switching a patient to another topic,
until the worker has applied what was sent (it writes one changelog record
per applied event). See services/replay/query.py for what replay assumes.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from pydantic import TypeAdapter

from schemas.events import AnyEvent, ClinicalScore, LabResult
from schemas.examples import EXAMPLE_KEY
from schemas.identity import event_id_for, pseudonymise
from services.embedded import EmbeddedBroker
from services.embedded.offsets import end_offsets
from services.producer import key_of, topic_of
from services.replay import EventQuery, count_input_events, replay, replay_outputs
from services.simulator import simulate_cohort
from services.sink import run_sink
from services.store.migrations import MIGRATIONS, v0005_audit
from streams.app import changelog_topics
from tests.integration.workers import WorkerProcess

pytest_plugins = ("tests.integration.pg_fixtures",)
pytestmark = pytest.mark.integration

_ANY: TypeAdapter[Any] = TypeAdapter(AnyEvent)
WAIT = 60.0


def with_audit_log(url: str) -> str:
    """Apply migration 0005 where the migration list does not include it yet."""
    if v0005_audit not in MIGRATIONS:
        with psycopg.connect(url, autocommit=True) as conn:
            for statement in v0005_audit.statements("postgres"):
                conn.execute(statement)
    return url


def isolated(events: Iterable[Any], run: str) -> list[Any]:
    """The cohort under fresh pseudonyms and ids, so that nothing else on the
    session's broker (or in the worker's table) can be mistaken for it."""
    result = []
    for event in events:
        data = event.model_dump(mode="json")
        data["patient_id"] = pseudonymise(data["patient_id"], EXAMPLE_KEY, system=run)
        data["event_id"] = str(event_id_for(run, data["event_id"]))
        for reading in data.get("readings") or ():
            reading["event_id"] = str(event_id_for(run, reading["event_id"]))
        result.append(_ANY.validate_python(data))
    return result


def with_inflammation(events: list[Any]) -> list[Any]:
    """The cohort, and for its first patient a MADRS of 24 and two CRP results above 3 mg/L
    arriving after everything else: the core then derives a subgroup change (the
    inflammatory-depression specifier), live and in replay."""
    patient = events[0].patient_id
    last = max(e.received_at for e in events)
    extra: list[Any] = []
    for n, kind, value in [(1, "madrs", 24.0), (2, "crp", 4.5), (3, "crp", 5.2)]:
        when = last + timedelta(days=n)
        fields = {
            "event_id": event_id_for("replay-equals-live", kind, str(n)),
            "patient_id": patient,
            "observed_at": when,
            "received_at": when,
            "source": {"system": "it-test"},
        }
        if kind == "madrs":
            extra.append(ClinicalScore(**fields, instrument="madrs", rater="clinician", total=24))
        else:
            extra.append(LabResult(**fields, analyte="crp", value=value, unit="mg/L"))
    return [*events, *extra]


def runs_by_patient(events: list[Any]) -> dict[str, list[list[Any]]]:
    """Each patient's events in arrival order, cut where the topic changes."""
    runs: dict[str, list[list[Any]]] = {}
    for event in events:
        mine = runs.setdefault(event.patient_id, [])
        if mine and topic_of(mine[-1][-1]) == topic_of(event):
            mine[-1].append(event)
        else:
            mine.append([event])
    return runs


class Changelog:
    """Counts the worker's state writes for some patients (one per applied event)."""

    def __init__(self, bootstrap: str, topic: str, patients: set[str]) -> None:
        from kafka import KafkaConsumer, TopicPartition

        self.keys = {p.encode() for p in patients}
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        partitions = [TopicPartition(topic, p) for p in self.consumer.partitions_for_topic(topic)]
        self.consumer.assign(partitions)
        # From the true ends: seeking to Tansu's listed ends would count the rest of
        # the previous test's last batch of writes as new (services.embedded.offsets).
        for tp, end in end_offsets(self.consumer, partitions).items():
            self.consumer.seek(tp, end)
        self.count = 0

    def wait_for(self, expected: int, timeout: float = WAIT) -> None:
        deadline = time.monotonic() + timeout
        while self.count < expected:
            assert time.monotonic() < deadline, (
                f"the worker applied {self.count} of {expected} events in {timeout:.0f} s"
            )
            for batch in self.consumer.poll(timeout_ms=100).values():
                self.count += sum(1 for m in batch if m.key in self.keys)

    def close(self) -> None:
        self.consumer.close()


def produce_as_live(bootstrap: str, worker: WorkerProcess, events: list[Any]) -> None:
    """Send the events keyed by patient, each patient's in arrival order (see module doc)."""
    from kafka import KafkaProducer

    runs = runs_by_patient(events)
    changelog = Changelog(bootstrap, changelog_topics(worker.app_id)[0], set(runs))
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    sent = 0
    try:
        while any(runs.values()):
            wave = [mine.pop(0) for mine in runs.values() if mine]
            futures = [
                producer.send(topic_of(e), key=key_of(e), value=e.model_dump_json().encode())
                for run in wave
                for e in run
            ]
            producer.flush()
            for future in futures:
                future.get(timeout=10)
            sent += len(futures)
            changelog.wait_for(sent)
    finally:
        producer.close()
        changelog.close()


def content(event: Any) -> dict[str, Any]:
    """An event's content as JSON data: jsonb keeps the store's payloads but not the key
    order of mappings inside them (``evidence``), so texts are not compared."""
    data: dict[str, Any] = event.model_dump(mode="json")
    return data


def stored_outputs(url: str, patients: list[str]) -> dict[str, dict[str, Any]]:
    """Live outputs in the store, event id -> content."""
    found: dict[str, dict[str, Any]] = {}
    with psycopg.connect(url) as conn:
        for table in ("course_updates", "alerts", "risk_assessments", "subgroup_assignments"):
            rows = conn.execute(
                f"SELECT payload::text FROM {table} WHERE patient_id = ANY(%s)", (patients,)
            )
            for (payload,) in rows:
                event = _ANY.validate_json(payload)
                found[str(event.event_id)] = content(event)
    return found


def stored_inputs(url: str, patients: list[str]) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        return count_input_events(conn, EventQuery(patients=tuple(patients)))


def wait_until(condition: Any, what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(0.25)


@pytest.fixture
def sink(broker: EmbeddedBroker, store_url: str) -> Iterator[threading.Thread]:
    """The sink in a thread (its own consumer group), stopped after the test."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            run_sink(
                broker.bootstrap,
                store_url,
                stop_event=stop,
                group_id=f"it-replay-{uuid.uuid4().hex[:8]}",
            )
        except BaseException as error:  # shown by the fixture, not lost in the thread
            errors.append(error)

    thread = threading.Thread(target=run, name="sink", daemon=True)
    thread.start()
    yield thread
    stop.set()
    thread.join(timeout=30)
    assert not thread.is_alive(), "the sink did not stop"
    assert not errors, f"the sink failed: {errors[0]!r}"


def test_replaying_the_stored_history_reproduces_the_live_outputs(
    broker: EmbeddedBroker,
    worker: WorkerProcess,
    store_url: str,
    sink: threading.Thread,
    tmp_path: Any,
) -> None:
    url = with_audit_log(store_url)
    run = f"replay-equals-live-{uuid.uuid4().hex[:8]}"
    cohort = simulate_cohort(
        4, 30, seed=5, start=datetime(2026, 1, 5, tzinfo=UTC), samples_per_hour=2
    )
    events = isolated(with_inflammation(list(cohort.events())), run)
    patients = sorted({e.patient_id for e in events})
    unique = len({e.event_id for e in events})
    assert unique < len(events), "the cohort should hold re-sent duplicates"

    produce_as_live(broker.bootstrap, worker, events)
    wait_until(lambda: stored_inputs(url, patients) == unique, "the sink to store every input")

    replayed = {str(o.event_id): content(o) for o in replay_outputs(url, patients=patients)}
    kinds = {o["kind"] for o in replayed.values()}
    assert {"course_update", "alert", "subgroup_assigned"} <= kinds, kinds
    wait_until(
        lambda: replayed.keys() <= stored_outputs(url, patients).keys(),
        "the sink to store every live output",
    )
    time.sleep(1.0)  # anything extra the live pipeline made would be stored by now
    live = stored_outputs(url, patients)

    assert live.keys() == replayed.keys(), (
        f"{len(live.keys() - replayed.keys())} live outputs not replayed, "
        f"{len(replayed.keys() - live.keys())} replayed outputs not live"
    )
    differing = [i for i in live if live[i] != replayed[i]]
    assert not differing, (
        f"{len(differing)} outputs differ, e.g.\n{live[differing[0]]}\n{replayed[differing[0]]}"
    )
    with psycopg.connect(url) as conn:
        letters = conn.execute(
            "SELECT count(*) FROM dead_letters WHERE patient_id = ANY(%s)", (patients,)
        ).fetchone()
    assert letters == (0,), "the live core failed on some events"

    # The Parquet replay says the same, and is on record.
    manifest = replay(url, patients=patients, out_dir=tmp_path / "replay", who="it-test")
    counts = manifest.row_counts
    assert counts["input_events"] == unique
    derived = ("trajectories", "features", "alerts", "risk", "subgroups")
    assert sum(counts[stream] for stream in derived) == len(live)
    with psycopg.connect(url) as conn:
        audited = conn.execute(
            "SELECT actor, status, row_counts ->> 'input_events' FROM audit_log "
            "WHERE action = 'replay' ORDER BY started_at"
        ).fetchall()
    assert audited == [("python", "completed", str(unique)), ("it-test", "completed", str(unique))]
