"""Model versions in the store: the trainer's archive, and the versions live used, for replays.

The compacted models topic keeps only the newest version of each model, so
the trainer also writes every version to the ``model_versions`` table
(migration 0008) before any worker can see it. A replay that must score as
live did (:class:`AsLive`) reads two things back:

* the version live used for the assessments an input event caused: each
  stored :class:`~schemas.events.RiskAssessment` names its ``model_version``
  and the event that ``caused_by`` it;
* for an event that caused no stored assessment, the version in force when
  it arrived (:meth:`~streams.models.snapshot.ModelTimeline.at` its
  ``received_at``).

A worker scores a whole batch with one configuration, so an event's
assessments all name one version; should an event have been applied twice
(a redelivery after a crash, before its state was saved) the newest version
named wins.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import psycopg

from services.replay.query import InputEvent
from services.training import initial_version
from streams import CoreConfig
from streams.models.features import INPUTS
from streams.models.snapshot import ModelSnapshot, ModelTimeline

TABLE = "model_versions"


def archive_version(conn: psycopg.Connection[Any], snapshot: ModelSnapshot) -> bool:
    """Write ``snapshot`` to the archive (once: a version already there is left alone).

    Returns whether a row was written. Commits when ``conn`` is not in autocommit mode.
    """
    cursor = conn.execute(
        f"INSERT INTO {TABLE} (model_name, version, trained_until, examples, positives, snapshot) "
        "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
        (
            snapshot.name,
            snapshot.version,
            snapshot.trained_until,
            snapshot.examples,
            snapshot.positives,
            snapshot.model_dump_json(),
        ),
    )
    if not conn.autocommit:
        conn.commit()
    return cursor.rowcount == 1


def archived_versions(conn: psycopg.Connection[Any], name: str) -> list[ModelSnapshot]:
    """Every archived version of ``name``, oldest first.

    Raises ``ValueError`` when the table is missing (the store predates migration 0008).
    """
    try:
        rows = conn.execute(
            f"SELECT snapshot FROM {TABLE} WHERE model_name = %s ORDER BY version", (name,)
        ).fetchall()
    except psycopg.errors.UndefinedTable:
        if not conn.autocommit:
            conn.rollback()
        raise ValueError(
            f"the store has no {TABLE} table; run `psymon db migrate` (migration 0008)"
        ) from None
    return [ModelSnapshot.model_validate_json(text) for (text,) in rows]


def newest_archived(conn: psycopg.Connection[Any], name: str) -> ModelSnapshot | None:
    """The newest archived version of ``name``, if any."""
    row = conn.execute(
        f"SELECT snapshot FROM {TABLE} WHERE model_name = %s ORDER BY version DESC LIMIT 1",
        (name,),
    ).fetchone()
    return None if row is None else ModelSnapshot.model_validate_json(row[0])


class AsLive:
    """The configuration to replay each input event with, so that it scores as live did.

    Call it with each input event (patient by patient, as replays read them);
    it returns ``base`` with the model version live used for that event. One
    connection of its own reads the archive once and each patient's
    assessments (``caused_by``, ``model_version``) when the patient comes up.

    Parameters
    ----------
    url
        The store.
    base
        Every setting but the model (the live core configuration).
    name
        The model whose versions are looked up.
    """

    def __init__(self, url: str, base: CoreConfig, name: str = "relapse_risk") -> None:
        self.base, self.name = base, name
        self._conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
        stored = {s.version: s for s in archived_versions(self._conn, name)}
        # Version 0 is the same for every deployment: a worker scores with it before
        # any version reaches it, even when the trainer never archived one.
        stored.setdefault(
            0, initial_version(INPUTS, name=name, horizon_days=base.risk.horizon_days)
        )
        self.versions = stored
        self.timeline = ModelTimeline.of(stored.values())
        self._configs: dict[int, CoreConfig] = {}
        self._patient: str | None = None
        self._used: dict[UUID, int] = {}

    def __call__(self, event: InputEvent) -> CoreConfig:
        """``base`` with the version live used for ``event``."""
        if event.patient_id != self._patient:
            self._patient = event.patient_id
            self._used = self._versions_used(event.patient_id)
        version = self._used.get(event.event_id)
        if version is None:
            version = self.timeline.at(event.received_at).version
        return self._config(version)

    def _versions_used(self, patient: str) -> dict[UUID, int]:
        used: dict[UUID, int] = {}
        rows = self._conn.execute(
            "SELECT caused_by, model_version FROM risk_assessments "
            "WHERE patient_id = %s AND model_name = %s",
            (patient, self.name),
        )
        for caused_by, version in rows:
            used[caused_by] = max(version, used.get(caused_by, version))
        return used

    def _config(self, version: int) -> CoreConfig:
        config = self._configs.get(version)
        if config is None:
            snapshot = self.versions.get(version)
            if snapshot is None:
                raise ValueError(
                    f"stored assessments name {self.name} version {version}, which is not in "
                    f"the store's {TABLE} table; the trainer archives every version it "
                    "publishes: was this store's trainer run without PSYMON_DATABASE_URL?"
                )
            config = self._configs[version] = self.base.with_model(snapshot)
        return config

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def __enter__(self) -> AsLive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
