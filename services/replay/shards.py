"""Where a replay's outputs come from: one process, or patients shared out among several.

A patient's course depends only on that patient's events and the
configuration: the core keeps no state across patients (its caches are pure
look-ups), and the models are fixed versions, learnt by the trainer and
chosen per event by :class:`services.model_versions.AsLive`. So patients can
be replayed in separate processes and give the same outputs as one process.

:class:`ReplaySource` yields ``(patient, outputs)`` for each input event, in
the order of a one-process replay, whichever way it runs:

* One process (``jobs=1``, or a replay too small to pay for more): the
  events are read and run here, as :func:`services.replay.query.read_input_events`
  gives them.
* Several: this process opens a read-only ``REPEATABLE READ`` transaction,
  exports its snapshot (``pg_export_snapshot``) and counts each selected
  patient's events in it. The patients, in the replay's order, are cut into
  contiguous chunks of about equal event counts, a few per process so that a
  chunk of long histories does not leave the others idle. Each process
  imports the snapshot (all of them see exactly the store this one counted,
  as a single query would), reads only its chunk's events (the patients are
  a filter in SQL: the reading is split, not repeated), runs them through
  :func:`services.replay.engine.run_patients` and sends back each event's
  outputs. The chunks are taken back in order, so the outputs, the Parquet
  files (byte for byte), the topic records and the counts are those of one
  process (tests/unit/test_replay_sharding.py, tests/integration/test_replay_shards.py).
  At most two chunks per process are under way, so memory stays bounded.

Planning and starting two processes with their connections takes ~45 ms
with ``fork`` (this process's modules are already imported); a fork server,
used when this process runs other threads (where ``fork`` is unsafe), costs
~0.4 s more the first time (its imports). Below
:data:`MIN_EVENTS_PER_PROCESS` events per process a replay runs in fewer
processes (docs/benchmarks.md, section 4).
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import multiprocessing.context
import multiprocessing.util
import os
import signal
import threading
from collections import deque
from collections.abc import Generator, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import replace
from itertools import islice
from typing import Any

import psycopg
from psycopg import IsolationLevel, sql

from services.replay.engine import run_patients
from services.replay.query import EventQuery, count_input_events, read_input_events
from streams import CoreConfig, Output

log = logging.getLogger("psymon.replay")

#: Fewest input events worth a process of its own: below, starting it and
#: merging its outputs cost more than it saves (docs/benchmarks.md, section 4).
MIN_EVENTS_PER_PROCESS = 2_000

#: Chunks per process: more balance the load, fewer cost fewer queries.
CHUNKS_PER_PROCESS = 4

#: Most input events in one chunk (its outputs are held in memory once done).
MAX_CHUNK_EVENTS = 20_000

#: One input event's patient and the outputs it caused.
EventOutputs = tuple[str, list[Output]]


def default_jobs() -> int:
    """The CPUs this process may run on (what ``psymon replay`` uses by default)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def check_jobs(jobs: int | None) -> int:
    """``jobs`` as a process count: ``None`` is one per CPU.

    >>> check_jobs(2)
    2
    >>> check_jobs(0)
    Traceback (most recent call last):
    ...
    ValueError: jobs is 0; accepted: 1 or more processes, or None for one per CPU
    """
    if jobs is None:
        return default_jobs()
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(
            f"jobs is {jobs!r}; accepted: 1 or more processes, or None for one per CPU"
        )
    return jobs


