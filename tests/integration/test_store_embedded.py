"""The embedded PostgreSQL: kept between runs, never on 5432, never left running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from pydantic import SecretStr

from services.embedded.postgres import EmbeddedPostgres, database_url
from services.settings import Settings
from tests.integration.pg_fixtures import TEST_SERVER_SETTINGS, process_alive

pytest_plugins = ("tests.integration.pg_fixtures",)
pytestmark = pytest.mark.integration


def wait_gone(pid: int, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process_alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_data_survives_a_restart_and_stop_leaves_no_process(pg_data_dir: Path) -> None:
    with EmbeddedPostgres(pg_data_dir, server_settings=TEST_SERVER_SETTINGS) as pg:
        assert pg.port is not None and pg.port != 5432
        assert pg.url.startswith("postgresql://postgres:") and pg.url.endswith(f":{pg.port}/psymon")
        with psycopg.connect(pg.url) as conn:
            conn.execute("CREATE TABLE kept (n int)")
            conn.execute("INSERT INTO kept VALUES (42)")
        pid = pg.pid
        assert pid is not None
    assert wait_gone(pid), "the server outlived stop()"
    assert "database system is shut down" in pg.log_tail()
    # The password is not readable by other users.
    assert (pg_data_dir / "postgres.password").stat().st_mode & 0o077 == 0

    with (
        EmbeddedPostgres(pg_data_dir, server_settings=TEST_SERVER_SETTINGS) as again,
        psycopg.connect(again.url) as conn,
    ):
        assert conn.execute("SELECT n FROM kept").fetchall() == [(42,)]


def test_without_the_password_nobody_gets_in(embedded_pg: EmbeddedPostgres) -> None:
    wrong = embedded_pg.url.replace(":" + embedded_pg.url.split(":")[2].split("@")[0], ":nope")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong, connect_timeout=5)


def test_a_second_handle_attaches_and_does_not_stop_the_owner(
    embedded_pg: EmbeddedPostgres,
) -> None:
    second = EmbeddedPostgres(embedded_pg.data_dir).start()
    assert not second.owned
    assert second.port == embedded_pg.port
    assert second.stop() is None
    with psycopg.connect(embedded_pg.url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_database_url_prefers_the_setting_and_otherwise_starts_the_embedded_one(
    pg_data_dir: Path,
) -> None:
    given = "postgresql://someone:secret@db.example:5432/psymon"
    url, handle = database_url(Settings(database_url=SecretStr(given), data_dir=pg_data_dir))
    assert (url, handle) == (given, None)
    assert not pg_data_dir.exists()

    url, handle = database_url(Settings(data_dir=pg_data_dir))
    assert handle is not None
    try:
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("psymon",)
    finally:
        handle.stop()


SERVE = """
import sys, time
from services.embedded.postgres import EmbeddedPostgres
with EmbeddedPostgres(sys.argv[1], server_settings={"fsync": "off"}) as pg:
    print(pg.pid, flush=True)
    time.sleep(120)
"""


def serve_in_child(data_dir: Path) -> tuple[subprocess.Popen[str], int]:
    child = subprocess.Popen(
        [sys.executable, "-c", SERVE, str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    assert child.stdout is not None
    line = child.stdout.readline()
    if not line.strip():
        child.kill()
        pytest.fail(f"the child did not start PostgreSQL: {child.communicate()[1][-2000:]}")
    return child, int(line)


def test_ctrl_c_stops_the_server_cleanly(pg_data_dir: Path) -> None:
    child, server_pid = serve_in_child(pg_data_dir)
    child.send_signal(signal.SIGINT)
    try:
        # Beyond EmbeddedPostgres.stop's own 30 s (fast shutdown, then SIGKILL), so that
        # a slow shutdown shows in the log assertion below, not as a race with it.
        child.wait(timeout=60)
    except subprocess.TimeoutExpired:
        child.kill()
        _, errors = child.communicate()
        log = (pg_data_dir / "postgres.log").read_text(errors="replace")
        pytest.fail(
            f"the child did not stop within 60 s of SIGINT; its stderr:\n{errors[-2000:]}\n"
            f"the server log:\n{log[-2000:]}"
        )
    assert wait_gone(server_pid), "PostgreSQL outlived a Ctrl-C of its parent"
    log = (pg_data_dir / "postgres.log").read_text()
    assert "database system is shut down" in log


def test_a_killed_parent_leaves_no_server_behind(pg_data_dir: Path) -> None:
    child, server_pid = serve_in_child(pg_data_dir)
    child.kill()  # SIGKILL: no atexit, no context manager
    child.wait(timeout=10)
    assert wait_gone(server_pid), "PostgreSQL outlived its SIGKILLed parent"
    # The next start recovers the cluster.
    with (
        EmbeddedPostgres(pg_data_dir, server_settings=TEST_SERVER_SETTINGS) as pg,
        psycopg.connect(pg.url) as conn,
    ):
        assert conn.execute("SELECT 1").fetchone() == (1,)
