"""End offsets as a fetch sees them, for the waits of the crash and scale-out tests.

Tansu lists a partition's latest offset short of its last record batch
(:mod:`services.embedded.offsets`, docs/reliability.md finding 5): by
ListOffsets, a consumer group looks caught up once it has committed the first
record of each partition's last batch, and a reader that seeks to the end
starts inside that batch and counts the rest of it as new. The tests pace
their waves by both; the harness now takes its ends from
:func:`services.embedded.offsets.end_offsets`, and the names here stay for
the tests that import them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from schemas.topics import INPUT_TOPICS
from services.embedded.offsets import end_offsets
from tests.reliability.harness import BrokerProbe, StateWrites


def fetched_end_offsets(consumer: Any, partitions: Sequence[Any]) -> dict[Any, int]:
    """``{partition: offset after its last record}``, from :func:`end_offsets`.

    ``consumer`` is a kafka-python ``KafkaConsumer``; it only names the brokers
    unless it is idle (see the helper).
    """
    return end_offsets(consumer, partitions)


def worker_lag(bootstrap: str, group: str, topics: Sequence[str] = INPUT_TOPICS) -> int | None:
    """Records of ``topics`` that ``group`` has not committed; ``None`` if unknown."""
    return BrokerProbe(bootstrap).lag(group, topics)


class ChangelogWrites(StateWrites):
    """:class:`~tests.reliability.harness.StateWrites` (it counts from the changelog's real end)."""
