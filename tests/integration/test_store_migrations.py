"""The schema: migrations apply once, partitions exist ahead of time, views keep their columns."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from services.store import MigrationError, applied_versions, ensure_partitions, migrate
from services.store.cli_support import run_migrate
from services.store.migrations.v0001_event_tables import TIME_SERIES_TABLES
from services.store.tables import TABLES
from tests.integration.pg_fixtures import VIEW_COLUMNS

pytest_plugins = ("tests.integration.pg_fixtures",)
pytestmark = pytest.mark.integration

ALL_VERSIONS = ["0001", "0002", "0003", "0004", "0005", "0006", "0007", "0008", "0009", "0010"]

Query = Callable[..., list[tuple[object, ...]]]


def schema_snapshot(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    """Every relation, column and type of the public schema, plus every function."""
    columns = conn.execute(
        """SELECT c.relname, c.relkind, a.attname, format_type(a.atttypid, a.atttypmod)
           FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace
           LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0
           WHERE n.nspname = 'public'
           ORDER BY 1, 3"""
    ).fetchall()
    functions = conn.execute(
        "SELECT proname, md5(prosrc) FROM pg_proc WHERE pronamespace = 'public'::regnamespace"
    ).fetchall()
    return columns + sorted(functions)


def test_migrate_from_empty_applies_every_version_then_nothing(empty_database_url: str) -> None:
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        assert applied_versions(conn) == []
        assert migrate(conn) == ALL_VERSIONS
        before = schema_snapshot(conn)
        assert migrate(conn) == []
        assert migrate(conn) == []
        assert schema_snapshot(conn) == before
        recorded = conn.execute(
            "SELECT version, flavour, length(checksum) FROM psymon_schema_migrations "
            "ORDER BY version"
        ).fetchall()
    assert recorded == [(v, "postgres", 64) for v in ALL_VERSIONS]


def test_migrate_leaves_a_non_autocommit_connection_idle(empty_database_url: str) -> None:
    with psycopg.connect(empty_database_url) as conn:
        assert migrate(conn) == ALL_VERSIONS
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    # Committed: a new connection sees it.
    assert run_migrate(empty_database_url) == []


def test_run_migrate_for_the_cli(empty_database_url: str) -> None:
    assert run_migrate(empty_database_url) == ALL_VERSIONS
    assert run_migrate(empty_database_url) == []


def test_two_processes_migrating_at_once_do_not_collide(empty_database_url: str) -> None:
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(run_migrate(empty_database_url))
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert sorted(results) == [[], [], ALL_VERSIONS]


def test_an_edited_migration_is_refused(store_url: str) -> None:
    with psycopg.connect(store_url, autocommit=True) as conn:
        conn.execute("UPDATE psymon_schema_migrations SET checksum = 'x' WHERE version = '0002'")
        with pytest.raises(MigrationError, match=r"migration 0002 \(time layout\).*edited"):
            migrate(conn)


def test_timescale_is_refused_where_the_extension_is_missing(empty_database_url: str) -> None:
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        with pytest.raises(MigrationError, match="timescaledb"):
            migrate(conn, flavour="timescale")
        assert migrate(conn, flavour="postgres") == ALL_VERSIONS
        with pytest.raises(MigrationError, match="cannot switch"):
            migrate(conn, flavour="timescale")


def test_monthly_partitions_exist_ahead_and_a_default_catches_the_rest(
    empty_database_url: str,
) -> None:
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        migrate(conn, now=datetime(2026, 11, 15, tzinfo=UTC))
        for table in TIME_SERIES_TABLES:
            names = [
                r[0]
                for r in conn.execute(
                    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                    "WHERE i.inhparent = %s::regclass ORDER BY 1",
                    (table,),
                )
            ]
            months = ["2026_10", "2026_11", "2026_12", "2027_01", "2027_02"]
            assert names == [f"{table}_default"] + [f"{table}_p{m}" for m in months]
        bounds = conn.execute(
            "SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_class c "
            "WHERE c.relname = 'clinical_scores_p2026_12'"
        ).fetchone()
    assert bounds == ("FOR VALUES FROM ('2026-12-01 00:00:00+00') TO ('2027-01-01 00:00:00+00')",)


def test_rows_waiting_in_the_default_partition_move_to_their_new_month(
    store_url: str, query: Query
) -> None:
    query(
        """INSERT INTO clinical_scores (event_id, patient_id, observed_at, received_at,
               source_system, instrument, rater, total, payload)
           VALUES (gen_random_uuid(), 'p-000000000000000000000001', '2019-05-14 10:00+00',
                   '2019-05-14 11:00+00', 'tests', 'phq9', 'self', 7, '{}')
           RETURNING 1"""
    )
    assert query("SELECT count(*) FROM clinical_scores_default") == [(1,)]
    with psycopg.connect(store_url, autocommit=True) as conn:
        created = ensure_partitions(
            conn, datetime(2019, 5, 1, tzinfo=UTC), datetime(2019, 5, 31, tzinfo=UTC)
        )
        assert created == len(TIME_SERIES_TABLES)
        assert (
            ensure_partitions(
                conn, datetime(2019, 5, 1, tzinfo=UTC), datetime(2019, 5, 31, tzinfo=UTC)
            )
            == 0
        )
    assert query("SELECT count(*) FROM clinical_scores_default") == [(0,)]
    assert query("SELECT count(*) FROM clinical_scores_p2019_05") == [(1,)]
    assert query("SELECT count(*) FROM clinical_scores") == [(1,)]
    # The moved partition has the parent's indexes, the unique key included.
    indexes = query("SELECT indexdef FROM pg_indexes WHERE tablename = 'clinical_scores_p2019_05'")
    assert any("UNIQUE" in str(row[0]) and "event_id" in str(row[0]) for row in indexes)


def test_ensure_partitions_wants_aware_times_in_order(store_url: str) -> None:
    with psycopg.connect(store_url, autocommit=True) as conn:
        with pytest.raises(ValueError, match=r"from_time .* has no time zone"):
            ensure_partitions(conn, datetime(2026, 1, 1), datetime(2026, 2, 1, tzinfo=UTC))
        with pytest.raises(ValueError, match="before from_time"):
            ensure_partitions(
                conn, datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)
            )


def test_time_series_tables_have_brin_and_patient_time_indexes(query: Query) -> None:
    for table in TIME_SERIES_TABLES:
        definitions = [str(r[0]) for r in query(
            "SELECT indexdef FROM pg_indexes WHERE tablename = %s", table
        )]  # fmt: skip
        assert any("USING brin (observed_at)" in d for d in definitions), table
        assert any("(patient_id, observed_at DESC)" in d for d in definitions), table
        assert any("UNIQUE" in d and "(event_id, observed_at)" in d for d in definitions), table


def test_views_have_the_documented_columns(query: Query) -> None:
    views = {str(r[0]) for r in query(
        "SELECT viewname FROM pg_views WHERE schemaname = 'public'"
    )}  # fmt: skip
    assert views == set(VIEW_COLUMNS)
    for view, expected in VIEW_COLUMNS.items():
        columns = query(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
            "ORDER BY attnum",
            view,
        )
        assert [str(c[0]) for c in columns] == expected, view
        assert query(f"SELECT * FROM {view}") == [], view


def test_docs_name_every_view_and_its_columns() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "store.md").read_text()
    for view, columns in VIEW_COLUMNS.items():
        section = re.search(rf"^### `{view}`\n(.*?)(?=^### |\Z)", docs, re.M | re.S)
        assert section, f"docs/store.md has no section for {view}"
        for column in columns:
            assert f"`{column}`" in section.group(1), f"{view}.{column} is not documented"


def test_the_writer_loads_columns_the_schema_has(query: Query) -> None:
    for spec in TABLES:
        present = {str(r[0]) for r in query(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0",
            spec.name,
        )}  # fmt: skip
        missing = set(spec.columns) - present
        assert not missing, f"{spec.name} lacks {missing}"


def test_creating_partitions_gives_way_to_a_reader_instead_of_deadlocking_it(
    store_url: str,
) -> None:
    # A reader of several tables locks them in its own order; creating a month's
    # partitions goes through the tables in name order (clinical_outcomes first,
    # lab_results later). The reader holds lab_results and then asks for
    # clinical_outcomes. Had the creator kept clinical_outcomes locked while it
    # waits for lab_results (one transaction for all tables, before migration
    # 0010), that was a cycle, which the server breaks after a second by
    # failing one of the two.
    month = datetime(2031, 1, 1, tzinfo=UTC)
    outcome: list[object] = []

    with (
        psycopg.connect(store_url) as reader,
        psycopg.connect(store_url, autocommit=True) as creator,
        psycopg.connect(store_url, autocommit=True) as watcher,
    ):
        reader.execute("SELECT count(*) FROM lab_results")  # held until the reader commits

        def create() -> None:
            try:
                outcome.append(ensure_partitions(creator, month, month))
            except psycopg.Error as error:
                outcome.append(error)

        thread = threading.Thread(target=create)
        thread.start()
        waiting = "SELECT count(*) FROM pg_locks WHERE pid = %s AND NOT granted"
        while watcher.execute(waiting, (creator.info.backend_pid,)).fetchone() == (0,):
            assert thread.is_alive(), outcome
        reader.execute("SELECT count(*) FROM clinical_outcomes")  # not a deadlock victim
        reader.commit()
        thread.join()

    assert outcome == [len(TIME_SERIES_TABLES)]
