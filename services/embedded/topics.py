"""psymon's topics on any Kafka-compatible broker: create them, check their partitions.

Every topic is created explicitly, with the configured partition count, before
anything produces to it: a broker that auto-creates topics (Tansu makes 4
partitions, Kafka ``num.partitions``) would otherwise pick a count of its own,
and a faust table whose changelog and source topics differ in partition count
hangs its agent. Works against Tansu and Apache Kafka alike (kafka-python admin
client).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from typing import Any

from schemas.topics import ALL_TOPICS


class BrokerError(RuntimeError):
    """The broker could not be started, reached or prepared; the message says why."""


class TopicPartitionMismatch(BrokerError):
    """A topic exists with a partition count other than the one psymon is configured for."""


def ensure_topics(
    bootstrap: str,
    partitions: int,
    topics: Iterable[str] = ALL_TOPICS,
    *,
    compacted: Iterable[str] = (),
    replication: int = 1,
    timeout: float = 30.0,
) -> dict[str, int]:
    """Create the missing ``topics`` with ``partitions`` partitions; check the others.

    Works against any Kafka-compatible broker (Tansu, Apache Kafka). Topics in
    ``compacted`` (faust table changelogs) get ``cleanup.policy=compact``.

    Returns
    -------
    dict
        Partition count of every topic asked for.

    Raises
    ------
    TopicPartitionMismatch
        A topic already exists with another partition count: faust tables
        need their source topics and changelogs co-partitioned, so psymon
        refuses to start rather than hang on the first message.
    BrokerError
        The broker cannot be reached within ``timeout`` seconds.
    """
    if partitions < 1:
        raise ValueError(f"partitions must be at least 1, got {partitions}")
    wanted = list(dict.fromkeys(topics))
    compact = set(compacted)
    admin = _admin(bootstrap, timeout)
    try:
        existing = _partition_counts(admin, wanted)
        _check_counts(existing, partitions)  # before creating anything with the wrong count
        missing = [t for t in wanted if t not in existing]
        if missing:
            _create(admin, missing, partitions, replication, compact, timeout)
        counts = _wait_for_topics(admin, wanted, timeout)
    finally:
        admin.close()
    _check_counts(counts, partitions)  # another process may have created one meanwhile
    return counts


def _check_counts(counts: dict[str, int], partitions: int) -> None:
    wrong = {t: n for t, n in counts.items() if n != partitions}
    if wrong:
        listing = ", ".join(f"{t} has {n}" for t, n in sorted(wrong.items()))
        raise TopicPartitionMismatch(
            f"topics exist with a partition count other than the configured {partitions} "
            f"({listing}); set PSYMON_PARTITIONS to match them, or delete and recreate the "
            "topics (faust tables need co-partitioned topics)"
        )


def topic_partitions(
    bootstrap: str, topics: Iterable[str], *, timeout: float = 10.0
) -> dict[str, int]:
    """Partition count of each of ``topics`` that exists on the broker."""
    admin = _admin(bootstrap, timeout)
    try:
        return _partition_counts(admin, list(topics))
    finally:
        admin.close()


def _admin(bootstrap: str, timeout: float) -> Any:
    from kafka.errors import KafkaError

    deadline = time.monotonic() + timeout
    while True:
        try:
            return admin_client(bootstrap, min(timeout, 30.0))
        except KafkaError as error:
            if time.monotonic() >= deadline:
                raise BrokerError(
                    f"no Kafka broker answers at {bootstrap} after {timeout:.0f} s "
                    f"({type(error).__name__}); start one with `psymon broker` or set "
                    "PSYMON_KAFKA_BOOTSTRAP to a reachable host:port"
                ) from None
            time.sleep(0.2)


def admin_client(bootstrap: str, timeout: float) -> Any:
    """A kafka-python admin client whose connecting and requests give up after ``timeout`` s.

    Raises a :class:`kafka.errors.KafkaError` when no broker answers.
    """
    from kafka import KafkaAdminClient

    options: dict[str, Any] = {
        "bootstrap_servers": bootstrap.split(","),
        "client_id": "psymon-admin",
        "request_timeout_ms": int(timeout * 1000),
    }
    if "bootstrap_timeout_ms" in KafkaAdminClient.DEFAULT_CONFIG:  # kafka-python >= 3
        options["bootstrap_timeout_ms"] = int(timeout * 1000)
    return KafkaAdminClient(**options)


def _partition_counts(admin: Any, topics: list[str]) -> dict[str, int]:
    # Asking for all topics and filtering avoids auto-creating the ones asked about.
    counts: dict[str, int] = {}
    for info in admin.describe_topics():
        name = info.get("name") or info.get("topic")
        if name in topics and info.get("error_code", 0) == 0 and info.get("partitions"):
            counts[name] = len(info["partitions"])
    return counts


def _create(
    admin: Any,
    topics: list[str],
    partitions: int,
    replication: int,
    compact: set[str],
    timeout: float,
) -> None:
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    for topic in topics:  # one by one: a topic created meanwhile must not hide the others
        config = {"cleanup.policy": "compact"} if topic in compact else {}
        with contextlib.suppress(TopicAlreadyExistsError):
            admin.create_topics(
                [NewTopic(topic, partitions, replication, topic_configs=config)],
                timeout_ms=int(timeout * 1000),
            )


def _wait_for_topics(admin: Any, topics: list[str], timeout: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        counts = _partition_counts(admin, topics)
        if len(counts) == len(topics):
            return counts
        if time.monotonic() >= deadline:
            absent = ", ".join(t for t in topics if t not in counts)
            raise BrokerError(f"topics still missing {timeout:.0f} s after creating them: {absent}")
        time.sleep(0.1)
