"""The sink: every topic into PostgreSQL, each event once, offsets committed after the data.

``psymon sink`` runs :func:`run_sink`: one Kafka consumer (group
``psymon-sink``, auto-commit off) reads every input and output topic
(:data:`schemas.topics.ALL_TOPICS`), gathers records into batches (up to
5,000 records or 500 ms), decodes them and stores them with
:class:`services.store.writer.StoreWriter` (binary COPY; the table's unique
key refuses an event already stored, and such a batch goes through staging
and ``INSERT ... ON CONFLICT DO NOTHING``). Only after the database transaction
has committed are the batch's offsets committed to Kafka: a crash in between
re-delivers the batch, and the unique keys make the second load a no-op.
At-least-once delivery, exactly-once effect.

Input topics are judged by :func:`schemas.dispatch.decode`, exactly as at the
edge; output topics are parsed as :data:`schemas.events.AnyEvent`, validated
too: nothing marks a record on an output topic as written by psymon's worker,
and the store must never hold what the schema refuses. A record
that does not decode is stored in ``dead_letters`` with the reason.

When the database goes away the sink pauses consumption (it keeps polling,
without fetching, so that it stays in its consumer group), retries the same
batch with exponential backoff, and resumes once it is stored.

:class:`Sink` is the same loading path without Kafka, for tests and tools:

>>> from schemas.topics import LAB_RESULTS
>>> record = SinkRecord(LAB_RESULTS, b'{"kind": "lab_result"}', 1772442000000)
>>> decode_record(record).kind
'dead_letter'
"""

from __future__ import annotations

import functools
import gc
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, NamedTuple, Protocol

import psycopg
from pydantic import TypeAdapter, ValidationError

from schemas.dispatch import (
    bad_broker_time,
    broker_time,
    dead_letter,
    decode,
    field_errors,
    loads,
)
from schemas.envelope import Source
from schemas.events import AnyEvent
from schemas.identity import PSEUDONYM_PATTERN
from schemas.topics import ALL_TOPICS, INPUT_TOPICS, KINDS_BY_TOPIC, OUTPUT_TOPICS
from services.store.tables import Storable
from services.store.writer import StoreWriter, WriteReport

log = logging.getLogger("psymon.sink")

SINK_GROUP = "psymon-sink"
BATCH_MAX_RECORDS = 5000
BATCH_MAX_WAIT = 0.5
#: Longest wait between two attempts to reach the database.
BACKOFF_MAX = 30.0
BACKOFF_FIRST = 0.5

#: Who wrote dead letters the sink makes itself.
SINK_SOURCE = Source(system="psymon-sink")

#: New container objects between two runs of the sink process's garbage
#: collector (CPython's default is 700; see :func:`collect_garbage_rarely`).
GC_YOUNG_OBJECTS = 100_000

_ANY_EVENT: TypeAdapter[Any] = TypeAdapter(AnyEvent)


class RecordLike(Protocol):
    """What the sink needs of a Kafka record (kafka-python's ``ConsumerRecord`` fits)."""

    @property
    def topic(self) -> str: ...

    @property
    def value(self) -> bytes | None: ...

    @property
    def timestamp(self) -> int: ...


class SinkRecord(NamedTuple):
    """A record as the sink sees it, for loading without a broker.

    ``timestamp`` is the Kafka record timestamp in milliseconds since the
    epoch; it becomes ``received_at`` of a dead letter made from the record.
    """

    topic: str
    value: bytes | None
    timestamp: int
    partition: int = 0
    offset: int = -1


def decode_record(
    record: RecordLike, *, source: Source = SINK_SOURCE, now: datetime | None = None
) -> Storable:
    """The event a record carries, or a dead letter saying why it carries none.

    ``now``: the time a record without a broker timestamp was received
    (default: the clock's).
    """
    raw = record.value if record.value is not None else b""
    topic = record.topic
    received_at = _kafka_time(record.timestamp, now)
    if received_at is None:
        return bad_broker_time(raw, topic, record.timestamp / 1000, source=source)
    if topic in INPUT_TOPICS:
        return decode(raw, topic=topic, received_at=received_at, source=source)
    if topic not in OUTPUT_TOPICS:
        reason = f"topic {topic!r} is not a psymon topic; accepted: {', '.join(ALL_TOPICS)}"
        return dead_letter(raw, topic, received_at, reason, source=source)
    try:
        event: Storable = _ANY_EVENT.validate_json(raw)
    except ValidationError:
        return _undecodable_output(raw, topic, received_at, source)
    if event.kind not in KINDS_BY_TOPIC[topic]:
        accepted = ", ".join(sorted(KINDS_BY_TOPIC[topic]))
        reason = f"field 'kind': {event.kind!r} is not accepted on {topic}; accepted: {accepted}"
        return dead_letter(raw, topic, received_at, reason, source=source)
    return event


