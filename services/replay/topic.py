"""Replay outputs onto a broker topic, for other consumers (a model under test, a notebook).

Each output is sent as its JSON, keyed by its patient's pseudonym (a dead
letter without a patient by its own id), like the live worker's outputs, so a
consumer sees each patient's outputs in order on one partition. The topic is
created first if it does not exist (a broker that auto-creates topics would
pick its own partition count).

psymon's own topics are refused: replayed outputs carry the live outputs' ids,
so on ``psymon.course.v1`` they would reach the store through the sink and,
computed with another configuration, would be mistaken for live ones.
"""

from __future__ import annotations

import re
from typing import Any

from schemas.topics import ALL_TOPICS
from services.embedded.topics import ensure_topics, topic_partitions
from streams import Output

_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")


def check_topic(name: str) -> str:
    """``name`` if it is a legal topic that is not one of psymon's live topics.

    >>> check_topic("study-7.replay.v1")
    'study-7.replay.v1'
    >>> check_topic("psymon.course.v1")
    Traceback (most recent call last):
    ...
    ValueError: to_topic 'psymon.course.v1' is one of psymon's live topics; replayed outputs there would mix with live ones in the store. Choose another name, e.g. 'replay.psymon.course.v1' or 'study-7.replay.v1'
    """  # noqa: E501
    if name in ALL_TOPICS:
        raise ValueError(
            f"to_topic {name!r} is one of psymon's live topics; replayed outputs there would "
            f"mix with live ones in the store. Choose another name, e.g. 'replay.{name}' or "
            "'study-7.replay.v1'"
        )
    if not _TOPIC_NAME.fullmatch(name) or name in (".", ".."):
        raise ValueError(
            f"to_topic {name!r} is not a Kafka topic name; accepted: 1-249 characters of "
            "letters, digits, '.', '_' and '-'"
        )
    return name


class TopicWriter:
    """A kafka-python producer that sends replay outputs to one topic."""

    def __init__(self, bootstrap: str, topic: str, *, partitions: int = 4) -> None:
        from kafka import KafkaProducer

        self.topic = check_topic(topic)
        if topic not in topic_partitions(bootstrap, [topic]):
            ensure_topics(bootstrap, partitions, [topic])
        self._producer = KafkaProducer(
            bootstrap_servers=bootstrap.split(","),
            client_id="psymon-replay",
            acks="all",
            linger_ms=20,
            retries=5,
            max_in_flight_requests_per_connection=1,  # keeps per-patient order on retry
            max_request_size=8 * 1024 * 1024,
            enable_idempotence=False,  # survives a memory-broker restart (services/producer.py)
            allow_auto_create_topics=False,  # the topic was created above, with its count
        )
        self._pending: list[Any] = []
        self.sent = 0

    def send(self, output: Output) -> None:
        patient = getattr(output, "patient_id", None)
        key = str(patient if patient is not None else output.event_id).encode()
        self._pending.append(
            self._producer.send(self.topic, key=key, value=output.model_dump_json().encode())
        )
        self.sent += 1
        if len(self._pending) >= 10_000:
            self.flush()

    def flush(self) -> None:
        """Block until the broker acknowledged everything sent; raise if a send failed."""
        self._producer.flush()
        pending, self._pending = self._pending, []
        for future in pending:
            future.get(timeout=30)

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._producer.close()


__all__ = ["TopicWriter", "check_topic"]
