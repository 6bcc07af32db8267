"""Offline replay from the store: Parquet files, manifest, filters, configuration, topic, audit.

The store (embedded PostgreSQL) is loaded once per module with a simulated
cohort through the sink's loading path; the reference is the pure core run
in memory over the same events in arrival order.
"""

from __future__ import annotations

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

from schemas.topics import COURSE
from services.embedded import EmbeddedBroker
from services.embedded.postgres import EmbeddedPostgres
from services.replay import AuditUnavailable, replay, replay_outputs
from services.replay.engine import run_core
from services.replay.parquet import read_rows, stream_of
from services.simulator import simulate_cohort
from services.store.migrations import MIGRATIONS, v0005_audit
from tests.integration.pg_fixtures import arrival_order, audit_row, loaded_store
from tests.integration.workers import read_until

pytest_plugins = ("tests.integration.pg_fixtures",)
pytestmark = pytest.mark.integration

START = datetime(2026, 1, 5, tzinfo=UTC)


def with_audit_log(url: str) -> str:
    """Apply migration 0005 where the migration list does not include it yet."""
    if v0005_audit not in MIGRATIONS:
        with psycopg.connect(url, autocommit=True) as conn:
            for statement in v0005_audit.statements("postgres"):
                conn.execute(statement)
    return url


@pytest.fixture(scope="module")
def cohort() -> list[Any]:
    return list(simulate_cohort(4, 30, seed=5, start=START, samples_per_hour=2).events())


@pytest.fixture(scope="module")
def loaded(embedded_pg: EmbeddedPostgres, cohort: list[Any]) -> Iterator[str]:
    """A migrated store holding the cohort's events (no outputs: replay makes them)."""
    with loaded_store(embedded_pg, cohort, "replay") as url:
        with_audit_log(url)
        yield url


@pytest.fixture(scope="module")
def expected(cohort: list[Any]) -> dict[str, list[Any]]:
    """The in-memory core's outputs per output file."""
    files: dict[str, list[Any]] = {}
    for _, outputs in run_core(arrival_order(cohort)):
        for output in outputs:
            files.setdefault(stream_of(output), []).append(output)
    return files


