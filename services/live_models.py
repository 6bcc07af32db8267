"""A stream worker's model versions: the newest published, found off the event loop.

The faust agent asks for its configuration once per batch
(``streams.app.create_app(config_source=...)``) and must get it at once. A
:class:`LiveModels` answers from memory; a background thread polls the
models topic (:class:`TopicModelStore`) every few seconds and, when a newer
version has been published, swaps in
``base.with_model(risk).with_subgroups(subgroups)``. The topic carries two
kinds of version, each keyed by its model's name: the relapse-risk model
(:class:`~streams.models.snapshot.ModelSnapshot`, from ``psymon trainer``)
and the population subgroup model
(:class:`~streams.stratification.snapshot.SubgroupSnapshot`, from ``psymon
subgroups fit``). Batches started after the swap use the new versions; each
assessment, and each cluster ``SubgroupAssigned`` event, names its version,
so ``psymon replay --models as-live`` can score and assign as the worker did.

Until a version arrives a worker scores with version 0
(:func:`services.training.initial_version`), the same version 0 the trainer
publishes: a constant 5 % that raises no ``relapse_risk`` alert, so that
assessments (the trainer's training data) flow from the first day. Versions
only move forward: an older version read later (a trainer restarted from
scratch) is ignored. There is no subgroup version 0: until one arrives a
worker assigns clusters with ``base.subgroups`` (none by default: specifiers
only).

>>> from streams import CoreConfig
>>> store = MemoryVersions()
>>> live = LiveModels(store, CoreConfig())
>>> live().model.version, live().subgroups is None
(0, True)
>>> trained = live().model.model_copy(update={"version": 3})
>>> store.publish(trained)
>>> live.refresh(), live().model.version
(True, 3)
>>> store.publish(SubgroupSnapshot(features=("crp_log",), centre=(0.0,), scale=(1.0,),
...     labels=("c1",), weights=(1.0,), means=((0.0,),), variances=((1.0,),),
...     descriptions=("all",), version=2))
>>> live.refresh(), live().model.version, live().subgroups.version
(True, 3, 2)
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Protocol, runtime_checkable

from pydantic import ValidationError

from schemas.topics import MODELS
from services.training import ModelStore, initial_version
from streams import CoreConfig
from streams.models.features import INPUTS
from streams.models.snapshot import ModelSnapshot
from streams.stratification.snapshot import SubgroupSnapshot

log = logging.getLogger("psymon.models")

#: Seconds between two looks at the models topic: a new version reaches every
#: worker within this (versions are published a week of event time apart).
POLL_SECONDS = 2.0

#: The population subgroup model a worker follows by default (``psymon subgroups fit --name``).
SUBGROUP_MODEL = "profile_mixture"

#: A version of either kind published on the models topic.
Snapshot = ModelSnapshot | SubgroupSnapshot


def parse_snapshot(text: str | bytes) -> Snapshot:
    """A published version of either kind, told apart by its fields.

    Both kinds forbid unknown fields and each has fields the other lacks
    (``weights``/``bias`` against ``labels``/``variances``), so at most one
    accepts a record. Raises ``ValueError`` naming both when neither does.
    """
    try:
        return ModelSnapshot.model_validate_json(text)
    except ValidationError as as_risk:
        try:
            return SubgroupSnapshot.model_validate_json(text)
        except ValidationError as as_subgroups:
            raise ValueError(
                "not a model version: as a relapse-risk ModelSnapshot "
                f"{as_risk.error_count()} error(s), as a SubgroupSnapshot "
                f"{as_subgroups.error_count()} error(s); accepted: the JSON of either"
            ) from None


def kind_of(snapshot: Snapshot) -> str:
    """``"risk"`` or ``"subgroups"``: the kind of a version, in messages and the archive."""
    return "subgroups" if isinstance(snapshot, SubgroupSnapshot) else "risk"


@runtime_checkable
class SubgroupVersions(Protocol):
    """A store that also publishes subgroup model versions (the models topic does)."""

    def latest_subgroups(self, name: str) -> SubgroupSnapshot | None:
        """The newest published version of the subgroup model ``name``, if any."""


class MemoryVersions:
    """Versions of both kinds kept in a list (tests, doctests): a models topic in memory."""

    def __init__(self) -> None:
        self.published: list[Snapshot] = []

    def publish(self, snapshot: Snapshot) -> None:
        """Append ``snapshot``."""
        self.published.append(snapshot)

    def latest(self, name: str) -> ModelSnapshot | None:
        """The newest relapse-risk version of ``name``."""
        found = [s for s in self.published if isinstance(s, ModelSnapshot) and s.name == name]
        return max(found, key=lambda s: s.version) if found else None

    def latest_subgroups(self, name: str) -> SubgroupSnapshot | None:
        """The newest subgroup model version of ``name``."""
        found = [s for s in self.published if isinstance(s, SubgroupSnapshot) and s.name == name]
        return max(found, key=lambda s: s.version) if found else None


class TopicModelStore:
    """The models topic as a :class:`~services.training.ModelStore` (kafka-python).

    ``latest`` reads what was published since the last call (from the start
    of the topic the first time) and returns the newest relapse-risk version
    seen; ``latest_subgroups`` the newest subgroup model version; ``publish``
    sends a version of either kind. Not thread-safe: one thread uses it.

    Parameters
    ----------
    bootstrap
        The broker.
    topic
        The models topic (one partition, compacted:
        :func:`services.embedded.topics.ensure_models_topic` creates it).
    poll_ms
        How long ``latest`` waits for records.
    """

    def __init__(self, bootstrap: str, topic: str = MODELS, *, poll_ms: int = 200) -> None:
        self.bootstrap, self.topic, self.poll_ms = bootstrap, topic, poll_ms
        self._consumer: Any = None
        self._producer: Any = None
        #: The newest version read, per model name: relapse-risk models ...
        self.newest: dict[str, ModelSnapshot] = {}
        #: ... and subgroup models (one name space on the topic: its key).
        self.newest_subgroups: dict[str, SubgroupSnapshot] = {}
        self.skipped = 0

    def _reader(self) -> Any:
        if self._consumer is None:
            from kafka import KafkaConsumer

            self._consumer = KafkaConsumer(
                bootstrap_servers=self.bootstrap.split(","),
                client_id="psymon-models-reader",
                group_id=None,
                enable_auto_commit=False,
                allow_auto_create_topics=False,
            )
        consumer = self._consumer
        if not consumer.assignment():
            from kafka import TopicPartition

            partitions = consumer.partitions_for_topic(self.topic)
            if not partitions:
                return None  # not created yet: the next call looks again
            assigned = [TopicPartition(self.topic, p) for p in sorted(partitions)]
            consumer.assign(assigned)
            consumer.seek_to_beginning(*assigned)
        return consumer

    def read(self, timeout_ms: int | None = None) -> list[Snapshot]:
        """The versions published since the last read (bad records are skipped and counted).

        ``timeout_ms``: how long to wait for records (default ``poll_ms``).
        """
        consumer = self._reader()
        if consumer is None:
            return []
        found: list[Snapshot] = []
        wait = self.poll_ms if timeout_ms is None else timeout_ms
        for records in consumer.poll(timeout_ms=wait).values():
            for record in records:
                if record.value is None:  # a tombstone: nothing to score with
                    continue
                try:
                    found.append(parse_snapshot(record.value))
                except ValueError:
                    self.skipped += 1
                    log.warning(
                        "skipped a record of %s at offset %d that is not a model version",
                        self.topic,
                        record.offset,
                    )
        for snapshot in found:
            newest: dict[str, Any] = (
                self.newest_subgroups if isinstance(snapshot, SubgroupSnapshot) else self.newest
            )
            current = newest.get(snapshot.name)
            if current is None or snapshot.version > current.version:
                newest[snapshot.name] = snapshot
        return found

    def read_to_end(self, timeout: float = 10.0) -> list[Snapshot]:
        """Read until the end of the topic as it was when called (at most ``timeout`` s).

        Returns the versions read, in order.
        """
        import time

        from services.embedded.offsets import end_offsets

        consumer = self._reader()
        if consumer is None:
            return []
        # Not ListOffsets: on Tansu its end falls short of the last batch, and the
        # newest versions may be in it (services.embedded.offsets).
        ends = end_offsets(consumer, consumer.assignment(), timeout=timeout)
        deadline = time.monotonic() + timeout
        found: list[Snapshot] = []
        while time.monotonic() < deadline:
            if all(consumer.position(tp) >= end for tp, end in ends.items()):
                break
            found += self.read()
        return found

    def latest(self, name: str) -> ModelSnapshot | None:
        """The newest relapse-risk version of ``name`` read so far, after reading what is new."""
        self.read()
        return self.newest.get(name)

    def latest_subgroups(self, name: str) -> SubgroupSnapshot | None:
        """The newest subgroup model version of ``name`` read so far.

        Reads only what has already been fetched (no wait): :meth:`latest`,
        called just before by :class:`LiveModels`, has waited for new records
        and kept the newest of both kinds.
        """
        self.read(timeout_ms=0)
        return self.newest_subgroups.get(name)

    def publish(self, snapshot: Snapshot) -> None:
        """Send ``snapshot`` (keyed by model name) and wait until the broker has it."""
        if self._producer is None:
            from kafka import KafkaProducer

            self._producer = KafkaProducer(
                bootstrap_servers=self.bootstrap.split(","),
                client_id="psymon-models-writer",
                acks="all",
                allow_auto_create_topics=False,
            )
        # The key is the name, as services.training.publish_to_topic keys risk versions:
        # compaction keeps the newest record per name, so the two kinds need distinct names.
        self._producer.send(
            self.topic, value=snapshot.model_dump_json().encode(), key=snapshot.name.encode()
        )
        self._producer.flush(timeout=30)

    def close(self) -> None:
        """Close the clients."""
        for client in (self._consumer, self._producer):
            if client is not None:
                client.close()
        self._consumer = self._producer = None


class LiveModels:
    """The core configuration with the newest model versions found: a ``config_source``.

    Parameters
    ----------
    store
        Where versions are published (:class:`TopicModelStore` live). Subgroup
        model versions are followed when it also has ``latest_subgroups``
        (:class:`SubgroupVersions`).
    base
        Every other setting (the worker's core configuration). A ``model``
        set there is the starting version instead of version 0; a
        ``subgroups`` set there is the starting subgroup model.
    name
        The relapse-risk model to follow.
    subgroups_name
        The subgroup model to follow (``None``: keep ``base.subgroups``).
    poll_seconds
        Seconds between two looks at ``store`` (:meth:`start`).
    """

    def __init__(
        self,
        store: ModelStore,
        base: CoreConfig,
        *,
        name: str = "relapse_risk",
        subgroups_name: str | None = SUBGROUP_MODEL,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        if poll_seconds <= 0:
            raise ValueError(f"poll_seconds is {poll_seconds!r}; accepted: a positive number")
        start = base.model or initial_version(
            INPUTS, name=name, horizon_days=base.risk.horizon_days
        )
        self.store, self.poll_seconds = store, poll_seconds
        self.base, self.name, self.subgroups_name = base, name, subgroups_name
        self._subgroup_store = (
            store if subgroups_name is not None and isinstance(store, SubgroupVersions) else None
        )
        # One reference, swapped whole: the event loop reads it without a lock.
        self._config = base.with_model(start)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.failures = 0

    def __call__(self) -> CoreConfig:
        """The configuration to score the next batch with (no I/O: a reference read)."""
        return self._config

    @property
    def version(self) -> int:
        """The relapse-risk version scored with now."""
        model = self._config.model
        return -1 if model is None else model.version

    @property
    def subgroups_version(self) -> int | None:
        """The subgroup model version clusters are assigned with now (None: none)."""
        subgroups = self._config.subgroups
        return None if subgroups is None else subgroups.version

    def refresh(self) -> bool:
        """Look for newer versions now (in the caller's thread); whether one was found.

        Each kind moves forward on its own: a version not above the one in
        use (a trainer restarted from scratch) is ignored.
        """
        current = self._config
        model, subgroups = current.model, current.subgroups
        newest = self.store.latest(self.name)
        risk_moved = newest is not None and (model is None or newest.version > model.version)
        if risk_moved:
            model = newest
        subgroups_moved = False
        if self._subgroup_store is not None:
            assert self.subgroups_name is not None
            found = self._subgroup_store.latest_subgroups(self.subgroups_name)
            subgroups_moved = found is not None and (
                subgroups is None or found.version > subgroups.version
            )
            if subgroups_moved:
                subgroups = found
        if not (risk_moved or subgroups_moved):
            return False
        self._config = self.base.with_model(model).with_subgroups(subgroups)
        if risk_moved:
            assert model is not None
            log.info(
                "scoring with %s version %d (trained until %s, %d labelled days)",
                model.name,
                model.version,
                model.trained_until.isoformat() if model.trained_until else "-",
                model.examples,
            )
        if subgroups_moved:
            assert subgroups is not None
            log.info(
                "assigning clusters with %s version %d (trained until %s, %d profiles)",
                subgroups.name,
                subgroups.version,
                subgroups.trained_until.isoformat() if subgroups.trained_until else "-",
                subgroups.examples,
            )
        return True

    def start(self) -> LiveModels:
        """Poll in a daemon thread until :meth:`stop`."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="psymon-models", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
            except Exception as error:  # the broker is away: keep scoring with what we have
                self.failures += 1
                if self.failures == 1 or self.failures % 30 == 0:
                    log.warning(
                        "cannot read model versions (%s, %d times); still scoring with version %d",
                        type(error).__name__,
                        self.failures,
                        self.version,
                    )
            self._stop.wait(self.poll_seconds)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop polling and close the store's clients."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        close = getattr(self.store, "close", None)
        if close is not None:
            close()
