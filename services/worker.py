"""Run a psymon stream worker: the faust app of :mod:`streams.app` in this process.

``psymon worker`` calls :func:`run_worker`; tests and benchmarks start it as a
subprocess with ``python -m services.worker --bootstrap HOST:PORT --partitions N``.
The worker first makes sure every topic it reads or writes exists with the
configured partition count (:func:`services.embedded.ensure_topics`): a topic a
broker auto-creates with another count would hang the state table.

It stops cleanly on SIGINT or SIGTERM: faust commits the offsets of what it
processed and leaves the consumer group, so a restarted worker continues where
this one stopped.

It runs on uvloop when that is installed (about 8 % less CPU per event than
asyncio's own loop, measured by ``bench/pipeline_throughput.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from schemas.topics import ALL_TOPICS
from services.embedded.topics import BrokerError, ensure_topics, is_embedded_broker
from services.embedded.watch import ChangelogWatch, RecoveryStall

if TYPE_CHECKING:
    from services.live_models import LiveModels
    from streams import CoreConfig

DEFAULT_APP_ID = "psymon-worker"
#: Exit code of a worker that stopped because the broker lost its state
#: (:class:`services.embedded.watch.RecoveryStall`): start it again.
BROKER_STATE_LOST = 3


def run_worker(
    bootstrap: str,
    partitions: int,
    *,
    app_id: str = DEFAULT_APP_ID,
    data_dir: Path = Path(".psymon"),
    config: CoreConfig | None = None,
    loglevel: str = "warning",
    database_url: str | None = None,
    models_topic: str | None = None,
) -> int:
    """Run a worker until SIGINT/SIGTERM; return its exit code (0 after a clean stop).

    Parameters
    ----------
    bootstrap
        ``host:port[,host:port...]`` of the broker (``PSYMON_KAFKA_BOOTSTRAP``).
    partitions
        Partitions per topic (``PSYMON_PARTITIONS``); existing topics must match.
    app_id
        Consumer group and changelog prefix; workers sharing it share the work.
    data_dir
        ``PSYMON_DATA_DIR``; faust keeps its local files under ``<data_dir>/faust``.
    config
        The core's configuration; default ``CoreConfig()``.
    loglevel
        faust's log level: ``debug``, ``info``, ``warning`` or ``error``.
    database_url
        The store (``PSYMON_DATABASE_URL``): a patient the worker's table does not
        know is rebuilt from the stored history before the new event is applied
        (:class:`services.rebuild.StateRebuilder`). ``None``: no rebuild.
    models_topic
        Score with the newest relapse-risk model version published on this
        topic (``psymon.models.v1``; :class:`services.live_models.LiveModels`
        polls it in a thread), version 0 until one arrives. ``None``: score
        with ``config.model`` throughout (none by default: no assessments).

    Raises
    ------
    services.embedded.BrokerError
        No broker answers at ``bootstrap``, or a topic exists with another
        partition count (:class:`~services.embedded.TopicPartitionMismatch`).
    """
    import faust

    from streams.app import changelog_topics, create_app

    use_uvloop()

    # Topic repairs (delete and re-create) only on the embedded memory broker:
    # elsewhere a slow fetch is not a lost broker, and the changelog holds every state.
    embedded = is_embedded_broker(bootstrap)
    ensure_topics(
        bootstrap,
        partitions,
        (*ALL_TOPICS, *changelog_topics(app_id)),
        compacted=changelog_topics(app_id),
        # records a restarted memory broker left unreadable
        check_readable=changelog_topics(app_id) if embedded else (),
    )
    watch = (
        ChangelogWatch(bootstrap, partitions, changelog_topics(app_id)).start()
        if embedded
        else None
    )
    rebuilder = None
    if database_url is not None:
        from services.rebuild import StateRebuilder
        from streams import CoreConfig as _CoreConfig

        rebuilder = StateRebuilder(database_url, config if config is not None else _CoreConfig())
    live_models = _live_models(bootstrap, models_topic, config)
    app = create_app(
        bootstrap,
        partitions=partitions,
        app_id=app_id,
        data_dir=data_dir / "faust",
        config=config if live_models is None else live_models(),
        rebuild=rebuilder.rebuild if rebuilder is not None else None,
        config_source=live_models,
        changelog_lost=watch.lost if watch is not None else None,
    )
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    stall = RecoveryStall(_stop_for_a_restart)
    logging.getLogger("faust").addHandler(stall)
    # faust's terminal spinner sets the root logger to DEBUG at levels >= WARNING,
    # so every debug record of faust and aiokafka is built and spun (~10 % of the
    # worker's time); without it the root logger keeps ``loglevel``.
    worker.spinner = None
    try:
        worker.execute_from_commandline()
    except SystemExit as done:
        if stall.stalled:
            return BROKER_STATE_LOST
        return done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    finally:
        if watch is not None:
            watch.stop()
        logging.getLogger("faust").removeHandler(stall)
        if rebuilder is not None:
            rebuilder.close()
        if live_models is not None:
            live_models.stop()
    return 0


def _live_models(
    bootstrap: str, models_topic: str | None, config: CoreConfig | None
) -> LiveModels | None:
    """The model versions the worker scores with, polled from ``models_topic`` in a thread."""
    if models_topic is None:
        return None
    from services.embedded.topics import ensure_models_topic
    from services.live_models import LiveModels, TopicModelStore
    from streams import CoreConfig as _CoreConfig

    ensure_models_topic(bootstrap, models_topic)
    base = config if config is not None else _CoreConfig()
    return LiveModels(TopicModelStore(bootstrap, models_topic), base).start()


def _stop_for_a_restart(message: str) -> None:
    """Stop as SIGTERM does; :func:`run_worker` then returns :data:`BROKER_STATE_LOST`."""
    logging.getLogger("psymon.worker").error(
        "the broker lost this worker's state: its changelog holds records that cannot be "
        "read (%s); stopping so that the worker is started again, repairs the changelog "
        "and rebuilds the patients it cannot restore from the store",
        message,
    )
    os.kill(os.getpid(), signal.SIGTERM)


def use_uvloop() -> bool:
    """Make new event loops uvloop's, when uvloop is installed; whether it is.

    faust's consumer thread creates its own loop later, so this comes first.
    """
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m services.worker``: run one worker with the given options."""
    parser = argparse.ArgumentParser(
        prog="python -m services.worker",
        description="Run one psymon stream worker until SIGINT/SIGTERM.",
    )
    parser.add_argument("--bootstrap", required=True, help="broker host:port[,host:port...]")
    parser.add_argument("--partitions", type=int, required=True, help="partitions per topic")
    parser.add_argument("--app-id", default=DEFAULT_APP_ID, help="faust app id / consumer group")
    parser.add_argument("--data-dir", type=Path, default=Path(".psymon"), help="local files")
    parser.add_argument(
        "--loglevel", default="warning", choices=["debug", "info", "warning", "error"]
    )
    parser.add_argument(
        "--models-topic",
        default=None,
        help="score with the newest model version on this topic (psymon.models.v1); "
        "default: no model (no risk assessments), as tests and benchmarks expect",
    )
    options = parser.parse_args(argv)
    logging.captureWarnings(True)
    # The store's URL holds a password: it comes from the environment
    # (PSYMON_DATABASE_URL), never from the command line where `ps` shows it.
    url = os.environ.get("PSYMON_DATABASE_URL") or None
    try:
        return run_worker(
            options.bootstrap,
            options.partitions,
            app_id=options.app_id,
            data_dir=options.data_dir,
            loglevel=options.loglevel,
            database_url=url,
            models_topic=options.models_topic,
        )
    except BrokerError as error:
        print(f"psymon worker: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
