"""A stream worker's model versions: the newest published, found off the event loop.

The faust agent asks for its configuration once per batch
(``streams.app.create_app(config_source=...)``) and must get it at once. A
:class:`LiveModels` answers from memory; a background thread polls the
models topic (:class:`TopicModelStore`) every few seconds and, when a newer
version of the model has been published, swaps in ``base.with_model(newest)``.
Batches started after the swap score with the new version; each assessment
names it, so ``psymon replay --models as-live`` can score as the worker did.

Until a version arrives a worker scores with version 0
(:func:`services.training.initial_version`), the same version 0 the trainer
publishes: a constant 5 % that raises no ``relapse_risk`` alert, so that
assessments (the trainer's training data) flow from the first day. Versions
only move forward: an older version read later (a trainer restarted from
scratch) is ignored.

>>> from services.training import MemoryModelStore
>>> from streams import CoreConfig
>>> store = MemoryModelStore()
>>> live = LiveModels(store, CoreConfig())
>>> live().model.version
0
>>> trained = live().model.model_copy(update={"version": 3})
>>> store.publish(trained)
>>> live.refresh(), live().model.version
(True, 3)
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from pydantic import ValidationError

from schemas.topics import MODELS
from services.training import LatestModel, ModelStore, initial_version, publish_to_topic
from streams import CoreConfig
from streams.models.features import INPUTS
from streams.models.snapshot import ModelSnapshot

log = logging.getLogger("psymon.models")

#: Seconds between two looks at the models topic: a new version reaches every
#: worker within this (versions are published a week of event time apart).
POLL_SECONDS = 2.0


class TopicModelStore:
    """The models topic as a :class:`~services.training.ModelStore` (kafka-python).

    ``latest`` reads what was published since the last call (from the start
    of the topic the first time) and returns the newest version seen;
    ``publish`` sends a version. Not thread-safe: one thread uses it.

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
        self.newest: dict[str, ModelSnapshot] = {}
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

    def read(self) -> list[ModelSnapshot]:
        """The versions published since the last read (bad records are skipped and counted)."""
        consumer = self._reader()
        if consumer is None:
            return []
        found: list[ModelSnapshot] = []
        for records in consumer.poll(timeout_ms=self.poll_ms).values():
            for record in records:
                if record.value is None:  # a tombstone: nothing to score with
                    continue
                try:
                    found.append(ModelSnapshot.model_validate_json(record.value))
                except ValidationError:
                    self.skipped += 1
                    log.warning(
                        "skipped a record of %s at offset %d that is not a model version",
                        self.topic,
                        record.offset,
                    )
        for snapshot in found:
            current = self.newest.get(snapshot.name)
            if current is None or snapshot.version > current.version:
                self.newest[snapshot.name] = snapshot
        return found

    def read_to_end(self, timeout: float = 10.0) -> list[ModelSnapshot]:
        """Read until the end of the topic as it was when called (at most ``timeout`` s).

        Returns the versions read, in order.
        """
        import time

        consumer = self._reader()
        if consumer is None:
            return []
        ends = consumer.end_offsets(list(consumer.assignment()))
        deadline = time.monotonic() + timeout
        found: list[ModelSnapshot] = []
        while time.monotonic() < deadline:
            if all(consumer.position(tp) >= end for tp, end in ends.items()):
                break
            found += self.read()
        return found

    def latest(self, name: str) -> ModelSnapshot | None:
        """The newest version of ``name`` read so far, after reading what is new."""
        self.read()
        return self.newest.get(name)

    def publish(self, snapshot: ModelSnapshot) -> None:
        """Send ``snapshot`` (keyed by model name) and wait until the broker has it."""
        if self._producer is None:
            from kafka import KafkaProducer

            self._producer = KafkaProducer(
                bootstrap_servers=self.bootstrap.split(","),
                client_id="psymon-models-writer",
                acks="all",
                allow_auto_create_topics=False,
            )
        publish_to_topic(self._producer, snapshot, self.topic)
        self._producer.flush(timeout=30)

    def close(self) -> None:
        """Close the clients."""
        for client in (self._consumer, self._producer):
            if client is not None:
                client.close()
        self._consumer = self._producer = None


class LiveModels:
    """The core configuration with the newest model version found: a ``config_source``.

    Parameters
    ----------
    store
        Where versions are published (:class:`TopicModelStore` live).
    base
        Every other setting (the worker's core configuration). A ``model``
        set there is the starting version instead of version 0.
    name
        The model to follow.
    poll_seconds
        Seconds between two looks at ``store`` (:meth:`start`).
    """

    def __init__(
        self,
        store: ModelStore,
        base: CoreConfig,
        *,
        name: str = "relapse_risk",
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        if poll_seconds <= 0:
            raise ValueError(f"poll_seconds is {poll_seconds!r}; accepted: a positive number")
        start = base.model or initial_version(
            INPUTS, name=name, horizon_days=base.risk.horizon_days
        )
        self.store, self.poll_seconds = store, poll_seconds
        self._latest = LatestModel(store, base.with_model(start), name)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.failures = 0

    def __call__(self) -> CoreConfig:
        """The configuration to score the next batch with (no I/O: a reference read)."""
        return self._latest.config

    @property
    def version(self) -> int:
        """The version scored with now."""
        model = self._latest.config.model
        return -1 if model is None else model.version

    def refresh(self) -> bool:
        """Look for a newer version now (in the caller's thread); whether one was found."""
        changed = self._latest.refresh()
        if changed:
            model = self._latest.config.model
            assert model is not None
            log.info(
                "scoring with %s version %d (trained until %s, %d labelled days)",
                model.name,
                model.version,
                model.trained_until.isoformat() if model.trained_until else "-",
                model.examples,
            )
        return changed

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
