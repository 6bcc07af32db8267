"""Model versions in the store: the archive of both kinds, and the versions live used, for replays.

The compacted models topic keeps only the newest version of each model, so
every version is also written to the ``model_versions`` table (migration
0008) before any worker can see it: the relapse-risk versions by ``psymon
trainer``, the population subgroup model versions by ``psymon subgroups
fit``. The table is keyed by model name, as the topic is: the two kinds
share one name space (``relapse_risk``, ``profile_mixture``), and a version
is told apart by its JSON (:func:`services.live_models.parse_snapshot`). A
subgroup version has no labelled days, so its ``positives`` column is 0.

A replay or a rebuild that must process as live did (:class:`AsLive`) reads
two things back per kind:

* the version live used for the outputs an input event caused: each stored
  :class:`~schemas.events.RiskAssessment` names its ``model_version``, each
  stored cluster :class:`~schemas.events.SubgroupAssigned` its ``version``,
  and both name the event that ``caused_by`` them;
* for an event that caused no such output (most events for the subgroup
  model, whose changes are rare), the version in force when it arrived: for
  the risk model the newest archived version trained until (at or before)
  its ``received_at`` (:meth:`~streams.models.snapshot.ModelTimeline.at`);
  for the subgroup model the newest fitted on events that all arrived
  strictly before it (a version's ``trained_until`` is the newest arrival it
  was fitted on, which live processed before the version existed), else
  ``base.subgroups``.

A worker processes a whole batch with one configuration, so an event's
outputs all name one version of each model; should an event have been
applied twice (a redelivery after a crash, before its state was saved) the
newest version named wins.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg

from services.live_models import SUBGROUP_MODEL, Snapshot, kind_of, parse_snapshot
from services.replay.query import InputEvent
from services.training import initial_version
from streams import CoreConfig
from streams.models.features import INPUTS
from streams.models.snapshot import ModelSnapshot, ModelTimeline
from streams.stratification.snapshot import SubgroupSnapshot

TABLE = "model_versions"


def archive_version(conn: psycopg.Connection[Any], snapshot: Snapshot) -> bool:
    """Write ``snapshot`` (either kind) to the archive (once: a version already there is kept).

    Returns whether a row was written. Commits when ``conn`` is not in autocommit mode.
    Raises ``ValueError`` when the name is already archived as the other kind
    (the models topic is keyed by name: one name, one kind).
    """
    check_name(conn, snapshot.name, kind_of(snapshot))
    cursor = conn.execute(
        f"INSERT INTO {TABLE} (model_name, version, trained_until, examples, positives, snapshot) "
        "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
        (
            snapshot.name,
            snapshot.version,
            snapshot.trained_until,
            snapshot.examples,
            getattr(snapshot, "positives", 0),  # a subgroup model learns no labels
            snapshot.model_dump_json(),
        ),
    )
    if not conn.autocommit:
        conn.commit()
    return cursor.rowcount == 1


def _select(conn: psycopg.Connection[Any], sql: str, params: tuple[Any, ...]) -> list[Any]:
    """Rows of a query on the archive; ``ValueError`` when the store predates migration 0008."""
    try:
        return conn.execute(sql, params).fetchall()
    except psycopg.errors.UndefinedTable:
        if not conn.autocommit:
            conn.rollback()
        raise ValueError(
            f"the store has no {TABLE} table; run `psymon db migrate` (migration 0008)"
        ) from None


def check_name(conn: psycopg.Connection[Any], name: str, kind: str) -> None:
    """Refuse ``name`` for a ``kind`` (``risk``/``subgroups``) when the other kind archived it."""
    rows = _select(conn, f"SELECT snapshot FROM {TABLE} WHERE model_name = %s LIMIT 1", (name,))
    if rows and (archived := kind_of(parse_snapshot(rows[0][0]))) != kind:
        raise ValueError(
            f"model name {name!r} is archived as a {archived} model; accepted: a name not "
            f"used by the other kind (the models topic keeps one version per name)"
        )


def _versions(conn: psycopg.Connection[Any], name: str, kind: str) -> list[Snapshot]:
    rows = _select(
        conn, f"SELECT snapshot FROM {TABLE} WHERE model_name = %s ORDER BY version", (name,)
    )
    found = [parse_snapshot(text) for (text,) in rows]
    wrong = [s.version for s in found if kind_of(s) != kind]
    if wrong:
        raise ValueError(
            f"the archived versions {wrong} of {name!r} are not {kind} model versions; "
            f"accepted: a {kind} model's name"
        )
    return found


def archived_versions(conn: psycopg.Connection[Any], name: str) -> list[ModelSnapshot]:
    """Every archived version of the relapse-risk model ``name``, oldest first.

    Raises ``ValueError`` when the table is missing (the store predates migration 0008).
    """
    return [s for s in _versions(conn, name, "risk") if isinstance(s, ModelSnapshot)]


def archived_subgroup_versions(
    conn: psycopg.Connection[Any], name: str = SUBGROUP_MODEL
) -> list[SubgroupSnapshot]:
    """Every archived version of the subgroup model ``name``, oldest first (as above)."""
    return [s for s in _versions(conn, name, "subgroups") if isinstance(s, SubgroupSnapshot)]


def newest_archived(conn: psycopg.Connection[Any], name: str) -> ModelSnapshot | None:
    """The newest archived version of the relapse-risk model ``name``, if any."""
    row = conn.execute(
        f"SELECT snapshot FROM {TABLE} WHERE model_name = %s ORDER BY version DESC LIMIT 1",
        (name,),
    ).fetchone()
    found = None if row is None else parse_snapshot(row[0])
    return found if isinstance(found, ModelSnapshot) else None


def newest_archived_subgroups(
    conn: psycopg.Connection[Any], name: str = SUBGROUP_MODEL
) -> SubgroupSnapshot | None:
    """The newest archived version of the subgroup model ``name``, if any (as above)."""
    rows = _select(
        conn,
        f"SELECT snapshot FROM {TABLE} WHERE model_name = %s ORDER BY version DESC LIMIT 1",
        (name,),
    )
    found = parse_snapshot(rows[0][0]) if rows else None
    return found if isinstance(found, SubgroupSnapshot) else None


def archive_signature(conn: psycopg.Connection[Any]) -> tuple[tuple[str, int], ...] | None:
    """The newest version archived per name (None: no archive table), to notice a new one."""
    try:
        rows = conn.execute(
            f"SELECT model_name, max(version) FROM {TABLE} GROUP BY model_name ORDER BY 1"
        ).fetchall()
    except psycopg.errors.UndefinedTable:
        if not conn.autocommit:
            conn.rollback()
        return None
    return tuple((name, version) for name, version in rows)


class SubgroupTimeline:
    """The archived versions of a subgroup model; ``at`` picks the one live had.

    A version's ``trained_until`` is the newest arrival among the events it
    was fitted on; live processed those events before the version existed,
    so it is in force only for events that arrived strictly later. Before
    the first version: ``None`` (the base configuration's subgroups).

    >>> from datetime import UTC, datetime
    >>> snap = SubgroupSnapshot(features=("crp_log",), centre=(0.0,), scale=(1.0,),
    ...     labels=("c1",), weights=(1.0,), means=((0.0,),), variances=((1.0,),),
    ...     descriptions=("all",), trained_until=datetime(2026, 3, 9, tzinfo=UTC))
    >>> timeline = SubgroupTimeline([snap])
    >>> timeline.at(datetime(2026, 3, 9, tzinfo=UTC)) is None
    True
    >>> timeline.at(datetime(2026, 3, 9, 0, 0, 1, tzinfo=UTC)).version
    0
    """

    def __init__(self, versions: Iterable[SubgroupSnapshot]) -> None:
        self.versions = tuple(sorted(versions, key=lambda s: s.version))
        self._moments = [
            -math.inf if s.trained_until is None else s.trained_until.timestamp()
            for s in self.versions
        ]
        if self._moments != sorted(self._moments):
            raise ValueError("a later subgroup version cannot have been trained until earlier")

    def at(self, moment: datetime) -> SubgroupSnapshot | None:
        """The newest version trained until strictly before ``moment``, else ``None``."""
        index = bisect_left(self._moments, moment.timestamp())
        return self.versions[index - 1] if index > 0 else None


class AsLive:
    """The configuration to process each input event with, so that it comes out as live did.

    Call it with each input event (patient by patient, as replays and
    rebuilds read them); it returns ``base`` with the relapse-risk model
    version and the subgroup model version live used for that event. It
    reads the archive once (:meth:`reload` reads it again) and each
    patient's assessments and cluster changes (``caused_by`` and the version
    named) when the patient comes up.

    Parameters
    ----------
    store
        The store: its URL (a connection of its own, closed by :meth:`close`)
        or an open autocommit connection (left open).
    base
        Every other setting (the live core configuration).
    name
        The relapse-risk model whose versions are looked up.
    subgroups_name
        The subgroup model whose versions are looked up.
    risk, subgroups
        Whether to choose that kind per event; ``False`` keeps ``base.model``
        (``base.subgroups``) throughout. A risk model with no archived
        version is version 0 throughout (a worker scores with it until a
        version arrives); a subgroup model with no archived version is
        ``base.subgroups`` throughout.
    """

    def __init__(
        self,
        store: str | psycopg.Connection[Any],
        base: CoreConfig,
        name: str = "relapse_risk",
        subgroups_name: str = SUBGROUP_MODEL,
        *,
        risk: bool = True,
        subgroups: bool = True,
    ) -> None:
        self.base, self.name, self.subgroups_name = base, name, subgroups_name
        self.risk, self.subgroups = risk, subgroups
        if isinstance(store, str):
            self._conn = psycopg.connect(store, autocommit=True, connect_timeout=10)
            self._owned = True
        else:
            self._conn, self._owned = store, False
        self.reload()

    def reload(self) -> None:
        """Read the archive again (versions archived since), and forget the patient read."""
        self.versions: dict[int, ModelSnapshot] = {}
        self.timeline: ModelTimeline | None = None
        if self.risk:
            stored = {s.version: s for s in archived_versions(self._conn, self.name)}
            # Version 0 is the same for every deployment: a worker scores with it before
            # any version reaches it, even when the trainer never archived one.
            stored.setdefault(
                0, initial_version(INPUTS, name=self.name, horizon_days=self.base.risk.horizon_days)
            )
            self.versions = stored
            self.timeline = ModelTimeline.of(stored.values())
        self.subgroup_versions: dict[int, SubgroupSnapshot] = {}
        if self.subgroups:
            found = archived_subgroup_versions(self._conn, self.subgroups_name)
            self.subgroup_versions = {s.version: s for s in found}
        self.subgroup_timeline = SubgroupTimeline(self.subgroup_versions.values())
        self._configs: dict[tuple[int | None, int | None], CoreConfig] = {}
        self.forget()

    def forget(self) -> None:
        """Read the next patient's outputs afresh (a rebuild: the store has more of them now)."""
        self._patient: str | None = None
        self._used: dict[UUID, int] = {}
        self._used_subgroups: dict[UUID, int] = {}

    def __call__(self, event: InputEvent) -> CoreConfig:
        """``base`` with the versions live used for ``event``."""
        if event.patient_id != self._patient:
            self._patient = event.patient_id
            self._used = self._versions_used(event.patient_id)
            self._used_subgroups = self._subgroup_versions_used(event.patient_id)
        version: int | None = None
        if self.timeline is not None:
            version = self._used.get(event.event_id)
            if version is None:
                version = self.timeline.at(event.received_at).version
        subgroups: int | None = None
        if self.subgroup_versions:
            subgroups = self._used_subgroups.get(event.event_id)
            if subgroups is None:
                in_force = self.subgroup_timeline.at(event.received_at)
                subgroups = None if in_force is None else in_force.version
        return self._config(version, subgroups)

    def _versions_used(self, patient: str) -> dict[UUID, int]:
        used: dict[UUID, int] = {}
        if self.timeline is None:
            return used
        rows = self._conn.execute(
            "SELECT caused_by, model_version FROM risk_assessments "
            "WHERE patient_id = %s AND model_name = %s",
            (patient, self.name),
        )
        for caused_by, version in rows:
            used[caused_by] = max(version, used.get(caused_by, version))
        return used

    def _subgroup_versions_used(self, patient: str) -> dict[UUID, int]:
        used: dict[UUID, int] = {}
        if not self.subgroup_versions:
            return used
        rows = self._conn.execute(
            "SELECT caused_by, version FROM subgroup_assignments "
            "WHERE patient_id = %s AND scheme = 'cluster' AND scheme_name = %s",
            (patient, self.subgroups_name),
        )
        for caused_by, text in rows:
            if not text.isdigit():  # the core writes str(version): anything else is not ours
                raise ValueError(
                    f"a stored cluster change of {self.subgroups_name} names version {text!r}; "
                    "accepted: a version number"
                )
            version = int(text)
            used[caused_by] = max(version, used.get(caused_by, version))
        return used

    def _config(self, version: int | None, subgroups: int | None) -> CoreConfig:
        config = self._configs.get((version, subgroups))
        if config is not None:
            return config
        config = self.base
        if version is not None:
            snapshot = self.versions.get(version)
            if snapshot is None:
                raise ValueError(
                    f"stored assessments name {self.name} version {version}, which is not in "
                    f"the store's {TABLE} table; the trainer archives every version it "
                    "publishes: was this store's trainer run without PSYMON_DATABASE_URL?"
                )
            config = config.with_model(snapshot)
        if subgroups is not None:
            model = self.subgroup_versions.get(subgroups)
            started = self.base.subgroups  # the version a worker starts with, if configured
            if model is None and started is not None and started.version == subgroups:
                model = started
            if model is None:
                raise ValueError(
                    f"stored subgroup changes name {self.subgroups_name} version {subgroups}, "
                    f"which is not in the store's {TABLE} table; `psymon subgroups fit` "
                    "archives every version it publishes: was it fitted on another store?"
                )
            config = config.with_subgroups(model)
        self._configs[(version, subgroups)] = config
        return config

    def close(self) -> None:
        """Close the connection (when opened here)."""
        if self._owned:
            self._conn.close()

    def __enter__(self) -> AsLive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
