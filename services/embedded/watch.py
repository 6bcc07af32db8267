"""A stream worker notices that the broker lost its state, and repairs or reports it.

The embedded broker keeps everything in memory: restarted under a running
worker (``psymon broker`` restarted, Tansu crashed), it comes back without
the worker's table changelog topic, without consumer-group offsets, without
records. The worker's table is still right (it is in the worker's memory),
but what it writes to the changelog from then on goes nowhere: Tansu 0.6
acknowledges records for a topic that does not exist and never delivers them
(:mod:`services.embedded.topics`), so a worker started later would restore
nothing, or hang restoring records it is told exist.

:class:`ChangelogWatch` looks for the changelog topic every few seconds.
When it is gone it creates it again (with the worker's partition count,
compacted, without unreadable records) and tells the worker, which writes
the state of every patient it owns to it (``changelog_lost`` of
:func:`streams.app.create_app`): a worker started later restores them as if
nothing had happened.

:class:`RecoveryStall` is the last resort: a worker that waits for changelog
records that never come (faust's "No event received for active tp ... since
recovery start", which on a healthy broker never lasts 30 s) stops, so that
it is started again; its start repairs the changelog
(:func:`~services.embedded.topics.ensure_topics` with ``check_readable``)
and patients it cannot restore are rebuilt from the store.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from services.embedded.topics import BrokerError, _partition_counts, admin_client, ensure_topics

log = logging.getLogger("psymon.worker")

#: Seconds between two looks at the broker's topics (one metadata request on an open
#: connection): soon enough that the topic is back before the worker has rejoined its
#: group on the new broker, so that its re-appearance causes no second rebalance.
WATCH_INTERVAL = 1.0
#: What faust's recovery logs when a changelog partition it must read gives nothing.
STALL_MESSAGE = "No event received for active tp"


class ChangelogWatch:
    """Re-creates a worker's changelog topics when the broker has lost them.

    Parameters
    ----------
    bootstrap
        The broker.
    partitions
        The worker's partition count (the changelogs are co-partitioned).
    topics
        The changelog topics (:func:`streams.app.changelog_topics`).
    interval
        Seconds between two looks.
    """

    def __init__(
        self,
        bootstrap: str,
        partitions: int,
        topics: Sequence[str],
        *,
        interval: float = WATCH_INTERVAL,
    ) -> None:
        self.bootstrap = bootstrap
        self.partitions = partitions
        self.topics = list(topics)
        self.interval = interval
        #: How often the topics were found missing and created again.
        self.recreations = 0
        self._pending = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._admin: Any = None

    def start(self) -> ChangelogWatch:
        """Watch in a daemon thread until :meth:`stop`."""
        self._thread = threading.Thread(target=self._run, name="psymon-changelog-watch")
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching (returns at once; the thread ends within one interval)."""
        self._stop.set()

    def lost(self) -> bool:
        """Whether the changelog was created again since the last call (then: write every state).

        Cheap: the worker's agent calls it before each batch.
        """
        if self._pending.is_set():
            self._pending.clear()
            return True
        return False

    def check(self) -> bool:
        """Look once; re-create missing topics; whether it did. Raises :class:`BrokerError`."""
        from kafka.errors import KafkaError

        try:
            if self._admin is None:
                self._admin = admin_client(self.bootstrap, 5.0)
            present = _partition_counts(self._admin, self.topics)
        except KafkaError as error:
            self._close_admin()
            raise BrokerError(f"cannot list the broker's topics ({type(error).__name__})") from None
        missing = [t for t in self.topics if t not in present]
        if not missing:
            return False
        log.warning(
            "the broker no longer has the table changelog %s (its storage was lost: a memory "
            "broker restarted?); creating it again and writing every patient state this "
            "worker holds to it",
            ", ".join(missing),
        )
        ensure_topics(
            self.bootstrap,
            self.partitions,
            self.topics,
            compacted=self.topics,
            check_readable=self.topics,
        )
        self.recreations += 1
        self._pending.set()
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except BrokerError as error:
                log.info("changelog watch: %s; looking again in %.0f s", error, self.interval)
            except Exception:  # the watch must never take the worker down
                log.exception("changelog watch failed; looking again in %.0f s", self.interval)
        self._close_admin()

    def _close_admin(self) -> None:
        admin, self._admin = self._admin, None
        if admin is not None:
            try:
                admin.close()
            except Exception:  # closing a broken client
                log.debug("closing the watch's admin client failed", exc_info=True)


class RecoveryStall(logging.Handler):
    """Calls ``on_stall`` once when faust's recovery waits for changelog records that never come.

    Attach it to the ``faust`` logger. On a healthy broker a changelog
    partition with records gives the first of them within milliseconds;
    faust logs :data:`STALL_MESSAGE` after 30 s of nothing. The records are
    not there to read (see the module docstring), and waiting longer does
    not bring them.
    """

    def __init__(self, on_stall: Callable[[str], None]) -> None:
        super().__init__(level=logging.WARNING)
        self._on_stall = on_stall
        self.stalled = False

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if self.stalled or STALL_MESSAGE not in message or "since recovery start" not in message:
            return
        self.stalled = True
        self._on_stall(message)
