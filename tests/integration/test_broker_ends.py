"""A partition's end offset, and a worker's table restored from the whole changelog.

Tansu lists a partition's latest offset as the base offset of its last record
batch plus one (docs/reliability.md, finding 5). faust's table recovery reads
a changelog up to that end, so a worker taking over a partition restored the
first of the previous owner's last batch of state writes instead of the last
one. :func:`streams.app.fetched_ends` takes the end from a fetch; these tests
check it on a real broker and check that a worker then restores the newest
state written in one batch.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from schemas.events import ClinicalScore
from schemas.examples import envelope_fields
from schemas.topics import ALL_TOPICS, CLINICAL_SCORES, DEAD_LETTER
from services.embedded import EmbeddedBroker, ensure_topics
from streams import CoreConfig, stored_state
from streams.app import Record, changelog_topics, decode_state, fetched_ends, handle
from tests.integration.workers import PARTITIONS, WorkerProcess, new_patient, produce

pytestmark = pytest.mark.integration


@pytest.fixture
def fresh_broker() -> Iterator[EmbeddedBroker]:
    """A broker of this test alone: the offsets it checks start at 0."""
    broker = EmbeddedBroker(partitions=PARTITIONS).start()
    try:
        yield broker
    finally:
        broker.stop()


def produce_batches(
    bootstrap: str, topic: str, batches: list[tuple[int, list[bytes]]], key: bytes = b"k"
) -> None:
    """Each ``(partition, values)`` as one record batch of ``key`` (sends, then a flush)."""
    from aiokafka import AIOKafkaProducer

    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=200)
        await producer.start()
        try:
            for partition, values in batches:
                for value in values:
                    await producer.send(topic, value, key=key, partition=partition)
                await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(run())


def listed_ends(bootstrap: str, topic: str) -> dict[Any, int]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        ends: dict[Any, int] = consumer.end_offsets(parts)
        return ends
    finally:
        consumer.close()


def test_the_end_of_a_partition_is_the_offset_after_its_last_record(
    fresh_broker: EmbeddedBroker,
) -> None:
    topic = f"it-ends-{uuid.uuid4().hex[:8]}"
    ensure_topics(fresh_broker.bootstrap, 3, [topic])
    produce_batches(
        fresh_broker.bootstrap,
        topic,
        [(0, [b"a%d" % n for n in range(10)]), (0, [b"b%d" % n for n in range(5)]), (1, [b"c"])],
    )
    listed = listed_ends(fresh_broker.bootstrap, topic)

    async def fetch() -> dict[Any, int]:
        from aiokafka import AIOKafkaConsumer

        return await fetched_ends(
            listed, AIOKafkaConsumer(bootstrap_servers=fresh_broker.bootstrap)
        )

    ends = asyncio.run(fetch())

    assert {tp.partition: end for tp, end in ends.items()} == {0: 15, 1: 1, 2: 0}, (
        f"listed by the broker: { {tp.partition: end for tp, end in listed.items()} }"
    )


def score(patient: str, day: int) -> ClinicalScore:
    """A PHQ-9 of ``patient`` on day ``day`` of March 2026."""
    when = datetime(2026, 3, 2 + day, 9, 0, tzinfo=UTC)
    return ClinicalScore(
        **envelope_fields(
            patient_id=patient, event_id=uuid.uuid4(), observed_at=when, received_at=when
        ),
        instrument="phq9",
        rater="self",
        items={str(i): 1 for i in range(1, 10)},
    )


def test_a_worker_restores_the_newest_state_of_a_changelog_written_in_one_batch(
    fresh_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """What a worker taking over a partition does with the previous owner's last writes."""
    from kafka.partitioner.default import murmur2

    patient = new_patient()
    key = patient.encode()
    partition = (murmur2(key) & 0x7FFFFFFF) % PARTITIONS
    app_id = f"psymon-it-ends-{uuid.uuid4().hex[:8]}"
    changelog = changelog_topics(app_id)[0]
    ensure_topics(fresh_broker.bootstrap, PARTITIONS, (*ALL_TOPICS, changelog))
    # Three states of one patient, as a worker writes them after three scores,
    # sent to the changelog as one batch (the previous owner's last flush).
    table: dict[bytes, bytes] = {}
    written = []
    for n in range(3):
        event = score(patient, day=n)
        value, sent = event.model_dump_json().encode(), event.received_at.timestamp()
        outputs = handle(
            Record(CLINICAL_SCORES, partition, n, key, value, sent), table, CoreConfig()
        )
        assert all(topic != DEAD_LETTER for topic, _, _ in outputs), outputs
        _, state_json = stored_state.decode(table[key])
        written.append(state_json)  # without offsets: this broker's input topic is empty
    produce_batches(fresh_broker.bootstrap, changelog, [(partition, written)], key=key)

    worker = WorkerProcess(
        bootstrap=fresh_broker.bootstrap,
        app_id=app_id,
        data_dir=tmp_path / "data",
        log_path=tmp_path / "worker.log",
    ).start()
    try:
        worker.wait_ready()
        fourth = score(patient, day=3)
        produce(fresh_broker.bootstrap, CLINICAL_SCORES, [(key, fourth.model_dump_json().encode())])
        state = newest_state_after(fresh_broker.bootstrap, changelog, partition, offset=3, key=key)
    finally:
        code = worker.stop()
    assert code == 0, worker.log_tail()
    assert state is not None, (
        f"the worker wrote no state for the fourth score:\n{worker.log_tail()}"
    )
    assert decode_state(state).counters.events == 4, (
        "the worker applied the fourth score to an older state than the newest on its changelog"
    )


def newest_state_after(
    bootstrap: str, topic: str, partition: int, *, offset: int, key: bytes, timeout: float = 60.0
) -> bytes | None:
    """The first record of ``key`` at or after ``offset`` on ``topic[partition]``."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, offset)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                for message in batch:
                    if message.key == key and message.value:
                        value: bytes = message.value
                        return value
        return None
    finally:
        consumer.close()
