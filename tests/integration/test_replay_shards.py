"""A replay shared out among processes writes what a one-process replay writes.

The store (embedded PostgreSQL) holds a simulated cohort; the threshold below
which a replay stays in one process is lowered so that this small cohort is
shared out among several processes, in several chunks each.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from services.embedded import EmbeddedBroker
from services.embedded.postgres import EmbeddedPostgres
from services.replay import replay, replay_outputs, shards
from services.simulator import simulate_cohort
from tests.integration.pg_fixtures import audit_row, loaded_store
from tests.integration.test_replay import with_audit_log
from tests.integration.workers import read_until

pytest_plugins = ("tests.integration.pg_fixtures",)
pytestmark = pytest.mark.integration

START = datetime(2026, 1, 5, tzinfo=UTC)

#: Parts of a manifest that differ between any two runs.
PER_RUN = {"audit_id", "started_at", "finished_at"}


@pytest.fixture(scope="module")
def loaded(embedded_pg: EmbeddedPostgres) -> Iterator[str]:
    cohort = list(simulate_cohort(6, 21, seed=8, start=START, samples_per_hour=2).events())
    with loaded_store(embedded_pg, cohort, "shards") as url:
        yield with_audit_log(url)


@pytest.fixture
def small_shards(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Share even this small cohort out: one event per process is enough, 3 chunks each."""
    monkeypatch.setattr(shards, "MIN_EVENTS_PER_PROCESS", 1)
    monkeypatch.setattr(shards, "CHUNKS_PER_PROCESS", 3)
    caplog.set_level(logging.INFO, logger="psymon.replay")


#: What the shards' tests compare in an audit row.
AUDITED = "status, row_counts, manifest_sha256, parameters, error"


def test_the_files_manifest_and_audit_row_are_those_of_one_process(
    loaded: str, small_shards: None, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    one = replay(loaded, out_dir=tmp_path / "one", who="shards", jobs=1)
    three = replay(loaded, out_dir=tmp_path / "three", who="shards", jobs=3)

    assert "replaying in 3 processes" in caplog.text
    assert one.row_counts["features"] > 0 and one.row_counts["alerts"] > 0
    for entry in one.files:
        name = entry["name"]
        assert (tmp_path / "three" / name).read_bytes() == (tmp_path / "one" / name).read_bytes()
    assert one.files == three.files
    mine = {k: v for k, v in three.data.items() if k not in PER_RUN}
    assert mine == {k: v for k, v in one.data.items() if k not in PER_RUN}

    status, counts, sha, parameters, error = audit_row(loaded, three.data["audit_id"], AUDITED)
    status_one, counts_one, _, parameters_one, _ = audit_row(loaded, one.data["audit_id"], AUDITED)
    assert status == status_one == "completed" and error is None
    assert counts == counts_one == one.row_counts and sha == three.sha256
    del parameters["out_dir"], parameters_one["out_dir"]
    assert parameters == parameters_one


def test_in_process_outputs_and_progress_are_those_of_one_process(
    loaded: str, small_shards: None
) -> None:
    since = START + timedelta(days=2)
    calls: list[tuple[int, int | None]] = []
    one = [o.model_dump_json() for o in replay_outputs(loaded, since=since, jobs=1)]
    two = [
        o.model_dump_json()
        for o in replay_outputs(
            loaded, since=since, jobs=2, progress=lambda d, t: calls.append((d, t))
        )
    ]

    assert two == one and len(one) > 100
    with psycopg.connect(loaded) as conn:
        row = conn.execute(
            "SELECT count(*) FROM v_input_events WHERE observed_at >= %s", (since,)
        ).fetchone()
    assert row is not None and calls[-1] == (row[0], row[0])


def test_a_topic_gets_each_patients_outputs_in_the_same_order(
    loaded: str, small_shards: None, broker: EmbeddedBroker
) -> None:
    def per_patient(jobs: int) -> dict[str, list[dict[str, Any]]]:
        topic = f"it-shards.{uuid.uuid4().hex[:8]}.v1"
        sent = replay(
            loaded, to_topic=topic, bootstrap=broker.bootstrap, topic_partitions=2, jobs=jobs
        ).data["topic"]["sent"]
        records = read_until(broker.bootstrap, topic, lambda r: len(r) >= sent)
        assert len(records) == sent > 0
        keyed: dict[str, list[dict[str, Any]]] = {}
        for record in records:
            keyed.setdefault(record["_key"], []).append(record)
        return keyed

    assert per_patient(3) == per_patient(1)


def test_as_live_models_give_the_same_outputs_in_several_processes(
    loaded: str, small_shards: None
) -> None:
    one = [o.model_dump_json() for o in replay_outputs(loaded, models="as-live", jobs=1)]
    two = [o.model_dump_json() for o in replay_outputs(loaded, models="as-live", jobs=2)]

    assert two == one
    assert any(json.loads(o)["kind"] == "risk_assessment" for o in one)


def test_processes_start_from_a_fork_server_while_other_threads_run(
    loaded: str, small_shards: None, caplog: pytest.LogCaptureFixture
) -> None:
    one = [o.model_dump_json() for o in replay_outputs(loaded, jobs=1)]
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert shards._context().get_start_method() == "forkserver"
        two = [o.model_dump_json() for o in replay_outputs(loaded, jobs=2)]
    finally:
        stop.set()
        other.join()

    assert two == one
    assert "replaying in 2 processes" in caplog.text


def test_a_failing_process_fails_the_replay_and_its_audit_row(
    loaded: str, small_shards: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def broken(*args: Any, **options: Any) -> None:
        raise ValueError("this chunk could not be read")

    # Forked processes are copies of this one: they read with ``broken``.
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    monkeypatch.setattr(shards, "read_input_events", broken)
    with pytest.raises(ValueError, match="could not be read"):
        replay(loaded, out_dir=tmp_path / "broken", who="shards-broken", jobs=2)

    with psycopg.connect(loaded) as conn:
        row = conn.execute(
            "SELECT status, error FROM audit_log WHERE actor = 'shards-broken'"
        ).fetchone()
    assert row == ("failed", "ValueError: this chunk could not be read")
