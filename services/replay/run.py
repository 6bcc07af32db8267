"""``psymon replay``: stored history through the pure core, offline, with a chosen configuration.

:func:`replay` reads the stored input events (filtered by patients, event
time and kinds), runs them per patient in arrival order through
:func:`streams.process` with the given :class:`~streams.CoreConfig`, and
writes the outputs to Parquet files (with ``manifest.json``) in ``out_dir``
and/or to a broker topic. :func:`replay_outputs` yields the outputs in
process instead. Both are recorded in the audit log before they start.

Replaying the live history with the live configuration reproduces the live
outputs: same event ids, same content (tests/integration/test_replay_equals_live.py;
the order caveats are in :mod:`services.replay.query`). Live workers score with
the model versions the trainer publishes and assign clusters with the
subgroup model versions ``psymon subgroups fit`` publishes; ``models="as-live"``
processes each event with the versions live used for it
(:class:`services.model_versions.AsLive`), so the risk assessments,
``relapse_risk`` alerts and cluster changes come out as live
(tests/integration/test_live_models.py, tests/integration/test_live_subgroup_versions.py).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Collection, Generator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import psycopg
from pydantic import ValidationError

from services.replay.audit import audit_finished, audit_started, describe_error, require_audit_log
from services.replay.parquet import SCHEMAS, OutputFiles, stream_of
from services.replay.provenance import (
    MANIFEST_VERSION,
    FileEntry,
    Manifest,
    code_version,
    code_version_text,
    iso,
    prepare_out_dir,
    store_schema,
    utc_now,
    write_manifest,
)
from services.replay.query import EventQuery
from services.replay.shards import ReplaySource, check_jobs
from services.replay.topic import TopicWriter, check_topic
from streams import CoreConfig, Output

#: ``progress(done, total)``: input events replayed so far, and the total
#: (``None`` when not counted). Called at most a few times a second and once at the end.
Progress = Callable[[int, int | None], None]

#: Seconds between two progress calls.
PROGRESS_EVERY = 0.25

#: Which model versions a replay scores with: ``config``, the configuration's
#: ``model`` (none by default: no assessments); ``as-live``, for each event the
#: version live used (the store's ``model_versions`` and ``risk_assessments``).
Models = Literal["config", "as-live"]
MODEL_CHOICES: tuple[Models, ...] = ("config", "as-live")


def load_core_config(path: Path) -> CoreConfig:
    """A core configuration from a JSON (``.json``) or TOML (``.toml``) file.

    Raises ``ValueError`` naming the file and the field that is wrong.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ValueError(f"core configuration {path}: cannot read it ({error.strerror})") from None
    try:
        if path.suffix.lower() == ".toml":
            return CoreConfig.from_toml(text)
        return CoreConfig.from_json(text)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(file)'}: {e['msg']}"
            + (f" (got {e['input']!r})" if e["type"] not in ("missing", "json_invalid") else "")
            for e in error.errors(include_url=False)
        )
        raise ValueError(f"core configuration {path}: {problems}") from None
    except ValueError as error:  # TOML syntax
        raise ValueError(f"core configuration {path}: {error}") from None


def config_entry(config: CoreConfig, source: str) -> dict[str, Any]:
    """How the manifest names a configuration: version, sha256, source and every setting.

    >>> entry = config_entry(CoreConfig(), "built-in defaults")
    >>> entry["version"], len(entry["sha256"]), entry["source"]
    ('core-2026.1', 64, 'built-in defaults')
    """
    canonical = config.model_dump_json()
    return {
        "version": config.version,
        "sha256": hashlib.sha256(canonical.encode()).hexdigest(),
        "source": source,
        "settings": config.model_dump(mode="json"),
    }


class _Ticker:
    """Calls ``progress`` at most every :data:`PROGRESS_EVERY` seconds."""

    def __init__(self, progress: Progress | None, total: int | None) -> None:
        self.progress = progress
        self.total = total
        self.done = 0
        self._next = 0.0

    def tick(self) -> None:
        self.done += 1
        if self.progress is not None and (self.done & 255) == 0:
            now = time.monotonic()
            if now >= self._next:
                self._next = now + PROGRESS_EVERY
                self.progress(self.done, self.total)

    def finish(self) -> None:
        if self.progress is not None:
            self.progress(self.done, self.total)


def _connect(url: str) -> psycopg.Connection[Any]:
    conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
    conn.execute("SET TIME ZONE 'UTC'")
    return conn


