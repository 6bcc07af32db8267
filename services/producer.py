"""Producing events to the broker (kafka-python), keyed by patient pseudonym.

Per-patient order is the contract, so every event is keyed by ``patient_id``;
a dead letter without a known patient is keyed by its own id.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from pydantic import BaseModel

from schemas.events import DeadLetter, WearableSample
from schemas.topics import DEAD_LETTER, WEARABLE_SAMPLES, topic_for_kind


class EventSink(Protocol):
    """Where validated events and dead letters go (the broker, in production)."""

    def send(self, event: BaseModel) -> None: ...

    def flush(self) -> None: ...


def topic_of(event: BaseModel) -> str:
    """The topic an event belongs on."""
    if isinstance(event, DeadLetter):
        return DEAD_LETTER
    if isinstance(event, WearableSample):
        return WEARABLE_SAMPLES
    return topic_for_kind(str(getattr(event, "kind", "")))


def key_of(event: BaseModel) -> bytes:
    """The partitioning key: the patient pseudonym, else the event id."""
    patient = getattr(event, "patient_id", None)
    return str(patient or getattr(event, "event_id", "")).encode()


class KafkaEventSink:
    """A kafka-python producer that waits for every send to be acknowledged on flush."""

    def __init__(self, bootstrap: str, *, client_id: str = "psymon-ingest") -> None:
        from kafka import KafkaProducer

        self._producer = KafkaProducer(
            bootstrap_servers=bootstrap.split(","),
            client_id=client_id,
            acks="all",
            linger_ms=5,
            retries=5,
            max_in_flight_requests_per_connection=1,  # keeps per-patient order on retry
            max_request_size=8 * 1024 * 1024,
            # An idempotent producer (kafka-python's default) fails every send with
            # UnknownProducerIdError once the memory broker restarts under it; order
            # holds without it (one request in flight) and event ids make a resend harmless.
            enable_idempotence=False,
            # Apache Kafka would otherwise create a topic this producer names with its
            # own partition count (Tansu 0.6 ignores the flag: topics are created first).
            allow_auto_create_topics=False,
        )
        self._pending: list[object] = []

    def send(self, event: BaseModel) -> None:
        future = self._producer.send(
            topic_of(event), key=key_of(event), value=event.model_dump_json().encode()
        )
        self._pending.append(future)

    def send_all(self, events: Iterable[BaseModel]) -> None:
        for event in events:
            self.send(event)

    def flush(self) -> None:
        """Block until the broker acknowledged everything sent; raise if any send failed."""
        self._producer.flush()
        pending, self._pending = self._pending, []
        for future in pending:
            future.get(timeout=30)  # type: ignore[attr-defined]

    def close(self) -> None:
        self.flush()
        self._producer.close()

    def __enter__(self) -> KafkaEventSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