def _undecodable_output(raw: bytes, topic: str, received_at: datetime, source: Source) -> Storable:
    try:
        document = loads(raw)
    except ValueError as error:
        return dead_letter(raw, topic, received_at, f"not valid JSON: {error}", source=source)
    try:
        _ANY_EVENT.validate_python(document)
    except ValidationError as error:
        errors = field_errors(error)
        reason = "; ".join(f"field '{e.field}': {e.message}" for e in errors) or str(error)
    else:  # pragma: no cover - validate_json and validate_python agree
        reason = "the record does not decode as JSON of a psymon event"
        errors = ()
    patient = document.get("patient_id") if isinstance(document, dict) else None
    known = patient if isinstance(patient, str) and PSEUDONYM_PATTERN.fullmatch(patient) else None
    redacted = None
    if patient is not None and known is None:
        # Not a pseudonym: possibly a source identifier, which must not be stored.
        redacted = '{"patient_id": "[redacted]", "note": "record withheld: see reason"}'
    return dead_letter(
        raw,
        topic,
        received_at,
        reason,
        errors=errors,
        patient_id=known,
        source=source,
        redacted=redacted,
    )


def _kafka_time(timestamp_ms: int | None, now: datetime | None) -> datetime | None:
    """The record's broker time, ``now`` if it has none; ``None``: a timestamp no time can hold."""
    if timestamp_ms is None or timestamp_ms <= 0:
        return now if now is not None else datetime.now(UTC)
    return _broker_time(timestamp_ms)


@functools.lru_cache(maxsize=1)
def _broker_time(timestamp_ms: int) -> datetime | None:
    """A record's timestamp as a time; the last one kept (a batch's records often share one)."""
    return broker_time(timestamp_ms / 1000)


class DecodedBatch:
    """A batch's records, decoded as they are read; read again (a retry), decoded again.

    The writer reads the events while it loads them (see
    :meth:`services.store.writer.StoreWriter.write`) and keeps only their
    rows: no event of the batch stays alive after its rows are made, so
    decoding the next one reuses warm memory (keeping the 5,000 events of a
    batch cost ~1.3 µs more per score, docs/benchmarks.md section 3). A
    retry after a lost connection decodes the records again, and records
    appended meanwhile: the same events, as decoding depends on the record
    alone. A record without a broker timestamp is received at the time the
    batch was made, on every reading: a retry judges it as the first attempt
    did (a commit that reached the server before the connection was lost
    cannot then be followed by a different event for the same record).
    """

    def __init__(self, records: list[Any]) -> None:
        self.records = records
        self._undecodable: int | None = None
        self._now = datetime.now(UTC)

    def __iter__(self) -> Iterator[Storable]:
        letters = 0
        for record in self.records:
            event = decode_record(record, now=self._now)
            if event.kind == "dead_letter":
                letters += 1
            yield event
        self._undecodable = letters

    def undecodable(self) -> int:
        """How many records are dead letters (as the last complete reading found)."""
        if self._undecodable is None:
            for _ in self:
                pass
        assert self._undecodable is not None
        return self._undecodable


@dataclass
class LoadReport:
    """What loading one batch of records did."""

    records: int = 0
    undecodable: int = 0
    write: WriteReport = field(default_factory=WriteReport)

    @property
    def inserted(self) -> Counter[str]:
        """New rows per table."""
        return self.write.inserted

    @property
    def duplicates(self) -> Counter[str]:
        """Rows per table that were already stored."""
        return self.write.duplicates


