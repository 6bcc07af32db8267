"""Loading batches into PostgreSQL: every event exactly once, replayable, summarised."""

from __future__ import annotations

import gc
import json
import math
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg.pq import TransactionStatus
from pydantic import TypeAdapter

from schemas.envelope import Source
from schemas.events import AnyEvent, ClinicalScore, DeadLetter, WearableUpload
from schemas.examples import EXAMPLE_PATIENT, envelope_fields
from schemas.identity import event_id_for
from schemas.topics import ALERTS, CLINICAL_SCORES, LAB_RESULTS, RISK, WEARABLE_SAMPLES
from services.sink import (
    GC_YOUNG_OBJECTS,
    DecodedBatch,
    Sink,
    SinkRecord,
    collect_garbage_rarely,
    decode_record,
)
from services.store.migrate import ensure_partitions
from services.store.migrations.v0001_event_tables import TIME_SERIES_TABLES
from services.store.tables import TableSpec
from services.store.writer import StoreWriter, _partitioned_months
from tests.integration.pg_fixtures import as_records, cohort_events, stored_rows

pytest_plugins = ("tests.integration.pg_fixtures",)
pytestmark = pytest.mark.integration

Query = Callable[..., list[tuple[Any, ...]]]
ANY_EVENT: TypeAdapter[Any] = TypeAdapter(AnyEvent)
T_MS = 1_772_442_000_000


def assert_stored_once(query: Query, expected: dict[str, set[UUID]]) -> None:
    for table, ids in expected.items():
        rows = query(f"SELECT event_id FROM {table}")
        stored = [r[0] for r in rows]
        assert len(stored) == len(set(stored)), f"{table} holds an event twice"
        assert set(stored) == ids, f"{table}: {len(set(stored) ^ ids)} events differ"


def test_every_event_is_stored_once_even_when_the_batch_comes_twice(
    store_url: str, query: Query
) -> None:
    events = cohort_events()
    records = as_records(events)
    expected = stored_rows(events)
    with Sink(store_url) as sink:
        first = sink.load_batch(records)
        again = sink.load_batch(records)

    assert_stored_once(query, expected)
    counts = {table: len(ids) for table, ids in expected.items()}
    assert dict(first.inserted) == counts
    assert first.undecodable == 0
    assert sum(again.inserted.values()) == 0
    assert dict(again.duplicates) == counts
    for table in TIME_SERIES_TABLES:
        assert query(f"SELECT count(*) FROM {table}_default") == [(0,)], table
    assert query("SELECT count(*) FROM patients") == [(3,)]


def test_overlapping_batches_and_repeats_within_a_batch(store_url: str, query: Query) -> None:
    events = cohort_events(patients=2, days=4)
    records = as_records(events)
    with Sink(store_url) as sink:
        sink.load_batch(records[:20])
        report = sink.load_batch(records + records[:10] + records[-5:])
    assert_stored_once(query, stored_rows(events))
    assert report.records == len(records) + 15


def test_the_payload_replays_the_exact_event(store_url: str, query: Query) -> None:
    berlin = timezone(timedelta(hours=2))
    score = ClinicalScore(
        **envelope_fields(
            observed_at=datetime(2026, 3, 1, 23, 30, tzinfo=berlin),
            received_at=datetime(2026, 3, 2, tzinfo=UTC),
        ),
        instrument="phq9",
        rater="self",
        items={str(i): 1 for i in range(1, 10)},
    )
    events = [*cohort_events(patients=1, days=2, readings_per_day=3), score]
    with Sink(store_url) as sink:
        sink.load_batch(as_records(events))

    expected: dict[UUID, Any] = {}
    for event in events:
        expected[event.event_id] = event
        if isinstance(event, WearableUpload):
            for sample in event.samples():
                expected[sample.event_id] = sample.model_copy(update={"time_zone": event.time_zone})
    tables = ("clinical_scores", "wearable_uploads", "wearable_samples", "lab_results",
              "clinical_outcomes", "course_updates", "risk_assessments", "alerts")  # fmt: skip
    replayed = {}
    for table in tables:
        for event_id, payload in query(f"SELECT event_id, payload FROM {table}"):
            replayed[event_id] = ANY_EVENT.validate_python(payload)
    assert replayed == expected
    # The UTC offset the event came with is part of it (local day without a time zone).
    stored = query("SELECT payload ->> 'observed_at' FROM clinical_scores WHERE event_id = %s",
                   score.event_id)  # fmt: skip
    assert stored == [("2026-03-01T23:30:00+02:00",)]
    # v_input_events serves the raw kinds for replay.
    kinds: dict[str, int] = dict(query("SELECT kind, count(*) FROM v_input_events GROUP BY kind"))
    assert kinds == {"clinical_score": 3, "wearable_upload": 2, "lab_result": 2,
                     "clinical_outcome": 1}  # fmt: skip


