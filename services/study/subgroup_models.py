"""Numbered versions of the population subgroup model: fit from the store, publish, follow.

The core assigns clusters with whichever
:class:`~streams.stratification.snapshot.SubgroupSnapshot` it is given in
``CoreConfig.subgroups``. Like the relapse-risk model
(:class:`services.training.FileModelStore`), versions are published as one
JSON file each, ``<name>.v<version>.json``, in a models directory (by default
``PSYMON_DATA_DIR/models``, the risk model's directory: the names differ, so
the files do not collide):

* :func:`fit_from_store` replays the stored input events through the pure
  core (the same code as live), takes every patient's biomarker profile,
  fits the next version (:func:`~services.study.subgroups.fit_subgroups`,
  labels matched to the newest version published or archived), writes it to
  the directory, archives it in the store's ``model_versions`` table
  (:func:`services.model_versions.archive_version`) and then, given
  ``publish`` (``psymon subgroups fit`` passes the models topic's
  :meth:`~services.live_models.TopicModelStore.publish`), publishes it to
  ``psymon.models.v1`` under its own name, where every worker's
  :class:`~services.live_models.LiveModels` picks it up. Archived before
  published, as the trainer does: a replay or a rebuild must find every
  version a worker may have used. The run is recorded in the store's
  ``audit_log`` as a ``study``.
* :class:`LatestSubgroups` is a view of the newest version in a directory:
  :meth:`~LatestSubgroups.refresh` re-reads it and swaps
  ``config.with_subgroups(...)`` when a newer version is there.

A version's ``trained_until`` is the latest arrival (``received_at``) among
the events it was fitted on: a replay or rebuild that switches versions as
live did (:class:`services.model_versions.AsLive`) switches after it.

>>> import tempfile
>>> from streams import CoreConfig
>>> store = SubgroupModelStore(tempfile.mkdtemp())
>>> snap = SubgroupSnapshot(features=("crp_log",), centre=(0.0,), scale=(1.0,),
...     labels=("c1", "c2"), weights=(0.5, 0.5), means=((-1.0,), (1.0,)),
...     variances=((0.5,), (0.5,)), descriptions=("a", "b"))
>>> latest = LatestSubgroups(store, CoreConfig())
>>> latest.refresh(), latest.config.subgroups is None
(False, True)
>>> store.publish(snap).name
'profile_mixture.v000000.json'
>>> latest.refresh(), latest.config.subgroups.version, latest.refresh()
(True, 0, False)
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psycopg

from services.live_models import SUBGROUP_MODEL
from services.model_versions import archive_version, check_name, newest_archived_subgroups
from services.replay.audit import audit_finished, audit_started, describe_error, require_audit_log
from services.replay.engine import run_core
from services.replay.provenance import code_version, code_version_text
from services.replay.query import EventQuery, InputEvent, read_input_events
from services.study.subgroups import fit_subgroups, profile_vectors
from streams import CoreConfig, PatientState
from streams.stratification.snapshot import SubgroupSnapshot

#: The default model name (``SubgroupSnapshot.name``), the one workers follow.
DEFAULT_NAME = SUBGROUP_MODEL


class SubgroupModelStore:
    """One JSON file per version, ``<name>.v<version>.json``, written atomically.

    The same layout as :class:`services.training.FileModelStore`, for
    :class:`~streams.stratification.snapshot.SubgroupSnapshot` versions.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def path(self, name: str, version: int) -> Path:
        """Where version ``version`` of ``name`` is (or would be) published."""
        return self.directory / f"{name}.v{version:06d}.json"

    def publish(self, snapshot: SubgroupSnapshot) -> Path:
        """Write ``snapshot`` (an existing file of the same version is left alone)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        target = self.path(snapshot.name, snapshot.version)
        if target.exists():
            return target
        handle, temporary = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(snapshot.model_dump_json(indent=1))
        os.replace(temporary, target)
        return target

    def _paths(self, name: str) -> list[Path]:
        return sorted(self.directory.glob(f"{name}.v[0-9]*.json"))

    def versions(self, name: str = DEFAULT_NAME) -> list[SubgroupSnapshot]:
        """Every published version of ``name``, oldest first."""
        return [_read(p) for p in self._paths(name)]

    def latest(self, name: str = DEFAULT_NAME) -> SubgroupSnapshot | None:
        """The newest version of ``name`` (reads one file), or None."""
        paths = self._paths(name)
        return _read(paths[-1]) if paths else None


def _read(path: Path) -> SubgroupSnapshot:
    try:
        return SubgroupSnapshot.model_validate_json(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise ValueError(f"subgroup model {path}: not a valid SubgroupSnapshot ({error})") from None


class LatestSubgroups:
    """A worker's view of the newest subgroup model version; ``refresh`` re-reads the store.

    The counterpart of :class:`services.training.LatestModel` for
    ``CoreConfig.subgroups``: a version is taken only when its number is above
    the one in use, so a refresh never moves a worker back.
    """

    def __init__(
        self, store: SubgroupModelStore, base: CoreConfig, name: str = DEFAULT_NAME
    ) -> None:
        self.store, self.name = store, name
        self.config = base

    def refresh(self) -> bool:
        """Load a newer version if one was published; whether the configuration changed."""
        newest = self.store.latest(self.name)
        current = self.config.subgroups
        if newest is None or (current is not None and newest.version <= current.version):
            return False
        self.config = self.config.with_subgroups(newest)
        return True


@dataclass(frozen=True)
class FitReport:
    """What :func:`fit_from_store` did: the version published, where, from how much.

    ``archived``: whether the store's archive got a new row (False: that
    version was there already); ``published``: whether it was sent to the
    models topic.
    """

    snapshot: SubgroupSnapshot
    path: Path
    patients: int
    profiles_used: int
    events: int
    sha256: str
    archived: bool = False
    published: bool = False


def fit_from_store(
    url: str,
    models_dir: Path,
    *,
    config: CoreConfig | None = None,
    until: datetime | None = None,
    name: str = DEFAULT_NAME,
    k: int | None = None,
    max_k: int = 4,
    features: Sequence[str] | None = None,
    min_features: int = 1,
    seed: int = 0,
    who: str = "python",
    publish: Callable[[SubgroupSnapshot], None] | None = None,
) -> FitReport:
    """Fit the next subgroup model version from the stored history and publish it.

    Parameters
    ----------
    url
        A migrated psymon store.
    models_dir
        The models directory (:class:`SubgroupModelStore`); the newest version
        of ``name`` there or in the store's archive is the previous one
        (numbering, label matching).
    config
        The core configuration live runs with (its ``stratification`` section
        shapes the profiles); default ``CoreConfig()``.
    until
        Use only events observed before this time (default: all).
    k, max_k, features, min_features, seed
        As :func:`~services.study.subgroups.fit_subgroups`.
    who
        Who fits, for the audit log.
    publish
        Where to publish the version once archived (the models topic:
        :meth:`services.live_models.TopicModelStore.publish`); ``None``: the
        directory and the archive only (no worker sees it).
    """
    core_config = config if config is not None else CoreConfig()
    store = SubgroupModelStore(models_dir)
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        check_name(conn, name, "subgroups")  # also: the store has the archive (0008)
        archived = newest_archived_subgroups(conn, name)
    in_directory = store.latest(name)
    previous = max(
        (s for s in (in_directory, archived) if s is not None),
        key=lambda s: s.version,
        default=None,
    )
    query = EventQuery(until=until)
    parameters = {
        "task": "subgroups fit",
        "query": query.as_dict(),
        "name": name,
        "previous_version": None if previous is None else previous.version,
        "k": k,
        "max_k": max_k,
        "features": None if features is None else list(features),
        "min_features": min_features,
        "seed": seed,
        "models_dir": str(Path(models_dir).resolve()),
        "publish": publish is not None,
    }
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        require_audit_log(conn)
        audit_id = audit_started(
            conn,
            "study",
            who,
            parameters,
            code_version=code_version_text(code_version()),
            config_version=core_config.version,
        )
        counts = {"input_events": 0}
        try:
            states, newest = _final_states(url, query, core_config, counts)
            profiles = {p: s.strata.profile for p, s in states.items() if s.strata is not None}
            vectors = profile_vectors(profiles, core_config.stratification)
            usable = [v for v in vectors.values() if len(v) >= min_features]
            if not usable:
                raise ValueError(
                    f"no stored patient has a biomarker profile with >= {min_features} "
                    "feature(s) yet; accepted: a store holding ratings, labs or wearable days"
                )
            snapshot = fit_subgroups(
                usable,
                k=k,
                max_k=max_k,
                name=name,
                previous=previous,
                trained_until=newest,
                features=features,
                seed=seed,
            )
            path = store.publish(snapshot)
            added = archive_version(conn, snapshot)
            if publish is not None:
                publish(snapshot)
            counts |= {"patients": len(states), "profiles_used": len(usable)}
        except BaseException as error:
            audit_finished(conn, audit_id, row_counts=counts, error=describe_error(error))
            raise
        sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
        audit_finished(conn, audit_id, row_counts=counts, manifest_sha256=sha256)
    return FitReport(
        snapshot,
        path,
        len(states),
        len(usable),
        counts["input_events"],
        sha256,
        archived=added,
        published=publish is not None,
    )


def _final_states(
    url: str, query: EventQuery, config: CoreConfig, counts: dict[str, int]
) -> tuple[dict[str, PatientState], datetime | None]:
    """Every patient's state after the selected events, and the latest arrival among them."""
    states: dict[str, PatientState] = {}
    newest: datetime | None = None

    def counted(events: Iterable[InputEvent]) -> Iterator[InputEvent]:
        nonlocal newest
        for event in events:
            counts["input_events"] += 1
            if newest is None or event.received_at > newest:
                newest = event.received_at
            yield event

    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        events = read_input_events(conn, query)
        try:
            for _ in run_core(counted(events), config, states):
                pass
        finally:
            events.close()
    return states, newest


__all__ = [
    "DEFAULT_NAME",
    "FitReport",
    "LatestSubgroups",
    "SubgroupModelStore",
    "fit_from_store",
]