def processes_for(total: int, patients: int, jobs: int) -> int:
    """How many processes a replay of ``total`` events of ``patients`` patients uses.

    At most ``jobs``, at most one per patient, and at least
    :data:`MIN_EVENTS_PER_PROCESS` events each.

    >>> processes_for(100_000, 500, 8), processes_for(5_000, 500, 8), processes_for(100_000, 1, 8)
    (8, 2, 1)
    """
    return max(1, min(jobs, patients, total // MIN_EVENTS_PER_PROCESS))


def chunks_of(counts: Sequence[tuple[str, int]], processes: int) -> list[tuple[str, ...]]:
    """Cut patients (in replay order, with their event counts) into contiguous chunks.

    About :data:`CHUNKS_PER_PROCESS` chunks per process of about equal event
    counts, none above :data:`MAX_CHUNK_EVENTS` unless one patient alone is.
    Read one after the other, the chunks give the patients in the order given.

    >>> chunks_of([("a", 5), ("b", 1), ("c", 1), ("d", 5)], 1)
    [('a',), ('b', 'c'), ('d',)]
    """
    total = sum(n for _, n in counts)
    target = min(MAX_CHUNK_EVENTS, max(1, -(-total // (processes * CHUNKS_PER_PROCESS))))
    chunks: list[tuple[str, ...]] = []
    chunk: list[str] = []
    size = 0
    for patient, n in counts:
        if chunk and size + n > target:
            chunks.append(tuple(chunk))
            chunk, size = [], 0
        chunk.append(patient)
        size += n
    if chunk:
        chunks.append(tuple(chunk))
    return chunks


class ReplaySource:
    """The outputs of replaying ``query``, per input event, in one process or up to ``jobs``.

    Use as a context manager and iterate once. Entering it plans the run and,
    with several processes, starts them (before the caller starts threads of
    its own, such as a Kafka producer's, so that they can be forked);
    leaving it stops them. ``total`` is the number of input events selected
    (counted with ``jobs`` above 1, else only when ``count`` is true);
    ``processes`` is how many processes run the core.

    Parameters
    ----------
    url
        The store.
    query, config
        What to replay and with which configuration.
    models
        ``config`` or ``as-live`` (:func:`services.replay.replay`).
    jobs
        Most processes to use (``1``: this one alone, as before sharding).
    count
        Count the input events for a progress bar even in one process.
    """

    def __init__(
        self,
        url: str,
        query: EventQuery,
        config: CoreConfig,
        models: str,
        *,
        jobs: int = 1,
        count: bool = False,
    ) -> None:
        self.url, self.query, self.config, self.models = url, query, config, models
        self.jobs, self.count = jobs, count
        self.total: int | None = None
        self.processes = 1
        self._conn: psycopg.Connection[Any] | None = None
        self._pool: ProcessPoolExecutor | None = None
        self._chunks: Iterator[tuple[str, ...]] = iter(())
        self._running: deque[Future[list[EventOutputs]]] = deque()
        self._reading: Generator[EventOutputs, None, None] | None = None

    def __enter__(self) -> ReplaySource:
        try:
            if self.jobs == 1:
                self._conn = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
                self._conn.execute("SET TIME ZONE 'UTC'")
                self.total = count_input_events(self._conn, self.query) if self.count else None
            else:
                self._plan()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _plan(self) -> None:
        """Count each patient's events in an exported snapshot; start the processes if worth it."""
        self._conn = _snapshot_connection(self.url)
        row = self._conn.execute("SELECT pg_export_snapshot()").fetchone()
        snapshot = str(row[0]) if row else ""
        counts = _patient_counts(self._conn, self.query)
        self.total = sum(n for _, n in counts)
        self.processes = processes_for(self.total, len(counts), self.jobs)
        if self.processes == 1:
            return
        chunks = chunks_of(counts, self.processes)
        log.info("replaying in %d processes, %d chunks", self.processes, len(chunks))
        context = _context()
        self._pool = ProcessPoolExecutor(
            self.processes,
            mp_context=context,
            initializer=_start_process,
            initargs=(self.url, snapshot, self.query, self.config, self.models),
        )
        self._chunks = iter(chunks)
        # With fork, the first submit forks every process. Objects they inherit are
        # kept out of their garbage collections, which would otherwise write to (and
        # so copy) every page of this process's heap.
        forked = context.get_start_method() == "fork"
        if forked:
            gc.freeze()
        try:
            for chunk in islice(self._chunks, 2 * self.processes):
                self._running.append(self._pool.submit(_replay_chunk, chunk))
        finally:
            if forked:
                gc.unfreeze()

    def __exit__(self, *exc: object) -> None:
        try:
            if self._reading is not None:
                # Ends the read (and its fetch thread) before the connection
                # closes, even when the caller stopped early.
                self._reading.close()
            if self._pool is not None:
                for future in self._running:
                    future.cancel()
                self._pool.shutdown(wait=True, cancel_futures=True)
        finally:
            if self._conn is not None:
                self._conn.close()

    def __iter__(self) -> Iterator[EventOutputs]:
        if self._conn is None:
            raise RuntimeError("enter a ReplaySource (with ...) before iterating it")
        if self._pool is None:
            self._reading = self._here(self._conn)
            return self._reading
        return self._merged(self._pool)

    def _here(self, conn: psycopg.Connection[Any]) -> Generator[EventOutputs, None, None]:
        as_live = _as_live(self.url, self.models, self.config)
        events = read_input_events(conn, self.query, prefetch=True)
        try:
            for event, outputs in run_patients(events, self.config, as_live):
                yield event.patient_id, outputs
        finally:
            events.close()
            if as_live is not None:
                as_live.close()

    def _merged(self, pool: ProcessPoolExecutor) -> Iterator[EventOutputs]:
        """The chunks' outputs in chunk order, keeping two chunks per process under way."""
        while self._running:
            done = self._running.popleft().result()
            chunk = next(self._chunks, None)
            if chunk is not None:
                self._running.append(pool.submit(_replay_chunk, chunk))
            yield from done


def _snapshot_connection(url: str) -> psycopg.Connection[Any]:
    """A read-only connection whose first statement opens a ``REPEATABLE READ`` transaction."""
    conn = psycopg.connect(url, connect_timeout=10)
    conn.isolation_level = IsolationLevel.REPEATABLE_READ
    conn.read_only = True
    return conn


def _patient_counts(conn: psycopg.Connection[Any], query: EventQuery) -> list[tuple[str, int]]:
    """Each selected patient's input events, in the order a replay reads patients."""
    where, params = query.where()
    statement = sql.SQL(
        "SELECT patient_id, count(*) FROM v_input_events WHERE {} "
        "GROUP BY patient_id ORDER BY patient_id"
    ).format(where)
    return [(str(patient), int(n)) for patient, n in conn.execute(statement, params)]


def _as_live(url: str, models: str, config: CoreConfig) -> Any:
    """The per-event configuration chooser for ``models="as-live"``, else ``None``."""
    if models != "as-live":
        return None
    from services.model_versions import AsLive

    return AsLive(url, config)


def _context() -> multiprocessing.context.BaseContext:
    """``fork`` when this process runs no other thread, else ``forkserver``.

    ``fork`` starts a process in milliseconds (everything is imported
    already) but is unsafe when another thread may hold a lock the child
    then needs; ``forkserver`` forks from a clean server that imports this
    module once (~0.4 s). Like ``spawn``, it runs the caller's main module
    again in each process: a script needs the ``if __name__ == "__main__":`` guard.
    """
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    if "forkserver" in methods:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])
        return context
    return multiprocessing.get_context("spawn")


class _Process:
    """What a replay process keeps between chunks: its connection in the snapshot, its settings."""

    def __init__(
        self, url: str, snapshot: str, query: EventQuery, config: CoreConfig, models: str
    ) -> None:
        self.query, self.config = query, config
        self.conn = _snapshot_connection(url)
        self.conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
        self.as_live = _as_live(url, models, config)

    def close(self) -> None:
        if self.as_live is not None:
            self.as_live.close()
        self.conn.close()


_process: _Process | None = None


def _start_process(
    url: str, snapshot: str, query: EventQuery, config: CoreConfig, models: str
) -> None:
    """Initialise a replay process (``ProcessPoolExecutor``'s initializer)."""
    global _process
    # Ctrl-C reaches the whole process group: the parent stops the replay and
    # waits for the chunks under way, instead of every process printing a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _process = _Process(url, snapshot, query, config, models)
    multiprocessing.util.Finalize(_process, _process.close, exitpriority=10)


def _replay_chunk(patients: tuple[str, ...]) -> list[EventOutputs]:
    """Replay ``patients`` (one chunk) in this process; each event's patient and outputs."""
    if _process is None:
        raise RuntimeError("a replay chunk ran in a process that was not started for replays")
    query = replace(_process.query, patients=patients)
    done: list[EventOutputs] = []
    patient = ""
    events = read_input_events(_process.conn, query, prefetch=True)
    try:
        for event, outputs in run_patients(events, _process.config, _process.as_live):
            if event.patient_id != patient:
                patient = event.patient_id  # one string per patient: pickled once
            done.append((patient, outputs))
    finally:
        events.close()
    return done


__all__ = [
    "CHUNKS_PER_PROCESS",
    "MAX_CHUNK_EVENTS",
    "MIN_EVENTS_PER_PROCESS",
    "EventOutputs",
    "ReplaySource",
    "check_jobs",
    "chunks_of",
    "default_jobs",
    "processes_for",
]