class Sink:
    """Decode records and store them, over one connection opened on first use.

    Parameters
    ----------
    database_url
        A PostgreSQL URL of a migrated psymon database.

    A lost connection surfaces as :class:`psycopg.OperationalError` from
    :meth:`load_batch` / :meth:`load_events` with nothing stored; the next
    call reconnects. Use it as a context manager or call :meth:`close`.
    """

    def __init__(self, database_url: str, *, connect_timeout: float = 5.0) -> None:
        self._url = database_url
        self._connect_timeout = connect_timeout
        self._conn: psycopg.Connection[Any] | None = None
        self._writer: StoreWriter | None = None

    def load_batch(self, records: Iterable[RecordLike]) -> LoadReport:
        """Decode ``records`` and store them in one transaction.

        Records are decoded as the writer reads them, so the database stores
        the first ones while later ones are decoded.
        """
        events = DecodedBatch(list(records))
        written = self.load_events(events)
        return LoadReport(
            records=len(events.records), undecodable=events.undecodable(), write=written
        )

    def load_events(self, events: Iterable[Storable]) -> WriteReport:
        """Store events in one transaction (read once, as they are loaded)."""
        writer = self._connected()
        try:
            return writer.write(events)
        except psycopg.OperationalError:
            self.close()
            raise

    def close(self) -> None:
        """Close the database connection (a later load reconnects)."""
        conn, self._conn, self._writer = self._conn, None, None
        if conn is not None:
            conn.close()

    def _connected(self) -> StoreWriter:
        if self._writer is None:
            conn = psycopg.connect(
                self._url, autocommit=True, connect_timeout=max(1, int(self._connect_timeout))
            )
            try:
                self._writer = StoreWriter(conn)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._writer

    def __enter__(self) -> Sink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@dataclass
class SinkStats:
    """What a :func:`run_sink` call did before it stopped."""

    batches: int = 0
    records: int = 0
    inserted: Counter[str] = field(default_factory=Counter)
    duplicates: Counter[str] = field(default_factory=Counter)
    undecodable: int = 0
    database_retries: int = 0
    commit_failures: int = 0


def collect_garbage_rarely() -> None:
    """Run this process's cyclic garbage collector 100x less often than CPython's default.

    A batch keeps ~100,000 new container objects alive until it is stored
    (the decoded events, their rows). With a collection every 700 new objects
    the collector walks them again and again as the batch grows: decoding
    and expanding 60,000 samples took 0.87 s of CPU instead of 0.51 s, 10,000
    PHQ-9 results 0.235 s instead of 0.198 s (docs/benchmarks.md, section 3).
    What the sink frees, reference counting frees: its memory stayed the
    same. Process-wide, so only for a process that is a sink (``run_sink``).
    """
    gc.set_threshold(GC_YOUNG_OBJECTS, *gc.get_threshold()[1:])


def run_sink(
    bootstrap: str,
    database_url: str,
    *,
    stop_event: threading.Event | None = None,
    group_id: str = SINK_GROUP,
    topics: Sequence[str] = ALL_TOPICS,
    batch_max_records: int = BATCH_MAX_RECORDS,
    batch_max_wait: float = BATCH_MAX_WAIT,
    backoff_max: float = BACKOFF_MAX,
    stats: SinkStats | None = None,
) -> SinkStats:
    """Consume ``topics`` into the database until ``stop_event`` is set.

    Parameters
    ----------
    bootstrap
        Kafka ``host:port`` (``PSYMON_KAFKA_BOOTSTRAP``).
    database_url
        URL of a migrated psymon database.
    stop_event
        Set it (from another thread or a signal handler) to stop after the
        batch in hand is stored and committed. ``None``: run until interrupted.
    group_id, topics, batch_max_records, batch_max_wait, backoff_max
        The consumer group, what to read, the batch bounds (records, seconds)
        and the longest wait between attempts to reach the database.
    stats
        Counts to update as batches are stored (to watch progress from
        another thread); a new one by default.

    Returns the counts of what was done. A database error other than a lost
    connection (a missing schema, a bug) is raised: retrying would not help.
    """
    from kafka import KafkaConsumer

    collect_garbage_rarely()
    stop = stop_event or threading.Event()
    stats = stats if stats is not None else SinkStats()
    consumer = KafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=group_id,
        client_id="psymon-sink",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=batch_max_records,
        # The embedded broker answers JoinGroup after half the session timeout.
        session_timeout_ms=10_000,
        heartbeat_interval_ms=3_000,
        # A topic is created by psymon with its partition count, never by a metadata request.
        allow_auto_create_topics=False,
    )
    sink = Sink(database_url)
    try:
        while not stop.is_set():
            batch = _collect(consumer, stop, batch_max_records, batch_max_wait)
            if batch:
                _deliver(consumer, sink, batch, stop, stats, backoff_max)
    finally:
        consumer.close(autocommit=False)
        sink.close()
    log.info(
        "sink stopped: %d records in %d batches, %d rows inserted, %d duplicates skipped",
        stats.records,
        stats.batches,
        sum(stats.inserted.values()),
        sum(stats.duplicates.values()),
    )
    return stats