def _check_models(models: str) -> None:
    if models not in MODEL_CHOICES:
        raise ValueError(f"models is {models!r}; accepted: {', '.join(MODEL_CHOICES)}")


def replay_outputs(
    url: str,
    *,
    patients: Sequence[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    kinds: Collection[str] | None = None,
    config: CoreConfig | None = None,
    progress: Progress | None = None,
    who: str = "python",
    models: Models = "config",
    jobs: int | None = 1,
) -> Generator[Output, None, None]:
    """Yield the outputs of replaying the selected history, in order (nothing written).

    The same filters, configuration, ``models`` and ``jobs`` as :func:`replay`.
    The run is recorded in the audit log when iteration starts and completed
    when it ends (also when the caller stops early: then the counts say how
    far it got).
    """
    _check_models(models)
    processes = check_jobs(jobs)
    query = EventQuery.of(patients, since, until, kinds)
    core_config = config if config is not None else CoreConfig()
    with _connect(url) as audit_conn:
        require_audit_log(audit_conn)
        audit_id = audit_started(
            audit_conn,
            "replay",
            who,
            {"query": query.as_dict(), "output": "in-process iterator", "models": models},
            code_version=code_version_text(code_version()),
            config_version=core_config.version,
        )
        counts: dict[str, int] = {"input_events": 0}
        ticker = _Ticker(progress, None)
        error: BaseException | None = None
        try:
            with ReplaySource(
                url,
                query,
                core_config,
                models,
                jobs=processes,
                count=progress is not None,
            ) as source:
                ticker.total = source.total
                tick = ticker.tick
                for _, outputs in source:
                    tick()
                    for output in outputs:
                        stream = stream_of(output)
                        counts[stream] = counts.get(stream, 0) + 1
                        yield output
                ticker.finish()
        except BaseException as failure:
            error = failure
            raise
        finally:
            counts["input_events"] = ticker.done
            stopped = isinstance(error, GeneratorExit)
            audit_finished(
                audit_conn,
                audit_id,
                row_counts=counts,
                error=None if error is None or stopped else describe_error(error),
            )


def replay(
    url: str,
    *,
    patients: Sequence[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    kinds: Collection[str] | None = None,
    config: CoreConfig | None = None,
    config_file: Path | None = None,
    out_dir: Path | None = None,
    to_topic: str | None = None,
    bootstrap: str | None = None,
    topic_partitions: int = 4,
    progress: Progress | None = None,
    who: str = "cli",
    models: Models = "config",
    jobs: int | None = 1,
) -> Manifest:
    """Replay stored history through the core; write Parquet files and/or send to a topic.

    Parameters
    ----------
    url
        The store (``PSYMON_DATABASE_URL`` or the embedded server's URL).
    patients, since, until, kinds
        Which input events: pseudonyms; event time ``[since, until)``
        (tz-aware); kinds of :data:`services.replay.query.INPUT_KINDS`.
        Default: everything. A patient's history is replayed from the first
        selected event with an empty state, so a ``since`` or a ``kinds``
        filter changes what the core knows (baselines start later).
    config, config_file
        The core configuration: an object, or a JSON/TOML file
        (``PSYMON_CORE_CONFIG_FILE`` is the live one); default the built-in one.
    out_dir
        A new or empty directory for ``trajectories.parquet``,
        ``features.parquet``, ``risk.parquet``, ``alerts.parquet``,
        ``dead_letters.parquet`` and ``manifest.json``.
    to_topic, bootstrap, topic_partitions
        Also (or only) send every output to this topic of the broker at
        ``bootstrap``, keyed by patient; created with ``topic_partitions``
        partitions if missing. psymon's own topics are refused.
    progress
        ``progress(done, total)`` (input events), e.g. to drive a progress bar.
    who
        Who runs it, for the audit log (a user name, a token's name).
    models
        ``config``: score with the configuration's ``model`` (none by default:
        no risk assessments). ``as-live``: score each event with the model
        version live used for it, from the store (the version its stored
        assessments name, else the version archived last before its
        ``received_at``), and assign clusters with the subgroup model version
        live used (the version its stored cluster change names, else the
        version archived last before its ``received_at``, else the
        configuration's); the configuration's other settings still apply.
    jobs
        Most processes to replay in: patients are shared out among them and
        the outputs merged in the one-process order, so everything written is
        the same (:mod:`services.replay.shards`). ``None``: one per CPU.
        A replay with fewer than
        :data:`~services.replay.shards.MIN_EVENTS_PER_PROCESS` events per
        process uses fewer.

    Returns
    -------
    Manifest
        What was written (``path`` is ``None`` without ``out_dir``).
    """
    if out_dir is None and to_topic is None:
        raise ValueError("replay needs somewhere to put the outputs: out_dir, to_topic or both")
    if to_topic is not None:
        check_topic(to_topic)
        if not bootstrap:
            raise ValueError(
                "to_topic needs the broker's address: bootstrap (PSYMON_KAFKA_BOOTSTRAP)"
            )
    if config is not None and config_file is not None:
        raise ValueError("give config or config_file, not both")
    _check_models(models)
    processes = check_jobs(jobs)
    if config_file is not None:
        core_config, source = load_core_config(config_file), str(config_file)
    elif config is not None:
        core_config, source = config, "given by the caller"
    else:
        core_config, source = CoreConfig(), "built-in defaults"
    query = EventQuery.of(patients, since, until, kinds)
    directory = prepare_out_dir(out_dir) if out_dir is not None else None
    version = code_version()
    started = utc_now()
    parameters = {
        "query": query.as_dict(),
        "config": {"version": core_config.version, "source": source},
        "models": models,
        "out_dir": None if directory is None else str(directory.resolve()),
        "to_topic": to_topic,
    }
    with _connect(url) as conn:
        require_audit_log(conn)
        schema = store_schema(conn)
        audit_id = audit_started(
            conn,
            "replay",
            who,
            parameters,
            code_version=code_version_text(version),
            config_version=core_config.version,
            started_at=started,
        )
        counts: dict[str, int] = {}
        try:
            files, counts, patients_seen, sent = _run(
                url,
                query,
                core_config,
                directory,
                to_topic,
                bootstrap,
                topic_partitions,
                progress,
                models,
                processes,
            )
            manifest = {
                "manifest_version": MANIFEST_VERSION,
                "kind": "replay",
                "audit_id": str(audit_id),
                "who": who,
                "query": query.as_dict(),
                "config": config_entry(core_config, source),
                "models": models,
                "schema": schema,
                "code": version,
                "started_at": iso(started),
                "finished_at": iso(utc_now()),
                "patients": patients_seen,
                "row_counts": counts,
                "files": [entry.as_dict() for entry in files],
                "topic": None if to_topic is None else {"name": to_topic, "sent": sent},
            }
            written = write_manifest(directory, manifest) if directory is not None else None
        except BaseException as error:
            audit_finished(conn, audit_id, row_counts=counts, error=describe_error(error))
            raise
        audit_finished(
            conn,
            audit_id,
            row_counts=counts,
            manifest_sha256=None if written is None else written.sha256,
        )
    path = None if directory is None or written is None else directory / written.name
    return Manifest(path, manifest, None if written is None else written.sha256)


def _run(
    url: str,
    query: EventQuery,
    config: CoreConfig,
    directory: Path | None,
    to_topic: str | None,
    bootstrap: str | None,
    partitions: int,
    progress: Progress | None,
    models: Models,
    jobs: int,
) -> tuple[list[FileEntry], dict[str, int], int, int]:
    files = OutputFiles(directory) if directory is not None else None
    topic: TopicWriter | None = None
    counts = {"input_events": 0, **dict.fromkeys(SCHEMAS, 0)}
    patients = 0
    last_patient: str | None = None
    try:
        counting = progress is not None
        with ReplaySource(url, query, config, models, jobs=jobs, count=counting) as source:
            # After the replay's processes started: the producer runs a thread of its own.
            if to_topic:
                topic = TopicWriter(bootstrap or "", to_topic, partitions=partitions)
            ticker = _Ticker(progress, source.total)
            for patient, outputs in source:
                ticker.tick()
                if patient != last_patient:
                    patients += 1
                    last_patient = patient
                counts["input_events"] += 1
                for output in outputs:
                    counts[stream_of(output)] += 1
                    if files is not None:
                        files.add(output)
                    if topic is not None:
                        topic.send(output)
            ticker.finish()
        entries = files.close() if files is not None else []
        if topic is not None:
            topic.flush()
    except BaseException:
        if files is not None:
            files.abort()
        raise
    finally:
        if topic is not None:
            topic.close()
    return entries, counts, patients, 0 if topic is None else topic.sent


__all__ = ["Progress", "config_entry", "load_core_config", "replay", "replay_outputs"]
