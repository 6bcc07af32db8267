"""The relapse-risk trainer: learns the population model from delayed labels, publishes versions.

The pure core scores each patient-day with the model version it was given
(``CoreConfig.model``) and emits a :class:`~schemas.events.RiskAssessment`
that lists every model input. The trainer reads those assessments and the
clinical outcomes, both in ``received_at`` order (the order psymon learnt of
them), and

1. holds each assessed day until its label is known
   (:class:`~streams.models.labels.DelayedLabeller`: a relapse, recurrence or
   hospitalisation onset within the horizon, known from the outcome's
   ``received_at`` on, never before);
2. learns each labelled day once (:class:`~streams.models.logistic.OnlineLogistic`);
3. every ``publish_every`` of event time, freezes the learner into the next
   numbered :class:`~streams.models.snapshot.ModelSnapshot` and publishes it
   to a :class:`ModelStore`.

Workers poll the store (:class:`LatestModel`) and score with the newest
version they have; each assessment names its version, and a replay that
switches versions at the same moments (``ModelTimeline``) reproduces them.

Live, :mod:`services.trainer` runs one :class:`Trainer` as the only learner
(a consumer of ``psymon.risk.v1`` and ``psymon.clinical-outcomes.v1``): it
archives every version and publishes it to the compacted topic
:data:`MODELS_TOPIC`; each stream worker polls that topic
(:mod:`services.live_models`) and scores with the newest version it has.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

from schemas.envelope import utc
from schemas.events import ClinicalOutcome, RiskAssessment
from schemas.topics import MODELS
from streams.config import CoreConfig
from streams.models.features import INPUTS
from streams.models.labels import DelayedLabeller, Labelled
from streams.models.logistic import OnlineLogistic
from streams.models.snapshot import ModelSnapshot, ModelTimeline
from streams.ordering import micros

#: The compacted topic model versions can be published to (key: model name).
MODELS_TOPIC = MODELS
#: Outcomes whose ``observed_at`` is an onset the model learns to anticipate.
ONSET_OUTCOMES = frozenset({"relapse", "recurrence", "hospitalisation"})
_DAY_US = 86_400_000_000


class ModelStore(Protocol):
    """Where model versions are published and where workers find the latest."""

    def publish(self, snapshot: ModelSnapshot) -> None:
        """Make ``snapshot`` available to workers."""

    def latest(self, name: str) -> ModelSnapshot | None:
        """The newest published version of ``name``, if any."""


class MemoryModelStore:
    """Versions kept in a list (tests, the evaluation)."""

    def __init__(self) -> None:
        self.published: list[ModelSnapshot] = []

    def publish(self, snapshot: ModelSnapshot) -> None:
        """Append ``snapshot``."""
        self.published.append(snapshot)

    def latest(self, name: str) -> ModelSnapshot | None:
        """The newest version of ``name``."""
        versions = [s for s in self.published if s.name == name]
        return max(versions, key=lambda s: s.version) if versions else None


class FileModelStore:
    """One JSON file per version, ``<name>.v<version>.json``, written atomically.

    >>> import tempfile
    >>> store = FileModelStore(tempfile.mkdtemp())
    >>> store.publish(ModelSnapshot.initial(INPUTS))
    >>> store.latest("relapse_risk").version, [s.version for s in store.versions("relapse_risk")]
    (0, [0])
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def _path(self, name: str, version: int) -> Path:
        return self.directory / f"{name}.v{version:06d}.json"

    def publish(self, snapshot: ModelSnapshot) -> None:
        """Write ``snapshot``; an existing file of the same version is left alone."""
        self.directory.mkdir(parents=True, exist_ok=True)
        target = self._path(snapshot.name, snapshot.version)
        if target.exists():
            return
        handle, temporary = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(snapshot.model_dump_json(indent=1))
        os.replace(temporary, target)

    def versions(self, name: str) -> list[ModelSnapshot]:
        """Every published version of ``name``, oldest first."""
        paths = sorted(self.directory.glob(f"{name}.v*.json"))
        return [ModelSnapshot.model_validate_json(p.read_text(encoding="utf-8")) for p in paths]

    def latest(self, name: str) -> ModelSnapshot | None:
        """The newest version of ``name`` (reads one file)."""
        paths = sorted(self.directory.glob(f"{name}.v*.json"))
        if not paths:
            return None
        return ModelSnapshot.model_validate_json(paths[-1].read_text(encoding="utf-8"))

    def timeline(self, name: str) -> ModelTimeline:
        """The versions of ``name`` as a timeline for replays."""
        return ModelTimeline.of(self.versions(name))


class Producer(Protocol):
    """The part of a kafka-python ``KafkaProducer`` used to publish a version."""

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> object:
        """Send one record."""


def publish_to_topic(
    producer: Producer, snapshot: ModelSnapshot, topic: str = MODELS_TOPIC
) -> None:
    """Publish ``snapshot`` to the compacted models topic, keyed by model name.

    Compaction keeps the newest version per model; keep every version (for
    replays) in a :class:`FileModelStore` or the store's table as well.
    """
    producer.send(topic, value=snapshot.model_dump_json().encode(), key=snapshot.name.encode())