def _collect(consumer: Any, stop: threading.Event, limit: int, wait: float) -> list[Any]:
    """Poll until ``limit`` records or ``wait`` seconds after the first; [] when idle."""
    records: list[Any] = []
    deadline: float | None = None
    while len(records) < limit and not stop.is_set():
        left = 0.2 if deadline is None else max(0.0, deadline - time.monotonic())
        timeout = int(left * 1000)
        polled = consumer.poll(timeout_ms=timeout, max_records=limit - len(records))
        for partition_records in polled.values():
            records.extend(partition_records)
        if not records:
            return records  # idle: let the caller look at the stop event
        if deadline is None:
            deadline = time.monotonic() + wait
        if time.monotonic() >= deadline:
            break
    return records


def _deliver(
    consumer: Any,
    sink: Sink,
    batch: list[Any],
    stop: threading.Event,
    stats: SinkStats,
    backoff_max: float,
) -> None:
    """Store ``batch`` (retrying while the database is away), then commit its offsets."""
    events = DecodedBatch(batch)
    attempt = 0
    paused = False
    while True:
        try:
            written = sink.load_events(events)
            break
        except psycopg.OperationalError as error:
            delay = min(backoff_max, BACKOFF_FIRST * 2**attempt)
            attempt += 1
            stats.database_retries += 1
            log.warning(
                "the database is unavailable (%s); consumption paused, retry %d in %.1f s",
                type(error).__name__,
                attempt,
                delay,
            )
            paused = True
            more = _wait_paused(consumer, delay, stop)
            if stop.is_set():
                log.warning("stopping with %d records not stored; they will be re-read", len(batch))
                return
            batch.extend(more)
    _commit(consumer, batch, stats)
    if paused:
        consumer.resume(*consumer.paused())
    stats.batches += 1
    stats.records += len(batch)
    stats.undecodable += events.undecodable()
    stats.inserted.update(written.inserted)
    stats.duplicates.update(written.duplicates)


def _wait_paused(consumer: Any, delay: float, stop: threading.Event) -> list[Any]:
    """Wait ``delay`` s with every partition paused, polling to keep the group membership.

    A partition assigned meanwhile (a rebalance) may deliver a few records
    before it is paused; they are returned to join the pending batch.
    """
    extra: list[Any] = []
    deadline = time.monotonic() + delay
    while not stop.is_set():
        consumer.pause(*consumer.assignment())
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        polled = consumer.poll(timeout_ms=int(min(remaining, 1.0) * 1000))
        for partition_records in polled.values():
            extra.extend(partition_records)
    return extra


def _commit(consumer: Any, batch: list[Any], stats: SinkStats) -> None:
    """Commit the offset after the last stored record of each partition still assigned."""
    from kafka import TopicPartition
    from kafka.errors import CommitFailedError, KafkaError
    from kafka.structs import OffsetAndMetadata

    last: dict[TopicPartition, int] = {}
    for record in batch:
        tp = TopicPartition(record.topic, record.partition)
        last[tp] = max(last.get(tp, -1), record.offset)
    assigned = consumer.assignment()
    offsets = {
        tp: OffsetAndMetadata(offset + 1, "", -1) for tp, offset in last.items() if tp in assigned
    }
    if not offsets:
        return
    try:
        consumer.commit(offsets)
    except (CommitFailedError, KafkaError) as error:
        # The batch is stored; whoever owns these partitions now re-reads it,
        # and the store's unique keys make that harmless.
        stats.commit_failures += 1
        log.warning("offset commit failed after storing a batch (%s)", type(error).__name__)
