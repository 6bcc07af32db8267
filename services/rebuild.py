"""Rebuild a patient's state from the store when the stream worker has lost it.

The worker keeps patient states in a faust table backed by a changelog topic.
When the table has no entry for a patient that the store knows (a new
machine, the embedded memory broker restarted, the changelog expired), the
worker calls :meth:`StateRebuilder.rebuild` before applying the patient's
next event: the stored input events of that patient go through the same pure
core, in arrival order (:mod:`services.replay.query`), and the state that
comes out is the one the worker had, except for
``counters.duplicates``: the store keeps each event once, so re-deliveries the
worker counted are not there to count.

Only events that arrived before the event about to be applied are used
(``before``): the sink may already have stored that event, and events of the
patient still in flight behind it, and applying them twice would drop their
outputs as duplicates.

Live workers follow the model versions published on the models topic
(:mod:`services.live_models`): the relapse-risk model (whose assessments
feed the ``relapse_risk`` alert's run of high-risk days) and the population
subgroup model (whose clusters, with hysteresis, are part of the state).
Replaying with the base configuration would restart both from scratch, so
when the store archives versions (``model_versions``, migration 0008) the
rebuild processes each event with the versions live used for it
(:class:`services.model_versions.AsLive`: the version its stored outputs
name, else the version in force when it arrived), as ``psymon replay
--models as-live`` does; a kind with no archived version keeps the base
configuration's (``models="auto"``, the default of :class:`StateRebuilder`).

It is blocking I/O: the faust agent runs it in a thread executor.

>>> callable(rebuild_state) and callable(StateRebuilder)
True
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

import psycopg

from services.live_models import SUBGROUP_MODEL
from services.model_versions import AsLive, archive_signature
from services.replay.engine import run_core
from services.replay.query import EventQuery, InputEvent, read_input_events
from streams import CoreConfig, PatientState

log = logging.getLogger("psymon.rebuild")

#: ``config``: the given configuration for every event; ``as-live``: the versions live
#: used (:class:`~services.model_versions.AsLive`); ``auto``: ``as-live`` for each kind
#: of model the store archives versions of, ``config`` for the others.
Models = Literal["config", "as-live", "auto"]
MODEL_CHOICES: tuple[Models, ...] = ("config", "as-live", "auto")

#: The relapse-risk model a worker follows (``services.live_models.LiveModels``).
RISK_MODEL = "relapse_risk"
#: Not yet looked at the archive (a signature is a tuple, or None without the table).
_UNREAD = object()


def rebuild_state(
    conn_or_url: psycopg.Connection[Any] | str,
    patient_id: str,
    config: CoreConfig | None = None,
    *,
    before: InputEvent | None = None,
    models: Models = "config",
) -> PatientState:
    """The state of ``patient_id`` after all their stored input events.

    Parameters
    ----------
    conn_or_url
        A connection to the store (left open) or its URL.
    patient_id
        The patient's pseudonym.
    config
        The configuration the live worker runs with; default ``CoreConfig()``.
    before
        Use only the events that arrived before this one (arrival order:
        ``received_at``, ``observed_at``, ``event_id``).
    models
        ``config`` (the default here): ``config`` for every event;
        ``as-live``: the versions live used for each event; ``auto``:
        ``as-live`` for each kind the store archives versions of.

    Returns
    -------
    PatientState
        ``PatientState(patient_id=patient_id)`` when the store has no event
        of the patient.
    """
    if models not in MODEL_CHOICES:
        raise ValueError(f"models is {models!r}; accepted: {', '.join(MODEL_CHOICES)}")
    if isinstance(conn_or_url, str):
        with psycopg.connect(conn_or_url, autocommit=True, connect_timeout=10) as conn:
            return rebuild_state(conn, patient_id, config, before=before, models=models)
    base = config if config is not None else CoreConfig()
    as_live = _as_live(conn_or_url, base, models)
    state, _ = _rebuild(conn_or_url, patient_id, base, before, as_live)
    return state


def _as_live(
    conn: psycopg.Connection[Any],
    base: CoreConfig,
    models: Models,
    archived: tuple[tuple[str, int], ...] | None = None,
) -> AsLive | None:
    """The per-event chooser ``models`` asks for on this store, or ``None`` (``config``).

    ``archived``: the archive's :func:`~services.model_versions.archive_signature`,
    when the caller has it already (``auto``).
    """
    if models == "config":
        return None
    if models == "as-live":
        return AsLive(conn, base)
    if archived is None:
        archived = archive_signature(conn)
    names = {name for name, _ in archived or ()}  # no table (before 0008), or no version
    risk, subgroups = RISK_MODEL in names, SUBGROUP_MODEL in names
    if not (risk or subgroups):
        return None
    return AsLive(conn, base, RISK_MODEL, SUBGROUP_MODEL, risk=risk, subgroups=subgroups)


def _rebuild(
    conn: psycopg.Connection[Any],
    patient_id: str,
    config: CoreConfig | None,
    before: InputEvent | None,
    config_for: Callable[[InputEvent], CoreConfig] | None = None,
) -> tuple[PatientState, int]:
    query = EventQuery(patients=(patient_id,))
    states: dict[str, PatientState] = {}
    applied = 0
    events = read_input_events(conn, query, before=before)
    for _ in run_core(events, config, states, config_for):
        applied += 1
    return states.get(patient_id, PatientState(patient_id=patient_id)), applied


class StateRebuilder:
    """Rebuilds patient states from the store for a stream worker (thread-safe).

    One connection, opened on first use and reopened after it is lost; calls
    from several executor threads take turns.

    Parameters
    ----------
    url
        The store's URL.
    config
        The configuration the worker runs with (it must be the same, or the
        rebuilt state is not the state the worker would have had). Its
        ``model`` and ``subgroups`` are replaced per event by the versions live
        used, for each kind the store archives versions of (``models``).
    models
        As :func:`rebuild_state`; ``auto`` by default: a worker that follows
        the models topic gets back the versions it used, and a store that
        archives none (no trainer, no subgroup fit) rebuilds with ``config``.
    """

    def __init__(
        self, url: str, config: CoreConfig | None = None, *, models: Models = "auto"
    ) -> None:
        if models not in MODEL_CHOICES:
            raise ValueError(f"models is {models!r}; accepted: {', '.join(MODEL_CHOICES)}")
        self._url = url
        self.config = config if config is not None else CoreConfig()
        self.models = models
        self._as_live: AsLive | None = None
        self._archived: object = _UNREAD  # the archive's signature when _as_live was made
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()
        #: Patients rebuilt from at least one stored event, and how long it took in all.
        self.rebuilt = 0
        self.seconds = 0.0

    def rebuild(self, patient_id: str, before: InputEvent | None = None) -> PatientState | None:
        """The patient's state from the store, or ``None`` when it has nothing for them.

        ``before``: the event the worker is about to apply; only events that
        arrived before it are used.
        """
        started = time.monotonic()
        with self._lock:
            for attempt in (1, 2):
                try:
                    conn = self._connected()
                    config_for = self._versions(conn)
                    try:
                        state, applied = _rebuild(conn, patient_id, self.config, before, config_for)
                    except ValueError as error:
                        if config_for is None:
                            raise
                        # A version live used is missing from the archive: the state
                        # cannot be exactly the live one. Better the configuration's
                        # model than no worker at all.
                        log.error(
                            "rebuilding a patient with the configured models instead of "
                            "the versions live used: %s",
                            error,
                        )
                        state, applied = _rebuild(conn, patient_id, self.config, before, None)
                    break
                except psycopg.OperationalError as error:
                    self.close()
                    if attempt == 2:
                        # The worker waits for the store on this error only (streams.app.Rebuild).
                        raise ConnectionError(
                            f"the store did not answer a state rebuild ({type(error).__name__})"
                        ) from error
        if applied == 0:
            return None
        took = time.monotonic() - started
        self.rebuilt += 1
        self.seconds += took
        log.info("rebuilt a patient state from %d stored events in %.2f s", applied, took)
        return state

    def _versions(self, conn: psycopg.Connection[Any]) -> AsLive | None:
        """The chooser of versions live used; the archive is read again when it has grown."""
        if self.models == "config":
            return None
        signature = archive_signature(conn)  # one small query: versions come a week apart
        if signature != self._archived:
            self._as_live = _as_live(conn, self.config, self.models, signature)
            self._archived = signature
        if self._as_live is not None:  # made on this connection: close() drops both
            self._as_live.forget()  # the patient's stored outputs, read afresh
        return self._as_live

    def _connected(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self._url, autocommit=True, connect_timeout=10)
        return self._conn

    def close(self) -> None:
        """Close the connection (a later call reconnects)."""
        conn, self._conn = self._conn, None
        self._as_live, self._archived = None, _UNREAD
        if conn is not None:
            conn.close()

    def __enter__(self) -> StateRebuilder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["StateRebuilder", "rebuild_state"]