class LatestModel:
    """A worker's view of the newest model version: ``refresh`` re-reads the store.

    >>> store = MemoryModelStore()
    >>> latest = LatestModel(store, CoreConfig())
    >>> latest.config.model is None
    True
    >>> store.publish(ModelSnapshot.initial(INPUTS))
    >>> latest.refresh(), latest.config.model.version
    (True, 0)
    """

    def __init__(self, store: ModelStore, base: CoreConfig, name: str = "relapse_risk") -> None:
        self.store, self.name = store, name
        self.config = base

    def refresh(self) -> bool:
        """Load a newer version if one was published; whether the configuration changed."""
        newest = self.store.latest(self.name)
        current = self.config.model
        if newest is None or (current is not None and newest.version <= current.version):
            return False
        self.config = self.config.with_model(newest)
        return True


class Trainer:
    """Learns the population model from assessments and outcomes in ``received_at`` order.

    Parameters
    ----------
    name, features, horizon_days
        The model trained: its name, inputs (model order) and horizon.
    grace_days
        How long after the horizon a day waits for a late outcome before it is
        learnt as negative (the simulator records relapses a median ~2 weeks
        after onset).
    refractory_days
        Days after a known onset that are not learnt from (ill or recovering,
        not at risk of a new onset).
    publish_every
        Event time between published versions.
    learner
        The learner to update (default: :class:`OnlineLogistic` over ``features``).
    store
        Where versions go (default: kept in memory, see :attr:`published`).
    record
        Keep every labelled day learnt, in order, in :attr:`learned` (audits,
        tests; a long-running trainer leaves it off).
    min_positives, min_negatives
        A trained version is published only once the learner has learnt at
        least this many positive and negative days. Until then workers keep
        scoring with the version before (version 0: a constant prior that
        raises no alert). A few labelled days make a noisy model; every day
        is learnt only once its label is final (horizon + grace after it),
        so positives and negatives of the same days arrive together
        (:mod:`streams.models.labels`).
    resume
        Continue the numbering after this published version instead of
        publishing version 0 (a trainer that lost its checkpoint, rebuilt
        from the history still on the broker): nothing is published until
        the clock has passed its ``trained_until``, so versions stay ordered
        in time as :class:`~streams.models.snapshot.ModelTimeline` requires.
    """

    def __init__(
        self,
        *,
        name: str = "relapse_risk",
        features: Sequence[str] = INPUTS,
        horizon_days: int = 28,
        grace_days: int = 28,
        refractory_days: int = 56,
        publish_every: timedelta = timedelta(days=7),
        learner: OnlineLogistic | None = None,
        store: ModelStore | None = None,
        record: bool = False,
        min_positives: int = 0,
        min_negatives: int = 0,
        resume: ModelSnapshot | None = None,
    ) -> None:
        self.name, self.features, self.horizon_days = name, tuple(features), horizon_days
        self.learner = learner or OnlineLogistic(self.features)
        if self.learner.features != self.features:
            raise ValueError("the learner's features must be the trainer's features, in order")
        self.labeller = DelayedLabeller(
            horizon=horizon_days * _DAY_US,
            grace=grace_days * _DAY_US,
            refractory=refractory_days * _DAY_US,
        )
        self.publish_every = publish_every
        self.store: ModelStore = store or MemoryModelStore()
        self.clock: datetime | None = None
        self.next_publish: datetime | None = None
        self.record = record
        self.learned: list[Labelled] = []
        self.published: list[ModelSnapshot] = []
        if min_positives < 0 or min_negatives < 0:
            raise ValueError(
                f"min_positives ({min_positives}) and min_negatives ({min_negatives}) must be >= 0"
            )
        self.min_positives, self.min_negatives = min_positives, min_negatives
        #: Labelled days the learner had seen at the last version published.
        self.seen_at_publish = 0
        if resume is None:
            self._publish(initial_version(self.features, name=name, horizon_days=horizon_days))
        elif resume.name != name or resume.features != self.features:
            raise ValueError(
                f"cannot resume after {resume.name} v{resume.version}: the trainer trains "
                f"{name!r} on {len(self.features)} inputs, the version has "
                f"{len(resume.features)} (another model or another feature set)"
            )
        else:
            self.published.append(resume)

    def __getstate__(self) -> dict[str, object]:
        """Pickle everything but the store (a producer or a connection does not pickle).

        A trainer loaded from a checkpoint publishes to an in-memory store until
        its owner sets :attr:`store`.
        """
        state = dict(self.__dict__)
        state["store"] = None
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self.store = MemoryModelStore()

    @property
    def latest(self) -> ModelSnapshot:
        """The newest published version."""
        return self.published[-1]

    def _publish(self, snapshot: ModelSnapshot) -> None:
        self.published.append(snapshot)
        self.store.publish(snapshot)

    def observe(
        self, event: RiskAssessment | ClinicalOutcome, at: datetime | None = None
    ) -> list[ModelSnapshot]:
        """Take in one event (in ``received_at`` order); the versions published meanwhile.

        ``at`` is when the trainer learnt of the event, if later than its
        ``received_at`` (an event that reached the trainer after later ones
        were learnt from): an outcome then counts from ``at`` on, never earlier.
        """
        moment = utc(event.received_at) if at is None else max(utc(at), utc(event.received_at))
        if isinstance(event, RiskAssessment):
            if event.model_name == self.name:
                values = {c.feature: c.value for c in event.contributions}
                x = tuple(values.get(f, math.nan) for f in self.features)
                self.labeller.add_snapshot(event.patient_id, micros(event.observed_at), x)
        elif event.outcome in ONSET_OUTCOMES:
            self.labeller.add_outcome(
                event.patient_id,
                onset=micros(event.observed_at),
                received=micros(moment),
            )
        return self.advance(moment)

    def advance(self, moment: datetime) -> list[ModelSnapshot]:
        """Move the clock to ``moment``: learn every label now known, publish when due."""
        moment = utc(moment)
        if self.clock is not None and moment < self.clock:
            raise ValueError(
                f"the trainer reads events in received_at order; got {moment.isoformat()} "
                f"after {self.clock.isoformat()}"
            )
        if self.next_publish is None:
            self.next_publish = moment + self.publish_every
        self.clock = moment
        for labelled in self.labeller.release(micros(moment)):
            x = {f: v for f, v in zip(self.features, labelled.x, strict=True) if not math.isnan(v)}
            self.learner.learn_one(x, labelled.label)
            if self.record:
                self.learned.append(labelled)
        published: list[ModelSnapshot] = []
        while moment >= self.next_publish:
            if self._may_publish(moment):
                published.append(self._next_version(moment))
            self.next_publish += self.publish_every
        return published

    def _may_publish(self, moment: datetime) -> bool:
        """Something new was learnt, enough of each label, and time runs forward."""
        learner, latest = self.learner, self.latest
        return (
            learner.seen > self.seen_at_publish
            and learner.positives >= self.min_positives
            and learner.seen - learner.positives >= self.min_negatives
            and (latest.trained_until is None or moment >= latest.trained_until)
        )

    def _next_version(self, moment: datetime) -> ModelSnapshot:
        snapshot = self.learner.snapshot(
            name=self.name,
            version=self.latest.version + 1,
            horizon_days=self.horizon_days,
            trained_until=moment,
        )
        self.seen_at_publish = self.learner.seen
        self._publish(snapshot)
        return snapshot

    def timeline(self) -> ModelTimeline:
        """Every version published so far."""
        return ModelTimeline.of(self.published)

    def final(self, moment: datetime | None = None) -> ModelSnapshot:
        """Publish what has been learnt up to ``moment`` (default: the clock) as a new version."""
        if moment is not None:
            self.advance(moment)
        latest = self.latest
        if (
            self.clock is None
            or self.learner.seen == self.seen_at_publish
            or (latest.trained_until is not None and self.clock < latest.trained_until)
        ):
            return latest
        return self._next_version(self.clock)


