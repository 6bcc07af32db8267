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

It is blocking I/O: the faust agent runs it in a thread executor.

>>> callable(rebuild_state) and callable(StateRebuilder)
True
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import psycopg

from services.replay.engine import run_core
from services.replay.query import EventQuery, InputEvent, read_input_events
from streams import CoreConfig, PatientState

log = logging.getLogger("psymon.rebuild")


def rebuild_state(
    conn_or_url: psycopg.Connection[Any] | str,
    patient_id: str,
    config: CoreConfig | None = None,
    *,
    before: InputEvent | None = None,
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

    Returns
    -------
    PatientState
        ``PatientState(patient_id=patient_id)`` when the store has no event
        of the patient.
    """
    state, _ = _rebuild(conn_or_url, patient_id, config, before)
    return state


def _rebuild(
    conn_or_url: psycopg.Connection[Any] | str,
    patient_id: str,
    config: CoreConfig | None,
    before: InputEvent | None,
) -> tuple[PatientState, int]:
    if isinstance(conn_or_url, str):
        with psycopg.connect(conn_or_url, autocommit=True, connect_timeout=10) as conn:
            return _rebuild(conn, patient_id, config, before)
    query = EventQuery(patients=(patient_id,))
    states: dict[str, PatientState] = {}
    applied = 0
    for _ in run_core(read_input_events(conn_or_url, query, before=before), config, states):
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
        rebuilt state is not the state the worker would have had).
    """

    def __init__(self, url: str, config: CoreConfig | None = None) -> None:
        self._url = url
        self.config = config if config is not None else CoreConfig()
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
                conn = self._connected()
                try:
                    state, applied = _rebuild(conn, patient_id, self.config, before)
                    break
                except psycopg.OperationalError:
                    self.close()
                    if attempt == 2:
                        raise
        if applied == 0:
            return None
        took = time.monotonic() - started
        self.rebuilt += 1
        self.seconds += took
        log.info("rebuilt a patient state from %d stored events in %.2f s", applied, took)
        return state

    def _connected(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self._url, autocommit=True, connect_timeout=10)
        return self._conn

    def close(self) -> None:
        """Close the connection (a later call reconnects)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def __enter__(self) -> StateRebuilder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["StateRebuilder", "rebuild_state"]