def test_replay_writes_the_core_outputs_to_parquet_with_a_manifest(
    loaded: str, expected: dict[str, list[Any]], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    manifest = replay(loaded, out_dir=out, who="alice")

    for stream in ("trajectories", "features", "alerts"):
        rows = read_rows(out / f"{stream}.parquet")
        want = expected[stream]
        assert [r["event_id"] for r in rows] == [str(o.event_id) for o in want], stream
        assert manifest.row_counts[stream] == len(want) > 0
    alerts = read_rows(out / "alerts.parquet")
    first = expected["alerts"][0]
    assert alerts[0]["rule"] == first.rule and alerts[0]["first_seen"] == first.first_seen
    assert json.loads(alerts[0]["evidence"]) == first.evidence
    features = pq.read_table(out / "features.parquet")
    assert str(features.schema.field("observed_at").type) == "timestamp[us, tz=UTC]"
    assert str(features.schema.field("day").type) == "date32[day]"
    assert read_rows(out / "risk.parquet") == [] and read_rows(out / "dead_letters.parquet") == []

    data = json.loads((out / "manifest.json").read_text())
    assert data == manifest.data
    assert data["kind"] == "replay" and data["who"] == "alice"
    assert data["query"]["patients"] is None and data["query"]["order"].startswith("per patient")
    assert data["config"]["version"] == "core-2026.1"
    assert data["config"]["source"] == "built-in defaults"
    assert {"0001", "0002", "0003"} <= set(data["schema"]["store_migrations"])
    assert data["schema"]["event_schema_version"] == 1
    assert data["code"]["psymon"] and data["started_at"] <= data["finished_at"]
    assert data["patients"] == 4
    assert data["row_counts"]["input_events"] == len(arrival_order_ids(loaded))
    for entry in data["files"]:
        content = (out / entry["name"]).read_bytes()
        assert entry["sha256"] == hashlib.sha256(content).hexdigest()
        assert entry["bytes"] == len(content)

    action, actor, status, counts, sha, config_version, parameters, ordered = audit_row(
        loaded,
        data["audit_id"],
        "action, actor, status, row_counts, manifest_sha256, config_version, parameters, "
        "finished_at >= started_at",
    )
    assert (action, actor, status, config_version, ordered) == (
        "replay",
        "alice",
        "completed",
        "core-2026.1",
        True,
    )
    assert counts == data["row_counts"]
    assert (
        sha == manifest.sha256 == hashlib.sha256((out / "manifest.json").read_bytes()).hexdigest()
    )
    assert parameters["out_dir"] == str(out.resolve())


def arrival_order_ids(url: str) -> list[Any]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT event_id FROM v_input_events")]


def test_filters_select_patients_event_time_and_kinds(
    loaded: str, cohort: list[Any], tmp_path: Path
) -> None:
    patient = sorted({e.patient_id for e in cohort})[1]
    since, until = START + timedelta(days=3), START + timedelta(days=20)
    manifest = replay(
        loaded,
        patients=[patient],
        since=since,
        until=until,
        kinds=["clinical_score", "lab_result"],
        out_dir=tmp_path / "filtered",
    )
    chosen = [
        e
        for e in arrival_order(cohort)
        if e.patient_id == patient
        and since <= e.observed_at < until
        and e.kind in ("clinical_score", "lab_result")
    ]
    assert manifest.row_counts["input_events"] == len(chosen) > 0
    reference = [o for _, outputs in run_core(chosen) for o in outputs]
    rows = read_rows(tmp_path / "filtered" / "trajectories.parquet")
    assert [r["event_id"] for r in rows] == [
        str(o.event_id) for o in reference if stream_of(o) == "trajectories"
    ]
    assert {r["patient_id"] for r in rows} == {patient}
    assert manifest.row_counts["features"] == 0  # no wearable data asked for
    query = manifest.data["query"]
    assert query["patients"] == [patient] and query["kinds"] == ["clinical_score", "lab_result"]
    assert query["since"] == since.isoformat() and query["until"] == until.isoformat()


def test_a_configuration_file_changes_the_outputs_and_is_named_in_the_manifest(
    loaded: str, expected: dict[str, list[Any]], tmp_path: Path
) -> None:
    config = tmp_path / "study-7.json"
    config.write_text(json.dumps({"version": "study-7", "alerts": {"crp_above": 50.0}}))
    manifest = replay(loaded, config_file=config, kinds=["lab_result"], out_dir=tmp_path / "s7")
    alerts = read_rows(tmp_path / "s7" / "alerts.parquet")
    assert all(a["config_version"] == "study-7" for a in alerts)
    live_crp = [a for a in expected["alerts"] if a.rule == "inflammation"]
    assert live_crp, "the cohort should raise an inflammation alert with the default threshold"
    assert not [a for a in alerts if a["rule"] == "inflammation"]  # 50 mg/L is never reached
    entry = manifest.data["config"]
    assert entry["version"] == "study-7" and entry["source"] == str(config)
    assert entry["settings"]["alerts"]["crp_above"] == 50.0 and len(entry["sha256"]) == 64


def test_progress_is_reported_up_to_the_total(loaded: str, tmp_path: Path) -> None:
    calls: list[tuple[int, int | None]] = []
    manifest = replay(loaded, out_dir=tmp_path / "p", progress=lambda d, t: calls.append((d, t)))
    total = manifest.row_counts["input_events"]
    assert calls[-1] == (total, total)
    assert len(calls) >= 2 and [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_replay_outputs_yields_the_same_outputs_and_is_audited_even_when_stopped_early(
    loaded: str, expected: dict[str, list[Any]]
) -> None:
    everything = [o for outputs in expected.values() for o in outputs]
    replayed = list(replay_outputs(loaded, who="notebook"))
    assert sorted(str(o.event_id) for o in replayed) == sorted(str(o.event_id) for o in everything)

    outputs = replay_outputs(loaded, who="early-stopper")
    first = [next(outputs) for _ in range(3)]
    outputs.close()
    assert len(first) == 3
    with psycopg.connect(loaded) as conn:
        status, counts = conn.execute(
            "SELECT status, row_counts FROM audit_log WHERE actor = 'early-stopper'"
        ).fetchone() or (None, None)
    assert status == "completed"
    assert 0 < counts["input_events"] < len(arrival_order_ids(loaded))


def test_outputs_go_to_a_topic_keyed_by_patient(
    loaded: str, broker: EmbeddedBroker, expected: dict[str, list[Any]]
) -> None:
    topic = f"it-replay.{uuid.uuid4().hex[:8]}.v1"
    manifest = replay(
        loaded,
        kinds=["clinical_score", "lab_result"],
        to_topic=topic,
        bootstrap=broker.bootstrap,
        topic_partitions=2,
    )
    assert manifest.path is None and manifest.data["topic"]["name"] == topic
    sent = manifest.data["topic"]["sent"]
    assert sent == manifest.row_counts["trajectories"] + manifest.row_counts["alerts"] > 0
    records = read_until(broker.bootstrap, topic, lambda r: len(r) >= sent)
    assert len(records) == sent
    assert all(r["_key"] == r["patient_id"] for r in records)

    with pytest.raises(ValueError, match="one of psymon's live topics"):
        replay(loaded, to_topic=COURSE, bootstrap=broker.bootstrap)


def test_bad_requests_are_refused_with_what_is_accepted(loaded: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="has no time zone"):
        replay(loaded, since=datetime(2026, 1, 5), out_dir=tmp_path / "a")
    with pytest.raises(ValueError, match="accepted: clinical_outcome, clinical_score"):
        replay(loaded, kinds=["course_update"], out_dir=tmp_path / "b")
    with pytest.raises(ValueError, match="not psymon pseudonyms") as refused:
        replay(loaded, patients=["MRN-0042"], out_dir=tmp_path / "c")
    assert "MRN-0042" not in str(refused.value)
    with pytest.raises(ValueError, match="out_dir, to_topic or both"):
        replay(loaded)
    replay(loaded, kinds=["lab_result"], out_dir=tmp_path / "done")
    with pytest.raises(FileExistsError, match=r"already holds manifest\.json"):
        replay(loaded, kinds=["lab_result"], out_dir=tmp_path / "done")
    broken = tmp_path / "broken.json"
    broken.write_text('{"alerts": {"crp_above": -1}}')
    with pytest.raises(ValueError, match=r"broken.json.*crp_above"):
        replay(loaded, config_file=broken, out_dir=tmp_path / "d")


def test_a_store_without_the_audit_log_refuses_to_replay(store_url: str, tmp_path: Path) -> None:
    with psycopg.connect(store_url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS audit_log")
    with pytest.raises(AuditUnavailable, match="psymon db migrate"):
        replay(store_url, out_dir=tmp_path / "x")
    assert not (tmp_path / "x" / "manifest.json").exists()