def initial_version(
    features: Sequence[str] = INPUTS, *, name: str = "relapse_risk", horizon_days: int = 28
) -> ModelSnapshot:
    """Version 0 of a model: what a worker scores with before any version reaches it.

    The trainer publishes the same version 0, so a replay finds it either way.
    Its constant prior (5 %) lies below the default alert threshold: it raises
    no ``relapse_risk`` alert.

    >>> initial_version().version, round(initial_version().predict_proba_one({}), 2)
    (0, 0.05)
    """
    return ModelSnapshot.initial(features, name=name, horizon_days=horizon_days)


def train(
    events: Iterable[RiskAssessment | ClinicalOutcome],
    *,
    until: datetime | None = None,
    trainer: Trainer | None = None,
) -> Trainer:
    """Feed ``events`` (any order: sorted here by ``received_at``) to a trainer, up to ``until``.

    Events received after ``until`` are not read: what the trainer knows at
    ``until`` is what had arrived by then.
    """
    trainer = trainer or Trainer()
    ordered = sorted(events, key=lambda e: (utc(e.received_at), e.kind, str(e.event_id)))
    for event in ordered:
        if until is not None and utc(event.received_at) > utc(until):
            break
        trainer.observe(event)
    if until is not None:
        trainer.advance(until)
    return trainer


def snapshot_summary(snapshot: ModelSnapshot) -> str:
    """A one-line JSON summary of a version (no weights): for logs and the CLI."""
    return json.dumps(
        {
            "name": snapshot.name,
            "version": snapshot.version,
            "examples": snapshot.examples,
            "positives": snapshot.positives,
            "trained_until": None
            if snapshot.trained_until is None
            else snapshot.trained_until.isoformat(),
        }
    )
