"""Exports from the store: Parquet and CSV with a manifest a study can cite, FHIR R4 an EHR
(and psymon's own importer) can take back, dead-letter payloads only on request, audited."""

from __future__ import annotations

import csv
import hashlib
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pyarrow.parquet as pq
import pytest
from fhir.resources.R4B.bundle import Bundle

from schemas.dispatch import decode
from schemas.events import ClinicalScore, LabResult
from schemas.fhir import import_fhir
from schemas.topics import LAB_RESULTS
from services.embedded.postgres import EmbeddedPostgres
from services.export import export
from services.replay import replay_outputs
from services.simulator import simulate_cohort
from services.sink import Sink
from services.store.migrate import migrate
from services.store.migrations import MIGRATIONS, v0005_audit
from tests.integration.pg_fixtures import (
    VIEW_COLUMNS,
    audit_row,
    create_database,
    drop_database,
)

pytest_plugins = ("tests.integration.pg_fixtures",)
pytestmark = pytest.mark.integration

START = datetime(2026, 1, 5, tzinfo=UTC)
SECRET_LOOKING = "MRN-0042 sent where a pseudonym belongs"


def with_audit_log(url: str) -> str:
    """Apply migration 0005 where the migration list does not include it yet."""
    if v0005_audit not in MIGRATIONS:
        with psycopg.connect(url, autocommit=True) as conn:
            for statement in v0005_audit.statements("postgres"):
                conn.execute(statement)
    return url


@pytest.fixture(scope="module")
def loaded(embedded_pg: EmbeddedPostgres) -> Iterator[str]:
    """A store with a cohort, its outputs, a care-team action and a dead letter."""
    name = create_database(embedded_pg, prefix="export")
    url = embedded_pg.url_for(name)
    with psycopg.connect(url, autocommit=True) as conn:
        migrate(conn)
    with_audit_log(url)
    cohort = simulate_cohort(4, 30, seed=5, start=START, samples_per_hour=2)
    letter = decode(
        SECRET_LOOKING.encode(), topic=LAB_RESULTS, received_at=START + timedelta(days=2)
    )
    with Sink(url) as sink:
        sink.load_events([*cohort.events(), letter])
        sink.load_events(list(replay_outputs(url, who="test-setup")))
    with psycopg.connect(url, autocommit=True) as conn:
        alert_id, patient = conn.execute(
            "SELECT alert_id, patient_id FROM v_alerts WHERE status = 'open' "
            "ORDER BY alert_id LIMIT 1"
        ).fetchone() or (None, None)
        at = START + timedelta(days=40)
        conn.execute(
            "INSERT INTO alert_history (event_id, alert_id, patient_id, observed_at, received_at, "
            "source_system, action, actor, payload) VALUES (%s, %s, %s, %s, %s, 'tests', "
            "'resolved', 'dr-test', '{}')",
            (uuid.uuid4(), alert_id, patient, at, at),
        )
    yield url
    drop_database(embedded_pg, name)


