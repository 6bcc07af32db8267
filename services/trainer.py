"""``psymon trainer``: the one learner of the population relapse-risk model.

Workers are partitioned by patient, but the population model must not fork
into one model per partition. So one trainer process reads every partition of
``psymon.risk.v1`` (the assessments, which list every model input) and
``psymon.clinical-outcomes.v1`` (the delayed labels), feeds them to a
:class:`services.training.Trainer` in ``received_at`` order, and publishes
each numbered version: first to the archive (the store's ``model_versions``
table when a database is configured, and ``<data dir>/models/`` as one JSON
file per version), then to the compacted topic ``psymon.models.v1``, which
every worker polls (:mod:`services.live_models`).

**Order.** The trainer refuses input older than its clock, but the broker
orders records within a partition only, and the workers' assessments trail
the outcomes the edge sends (a worker working off a backlog trails by weeks of
event time). :class:`ReorderBuffer` holds what was read and releases it in
``received_at`` order behind a watermark: the oldest, over the risk partitions
still active, of the ``received_at`` of the last assessment read, minus
``grace``. A partition read to its end and quiet for ``idle_seconds`` stops
holding the others back. The trade-off: a larger grace lets a slower
partition catch up before its records count as late, and delays every label
by as much event time (an hour, against versions a week apart). A record that
still comes in behind the clock is not dropped: it is learnt as if it had
arrived when the trainer released it, so an outcome never labels a day before
psymon knew of it; such records are counted as late and logged at the end.

**Restart.** After each version is decided, and every ``checkpoint_seconds``,
the trainer pickles its whole state (learner, pending labels, reorder buffer,
read positions, versions not yet published) to ``<data dir>/models/trainer.checkpoint``,
*before* publishing: a restarted trainer loads it, publishes what was left
unpublished, and reads on from the saved positions, so it never publishes two
different versions under one number. Without a checkpoint (a new machine) it
reads the newest version published anywhere (archive or topic), re-reads the
history still on the broker with a fresh learner, and publishes nothing until
its clock passes that version's ``trained_until``; its versions continue the
numbering (they differ from those a checkpointed trainer would have made,
but no number is used twice). A lock file and a PostgreSQL advisory lock keep
a second trainer from running on the same data directory or store.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import heapq
import logging
import os
import pickle
import signal
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from schemas.envelope import utc
from schemas.events import ClinicalOutcome, RiskAssessment
from schemas.topics import CLINICAL_OUTCOMES, MODELS, RISK
from services.embedded.offsets import end_offsets
from services.embedded.topics import BrokerError, ensure_models_topic, ensure_topics
from services.trainer_options import (
    DEFAULT_GRACE,
    IDLE_SECONDS,
    add_training_arguments,
    training_keywords,
)
from services.training import FileModelStore, Trainer, snapshot_summary
from streams.models.snapshot import ModelSnapshot
from streams.ordering import micros

log = logging.getLogger("psymon.trainer")

DEFAULT_GROUP = "psymon-trainer"
CHECKPOINT_SECONDS = 30.0
CHECKPOINT_FORMAT = 1
#: Event ids remembered to skip a re-delivered assessment or outcome.
REMEMBERED_IDS = 200_000

Event = RiskAssessment | ClinicalOutcome
Source = tuple[str, int]
_PARSERS: dict[str, Any] = {RISK: RiskAssessment, CLINICAL_OUTCOMES: ClinicalOutcome}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Seconds to wait after a failed step (broker or store away), doubling up to the last.
RETRY_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0)


@dataclass
class ReorderBuffer:
    """Events from several partitions, released in ``received_at`` order behind a watermark.

    The watermark follows the *paced* sources only (the partitions of
    ``psymon.risk.v1``, which carry an assessment per patient-day): the
    ``received_at`` of the last record read from each active one, the oldest
    of those, minus ``grace``. Outcomes are sparse and arrive straight from
    the edge, far ahead of the assessments of a worker working off a backlog:
    they wait in the buffer until the assessments have caught up with them.
    The last record, not the newest: an assessment caused by a score runs
    ahead of those caused by the wearable stream the worker reads more
    slowly, and must not pull the watermark ahead with it.

    >>> from datetime import UTC, datetime, timedelta
    >>> from schemas.examples import envelope_fields
    >>> def outcome(hour):
    ...     at = datetime(2026, 3, 1, hour, tzinfo=UTC)
    ...     return ClinicalOutcome(**envelope_fields(observed_at=at, received_at=at),
    ...                            outcome="relapse")
    >>> buffer = ReorderBuffer(grace=timedelta(0))
    >>> buffer.add(("a", 0), outcome(5)); buffer.add(("b", 0), outcome(3))
    >>> [e.received_at.hour for e, _ in buffer.release(active=[("a", 0), ("b", 0)])]
    [3]
    >>> buffer.add(("b", 0), outcome(4)); buffer.add(("b", 0), outcome(2))  # 2 o'clock is late
    >>> [(e.received_at.hour, at.hour) for e, at in buffer.release(active=[("a", 0)])]
    [(2, 3), (4, 4), (5, 5)]
    >>> buffer.late
    1
    """

    grace: timedelta = DEFAULT_GRACE
    progress: dict[Source, int] = field(default_factory=dict)
    heap: list[tuple[int, str, str, Event]] = field(default_factory=list)
    released_until: int | None = None
    late: int = 0

    def add(self, source: Source, event: Event, *, paced: bool = True) -> None:
        """Hold ``event``, read from ``source`` (topic, partition); ``paced``: it moves the mark."""
        received = micros(event.received_at)
        if paced:
            self.progress[source] = received
        heapq.heappush(self.heap, (received, event.kind, str(event.event_id), event))

    def release(self, active: Collection[Source]) -> list[tuple[Event, datetime]]:
        """Events now safe to learn, oldest first, each with the moment to learn it at.

        ``active`` are the paced sources that may still bring records: the
        last ``received_at`` read from each bounds what is released (nothing,
        while one has not been read at all). With none active, everything up
        to the furthest a paced source has come is released.
        """
        if any(source not in self.progress for source in active):
            return []
        marks = [self.progress[source] for source in active]
        if not marks:
            if not self.progress:
                return []
            marks = [max(self.progress.values())]
        limit = min(marks) - micros_of(self.grace)
        released: list[tuple[Event, datetime]] = []
        while self.heap and self.heap[0][0] <= limit:
            received, _, _, event = heapq.heappop(self.heap)
            if self.released_until is not None and received < self.released_until:
                self.late += 1
                released.append((event, _EPOCH + timedelta(microseconds=self.released_until)))
            else:
                self.released_until = received
                released.append((event, utc(event.received_at)))
        return released

    def __len__(self) -> int:
        return len(self.heap)


def micros_of(span: timedelta) -> int:
    """``span`` in whole microseconds."""
    return (span.days * 86_400 + span.seconds) * 1_000_000 + span.microseconds


class Outbox:
    """The trainer's store: versions wait here until the checkpoint that decided them is saved."""

    def __init__(self) -> None:
        self.pending: list[ModelSnapshot] = []

    def publish(self, snapshot: ModelSnapshot) -> None:
        """Queue ``snapshot`` for publication."""
        self.pending.append(snapshot)

    def latest(self, name: str) -> ModelSnapshot | None:
        """Not used to read: the trainer knows its own versions."""
        return None


