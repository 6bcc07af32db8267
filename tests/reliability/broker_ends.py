"""End offsets as a fetch sees them, for the waits of the crash and scale-out tests.

Tansu answers ListOffsets for the latest offset with the base offset of a
partition's last record batch plus one, not the offset after its last record
(:func:`streams.app.fetched_ends`, docs/reliability.md finding 5). Measured
with ListOffsets, a consumer group looks caught up once it has committed the
first record of each partition's last batch, and a reader that seeks to the
end starts inside that batch and counts the rest of it as new. The tests pace
their waves by both, so they take the end from a fetch here:
:func:`worker_lag` and :class:`ChangelogWrites` stand in for
``Pipeline.worker_lag`` and :class:`tests.reliability.harness.StateWrites`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

from schemas.topics import INPUT_TOPICS
from tests.reliability.harness import StateWrites


def fetched_end_offsets(consumer: Any, partitions: Sequence[Any]) -> dict[Any, int]:
    """``{partition: offset after its last record}``; leaves ``consumer`` assigned to them.

    ``consumer`` is a kafka-python ``KafkaConsumer`` without a group; the
    fetch from each listed end minus one returns the partition's high watermark.
    """
    ends: dict[Any, int] = dict(consumer.end_offsets(list(partitions)))
    probed = [tp for tp in partitions if ends[tp] > 0]
    consumer.assign(list(partitions))
    for tp in probed:
        consumer.seek(tp, ends[tp] - 1)
    deadline = time.monotonic() + 10
    while any(consumer.highwater(tp) is None for tp in probed):
        assert time.monotonic() < deadline, "no fetch answered within 10 s"
        consumer.poll(timeout_ms=100)
    for tp in probed:
        ends[tp] = max(ends[tp], consumer.highwater(tp))
    return ends


def worker_lag(bootstrap: str, group: str, topics: Sequence[str] = INPUT_TOPICS) -> int | None:
    """Records of ``topics`` that ``group`` has not committed; ``None`` if unknown."""
    from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
    from kafka.errors import KafkaError

    try:
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, request_timeout_ms=5000)
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    except KafkaError:
        return None
    try:
        partitions = [
            TopicPartition(topic, p)
            for topic in topics
            for p in consumer.partitions_for_topic(topic) or ()
        ]
        ends = fetched_end_offsets(consumer, partitions)
        committed = admin.list_group_offsets(group).get(group, {})
    except KafkaError:
        return None
    finally:
        consumer.close()
        admin.close()
    return sum(
        max(0, end - (committed[tp].offset if tp in committed else 0)) for tp, end in ends.items()
    )


class ChangelogWrites(StateWrites):
    """:class:`~tests.reliability.harness.StateWrites` counting from the changelog's real end."""

    def __init__(self, bootstrap: str, app_id: str, patients: Iterable[str]) -> None:
        super().__init__(bootstrap, app_id, patients)
        partitions = sorted(self.consumer.assignment(), key=lambda tp: tp.partition)
        for tp, end in fetched_end_offsets(self.consumer, partitions).items():
            self.consumer.seek(tp, end)