def test_undecodable_records_are_dead_letters_kept_once(store_url: str, query: Query) -> None:
    mrn_in_place_of_a_pseudonym = json.dumps(
        {"kind": "alert", "patient_id": "MRN-0042-SECRET", "event_id": "not-a-uuid"}
    ).encode()
    records = [
        SinkRecord(CLINICAL_SCORES, b'{"kind": "clinical_score", "instrument": ', T_MS),
        SinkRecord(CLINICAL_SCORES, b'{"kind": "clinical_score", "instrument": ', T_MS + 5000),
        SinkRecord(LAB_RESULTS, b'{"kind": "clinical_score"}', T_MS),
        SinkRecord(WEARABLE_SAMPLES, None, T_MS),
        SinkRecord(RISK, b'{"kind": "risk_assessment", "probability": 2}', T_MS),
        SinkRecord(ALERTS, mrn_in_place_of_a_pseudonym, T_MS),
    ]
    with Sink(store_url) as sink:
        report = sink.load_batch(records)
        sink.load_batch(records)
    assert report.undecodable == 6
    rows = query("SELECT topic, reason, raw, received_at FROM dead_letters ORDER BY topic, reason")
    # The same bad record twice (two deliveries, two arrival times) is one dead letter.
    assert len(rows) == 5
    assert {r[0] for r in rows} == {CLINICAL_SCORES, LAB_RESULTS, WEARABLE_SAMPLES, RISK, ALERTS}
    reasons = {r[0]: r[1] for r in rows}
    assert reasons[CLINICAL_SCORES].startswith("not valid JSON")
    assert "not accepted on psymon.lab-results.v1" in reasons[LAB_RESULTS]
    assert "probability" in reasons[RISK]
    everything = json.dumps([list(map(str, r)) for r in query("SELECT * FROM dead_letters")])
    assert "MRN-0042" not in everything, "a source identifier reached the store"


def test_text_postgresql_cannot_hold_becomes_a_dead_letter(store_url: str, query: Query) -> None:
    good = cohort_events(patients=1, days=1, readings_per_day=2)
    poisoned = ClinicalScore(
        **envelope_fields(source=Source(system="ehr\x00north")),
        instrument="phq9",
        rater="self",
        total=4,
    )
    nul_bytes = SinkRecord(LAB_RESULTS, b"\x00\x01 not json", T_MS)
    with Sink(store_url) as sink:
        report = sink.load_batch([*as_records([*good, poisoned]), nul_bytes])
    assert report.write.refused == 1
    assert_stored_once(query, stored_rows(good))
    letters: dict[str, str] = dict(query("SELECT topic, reason FROM dead_letters"))
    assert letters[CLINICAL_SCORES].startswith("the database refused the event")
    raw = query("SELECT raw FROM dead_letters WHERE topic = %s", LAB_RESULTS)
    assert raw == [("\ufffd\x01 not json",)]


def test_an_upload_whose_readings_are_not_valid_samples_is_a_dead_letter(
    store_url: str, query: Query
) -> None:
    good = cohort_events(patients=1, days=1, readings_per_day=2)
    upload = next(e for e in good if isinstance(e, WearableUpload))
    # The contract refuses to build such an upload, so it can only arrive as bytes.
    document = json.loads(upload.model_dump_json())
    document["event_id"] = str(event_id_for("broken-upload"))
    document["readings"][1]["value"] = 900.0  # a heart rate no body produces
    broken = SinkRecord(WEARABLE_SAMPLES, json.dumps(document).encode(), 1_772_442_000_000)
    with Sink(store_url) as sink:
        sink.load_batch([*as_records(good), broken])
    assert_stored_once(query, stored_rows(good))
    letters = query("SELECT topic, reason FROM dead_letters")
    assert len(letters) == 1
    assert letters[0][0] == WEARABLE_SAMPLES
    assert "outside the plausible range" in letters[0][1]


def rollups(query: Query) -> dict[str, list[tuple[Any, ...]]]:
    return {
        table: query(f"SELECT * FROM {table} ORDER BY 1, 2, 3")
        for table in ("daily_wearable", "daily_scores", "daily_labs")
    }


def assert_close(a: list[tuple[Any, ...]], b: list[tuple[Any, ...]]) -> None:
    assert len(a) == len(b)
    for row_a, row_b in zip(a, b, strict=True):
        for x, y in zip(row_a, row_b, strict=True):
            if isinstance(x, float):
                assert math.isclose(x, y, rel_tol=1e-12), (row_a, row_b)
            else:
                assert x == y, (row_a, row_b)


