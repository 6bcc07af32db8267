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

from schemas.topics import ALL_TOPICS, MODELS


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
    replace_mismatched: bool = False,
    check_readable: Iterable[str] = (),
) -> dict[str, int]:
    """Create the missing ``topics`` with ``partitions`` partitions; check the others.

    Works against any Kafka-compatible broker (Tansu, Apache Kafka). Topics in
    ``compacted`` (faust table changelogs) get ``cleanup.policy=compact``.

    A topic this call creates that holds records at once, and a topic of
    ``check_readable`` whose records cannot be read, is deleted and created
    again: Tansu 0.6 (memory storage) acknowledges records produced to a topic
    that does not exist (a client still connected across a broker restart),
    and once the topic is created they count in its offsets but can never be
    fetched, so a faust worker restoring its table from such a changelog waits
    forever ("No event received for active tp ... since recovery start").

    Parameters
    ----------
    replace_mismatched
        Delete and re-create topics that exist with another partition count
        instead of refusing. Only for a broker that has just started with
        empty memory storage (:meth:`services.embedded.EmbeddedBroker.start`):
        there such topics were auto-created by clients that reconnected first,
        and hold nothing worth keeping.
    check_readable
        Topics whose records must be readable (faust changelogs).

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
    readable = [t for t in dict.fromkeys(check_readable) if t in wanted]
    admin = _admin(bootstrap, timeout)
    try:
        for _ in range(_ATTEMPTS):
            existing = _partition_counts(admin, wanted)
            wrong = [t for t, n in existing.items() if n != partitions]
            if not replace_mismatched:
                _check_counts(existing, partitions)  # before creating anything
            _delete(admin, wrong, timeout)
            missing = [t for t in wanted if t not in existing or t in wrong]
            if missing:
                _create(admin, missing, partitions, replication, compact, timeout)
            counts = _wait_for_topics(admin, wanted, timeout)
            suspect = [*missing, *(t for t in readable if t not in missing)]
            broken = _unreadable(bootstrap, suspect, timeout)
            _delete(admin, broken, timeout)
            wrong_now = replace_mismatched and any(n != partitions for n in counts.values())
            if not broken and not wrong_now:
                break
    finally:
        admin.close()
    _check_counts(counts, partitions)  # another process may have created one meanwhile
    return counts


#: Rounds of deleting and creating topics before :func:`ensure_topics` gives up:
#: clients reconnecting to a restarted broker may auto-create a topic again in between.
_ATTEMPTS = 5
#: Seconds to wait for the first record of a topic that reports records.
_READ_TIMEOUT = 10.0


def _delete(admin: Any, topics: list[str], timeout: float) -> None:
    from kafka.errors import UnknownTopicOrPartitionError

    for topic in topics:
        with contextlib.suppress(UnknownTopicOrPartitionError):
            admin.delete_topics([topic], timeout_ms=int(timeout * 1000))
    if topics:
        deadline = time.monotonic() + timeout
        while set(topics) & set(_partition_counts(admin, topics)):
            if time.monotonic() >= deadline:
                raise BrokerError(f"topics still present {timeout:.0f} s after deleting them")
            time.sleep(0.1)


def _unreadable(bootstrap: str, topics: list[str], timeout: float) -> list[str]:
    """Topics holding records that cannot be read (see :func:`ensure_topics`).

    A topic created a moment ago should hold nothing; if it reports records,
    fetching from its start tells whether they are real (a producer was quick)
    or were written to the topic before it existed. Healthy topics answer in
    milliseconds; only a broken one costs the wait.
    """
    if not topics:
        return []
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap.split(","),
        client_id="psymon-admin",
        enable_auto_commit=False,
        allow_auto_create_topics=False,
        fetch_max_wait_ms=50,
        request_timeout_ms=int(max(timeout, 5.0) * 1000),
    )
    try:
        broken = []
        for topic in topics:
            parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
            starts = consumer.beginning_offsets(parts)
            # Whether a partition holds records, not how many: the listed end is
            # enough, although short on Tansu (services.embedded.offsets).
            ends = consumer.end_offsets(parts)
            holding = [tp for tp in parts if ends[tp] > starts[tp]]
            if holding and not _first_records_arrive(consumer, holding, _READ_TIMEOUT):
                broken.append(topic)
        return broken
    finally:
        consumer.close()


def _first_records_arrive(consumer: Any, partitions: list[Any], timeout: float) -> bool:
    """Whether every one of ``partitions`` gives its first record within ``timeout`` s."""
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    waiting = set(partitions)
    deadline = time.monotonic() + timeout
    while waiting and time.monotonic() < deadline:
        for tp, records in consumer.poll(timeout_ms=200).items():
            if records:
                waiting.discard(tp)
    return not waiting


#: The cluster id Tansu reports unless it is configured with another one.
TANSU_DEFAULT_CLUSTER = "tansu_cluster"
_LOOPBACK = ("127.", "localhost", "::1")


def is_embedded_broker(bootstrap: str, timeout: float = 30.0) -> bool:
    """Whether ``bootstrap`` is psymon's embedded broker: Tansu's default cluster, on loopback.

    Repairs that delete and re-create a topic (:func:`ensure_topics`'
    ``check_readable``, :class:`services.embedded.watch.ChangelogWatch`) answer
    a fault of Tansu's memory storage; on any other broker a slow first fetch
    (a leader election, a throttled broker) would look the same, and deleting
    the changelog there would throw away every patient's state. So they run
    only where every broker is on a loopback address and the cluster is
    Tansu's unconfigured default, which is what :class:`~services.embedded.EmbeddedBroker`
    starts. A shared Tansu deployment gets its own cluster id and is left alone.
    """
    admin = _admin(bootstrap, timeout)
    try:
        cluster = admin.describe_cluster()
    finally:
        admin.close()
    brokers = cluster.get("brokers") or []
    return (
        cluster.get("cluster_id") == TANSU_DEFAULT_CLUSTER
        and bool(brokers)
        and all(str(b.get("host", "")).startswith(_LOOPBACK) for b in brokers)
    )


def ensure_models_topic(
    bootstrap: str, topic: str = MODELS, *, replication: int = 1, timeout: float = 30.0
) -> None:
    """Create the models topic if missing: one partition, compacted.

    One partition, whatever ``PSYMON_PARTITIONS`` says: model versions are few,
    and a single partition gives every reader the versions in the order the
    trainer published them. Compaction keeps the newest version of each model
    (the key is the model name); the trainer archives every version elsewhere.

    Raises
    ------
    TopicPartitionMismatch
        ``topic`` exists with more than one partition.
    """
    ensure_topics(
        bootstrap, 1, (topic,), compacted=(topic,), replication=replication, timeout=timeout
    )


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
