"""`psymon demo` as a newcomer runs it: every embedded component starts, a simulated
cohort flows through the real pipeline, alerts reach the store and the web views,
and Ctrl-C leaves no process behind."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _processes_mentioning(marker: str) -> list[int]:
    """Pids whose command line or environment names ``marker`` (our data dir)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        for part in ("cmdline", "environ"):
            try:
                if marker.encode() in (entry / part).read_bytes():
                    found.append(int(entry.name))
                    break
            except OSError:
                continue
    return found


def _get(url: str, token: str) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path, int]]:
    data_dir = tmp_path / "psymon-demo-data"
    port = _free_port()
    env = os.environ | {"PSYMON_DATA_DIR": str(data_dir)}
    for name in ("PSYMON_KAFKA_BOOTSTRAP", "PSYMON_DATABASE_URL", "PSYMON_API_TOKENS_FILE"):
        env.pop(name, None)
    script = Path(sys.executable).with_name("psymon")
    process = subprocess.Popen(
        [
            str(script),
            "demo",
            "--patients",
            "6",
            "--days",
            "60",
            "--samples-per-hour",
            "2",
            "--speedup",
            "0",
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        yield process, data_dir, port
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


def test_demo_starts_everything_shows_alerts_and_stops_cleanly(
    demo: tuple[subprocess.Popen[str], Path, int],
) -> None:
    process, data_dir, port = demo
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        assert line, f"psymon demo exited early:\n{''.join(lines)}"
        lines.append(line)
        if "ready in" in line:
            break
    assert any(f"http://127.0.0.1:{port}/" in line for line in lines), "".join(lines)
    token = (data_dir / "demo-clinician-token").read_text().strip()
    assert token not in "".join(lines), "the demo must not print its token"

    alerts: list[dict[str, object]] = []
    while time.monotonic() < deadline and not alerts:
        status, body = _get(f"http://127.0.0.1:{port}/v1/alerts?limit=50", token)
        if status == 200:
            alerts = json.loads(body)
        if not alerts:
            time.sleep(2)
    assert alerts, "no alert reached the store through the live pipeline"

    status, page = _get(f"http://127.0.0.1:{port}/alerts", token)
    assert status == 200
    assert str(alerts[0]["rule"]) in page
    status, page = _get(f"http://127.0.0.1:{port}/cohort", token)
    assert status == 200 and re.search(r"p-[0-9a-f]{24}", page)

    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=90)
    assert process.returncode == 0, output
    assert "psymon  stopped" in output
    time.sleep(1)
    assert _processes_mentioning(str(data_dir)) == [], "processes left behind after Ctrl-C"