def rows_of(url: str, statement: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        return conn.execute(statement, params or None).fetchall()


def patients_of(url: str) -> list[str]:
    return [r[0] for r in rows_of(url, "SELECT patient_id FROM patients ORDER BY patient_id")]


def test_parquet_export_with_filters_matches_the_store_and_the_manifest(
    loaded: str, tmp_path: Path
) -> None:
    patients = patients_of(loaded)[:2]
    since, until = START + timedelta(days=5), START + timedelta(days=25)
    out = tmp_path / "study"
    manifest = export(
        loaded,
        tables_or_views=["v_course", "v_patient_scores", "v_daily_wearable"],
        out_dir=out,
        patients=patients,
        since=since,
        until=until,
        who="researcher-1",
    )
    want = rows_of(
        loaded,
        "SELECT event_id::text FROM v_course WHERE patient_id = ANY(%s) AND observed_at >= %s "
        "AND observed_at < %s ORDER BY patient_id, observed_at, event_id",
        patients,
        since,
        until,
    )
    course = pq.read_table(out / "v_course.parquet")
    assert course.column("event_id").to_pylist() == [r[0] for r in want] and want
    assert course.schema.names == VIEW_COLUMNS["v_course"]
    assert str(course.schema.field("observed_at").type) == "timestamp[us, tz=UTC]"
    assert set(course.column("patient_id").to_pylist()) <= set(patients)
    daily = pq.read_table(out / "v_daily_wearable.parquet")
    days = daily.column("day").to_pylist()
    assert days and all(since.date() <= d < until.date() for d in days)

    data = json.loads((out / "manifest.json").read_text())
    assert data == manifest.data and data["kind"] == "export" and data["who"] == "researcher-1"
    assert data["filters"] == {
        "patients": patients,
        "since": since.isoformat(),
        "until": until.isoformat(),
    }
    assert data["row_counts"]["v_course"] == len(want)
    relation = next(r for r in data["relations"] if r["name"] == "v_course")
    assert relation["time_column"] == "observed_at" and "ORDER BY" in relation["query"]
    assert {"name": "observed_at", "type": "timestamp with time zone"} in relation["columns"]
    for entry in data["files"]:
        assert entry["sha256"] == hashlib.sha256((out / entry["name"]).read_bytes()).hexdigest()
    assert data["snapshot"]["isolation"] == "repeatable read, read only"
    assert {"0001", "0002", "0003"} <= set(data["schema"]["store_migrations"])

    status, counts, sha = audit_row(
        loaded, uuid.UUID(data["audit_id"]), "status, row_counts, manifest_sha256"
    )
    assert (status, counts, sha) == ("completed", data["row_counts"], manifest.sha256)


def test_the_same_data_exports_to_the_same_bytes(loaded: str, tmp_path: Path) -> None:
    names = ["v_course", "v_alerts", "clinical_scores"]
    for fmt in ("parquet", "csv"):
        first = export(loaded, tables_or_views=names, format=fmt, out_dir=tmp_path / f"{fmt}1")
        again = export(loaded, tables_or_views=names, format=fmt, out_dir=tmp_path / f"{fmt}2")
        assert [f["sha256"] for f in first.files] == [f["sha256"] for f in again.files]


def test_csv_export_has_a_header_and_iso_times(loaded: str, tmp_path: Path) -> None:
    manifest = export(loaded, tables_or_views=["v_patient_labs"], format="csv", out_dir=tmp_path)
    with (tmp_path / "v_patient_labs.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == VIEW_COLUMNS["v_patient_labs"]
    assert len(rows) == manifest.row_counts["v_patient_labs"] > 0
    stored = rows_of(loaded, "SELECT event_id::text, value, observed_at FROM v_patient_labs")
    by_id = {r["event_id"]: r for r in rows}
    for event_id, value, observed_at in stored:
        assert float(by_id[event_id]["value"]) == value
        assert datetime.fromisoformat(by_id[event_id]["observed_at"]) == observed_at
    assert by_id[stored[0][0]]["observed_at"].endswith("+00:00")


def test_dead_letter_payloads_are_left_out_unless_asked_for(loaded: str, tmp_path: Path) -> None:
    names = ["v_dead_letters", "dead_letters"]
    kept_out = export(loaded, tables_or_views=names, format="csv", out_dir=tmp_path / "a")
    for name in names:
        text = (tmp_path / "a" / f"{name}.csv").read_text()
        assert "MRN-0042" not in text and "not valid JSON" in text
    omitted = {r["name"]: r["omitted_columns"] for r in kept_out.data["relations"]}
    assert omitted == {"v_dead_letters": ["raw"], "dead_letters": ["raw", "payload"]}

    asked = export(
        loaded, tables_or_views=names, out_dir=tmp_path / "b", include_raw_dead_letters=True
    )
    raw = pq.read_table(tmp_path / "b" / "v_dead_letters.parquet").column("raw").to_pylist()
    assert SECRET_LOOKING in raw
    assert asked.data["relations"][0]["omitted_columns"] == []


def test_fhir_export_is_valid_r4_and_imports_back_into_the_same_scores_and_labs(
    loaded: str, tmp_path: Path
) -> None:
    manifest = export(
        loaded,
        tables_or_views=["v_patient_scores", "lab_results", "v_alerts", "v_risk"],
        format="fhir",
        out_dir=tmp_path,
        bundle_size=7,
    )
    scores = rows_of(loaded, "SELECT payload::text FROM clinical_scores")
    assert manifest.row_counts["v_patient_scores"] == len(scores) > 7
    score_files = [f for f in manifest.files if f["name"].startswith("fhir-v-patient-scores-")]
    assert len(score_files) == -(-len(scores) // 7)  # ceil: bundles of at most 7 entries
    imported: list[Any] = []
    for entry in manifest.files:
        document = json.loads((tmp_path / entry["name"]).read_text())
        Bundle.model_validate(document)  # valid FHIR (R4B shares these resources with R4)
        assert document["type"] == "transaction" and len(document["entry"]) == entry["rows"]
        reports = import_fhir(document, pseudonym_key=b"k" * 32, received_at=datetime.now(UTC))
        imported += [e for r in reports for e in r.events]

    def same(event: Any) -> tuple[Any, ...]:
        if isinstance(event, ClinicalScore):
            fields = (event.instrument, event.rater, event.items, event.total)
        else:
            fields = (event.analyte, event.loinc, event.value, event.unit)
        return (event.kind, event.patient_id, event.observed_at, *fields)

    stored = rows_of(
        loaded,
        "SELECT payload::text FROM clinical_scores UNION ALL SELECT payload::text FROM lab_results",
    )
    originals = [
        ClinicalScore.model_validate_json(p)
        if '"clinical_score"' in p
        else LabResult.model_validate_json(p)
        for (p,) in stored
    ]
    importable = [
        e
        for e in originals
        if not isinstance(e, ClinicalScore) or e.instrument in ("phq9", "phq2", "gad7")
    ]
    assert importable and sorted(map(same, imported)) == sorted(map(same, importable))

    flags = [
        e["resource"]
        for f in manifest.files
        if f["name"].startswith("fhir-v-alerts-")
        for e in json.loads((tmp_path / f["name"]).read_text())["entry"]
    ]
    current = rows_of(loaded, "SELECT alert_id::text, status FROM v_alerts")
    assert len(flags) == len(current) > 0
    status = {a: s for a, s in current}
    for flag in flags:
        alert = flag["identifier"][0]["value"]
        active = status[alert] in ("open", "acknowledged", "escalated")
        assert flag["status"] == ("active" if active else "inactive")
    assert "resolved" in status.values()  # the care team's action is what the Flag says


def test_unknown_or_unsuitable_relations_are_refused(loaded: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"accepted tables and views: .*v_course"):
        export(loaded, tables_or_views=["pg_authid"], out_dir=tmp_path / "a")
    with pytest.raises(
        ValueError, match=r"cannot be exported as FHIR; accepted: .*v_patient_scores"
    ):
        export(loaded, tables_or_views=["v_course"], format="fhir", out_dir=tmp_path / "b")
    with pytest.raises(ValueError, match="has no time column"):
        export(loaded, tables_or_views=["patients"], since=START, out_dir=tmp_path / "c")
    with pytest.raises(ValueError, match="format 'xlsx' is not known"):
        export(loaded, tables_or_views=["v_course"], format="xlsx", out_dir=tmp_path / "d")  # type: ignore[arg-type]
    failed = rows_of(loaded, "SELECT error FROM audit_log WHERE status = 'failed'")
    assert any("has no time column" in e for (e,) in failed)


def test_the_audit_log_cannot_be_rewritten(loaded: str) -> None:
    with psycopg.connect(loaded, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            conn.execute("DELETE FROM audit_log")
        with pytest.raises(psycopg.errors.RaiseException, match="cannot change"):
            conn.execute("UPDATE audit_log SET actor = 'someone else' WHERE status <> 'running'")
