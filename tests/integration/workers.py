"""Stream workers as subprocesses, and reading and writing topics, for integration tests.

Workers run as ``python -m services.worker``, exactly as ``psymon worker`` runs
them, and stop with SIGTERM like a deployment stops them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schemas.examples import EXAMPLE_KEY
from schemas.identity import pseudonymise
from services.embedded import spawn_child, stop_child
from services.embedded.offsets import end_offsets

#: Partitions per topic in the integration tests: more than one, so that
#: per-partition state and ordering are really exercised.
PARTITIONS = 2

#: How long a test waits for a worker's output: startup (~1 s), the first
#: consumer-group join on Tansu (half the 6 s session timeout) and processing.
OUTPUT_TIMEOUT = 45.0

#: What faust logs (at info level) once a worker has its partitions and recovered its tables.
READY = "[^Worker]: Ready"


def process_alive(pid: int) -> bool:
    """Whether ``pid`` is a live (not zombie) process."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def pids_with_argument(argument: str) -> list[int]:
    """Live processes whose command line contains ``argument`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if argument in cmdline and process_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def new_patient() -> str:
    """A fresh pseudonym, so tests sharing a broker never share a patient."""
    return pseudonymise(f"integration-{uuid.uuid4()}", EXAMPLE_KEY, system="tests")


@dataclass
class WorkerProcess:
    """A ``python -m services.worker`` subprocess and its log."""

    bootstrap: str
    app_id: str
    data_dir: Path
    log_path: Path
    partitions: int = PARTITIONS
    process: subprocess.Popen[bytes] | None = None
    pids: list[int] = field(default_factory=list)
    readies_before_start: int = 0
    #: More options for ``python -m services.worker`` (e.g. ``--models-topic``).
    extra_args: tuple[str, ...] = ()

    def environment(self) -> dict[str, str]:
        """The worker's environment: this process's, unbuffered."""
        return {**os.environ, "PYTHONUNBUFFERED": "1"}

    def start(self) -> WorkerProcess:
        self.readies_before_start = self.log().count(READY)
        log = self.log_path.open("ab")
        try:
            self.process = spawn_child(
                [
                    sys.executable,
                    "-m",
                    "services.worker",
                    "--bootstrap",
                    self.bootstrap,
                    "--partitions",
                    str(self.partitions),
                    "--app-id",
                    self.app_id,
                    "--data-dir",
                    str(self.data_dir),
                    "--loglevel",
                    "info",
                    *self.extra_args,
                ],
                env=self.environment(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        finally:
            log.close()
        self.pids.append(self.process.pid)
        return self

    def wait_ready(self, timeout: float = OUTPUT_TIMEOUT) -> float:
        """Block until faust logs that the worker (last started) is ready; return the wait."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            assert self.running, f"the worker exited early:\n{self.log_tail()}"
            if self.log().count(READY) > self.readies_before_start:
                return time.monotonic() - started
            time.sleep(0.1)
        raise AssertionError(f"the worker was not ready after {timeout} s:\n{self.log_tail()}")

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, wait for faust's clean shutdown, SIGKILL if it does not come."""
        if self.process is None:
            return None
        code = stop_child(self.process, timeout=timeout)
        self.process = None
        return code

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, limit: int = 4000) -> str:
        return self.log()[-limit:]


def produce(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes]]) -> None:
    """Send ``(key, value)`` records to ``topic`` and wait for the broker's acknowledgement."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    try:
        futures = [producer.send(topic, key=key, value=value) for key, value in records]
        producer.flush()
        for future in futures:
            future.get(timeout=10)
    finally:
        producer.close()


def read_until(
    bootstrap: str,
    topic: str,
    until: Callable[[list[dict[str, Any]]], bool],
    *,
    timeout: float = OUTPUT_TIMEOUT,
) -> list[dict[str, Any]]:
    """All JSON records of ``topic`` from its start, polled until ``until(records)`` holds.

    Each record carries its message key, decoded, under ``_key``.

    Returns the records read when the condition held, or after ``timeout``
    seconds (the caller's assertion then shows what was there).
    """
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        records: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while True:
            for batch in consumer.poll(timeout_ms=200).values():
                for message in batch:
                    record = json.loads(message.value)
                    record["_key"] = message.key.decode() if message.key is not None else None
                    records.append(record)
            if until(records) or time.monotonic() >= deadline:
                return records
    finally:
        consumer.close()


def caused_by(records: list[dict[str, Any]], event_id: uuid.UUID | str) -> list[dict[str, Any]]:
    """The derived records that ``event_id`` caused."""
    return [r for r in records if r.get("caused_by") == str(event_id)]


def outputs_of(
    bootstrap: str, topic: str, event_id: uuid.UUID, *, timeout: float = OUTPUT_TIMEOUT
) -> list[dict[str, Any]]:
    """The records on ``topic`` caused by ``event_id``, once at least one has arrived."""
    return caused_by(
        read_until(bootstrap, topic, lambda r: bool(caused_by(r, event_id)), timeout=timeout),
        event_id,
    )


def uncommitted(bootstrap: str, group: str, topics: Iterable[str]) -> dict[str, int]:
    """Records of ``topics`` that consumer ``group`` has not committed, by ``topic[partition]``."""
    from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        partitions = [
            TopicPartition(topic, p)
            for topic in topics
            for p in consumer.partitions_for_topic(topic) or ()
        ]
        ends = end_offsets(consumer, partitions)  # Tansu lists ends short of a batch
        committed = admin.list_group_offsets(group).get(group, {})
    finally:
        consumer.close()
        admin.close()
    lag = {}
    for tp, end in ends.items():
        done = committed[tp].offset if tp in committed else 0
        if end > done:
            lag[f"{tp.topic}[{tp.partition}]"] = end - done
    return lag