@dataclass
class Checkpoint:
    """Everything a restarted trainer needs to go on as if it had not stopped."""

    trainer: Trainer
    buffer: ReorderBuffer
    positions: dict[Source, int]
    seen: OrderedDict[str, None]
    unpublished: list[ModelSnapshot]
    skipped: int = 0
    format: int = CHECKPOINT_FORMAT


def save_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    """Write ``checkpoint`` atomically (a crash leaves the previous one whole)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(handle, "wb") as out:
        pickle.dump(checkpoint, out, protocol=pickle.HIGHEST_PROTOCOL)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)


def load_checkpoint(path: Path) -> Checkpoint | None:
    """The checkpoint at ``path`` (written by this trainer's own process), if any."""
    if not path.exists():
        return None
    with path.open("rb") as source:
        checkpoint = pickle.load(source)  # our own file, in our own data dir
    if not isinstance(checkpoint, Checkpoint) or checkpoint.format != CHECKPOINT_FORMAT:
        raise ValueError(
            f"{path} is not a trainer checkpoint of format {CHECKPOINT_FORMAT}; move it away "
            "to let the trainer rebuild from the broker's history"
        )
    return checkpoint


class TrainerService:
    """One trainer process: consume, reorder, learn, checkpoint, publish.

    Parameters
    ----------
    bootstrap, partitions
        The broker and ``PSYMON_PARTITIONS`` (the input topics are created if missing).
    data_dir
        ``PSYMON_DATA_DIR``: the checkpoint and a JSON file per version go to
        ``<data_dir>/models``.
    database_url
        The store: every version is archived in ``model_versions`` (None: files only).
    models_topic, group_id
        Where versions are published; the consumer group offsets are committed
        under (for lag monitoring; the checkpoint holds the positions read from).
    grace
        See :class:`ReorderBuffer`.
    idle_seconds
        Wall-clock seconds after which a risk partition read to its end no
        longer holds back the watermark (see :meth:`_active`).
    trainer_options
        Passed to :class:`~services.training.Trainer` (``publish_every``,
        ``min_positives``, ``min_negatives``, ``grace_days``...).
    """

    def __init__(
        self,
        bootstrap: str,
        partitions: int,
        *,
        data_dir: Path = Path(".psymon"),
        database_url: str | None = None,
        models_topic: str = MODELS,
        group_id: str = DEFAULT_GROUP,
        grace: timedelta = DEFAULT_GRACE,
        idle_seconds: float = IDLE_SECONDS,
        checkpoint_seconds: float = CHECKPOINT_SECONDS,
        **trainer_options: Any,
    ) -> None:
        self.bootstrap, self.partitions = bootstrap, partitions
        self.directory = Path(data_dir) / "models"
        self.database_url, self.models_topic, self.group_id = database_url, models_topic, group_id
        self.grace, self.checkpoint_seconds = grace, checkpoint_seconds
        self.idle_seconds = idle_seconds
        self.trainer_options = trainer_options
        self.files = FileModelStore(self.directory)
        self.outbox = Outbox()
        self.checkpoint_path = self.directory / "trainer.checkpoint"
        self._consumer: Any = None
        self._topic: Any = None
        self._db: Any = None
        self._lock: Any = None
        self.trainer: Trainer | None = None
        self.buffer = ReorderBuffer(grace)
        self.seen: OrderedDict[str, None] = OrderedDict()
        self.skipped = 0
        self.read = 0
        self._saved_at = 0.0
        self._dirty = False
        self._last_record: dict[Source, float] = {}
        self._started = time.monotonic()

    # -- start ------------------------------------------------------------------------
    def start(self) -> TrainerService:
        """Take the locks, restore or rebuild the trainer, publish what is due."""
        from services.live_models import TopicModelStore

        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = (self.directory / "trainer.lock").open("w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BrokerError(
                f"another trainer uses {self.directory}; run one trainer per deployment"
            ) from None
        if self.database_url is not None:
            self._connect_store(self.database_url)
        ensure_topics(self.bootstrap, self.partitions, (RISK, CLINICAL_OUTCOMES))
        ensure_models_topic(self.bootstrap, self.models_topic)
        self._topic = TopicModelStore(self.bootstrap, self.models_topic)
        checkpoint = load_checkpoint(self.checkpoint_path)
        positions: dict[Source, int] = {}
        if checkpoint is not None:
            newest = self._newest_published()
            if newest is not None and newest.version > checkpoint.trainer.latest.version:
                # Another trainer published after this checkpoint was saved: going on
                # from it would publish a second, different version of the same number.
                raise BrokerError(
                    f"version {newest.version} of {newest.name} was published after this "
                    f"trainer's checkpoint (version {checkpoint.trainer.latest.version}): "
                    f"another trainer ran for this deployment; remove {self.checkpoint_path} "
                    "to rebuild from the history on the broker, numbering after it"
                )
            self.trainer, self.buffer = checkpoint.trainer, checkpoint.buffer
            self.seen, self.skipped, positions = (
                checkpoint.seen,
                checkpoint.skipped,
                checkpoint.positions,
            )
            self.outbox.pending = [*checkpoint.unpublished, self.trainer.latest]
            log.info("resumed from the checkpoint at %s", snapshot_summary(self.trainer.latest))
        else:
            newest = self._newest_published()
            resume = newest if newest is not None and newest.version > 0 else None
            self.trainer = Trainer(store=self.outbox, resume=resume, **self.trainer_options)
            if resume is not None:
                self.outbox.pending.append(resume)  # the topic may have lost it (memory broker)
                log.info("no checkpoint: rebuilding, numbering after %s", snapshot_summary(resume))
        self.trainer.store = self.outbox
        self._assign(positions)
        self._flush()
        return self

    def _connect_store(self, url: str) -> None:
        import psycopg

        db = psycopg.connect(url, autocommit=True, connect_timeout=10)
        try:
            table = db.execute("SELECT to_regclass('model_versions')").fetchone()
            if not (table and table[0]):
                raise ValueError(
                    "the store has no model_versions table (migration 0008); "
                    "run `psymon db migrate`"
                )
            row = db.execute(
                "SELECT pg_try_advisory_lock(%s)", (int.from_bytes(b"trainer", "big"),)
            ).fetchone()
            if not (row and row[0]):
                raise BrokerError("another trainer is running against this store; run only one")
        except BaseException:
            db.close()
            raise
        # Only a connection that holds the lock archives (a failed reconnect keeps the
        # old, closed one, so the next attempt reconnects again instead of skipping).
        self._db = db

    def _newest_published(self) -> ModelSnapshot | None:
        from services.model_versions import newest_archived

        name = self.trainer_options.get("name", "relapse_risk")
        self._topic.read_to_end()
        found = [self.files.latest(name), self._topic.newest.get(name)]
        if self._db is not None:
            found.append(newest_archived(self._db, name))
        versions = [s for s in found if s is not None]
        return max(versions, key=lambda s: s.version) if versions else None

    def _assign(self, positions: dict[Source, int]) -> None:
        from kafka import KafkaConsumer, TopicPartition

        self._consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap.split(","),
            client_id="psymon-trainer",
            group_id=self.group_id,
            enable_auto_commit=False,
            allow_auto_create_topics=False,
            auto_offset_reset="earliest",
            max_poll_records=2000,
        )
        assigned = [
            TopicPartition(topic, p)
            for topic in (RISK, CLINICAL_OUTCOMES)
            for p in sorted(self._consumer.partitions_for_topic(topic) or ())
        ]
        self._consumer.assign(assigned)
        # Not ListOffsets: on Tansu its end falls short of the last batch, and a
        # position saved after reading that batch would look lost (services.embedded.offsets).
        ends = end_offsets(self._consumer, assigned)
        for tp in assigned:
            saved = positions.get((tp.topic, tp.partition))
            if saved is None:
                self._consumer.seek_to_beginning(tp)
            elif saved > ends[tp]:  # the broker lost its data (a memory broker restarted)
                log.warning("%s[%d] is shorter than when last read: reading it again", *tp)
                self._consumer.seek_to_beginning(tp)
            else:
                self._consumer.seek(tp, saved)

    # -- run --------------------------------------------------------------------------
    def step(self, timeout_ms: int = 500) -> int:
        """Read what is there, learn what may be released, checkpoint and publish when due.

        Returns the number of records read.
        """
        assert self.trainer is not None and self._consumer is not None
        polled = self._consumer.poll(timeout_ms=timeout_ms)
        count = 0
        now = time.monotonic()
        for tp, records in polled.items():
            source: Source = (tp.topic, tp.partition)
            self._last_record[source] = now
            for record in records:
                count += 1
                event = self._decode(tp.topic, record.value)
                if event is not None:
                    self.buffer.add(source, event, paced=tp.topic == RISK)
        self.read += count
        released = self.buffer.release(self._active(now))
        for event, at in released:
            self.trainer.observe(event, at=at)
        self._dirty = self._dirty or bool(count or released)
        due = time.monotonic() - self._saved_at >= self.checkpoint_seconds
        if self.outbox.pending or (due and self._dirty):
            self.save()
            self._flush()
        return count

    def _decode(self, topic: str, value: bytes | None) -> Event | None:
        if value is None:
            return None
        try:
            event: Event = _PARSERS[topic].model_validate_json(value)
        except ValidationError:
            # Bad input on the outcomes topic is the worker's dead letter to report.
            self.skipped += 1
            return None
        key = str(event.event_id)
        if key in self.seen:
            return None  # re-delivered
        self.seen[key] = None
        if len(self.seen) > REMEMBERED_IDS:
            self.seen.popitem(last=False)
        return event

    def _active(self, now: float) -> list[Source]:
        """The risk partitions that may still bring records older than what was read.

        A partition is idle, and does not hold the others back, once it is read
        to its end and has brought nothing for ``idle_seconds`` (one without
        patients, a worker that stopped); its next record then comes late.
        """
        active = []
        for tp in self._consumer.assignment():
            if tp.topic != RISK:
                continue
            source: Source = (tp.topic, tp.partition)
            highwater = self._consumer.highwater(tp)
            read_out = highwater is not None and self._consumer.position(tp) >= highwater
            quiet = now - self._last_record.get(source, self._started) >= self.idle_seconds
            if not (read_out and quiet):
                active.append(source)
        return active

    def save(self) -> None:
        """Write the checkpoint (before publishing what it decided); commit the offsets."""
        from kafka.structs import OffsetAndMetadata

        assert self.trainer is not None
        positions = {
            (tp.topic, tp.partition): self._consumer.position(tp)
            for tp in self._consumer.assignment()
        }
        save_checkpoint(
            self.checkpoint_path,
            Checkpoint(
                self.trainer,
                self.buffer,
                positions,
                self.seen,
                list(self.outbox.pending),
                self.skipped,
            ),
        )
        self._saved_at = time.monotonic()
        self._dirty = False
        with contextlib.suppress(Exception):  # lag monitoring only: the checkpoint is the truth
            self._consumer.commit(
                {
                    tp: OffsetAndMetadata(positions[(tp.topic, tp.partition)], "", -1)
                    for tp in self._consumer.assignment()
                }
            )

    def _flush(self) -> None:
        """Archive, then publish, every version waiting (archive first: replays need them)."""
        from services.model_versions import archive_version

        while self.outbox.pending:
            snapshot = self.outbox.pending[0]
            self.files.publish(snapshot)
            if self._db is not None:
                self._archive(snapshot, archive_version)
            self._topic.publish(snapshot)
            self.outbox.pending.pop(0)
            log.info("published %s", snapshot_summary(snapshot))

    def _archive(self, snapshot: ModelSnapshot, archive: Any) -> None:
        """Archive ``snapshot``; after a lost connection (a restarted store), reconnect once.

        Reconnecting takes the advisory lock again: if another trainer took it
        meanwhile, this one stops (:class:`BrokerError`) rather than fork versions.
        """
        import psycopg

        try:
            archive(self._db, snapshot)
        except psycopg.OperationalError:
            log.warning("lost the connection to the store; reconnecting")
            with contextlib.suppress(Exception):
                self._db.close()
            assert self.database_url is not None
            self._connect_store(self.database_url)
            archive(self._db, snapshot)

    def run(self, stop: threading.Event) -> None:
        """:meth:`step` until ``stop`` is set, then checkpoint and close."""
        failures = 0
        try:
            while not stop.is_set():
                try:
                    self.step()
                    failures = 0
                except Exception as error:  # the broker or the store is away: retry
                    delay = RETRY_DELAYS[min(failures, len(RETRY_DELAYS) - 1)]
                    failures += 1
                    log.warning("trainer step failed (%s); retrying in %.0f s", error, delay)
                    stop.wait(delay)
            self.save()
            self._flush()
        finally:
            self.close()

    def close(self) -> None:
        """Close the clients and release the locks."""
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
        if self._topic is not None:
            self._topic.close()
            self._topic = None
        if self._db is not None:
            self._db.close()  # releases the advisory lock
            self._db = None
        if self._lock is not None:
            self._lock.close()
            self._lock = None


