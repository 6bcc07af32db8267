"""Partition end offsets a reader can trust, on Tansu and on Apache Kafka alike.

A partition's end offset (the offset after its last record, its high
watermark) is what a reader waits for to know it has read everything, what a
reader seeks to in order to count only what comes next, and what a consumer
group's committed offset is subtracted from to give its lag. Kafka clients ask
for it with ListOffsets (kafka-python ``KafkaConsumer.end_offsets``,
``seek_to_end``, ``KafkaAdminClient.list_offsets``).

Tansu (0.6.0, the embedded broker) answers ListOffsets for the latest offset
with the base offset of the partition's last record batch plus one, not the
offset after its last record: a batch of 5 records at offsets 10 to 14 lists
an end of 11, not 15 (measured, tests/integration/test_end_offsets.py). By
that end a reader stops before the rest of the last batch, a group that has
committed offset 11 looks caught up with 4 records unread, and a reader that
seeks to the end starts inside the batch and counts the rest of it as new
(docs/reliability.md, finding 5). The high watermark a fetch returns is right.

:func:`end_offsets` therefore lists the ends and then fetches once from each
non-empty partition's listed end minus one (its last batch on Tansu, its last
record on Kafka), keeping the fetch's high watermark where it is larger. On
Apache Kafka the listed end already is the high watermark, so the answer is the
same; the fetch costs one request per broker and the last batch of each
non-empty partition. The worker's table recovery (faust, aiokafka) has its own
correction, :func:`streams.app.fetched_ends`; this module serves kafka-python.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

__all__ = ["FETCH_TIMEOUT", "end_offsets"]

#: Seconds to wait for the listing and for the fetch that reads the high watermarks.
FETCH_TIMEOUT = 10.0

#: Settings a probe consumer takes over from the consumer it stands in for: how
#: to reach and authenticate to the same brokers.
_CONNECTION = ("bootstrap_servers", "security_protocol", "api_version", "client_id")


def end_offsets(
    source: str | Any, partitions: Iterable[Any], *, timeout: float = FETCH_TIMEOUT
) -> dict[Any, int]:
    """``{partition: offset after its last record}`` (see the module docstring).

    Parameters
    ----------
    source
        The bootstrap servers (``host:port[,host:port...]``), or a kafka-python
        ``KafkaConsumer``. An idle consumer (no group, nothing assigned or
        subscribed, as one made for a probe is) does the fetch itself and is
        left idle. Any other consumer is left as it is, its positions and
        buffered records included: a short-lived consumer to the same brokers
        does the fetch.
    partitions
        kafka-python ``TopicPartition`` objects; the keys of the result.
    timeout
        Seconds for the listing, and again for the fetch.

    Raises
    ------
    kafka.errors.KafkaTimeoutError
        The ends were not listed, or the fetch did not answer for some
        partition, within ``timeout`` seconds: what ``end_offsets`` raises, so
        callers handle both alike.
    kafka.errors.KafkaError
        Any other error of the broker, as kafka-python raises it.
    """
    wanted = list(dict.fromkeys(partitions))
    if not wanted:
        return {}
    if not isinstance(source, str) and _idle(source):
        try:
            return _fetched_ends(source, wanted, timeout)
        finally:
            source.unsubscribe()
    probe = _probe(source, timeout)
    try:
        return _fetched_ends(probe, wanted, timeout)
    finally:
        probe.close()


def _idle(consumer: Any) -> bool:
    """Whether ``consumer`` may be assigned, moved and fetched with, and then unassigned.

    A consumer of a group could commit the probe's positions for its group.
    """
    return (
        consumer.config.get("group_id") is None
        and not consumer.assignment()
        and not consumer.subscription()
    )


def _probe(source: str | Any, timeout: float) -> Any:
    """A consumer without a group for the fetch, to the brokers ``source`` names."""
    from kafka import KafkaConsumer

    if isinstance(source, str):
        settings: dict[str, Any] = {"bootstrap_servers": source.split(",")}
    else:
        settings = {
            key: value
            for key, value in source.config.items()
            if key in _CONNECTION or key.startswith(("ssl_", "sasl_"))
        }
    settings.update(
        client_id=f"{settings.get('client_id') or 'psymon'}-end-offsets",
        group_id=None,
        enable_auto_commit=False,
        allow_auto_create_topics=False,
        # A partition whose start moved past its end minus one (retention)
        # answers OffsetOutOfRange; a reset to its end still brings the watermark.
        auto_offset_reset="latest",
        fetch_max_wait_ms=50,
        check_crcs=False,  # the records are thrown away
        request_timeout_ms=int(max(timeout, 1.0) * 1000) + 1000,
    )
    return KafkaConsumer(**settings)


def _fetched_ends(consumer: Any, partitions: list[Any], timeout: float) -> dict[Any, int]:
    """The listed ends, raised to the high watermark of a fetch at each end minus one.

    ``consumer`` is idle: :meth:`highwater` is ``None`` for a partition until
    a fetch of it has answered, so a value there is this fetch's.
    """
    from kafka.errors import KafkaTimeoutError

    listed = consumer.end_offsets(partitions, timeout_ms=int(timeout * 1000))
    ends = {tp: int(listed[tp]) for tp in partitions}
    probed = [tp for tp in partitions if ends[tp] > 0]
    if not probed:
        return ends
    consumer.assign(probed)
    for tp in probed:
        consumer.seek(tp, ends[tp] - 1)
    deadline = time.monotonic() + timeout
    waiting = probed
    while waiting:
        if time.monotonic() > deadline:
            first = waiting[0]
            raise KafkaTimeoutError(
                f"no fetch of {len(waiting)} of {len(probed)} partitions answered within "
                f"{timeout:.0f} s (the first: {first.topic}[{first.partition}]); their "
                "end offsets are unknown"
            )
        consumer.poll(timeout_ms=100)
        waiting = [tp for tp in waiting if consumer.highwater(tp) is None]
    for tp in probed:
        ends[tp] = max(ends[tp], int(consumer.highwater(tp)))
    return ends
