"""``psymon up`` and ``psymon demo``: every component on one machine, started and stopped together.

The stack is: a broker (the embedded Tansu unless ``PSYMON_KAFKA_BOOTSTRAP`` is
set), PostgreSQL (embedded unless ``PSYMON_DATABASE_URL`` is set, data kept
under ``PSYMON_DATA_DIR``), the store's migrations, stream worker(s), the
relapse-risk trainer (one, whatever the number of workers: the population
model must not fork), the sink and the API with its web views. Workers,
trainer, sink and API are child processes in
their own process groups, bound to this process's life: Ctrl-C, SIGTERM or a
crash of this process stops them all, and nothing is left behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from services.embedded.children import signals_handled
from services.settings import Settings

#: How long a child may take to stop on SIGTERM before it is killed.
STOP_TIMEOUT = 15.0


class StackError(RuntimeError):
    """A component of the stack could not start; the message says which and why."""


@dataclass
class Stack:
    """The running components and where to reach them."""

    settings: Settings
    workers: int = 1
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    bootstrap: str = ""
    database_url: str = ""
    children: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _broker: Any = None
    _postgres: Any = None
    _logs: list[IO[bytes]] = field(default_factory=list)

    @property
    def api_url(self) -> str:
        return f"http://{self.api_host}:{self.api_port}"

    @property
    def log_dir(self) -> Path:
        return self.settings.data_dir / "logs"

    def start(self, *, echo: Any = print) -> Stack:
        """Start every component, in dependency order; raise :class:`StackError` on failure."""
        from schemas.topics import MODELS
        from services.embedded import EmbeddedBroker, ensure_topics
        from services.embedded.postgres import database_url
        from services.embedded.topics import ensure_models_topic
        from services.store.cli_support import run_migrate

        self.log_dir.mkdir(parents=True, exist_ok=True)
        partitions = self.settings.partitions
        if self.settings.kafka_bootstrap:
            self.bootstrap = self.settings.kafka_bootstrap
            ensure_topics(self.bootstrap, partitions)
            echo(f"broker      {self.bootstrap} (PSYMON_KAFKA_BOOTSTRAP)")
        else:
            self._broker = EmbeddedBroker(partitions=partitions).start()
            self.bootstrap = self._broker.bootstrap
            echo(f"broker      {self.bootstrap} (embedded Tansu, memory storage)")
        self.database_url, self._postgres = database_url(self.settings)
        where = (
            "embedded, data in " + str(self.settings.data_dir)
            if self._postgres
            else "PSYMON_DATABASE_URL"
        )
        echo(f"database    PostgreSQL ({where})")
        applied = run_migrate(self.database_url)
        echo(f"store       {'migrated: ' + ', '.join(applied) if applied else 'schema up to date'}")
        ensure_models_topic(self.bootstrap)
        for n in range(self.workers):
            self._spawn(
                f"worker-{n + 1}",
                [
                    sys.executable,
                    "-m",
                    "services.worker",
                    "--bootstrap",
                    self.bootstrap,
                    "--partitions",
                    str(partitions),
                    "--data-dir",
                    str(self.settings.data_dir),
                    "--models-topic",
                    MODELS,
                ],
            )
        self._spawn("trainer", [_psymon(), "trainer", "--models-topic", MODELS])
        self._spawn("sink", [_psymon(), "sink"])
        self._spawn(
            "api", [_psymon(), "api", "--host", self.api_host, "--port", str(self.api_port)]
        )
        self._wait_for_api()
        echo(f"workers     {self.workers} (consumer group psymon-worker, {partitions} partitions)")
        echo(f"trainer     1 (relapse-risk model versions on {MODELS})")
        echo(f"web views   {self.api_url}/   (logs in {self.log_dir})")
        return self

    def check(self) -> None:
        """Raise :class:`StackError` if a component died."""
        for name, child in self.children.items():
            code = child.poll()
            if code is not None:
                raise StackError(f"{name} exited with code {code}; see {self.log_dir / name}.log")

    def stop(self) -> None:
        """Stop everything, children first; safe to call twice."""
        from services.embedded import stop_child

        for name in reversed(list(self.children)):
            stop_child(self.children.pop(name), timeout=STOP_TIMEOUT)
        for log in self._logs:
            log.close()
        self._logs.clear()
        if self._broker is not None:
            self._broker.stop()
            self._broker = None
        if self._postgres is not None:
            self._postgres.stop()
            self._postgres = None

    def _child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PSYMON_KAFKA_BOOTSTRAP"] = self.bootstrap
        env["PSYMON_DATABASE_URL"] = self.database_url
        env["PSYMON_DATA_DIR"] = str(self.settings.data_dir)
        env["PSYMON_PARTITIONS"] = str(self.settings.partitions)
        env["PSYMON_API_TOKENS_FILE"] = str(self.settings.tokens_path)
        return env

    def _spawn(self, name: str, args: list[str]) -> None:
        from services.embedded import spawn_child

        log = (self.log_dir / f"{name}.log").open("ab")
        self._logs.append(log)
        self.children[name] = spawn_child(args, env=self._child_env(), stdout=log, stderr=log)

    def _wait_for_api(self, timeout: float = 60.0) -> None:
        import urllib.error
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check()
            try:
                with urllib.request.urlopen(f"{self.api_url}/healthz", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                time.sleep(0.3)
        raise StackError(f"the API did not answer on {self.api_url} within {timeout:.0f} s")


def _psymon() -> str:
    script = Path(sys.executable).with_name("psymon")
    return str(script) if script.exists() else "psymon"


def say_at_once(line: str) -> None:
    """Write ``line`` to standard output without Python's buffer: safe in a signal handler.

    A handler that prints through ``sys.stdout`` while the main thread is in
    the middle of writing to it raises "reentrant call inside BufferedWriter".
    """
    with contextlib.suppress(OSError, ValueError):
        os.write(sys.stdout.fileno(), (line + "\n").encode())


@contextmanager
def shielded_from_signals(echo: Callable[[str], object] = say_at_once) -> Iterator[None]:
    """Let a stop finish: Ctrl-C or SIGTERM while it runs is acknowledged, not obeyed.

    An impatient second Ctrl-C used to interrupt :meth:`Stack.stop` halfway,
    leaving the database and broker to die by ``PR_SET_PDEATHSIG``'s SIGKILL
    instead of a clean shutdown, and the command to end in click's "Aborted!".
    Every child has a bounded stop (:data:`STOP_TIMEOUT`, then SIGKILL), so
    the wait is bounded too.
    """

    def acknowledge(signum: int, frame: Any) -> None:
        echo("still stopping: every component gets a clean shutdown first")

    with signals_handled(acknowledge, signal.SIGINT, signal.SIGTERM):
        yield


@contextmanager
def stop_signals() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt, so Ctrl-C and a service manager stop alike."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    with signals_handled(interrupt, signal.SIGTERM):
        yield


@dataclass
class Progress:
    """What the terminal shows while the stack runs."""

    stored: int = 0
    rate: float = 0.0
    lag: dict[str, int] | None = None
    alerts: dict[str, int] = field(default_factory=dict)
    patients: int = 0

    def line(self) -> str:
        alerts = ", ".join(f"{n} {s}" for s, n in sorted(self.alerts.items())) or "none"
        lag = (
            "?"
            if self.lag is None
            else f"workers {self.lag.get('workers', 0):,}, sink {self.lag.get('sink', 0):,}"
        )
        return (
            f"stored {self.stored:,} rows ({self.rate:,.0f}/s)  lag: {lag}  "
            f"patients {self.patients}  open alerts: {alerts}"
        )


class ProgressProbe:
    """Reads progress from the store and the broker, cheaply (statistics, not scans)."""

    def __init__(self, database_url: str, bootstrap: str) -> None:
        self._database_url = database_url
        self._bootstrap = bootstrap
        self._last: tuple[float, int] | None = None
        self._rate = 0.0

    def read(self) -> Progress:
        import psycopg

        progress = Progress()
        with psycopg.connect(self._database_url, connect_timeout=5) as conn:
            row = conn.execute(
                "SELECT coalesce(sum(n_tup_ins), 0) FROM pg_stat_user_tables"
            ).fetchone()
            progress.stored = int(row[0]) if row else 0
            progress.alerts = {
                str(severity): int(n)
                for severity, n in conn.execute(
                    "SELECT severity, count(*) FROM v_alerts_open GROUP BY severity"
                ).fetchall()
            }
            count = conn.execute("SELECT count(*) FROM patients").fetchone()
            progress.patients = int(count[0]) if count else 0
        # The statistics behind ``stored`` are flushed every few seconds: measure
        # the rate between two changes, and keep showing it in between.
        now = time.monotonic()
        if self._last is None:
            self._last = (now, progress.stored)
        elif progress.stored != self._last[1]:
            self._rate = (progress.stored - self._last[1]) / max(now - self._last[0], 1e-3)
            self._last = (now, progress.stored)
        elif now - self._last[0] > 30:
            self._rate = 0.0
        progress.rate = max(0.0, self._rate)
        progress.lag = self._lag()
        return progress

    def _lag(self) -> dict[str, int] | None:
        """Messages not yet processed by the workers and not yet stored by the sink."""
        try:
            from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

            from schemas.topics import ALL_TOPICS, INPUT_TOPICS
            from services.embedded.offsets import end_offsets

            consumer = KafkaConsumer(
                bootstrap_servers=self._bootstrap,
                request_timeout_ms=3000,
                allow_auto_create_topics=False,  # a probe never creates what it looks at
            )
            admin = KafkaAdminClient(bootstrap_servers=self._bootstrap, request_timeout_ms=3000)
            try:
                partitions = [
                    TopicPartition(topic, p)
                    for topic in ALL_TOPICS
                    for p in consumer.partitions_for_topic(topic) or ()
                ]
                # One fetch more than ListOffsets, whose ends fall short on Tansu
                # (services.embedded.offsets): a group would look caught up too soon.
                ends = end_offsets(consumer, partitions, timeout=3.0)
                lag = {}
                for name, group, topics in (
                    ("workers", "psymon-worker", INPUT_TOPICS),
                    ("sink", "psymon-sink", ALL_TOPICS),
                ):
                    committed = admin.list_group_offsets(group).get(group, {})
                    lag[name] = sum(
                        max(0, end - (committed[tp].offset if tp in committed else 0))
                        for tp, end in ends.items()
                        if tp.topic in topics
                    )
                return lag
            finally:
                consumer.close()
                admin.close()
        except Exception:  # lag is a nicety; the demo goes on without it
            return None
