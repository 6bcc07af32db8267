"""End offsets from :func:`services.embedded.offsets.end_offsets`, on the real broker.

Records are produced in batches (a producer that lingers, then a flush), as
psymon's workers and the API produce them: Tansu lists the end of such a
partition short of its last batch (the module docstring of
:mod:`services.embedded.offsets`), and every reader that waits for an end or
seeks to one relies on the helper's answer instead.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from services.embedded import EmbeddedBroker, ensure_topics
from services.embedded.offsets import end_offsets

pytestmark = pytest.mark.integration

#: Records produced to each partition, batch by batch (partition 2 stays empty).
BATCHES = [(0, 10), (0, 5), (1, 1)]
RECORDS = {0: 15, 1: 1, 2: 0}


def produce_batches(bootstrap: str, topic: str, batches: list[tuple[int, int]]) -> None:
    """Each ``(partition, n)`` as one batch of ``n`` records: sent within the linger, flushed."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=1000)
    try:
        for partition, n in batches:
            futures = [
                producer.send(topic, key=b"k", value=b"%d" % i, partition=partition)
                for i in range(n)
            ]
            producer.flush()
            for future in futures:
                future.get(timeout=10)
    finally:
        producer.close()


@pytest.fixture
def topic(broker: EmbeddedBroker) -> Iterator[tuple[str, list[Any]]]:
    """A new topic of 3 partitions holding :data:`BATCHES`, and its partitions."""
    from kafka import TopicPartition

    name = f"it-end-offsets-{uuid.uuid4().hex[:8]}"
    ensure_topics(broker.bootstrap, 3, [name])
    produce_batches(broker.bootstrap, name, BATCHES)
    yield name, [TopicPartition(name, p) for p in range(3)]


def by_partition(ends: dict[Any, int]) -> dict[int, int]:
    return {tp.partition: end for tp, end in sorted(ends.items())}


def listed(bootstrap: str, partitions: list[Any]) -> dict[int, int]:
    """The ends as ListOffsets gives them, for the failure messages."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        return by_partition(consumer.end_offsets(partitions))
    finally:
        consumer.close()


def test_the_end_of_a_partition_is_the_number_of_records_produced_to_it(
    broker: EmbeddedBroker, topic: tuple[str, list[Any]]
) -> None:
    _, partitions = topic

    ends = end_offsets(broker.bootstrap, partitions)

    assert by_partition(ends) == RECORDS, f"listed: {listed(broker.bootstrap, partitions)}"


def test_an_idle_consumer_gives_the_ends_and_is_left_idle(
    broker: EmbeddedBroker, topic: tuple[str, list[Any]]
) -> None:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap)
    try:
        ends = end_offsets(consumer, topic[1])
        assert by_partition(ends) == RECORDS, f"listed: {listed(broker.bootstrap, topic[1])}"
        assert not consumer.assignment()
    finally:
        consumer.close()


def test_a_reading_consumer_keeps_its_position_and_its_records(
    broker: EmbeddedBroker, topic: tuple[str, list[Any]]
) -> None:
    """The consumer of a reader that asks where the end is goes on where it was."""
    from kafka import KafkaConsumer

    _, partitions = topic
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
    try:
        consumer.assign(partitions[:1])
        consumer.seek(partitions[0], 3)

        ends = end_offsets(consumer, partitions)

        assert by_partition(ends) == RECORDS
        assert consumer.assignment() == {partitions[0]}
        assert consumer.position(partitions[0]) == 3
        assert read_values(consumer, 12) == [b"%d" % i for i in range(3, 10)] + [
            b"%d" % i for i in range(5)
        ]
    finally:
        consumer.close()


def test_a_reader_that_seeks_to_the_ends_reads_only_what_comes_after(
    broker: EmbeddedBroker, topic: tuple[str, list[Any]]
) -> None:
    """How the tests count a worker's state writes: nothing of the last batch counts as new."""
    from kafka import KafkaConsumer

    name, partitions = topic
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
    try:
        consumer.assign(partitions)
        for tp, end in end_offsets(consumer, partitions).items():
            consumer.seek(tp, end)
        produce_batches(broker.bootstrap, name, [(0, 2), (2, 3)])

        values = read_values(consumer, 5)

        assert sorted(values) == [b"0", b"0", b"1", b"1", b"2"]
        assert read_values(consumer, 1, timeout=1.0) == [], "records read twice"
    finally:
        consumer.close()


def read_values(consumer: Any, expected: int, timeout: float = 10.0) -> list[bytes]:
    """The values of the next ``expected`` records (or all that came within ``timeout``)."""
    values: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(values) < expected and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=100).values():
            values.extend(record.value for record in records)
    return values