def run_trainer(
    bootstrap: str,
    partitions: int,
    *,
    stop: threading.Event | None = None,
    **options: Any,
) -> TrainerService:
    """Run a trainer until ``stop`` is set (default: until SIGINT/SIGTERM)."""
    if stop is None:
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    service = TrainerService(bootstrap, partitions, **options).start()
    service.run(stop)
    assert service.trainer is not None
    log.info(
        "trainer stopped at %s: %d records read, %d late, %d skipped",
        snapshot_summary(service.trainer.latest),
        service.read,
        service.buffer.late,
        service.skipped,
    )
    return service


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m services.trainer``: run the trainer with the given options."""
    parser = argparse.ArgumentParser(
        prog="python -m services.trainer",
        description="Run the relapse-risk trainer until SIGINT/SIGTERM.",
    )
    parser.add_argument("--bootstrap", required=True, help="broker host:port[,host:port...]")
    parser.add_argument("--partitions", type=int, required=True, help="partitions per topic")
    parser.add_argument("--data-dir", type=Path, default=Path(".psymon"), help="local files")
    parser.add_argument("--models-topic", default=MODELS, help="where versions are published")
    parser.add_argument("--group-id", default=DEFAULT_GROUP, help="consumer group (offsets)")
    add_training_arguments(parser)
    parser.add_argument("--loglevel", default="info", choices=["debug", "info", "warning", "error"])
    options = parser.parse_args(argv)
    setup_logging(options.loglevel)
    # The store's URL holds a password: from the environment, never the command line.
    url = os.environ.get("PSYMON_DATABASE_URL") or None
    try:
        run_trainer(
            options.bootstrap,
            options.partitions,
            data_dir=options.data_dir,
            database_url=url,
            models_topic=options.models_topic,
            group_id=options.group_id,
            **training_keywords(vars(options)),
        )
    except (BrokerError, ValueError) as error:
        print(f"psymon trainer: {error}", file=sys.stderr)
        return 2
    return 0


def setup_logging(level: str) -> None:
    """Log to stderr at ``level``; the Kafka client only from warnings (it is chatty at info)."""
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("kafka").setLevel(max(logging.WARNING, logging.getLogger().level))


if __name__ == "__main__":
    sys.exit(main())