def test_daily_rollups_count_each_event_once_and_match_a_rebuild(
    store_url: str, query: Query
) -> None:
    events = cohort_events(patients=3, days=4, readings_per_day=30)
    # A score taken earlier on a day that arrives after the later one.
    first = next(e for e in events if isinstance(e, ClinicalScore))
    late = first.model_copy(
        update={
            "event_id": event_id_for("late", str(first.event_id)),
            "observed_at": first.observed_at - timedelta(hours=2),
            "total": 1,
            "items": None,
        }
    )
    records = as_records(events)
    with Sink(store_url) as sink:
        sink.load_batch(records[: len(records) // 2])
        sink.load_batch(records)  # half of it again
        sink.load_batch(as_records([late]))
        sink.load_batch(records[len(records) // 3 :])
    incremental = rollups(query)
    day_scores = query(
        "SELECT n, last_total FROM daily_scores WHERE patient_id = %s AND day = %s",
        first.patient_id,
        first.observed_at.replace(hour=0, minute=0),
    )
    assert day_scores == [(2, first.total)]  # the late, earlier score is not "last"
    samples = query("SELECT count(*) FROM wearable_samples")[0][0]
    assert sum(r[3] for r in incremental["daily_wearable"]) == samples

    query("SELECT psymon_rebuild_daily_rollups('2026-01-01', '2026-12-31') IS NULL")
    rebuilt = rollups(query)
    for table in incremental:
        assert_close(incremental[table], rebuilt[table])


def test_any_month_gets_its_own_partition(store_url: str, query: Query) -> None:
    when = [datetime(2019, 7, 4, tzinfo=UTC), datetime(2031, 1, 31, 23, 59, tzinfo=UTC)]
    scores = [
        ClinicalScore(
            **envelope_fields(event_id=event_id_for("month", str(t)), observed_at=t, received_at=t),
            instrument="phq9",
            rater="self",
            total=3,
        )
        for t in when
    ]
    with Sink(store_url) as sink:
        sink.load_batch(as_records(scores))
    assert query("SELECT count(*) FROM clinical_scores_p2019_07") == [(1,)]
    assert query("SELECT count(*) FROM clinical_scores_p2031_01") == [(1,)]
    assert query("SELECT count(*) FROM clinical_scores_default") == [(0,)]


def act_on_alert(url: str, alert_id: UUID, patient: str, action: str, at: datetime) -> None:
    payload = {"alert_id": str(alert_id), "action": action, "actor": "clinician:7"}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            """INSERT INTO alert_history (event_id, alert_id, patient_id, observed_at,
                   received_at, source_system, action, actor, payload)
               VALUES (%s, %s, %s, %s, %s, 'psymon-api', %s, 'clinician:7', %s)""",
            (
                event_id_for("action", str(alert_id), action),
                alert_id,
                patient,
                at,
                at,
                action,
                json.dumps(payload),
            ),
        )


def test_views_show_the_cohort_and_the_alert_workflow(store_url: str, query: Query) -> None:
    events = cohort_events(patients=3, days=2, readings_per_day=2)
    with Sink(store_url) as sink:
        sink.load_batch(as_records(events))

    overview = query(
        "SELECT open_alerts, worst_open_severity, last_outcome, risk_probability IS NOT NULL "
        "FROM v_cohort_overview ORDER BY patient_id"
    )
    assert len(overview) == 3
    assert all(row[0] == 1 and row[2] == "relapse" and row[3] for row in overview)
    assert {row[1] for row in overview} == {"urgent", "warning"}
    latest_risk = query("SELECT count(*) FROM v_risk_latest")
    assert latest_risk == [(3,)]

    alert_id, patient = query("SELECT alert_id, patient_id FROM v_alerts_open LIMIT 1")[0]
    later = datetime(2026, 3, 10, tzinfo=UTC)
    act_on_alert(store_url, alert_id, patient, "commented", later)
    assert query("SELECT status FROM v_alerts WHERE alert_id = %s", alert_id) == [("open",)]
    act_on_alert(store_url, alert_id, patient, "acknowledged", later + timedelta(minutes=1))
    assert query("SELECT status, last_actor FROM v_alerts_open WHERE alert_id = %s", alert_id) == [
        ("acknowledged", "clinician:7")
    ]
    act_on_alert(store_url, alert_id, patient, "resolved", later + timedelta(minutes=2))
    assert query("SELECT count(*) FROM v_alerts_open WHERE alert_id = %s", alert_id) == [(0,)]
    assert query("SELECT count(*) FROM v_alerts_open") == [(2,)]


def test_records_on_an_unknown_topic_are_refused_with_the_accepted_ones() -> None:
    letter = decode_record(SinkRecord("elsewhere", b"{}", T_MS))
    assert letter.kind == "dead_letter"
    assert isinstance(letter, DeadLetter)
    assert "psymon.clinical-scores.v1" in letter.reason
    assert EXAMPLE_PATIENT not in letter.reason


def test_the_first_table_is_copied_while_later_events_are_still_being_read(
    store_url: str, query: Query
) -> None:
    events = cohort_events(patients=2, days=2, readings_per_day=20)
    uploads = [e for e in events if isinstance(e, WearableUpload)]
    status_while_read: list[TransactionStatus] = []
    with psycopg.connect(store_url) as conn:
        writer = StoreWriter(conn)

        def read() -> Iterator[WearableUpload]:
            for upload in uploads:
                status_while_read.append(conn.info.transaction_status)
                yield upload

        report = writer.write(read())
    # The first upload is read before the transaction opens; every later one
    # while its COPY is in progress (the connection busy with it).
    assert status_while_read[0] == TransactionStatus.IDLE
    assert set(status_while_read[1:]) == {TransactionStatus.ACTIVE}
    samples = sum(len(u.readings) for u in uploads)
    assert report.inserted == Counter(wearable_samples=samples, wearable_uploads=len(uploads))
    assert query("SELECT count(*) FROM wearable_samples") == [(samples,)]


def test_an_error_reading_the_events_during_the_copy_is_not_taken_for_a_refused_row(
    store_url: str, query: Query
) -> None:
    # The COPY takes some errors (UnicodeError among them) for the database
    # refusing a row and loads the batch the careful way; the same error from
    # the events' side would have left every later event out of the batch.
    uploads = [
        e
        for e in cohort_events(patients=2, days=2, readings_per_day=20)
        if isinstance(e, WearableUpload)
    ]

    def read() -> Iterator[WearableUpload]:
        yield from uploads[:2]
        raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "a record that is not UTF-8")

    with psycopg.connect(store_url) as conn, pytest.raises(UnicodeDecodeError):
        StoreWriter(conn).write(read())
    assert query("SELECT count(*) FROM wearable_uploads") == [(0,)]  # nothing half-loaded


class LosesOneDeadlock(StoreWriter):
    """A writer whose first attempt at a batch loses a deadlock after its COPY went in."""

    lost = False

    def _stream(self, spec: TableSpec, *args: Any) -> bool:
        streamed = super()._stream(spec, *args)
        if not self.lost:
            self.lost = True
            raise psycopg.errors.DeadlockDetected("deadlock detected")
        return streamed


def test_a_batch_that_loses_a_deadlock_is_loaded_again_in_table_order(
    store_url: str, query: Query
) -> None:
    events = cohort_events(patients=2, days=2, readings_per_day=20)
    expected = stored_rows(events)
    with psycopg.connect(store_url) as conn:
        writer = LosesOneDeadlock(conn)
        report = writer.write(iter(events))
    assert writer.lost
    assert_stored_once(query, expected)
    assert dict(report.inserted) == {table: len(ids) for table, ids in expected.items()}
    assert sum(report.duplicates.values()) == 0
    samples = query("SELECT count(*) FROM wearable_samples")[0][0]
    assert query("SELECT sum(n) FROM daily_wearable") == [(samples,)]


def test_a_new_writer_knows_the_months_that_have_partitions(store_url: str) -> None:
    with psycopg.connect(store_url, autocommit=True) as conn:
        ensure_partitions(conn, datetime(2030, 5, 1, tzinfo=UTC), datetime(2030, 6, 30, tzinfo=UTC))
        # A month one table lacks is not ready: its rows would go to a default partition.
        conn.execute(
            "CREATE TABLE clinical_scores_p2030_08 PARTITION OF clinical_scores "
            "FOR VALUES FROM ('2030-08-01 00:00Z') TO ('2030-09-01 00:00Z')"
        )
        months = _partitioned_months(conn)
    assert {(2030, 5), (2030, 6)} <= months
    assert (2030, 8) not in months


def test_a_retried_batch_decodes_the_same_events_and_records_added_meanwhile() -> None:
    scores = [
        ClinicalScore(
            **envelope_fields(event_id=event_id_for("retry", str(n))),
            instrument="phq9",
            rater="self",
            total=n,
        )
        for n in range(3)
    ]
    records = as_records(scores)
    batch = DecodedBatch(records[:2])
    first_attempt = iter(batch)
    first = next(first_attempt)  # the attempt stopped here (a lost connection)
    records_after_pause = batch.records
    records_after_pause.append(records[2])  # polled while consumption was paused
    again = list(batch)
    assert again[0] == first
    assert again == scores
    assert batch.undecodable() == 0


def test_a_sink_process_collects_garbage_rarely() -> None:
    before = gc.get_threshold()
    try:
        collect_garbage_rarely()
        assert gc.get_threshold() == (GC_YOUNG_OBJECTS, *before[1:])
    finally:
        gc.set_threshold(*before)
