"""The ``psymon`` command line.

Each command says in its ``--help`` what it does and what it reads. Settings
come from ``PSYMON_*`` environment variables (see ``services.settings``).
"""

from __future__ import annotations

import logging
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar, cast

import click

from schemas.topics import MODELS
from services.intake import Format, Verdict, read_verdicts
from services.settings import Settings, SettingsError, load_settings
from services.trainer_options import training_click_options, training_keywords

if TYPE_CHECKING:
    from streams import CoreConfig


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="psymon")
def cli() -> None:
    """psymon: longitudinal patient monitoring for precision psychiatry."""


@cli.command()
@click.argument("file", type=click.File("rb"))
@click.option(
    "--format",
    "format_",
    type=click.Choice(["jsonl", "csv", "fhir"]),
    default=None,
    help="Input format; default: from the file name, else from its first bytes.",
)
@click.option("--quiet", is_flag=True, help="Print only rejected records and the summary.")
def validate(file: BinaryIO, format_: str | None, quiet: bool) -> None:
    """Check FILE (JSONL events, CSV rows, or a FHIR R4 Bundle/resource; '-' for stdin).

    Prints, per record, the event it becomes or the reason it was rejected, then a
    summary. Exit code 1 when anything was rejected. Reads PSYMON_PSEUDONYM_KEY to
    pseudonymise source identifiers (FHIR subjects, CSV source_patient_id); without
    it a throwaway key is used, so the pseudonyms printed are not those of ingest.
    Nothing is sent anywhere.
    """
    settings = _settings()
    key = settings.pseudonym_key_bytes if settings.pseudonym_key is not None else None
    if key is None:
        import secrets

        key = secrets.token_bytes(32)
        click.echo(
            "note: PSYMON_PSEUDONYM_KEY is not set; pseudonyms below use a throwaway key", err=True
        )
    data = file.read()
    name = getattr(file, "name", "-")
    received_at = datetime.now(UTC)
    counts: Counter[str] = Counter()
    events = 0
    try:
        verdicts = list(
            read_verdicts(
                data,
                name=str(name),
                received_at=received_at,
                key=key,
                format=cast(Format | None, format_),
            )
        )
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    for verdict in verdicts:
        counts[verdict.status] += 1
        events += len(verdict.events)
        if not quiet or verdict.status == "rejected":
            _print_verdict(verdict)
    summary = ", ".join(
        f"{counts[s]} {s}"
        for s in ("accepted", "rejected", "unsupported", "duplicate")
        if counts[s]
    )
    click.echo(f"{sum(counts.values())} records: {summary or 'none'}; {events} events")
    if counts["rejected"]:
        sys.exit(1)


@cli.command()
@click.argument("file", type=click.File("rb"))
@click.option(
    "--format",
    "format_",
    type=click.Choice(["jsonl", "csv", "fhir"]),
    default=None,
    help="Input format; default: from the file name, else from its first bytes.",
)
def ingest(file: BinaryIO, format_: str | None) -> None:
    """Validate FILE (JSONL, CSV or FHIR; '-' for stdin) and produce it to the broker.

    Valid events go to their topics keyed by patient pseudonym; rejected records go to
    psymon.dead-letter.v1 with their reasons. Reads PSYMON_KAFKA_BOOTSTRAP and
    PSYMON_PSEUDONYM_KEY (both required). Prints a summary; exit code 1 when anything
    was rejected.
    """
    from services.producer import KafkaEventSink

    settings = _settings()
    bootstrap = _bootstrap(settings)
    try:
        key = settings.pseudonym_key_bytes
    except SettingsError as error:
        raise click.ClickException(str(error)) from None
    data = file.read()
    received_at = datetime.now(UTC)
    counts: Counter[str] = Counter()
    try:
        verdicts = list(
            read_verdicts(
                data,
                name=str(getattr(file, "name", "-")),
                received_at=received_at,
                key=key,
                format=cast(Format | None, format_),
            )
        )
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    with (
        KafkaEventSink(bootstrap) as sink,
        click.progressbar(verdicts, label="ingesting", show_pos=True, file=sys.stderr) as bar,
    ):
        for verdict in bar:
            counts[verdict.status] += 1
            if verdict.dead_letter is not None:
                sink.send(verdict.dead_letter)
            for event in verdict.events:
                sink.send(event)
                counts["events"] += 1
    for verdict in verdicts:
        if verdict.status == "rejected":
            click.echo(f"REJECTED  {verdict.where}: {verdict.reason}")
    click.echo(
        f"{len(verdicts)} records: {counts['accepted']} accepted ({counts['events']} events sent), "
        f"{counts['rejected']} rejected (sent to psymon.dead-letter.v1), "
        f"{counts['unsupported']} unsupported, {counts['duplicate']} duplicate"
    )
    if counts["rejected"]:
        sys.exit(1)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
def api(host: str, port: int) -> None:
    """Serve the HTTP API and the web views in the foreground.

    POST /v1/events ingests; /v1/alerts, /v1/patients and /v1/cohort read the store and
    run the alert workflow; / serves the web views (cohort, patients, alert inbox).
    Reads PSYMON_KAFKA_BOOTSTRAP (where events go), PSYMON_DATABASE_URL (unset: the
    embedded PostgreSQL) and PSYMON_API_TOKENS_FILE (who may call; create tokens with
    `psymon tokens add`). Events arrive already pseudonymised.
    """
    import uvicorn

    from services.api.app import create_app
    from services.api.auth import TokenStore
    from services.api.database import Database
    from services.embedded.postgres import store_url
    from services.producer import KafkaEventSink

    settings = _settings()
    bootstrap = _bootstrap(settings)
    tokens = TokenStore.load(settings.tokens_path)
    with store_url(settings) as url:
        app = create_app(
            sink=KafkaEventSink(bootstrap, client_id="psymon-api"),
            tokens=tokens,
            database=Database(url),
        )
        # uvicorn's access log prints paths with their query strings, which may hold
        # identifiers; the app logs each request by its route template instead.
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
        uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)


@cli.command()
@click.option(
    "--partitions",
    type=int,
    default=None,
    help="Partitions per topic (default: PSYMON_PARTITIONS).",
)
def broker(partitions: int | None) -> None:
    """Run the embedded Kafka-compatible broker (Tansu, memory storage) in the foreground.

    Listens on PSYMON_KAFKA_BOOTSTRAP (default 127.0.0.1:9092), creates psymon's topics
    with PSYMON_PARTITIONS partitions, prints the address and runs until Ctrl-C.
    Everything it holds is lost when it stops: PostgreSQL is the system of record.
    """
    from services.embedded.broker import (
        DEFAULT_HOST,
        DEFAULT_PORT,
        BrokerError,
        run_broker_foreground,
    )

    settings = _settings()
    host, port = DEFAULT_HOST, DEFAULT_PORT
    if settings.kafka_bootstrap:
        first = settings.kafka_bootstrap.split(",")[0]
        host, _, port_text = first.rpartition(":")
        port = int(port_text)
    try:
        sys.exit(run_broker_foreground(host, port, partitions or settings.partitions))
    except BrokerError as error:
        raise click.ClickException(str(error)) from None


F = TypeVar("F", bound=Callable[..., Any])


def models_topic_option(help: str) -> Callable[[F], F]:
    """``--models-topic``: the compacted topic of model versions (:data:`schemas.topics.MODELS`)."""
    return click.option("--models-topic", default=MODELS, show_default=True, help=help)


@cli.command()
@click.option(
    "--app-id",
    default="psymon-worker",
    show_default=True,
    help="Consumer group; workers sharing it share the partitions.",
)
@click.option(
    "--loglevel",
    default="warning",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
)
@models_topic_option(
    "Score with the newest relapse-risk model version published here (by `psymon trainer`)."
)
@click.option(
    "--no-models",
    is_flag=True,
    help="Score with PSYMON_CORE_CONFIG_FILE's model only (none by default: no risk assessments).",
)
def worker(app_id: str, loglevel: str, models_topic: str, no_models: bool) -> None:
    """Run a stream worker: read the input topics, keep each patient's state, emit outputs.

    Reads PSYMON_KAFKA_BOOTSTRAP (required), PSYMON_PARTITIONS, PSYMON_DATA_DIR and
    PSYMON_CORE_CONFIG_FILE. Writes course updates, risk, alerts and dead letters to their
    topics. Scores relapse risk with the newest model version on --models-topic (version 0,
    a constant 5 % that raises no alert, until the trainer publishes one). With
    PSYMON_DATABASE_URL set, a patient the worker's state does not know is rebuilt from the
    stored history first (a new machine, a restarted memory broker). Start more workers with
    the same --app-id to share the partitions.
    """
    from services.embedded import BrokerError
    from services.worker import run_worker

    settings = _settings()
    database = settings.database_url.get_secret_value() if settings.database_url else None
    bootstrap = _bootstrap(settings)
    try:
        code = run_worker(
            bootstrap,
            settings.partitions,
            app_id=app_id,
            data_dir=settings.data_dir,
            config=_core_config(settings),
            loglevel=loglevel,
            database_url=database,
            models_topic=None if no_models else models_topic,
        )
    except BrokerError as error:
        raise click.ClickException(str(error)) from None
    sys.exit(code)


@cli.command()
@models_topic_option("Where versions are published (compacted, one partition; created if missing).")
@training_click_options
@click.option(
    "--loglevel",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
)
def trainer(models_topic: str, loglevel: str, **training: float) -> None:
    """Learn the population relapse-risk model and publish numbered versions. Run one only.

    Reads every partition of psymon.risk.v1 (the workers' assessments list every model
    input) and psymon.clinical-outcomes.v1 (the delayed labels) in received_at order,
    learns each day once its label is known, and every --publish-every-days of event time
    archives a new version (PSYMON_DATABASE_URL's model_versions table, else the embedded
    store; and PSYMON_DATA_DIR/models) and publishes it to --models-topic, where every
    worker picks it up. Keeps a checkpoint in PSYMON_DATA_DIR/models to resume after a
    restart without renumbering. Reads PSYMON_KAFKA_BOOTSTRAP (required), PSYMON_PARTITIONS.
    Stops cleanly on Ctrl-C or SIGTERM.
    """
    from services.embedded import BrokerError
    from services.embedded.postgres import store_url
    from services.trainer import run_trainer, setup_logging

    try:
        keywords = training_keywords(training)
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    setup_logging(loglevel)
    settings = _settings()
    bootstrap = _bootstrap(settings)
    with store_url(settings) as url:
        try:
            run_trainer(
                bootstrap,
                settings.partitions,
                data_dir=settings.data_dir,
                database_url=url,
                models_topic=models_topic,
                **keywords,
            )
        except (BrokerError, ValueError) as error:
            raise click.ClickException(str(error)) from None


def _core_config(settings: Settings) -> CoreConfig | None:
    if settings.core_config_file is None:
        return None
    from services.replay import load_core_config

    try:
        return load_core_config(settings.core_config_file)
    except ValueError as error:
        raise click.ClickException(f"PSYMON_CORE_CONFIG_FILE: {error}") from None


@cli.command()
def sink() -> None:
    """Store every event and output from the broker in PostgreSQL, exactly once.

    Reads PSYMON_KAFKA_BOOTSTRAP (required) and PSYMON_DATABASE_URL (unset: the embedded
    PostgreSQL under PSYMON_DATA_DIR). Batches are loaded idempotently and broker offsets
    are committed only after the database commit; a database that goes away is retried
    with backoff while consumption pauses. Stops cleanly on Ctrl-C or SIGTERM.
    """
    import signal
    import threading

    from services.embedded.postgres import store_url
    from services.sink import run_sink

    settings = _settings()
    bootstrap = _bootstrap(settings)
    with store_url(settings) as url:
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        stats = run_sink(bootstrap, url, stop_event=stop)
        click.echo(
            f"sink stopped: {stats.records} records, {sum(stats.inserted.values())} rows stored, "
            f"{sum(stats.duplicates.values())} duplicates skipped",
            err=True,
        )


@cli.group()
def db() -> None:
    """The store: PostgreSQL (TimescaleDB in production)."""


@db.command("migrate")
@click.option(
    "--flavour",
    type=click.Choice(["auto", "postgres", "timescale"]),
    default="auto",
    show_default=True,
    help="auto: TimescaleDB layout when the extension is available, else plain PostgreSQL.",
)
def db_migrate(flavour: str) -> None:
    """Create or update the store's tables, partitions and views (idempotent).

    Reads PSYMON_DATABASE_URL (unset: the embedded PostgreSQL under PSYMON_DATA_DIR).
    Applied versions are recorded in psymon_schema_migrations; re-running changes nothing.
    """
    from services.embedded.postgres import store_url
    from services.store.cli_support import run_migrate
    from services.store.migrate import MigrationError

    settings = _settings()
    with store_url(settings) as url:
        try:
            applied = run_migrate(url, flavour=flavour)  # type: ignore[arg-type]
        except MigrationError as error:
            raise click.ClickException(str(error)) from None
    click.echo(f"applied: {', '.join(applied)}" if applied else "the store is up to date")


@cli.command()
@click.option("--patients", default=200, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--days", default=180, show_default=True, type=click.IntRange(1, 3650))
@click.option("--seed", default=1, show_default=True, type=int)
@click.option("--samples-per-hour", default=12, show_default=True, type=click.IntRange(1, 60))
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write JSONL (.gz compresses) and <name>.truth.json; default: send to the broker.",
)
def simulate(patients: int, days: int, seed: int, samples_per_hour: int, out: Path | None) -> None:
    """Simulate a cohort with known ground truth (see docs/simulator.md).

    Seeded and deterministic: the same seed gives byte-identical output. Writes JSONL with
    --out, else produces the events to PSYMON_KAFKA_BOOTSTRAP in arrival order.
    """
    from services.simulator import cli_simulate, simulate_cohort

    if out is not None:
        summary = cli_simulate(patients, days, seed, out, samples_per_hour=samples_per_hour)
        for line in summary.lines():
            click.echo(line)
        return
    from services.producer import KafkaEventSink

    settings = _settings()
    if settings.kafka_bootstrap is None:
        raise click.ClickException(
            "PSYMON_KAFKA_BOOTSTRAP is not set; give --out FILE, or a broker address"
        )
    cohort = simulate_cohort(
        patients, days, seed, _simulation_start(days), samples_per_hour=samples_per_hour
    )
    sent = 0
    with (
        KafkaEventSink(settings.kafka_bootstrap, client_id="psymon-simulator") as producer,
        click.progressbar(cohort.events(), length=len(cohort), label="sending") as events,
    ):
        for event in events:
            producer.send(event)
            sent += 1
    click.echo(f"sent {sent} events of {patients} simulated patients over {days} days")


@cli.command()
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option(
    "--port", default=8000, show_default=True, type=int, help="Port of the API and web views."
)
def up(workers: int, port: int) -> None:
    """Run every psymon component on this machine until Ctrl-C, for real data.

    Starts the broker (embedded unless PSYMON_KAFKA_BOOTSTRAP is set), PostgreSQL
    (embedded unless PSYMON_DATABASE_URL is set; data kept in PSYMON_DATA_DIR), the
    store's migrations, the stream workers, the sink and the API with its web views.
    Send events with `psymon ingest` or POST /v1/events. Ctrl-C stops everything.
    """
    _run_stack(workers=workers, port=port, cohort=None)


@cli.command()
@click.option("--patients", default=200, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--days", default=180, show_default=True, type=click.IntRange(1, 3650))
@click.option("--seed", default=1, show_default=True, type=int)
@click.option("--samples-per-hour", default=4, show_default=True, type=click.IntRange(1, 60))
@click.option(
    "--speedup",
    default=14_400.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Simulated seconds per wall-clock second (14,400: a day every 6 s); 0: no pacing.",
)
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option(
    "--port", default=8000, show_default=True, type=int, help="Port of the API and web views."
)
def demo(
    patients: int,
    days: int,
    seed: int,
    samples_per_hour: int,
    speedup: float,
    workers: int,
    port: int,
) -> None:
    """`psymon up` plus a simulated cohort streamed through the real pipeline.

    Everything runs on the embedded default; data is kept in PSYMON_DATA_DIR, so running
    the demo again reuses it (the same seed sends the same events: nothing is doubled).
    """
    _run_stack(workers=workers, port=port, cohort=(patients, days, seed, samples_per_hour, speedup))


def _run_stack(*, workers: int, port: int, cohort: tuple[int, int, int, int, float] | None) -> None:
    import threading

    from services.runtime import (
        ProgressProbe,
        Stack,
        StackError,
        say_at_once,
        shielded_from_signals,
        stop_signals,
    )

    settings = _settings()
    began = time.monotonic()
    stack = Stack(settings, workers=workers, api_port=port)
    stop = threading.Event()
    interrupted = False
    try:
        with stop_signals():
            try:
                stack.start(echo=lambda line: click.echo(f"psymon  {line}"))
            except StackError as error:
                raise click.ClickException(str(error)) from None
            _demo_login(settings)
            if cohort is not None:
                threading.Thread(
                    target=_stream_cohort, args=(stack.bootstrap, cohort, stop), daemon=True
                ).start()
            click.echo(
                f"psymon  ready in {time.monotonic() - began:.0f} s: open {stack.api_url}/  "
                "(Ctrl-C stops everything)"
            )
            probe = ProgressProbe(stack.database_url, stack.bootstrap)
            shown: tuple[object, ...] = ()
            quiet_since = time.monotonic()
            while True:
                time.sleep(3)
                stack.check()
                try:
                    progress = probe.read()
                except Exception as error:  # progress is best effort
                    click.echo(f"psymon  (progress unavailable: {type(error).__name__})")
                    continue
                key = (progress.stored, progress.lag, sorted(progress.alerts.items()))
                if key != shown or time.monotonic() - quiet_since > 60:
                    click.echo(f"psymon  {progress.line()}")
                    shown, quiet_since = key, time.monotonic()
    except KeyboardInterrupt:
        interrupted = True
    except StackError as error:
        raise click.ClickException(str(error)) from None
    finally:
        with shielded_from_signals(lambda line: say_at_once(f"psymon  {line}")):
            if interrupted:
                click.echo("\npsymon  stopping: workers, trainer, sink, API, database, broker")
            stop.set()
            stack.stop()
        click.echo("psymon  stopped")


def _demo_login(settings: Settings) -> None:
    """Make sure a clinician token exists for the web views; say where it is, not what it is."""
    from services.api.auth import TokenStore

    path = settings.data_dir / "demo-clinician-token"
    store = TokenStore.load(settings.tokens_path)
    if not path.exists() or store.authenticate(path.read_text(encoding="utf-8").strip()) is None:
        token = store.add(settings.tokens_path, f"demo-clinician-{int(time.time())}", "clinician")
        path.write_text(token + "\n", encoding="utf-8")
        path.chmod(0o600)
    click.echo(f"psymon  web views log in with the clinician token in {path}")


def _stream_cohort(bootstrap: str, cohort: tuple[int, int, int, int, float], stop: Any) -> None:
    from services.producer import KafkaEventSink
    from services.simulator import simulate_cohort

    patients, days, seed, samples_per_hour, speedup = cohort
    simulated = simulate_cohort(
        patients, days, seed, _simulation_start(days), samples_per_hour=samples_per_hour
    )
    click.echo(
        f"psymon  simulator: {len(simulated):,} events for {patients} patients over {days} days"
    )
    sent = 0
    with KafkaEventSink(bootstrap, client_id="psymon-simulator") as producer:
        # Paced like a live clinic: events reach the broker in the order and at the
        # (accelerated) pace they arrived, so no topic runs days ahead of another.
        for event in simulated.stream(speedup=speedup or None):
            if stop.is_set():
                return
            producer.send(event)
            sent += 1
            if sent % 5000 == 0:
                producer.flush()
    click.echo(f"psymon  simulator: all {sent:,} events sent")


def _when(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    if value is None:
        return None
    from services.replay import parse_when

    try:
        return parse_when(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def _patients(given: tuple[str, ...], patients_file: Path | None) -> list[str] | None:
    chosen = list(given)
    if patients_file is not None:
        chosen += [
            line.strip()
            for line in patients_file.read_text(encoding="utf-8").splitlines()
            if line.strip()
        ]
    return chosen or None


def _who() -> str:
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


_selection_options = [
    click.option("--patient", "patient", multiple=True, help="A patient pseudonym (repeatable)."),
    click.option(
        "--patients-file",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="A file of patient pseudonyms, one per line.",
    ),
    click.option("--since", callback=_when, help="From this time (a date means UTC midnight)."),
    click.option("--until", callback=_when, help="Until this time (exclusive)."),
]


def _with_selection(command: Any) -> Any:
    for option in reversed(_selection_options):
        command = option(command)
    return command


@cli.command()
@_with_selection
@click.option(
    "--kind",
    "kinds",
    multiple=True,
    type=click.Choice(
        ["clinical_score", "wearable_upload", "wearable_sample", "lab_result", "clinical_outcome"]
    ),
    help="Event kinds to replay (repeatable; default: all).",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Core configuration (JSON or TOML); default PSYMON_CORE_CONFIG_FILE, else built-in.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write Parquet files and manifest.json here.",
)
@click.option(
    "--to-topic", help="Also send the outputs to this topic (needs PSYMON_KAFKA_BOOTSTRAP)."
)
@click.option(
    "--models",
    default="config",
    show_default=True,
    type=click.Choice(["config", "as-live"]),
    help="Risk model versions: the configuration's model (none by default), or for each "
    "event the version live used (the store's model_versions), reproducing live risk "
    "assessments and relapse_risk alerts.",
)
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    help="Most processes to replay in (patients are shared out; the outputs are the same); "
    "default one per CPU. A small replay uses fewer; 1 replays in this process.",
)
def replay(
    patient: tuple[str, ...],
    patients_file: Path | None,
    since: datetime | None,
    until: datetime | None,
    kinds: tuple[str, ...],
    config_file: Path | None,
    out_dir: Path | None,
    to_topic: str | None,
    models: str,
    jobs: int | None,
) -> None:
    """Replay stored events through the same core, offline, with a chosen configuration.

    Reads the store (PSYMON_DATABASE_URL, else the embedded PostgreSQL) in each patient's
    arrival order and writes trajectories, features, risk and alerts as Parquet with a
    manifest (filters, row counts, code and configuration versions), and/or sends the
    outputs to --to-topic. Replaying the live history with the live configuration
    reproduces the live outputs. Every replay is recorded in the audit log.
    """
    from services.embedded.postgres import store_url
    from services.replay import replay as run_replay

    if out_dir is None and to_topic is None:
        raise click.UsageError("give --out DIR, --to-topic NAME, or both")
    settings = _settings()
    if to_topic is not None and settings.kafka_bootstrap is None:
        raise click.ClickException("--to-topic needs PSYMON_KAFKA_BOOTSTRAP")
    with store_url(settings) as url:
        bar: Any = None

        def progress(done: int, total: int | None) -> None:
            nonlocal bar
            if bar is None:
                bar = click.progressbar(
                    length=max(total or 1, 1), label="replaying", file=sys.stderr
                )
                bar.__enter__()
            bar.update(done - bar.pos)

        try:
            manifest = run_replay(
                url,
                patients=_patients(patient, patients_file),
                since=since,
                until=until,
                kinds=kinds or None,
                config_file=config_file or settings.core_config_file,
                out_dir=out_dir,
                to_topic=to_topic,
                bootstrap=settings.kafka_bootstrap,
                topic_partitions=settings.partitions,
                progress=progress,
                who=_who(),
                models=cast("Any", models),
                jobs=jobs,
            )
        except (ValueError, FileExistsError) as error:
            raise click.ClickException(str(error)) from None
        finally:
            if bar is not None:
                bar.__exit__(None, None, None)
    _print_manifest(manifest)


@cli.command()
@click.argument("names", nargs=-1, required=True)
@_with_selection
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--format",
    "format_",
    type=click.Choice(["parquet", "csv", "fhir"]),
    default="parquet",
    show_default=True,
)
@click.option(
    "--include-raw-dead-letters",
    is_flag=True,
    help="Also export dead letters' raw payloads (they may hold what producers sent).",
)
@click.option(
    "--bundle-size",
    default=1000,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="Resources per FHIR Bundle.",
)
def export(
    names: tuple[str, ...],
    patient: tuple[str, ...],
    patients_file: Path | None,
    since: datetime | None,
    until: datetime | None,
    out_dir: Path,
    format_: str,
    include_raw_dead_letters: bool,
    bundle_size: int,
) -> None:
    """Export tables or views (NAMES, e.g. v_patient_scores v_alerts) for a study.

    Writes Parquet or CSV with a manifest (query, row counts, schema and code versions,
    sha256 of each file) so a study can cite exactly what it used; --format fhir writes
    FHIR R4 Observations, RiskAssessments and Flags as Bundles an EHR can take back. Only
    pseudonymised data is exported. Every export is recorded in the audit log.
    """
    from services.embedded.postgres import store_url
    from services.export import export as run_export

    settings = _settings()
    with store_url(settings) as url:
        try:
            manifest = run_export(
                url,
                tables_or_views=list(names),
                format=format_,  # type: ignore[arg-type]
                out_dir=out_dir,
                patients=_patients(patient, patients_file),
                since=since,
                until=until,
                who=_who(),
                include_raw_dead_letters=include_raw_dead_letters,
                bundle_size=bundle_size,
            )
        except (ValueError, FileExistsError) as error:
            raise click.ClickException(str(error)) from None
    _print_manifest(manifest)


def _print_manifest(manifest: Any) -> None:
    for name, rows in manifest.row_counts.items():
        click.echo(f"{name:<24} {rows:>10,} rows")
    if manifest.path is not None:
        click.echo(f"manifest: {manifest.path} (sha256 {manifest.sha256})")


@cli.command()
@click.option(
    "--seed", "seeds", multiple=True, type=int, help="Cohort seed (repeatable; default 1 2 3)."
)
@click.option(
    "--patients",
    default=60,
    show_default=True,
    type=click.IntRange(4, 10_000),
    help="Training patients per seed (as many again are held out).",
)
@click.option("--days", default=180, show_default=True, type=click.IntRange(30, 3650))
@click.option(
    "--budget",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0.01),
    help="Alerts per patient-month the thresholds are chosen for.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write the model card and its plots here (e.g. docs).",
)
def evaluate(
    seeds: tuple[int, ...], patients: int, days: int, budget: float, out_dir: Path | None
) -> None:
    """Evaluate the relapse-risk model against two baselines on simulated cohorts.

    Prequential (predict, then learn), split by patient and forward in time, never by
    shuffled days. Reports ROC-AUC, PR-AUC, F2, sensitivity at the alert budget, median
    lead time and alerts per patient-month with bootstrap confidence intervals, for the
    model, score-threshold rules, and a personal anomaly-rate rule (Barnett 2018).
    """
    from services.evaluate import cli_evaluate

    cli_evaluate(seeds or (1, 2, 3), patients, days, out_dir, budget=budget, echo=click.echo)


@cli.command()
@click.argument("spec", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="A new or empty directory for results, plots and the manifest.",
)
def study(spec: Path, out_dir: Path) -> None:
    """Run the study SPEC (JSON or TOML; see docs/stratification.md) on the stored events.

    Defines a cohort (subgroup, biomarker thresholds, diagnosis, time window) and arms or
    exposure groups; computes endpoints (score change, digital endpoints, time to relapse
    with censoring, subgroup transitions); writes effect sizes with confidence intervals,
    Kaplan-Meier curves (PNG and CSV), tables and a manifest of exactly which events and
    code version produced them. Reads PSYMON_DATABASE_URL (else the embedded store). Every
    study is recorded in the audit log.
    """
    from services.embedded.postgres import store_url
    from services.replay.audit import AuditUnavailable
    from services.study.run import run_study

    settings = _settings()
    with store_url(settings) as url:
        try:
            manifest = run_study(url, spec, out_dir, who=_who())
        except (ValueError, FileExistsError, AuditUnavailable) as error:
            raise click.ClickException(str(error)) from None
    _print_manifest(manifest)


@cli.group()
def subgroups() -> None:
    """The population subgroup model: fit numbered versions from the stored history."""


@subgroups.command("fit")
@click.option("--until", callback=_when, help="Use events observed before this time only.")
@click.option("--k", "k", type=click.IntRange(1, 12), help="Clusters (default: chosen by BIC).")
@click.option("--max-k", default=4, show_default=True, type=click.IntRange(1, 12))
@click.option(
    "--feature",
    "features",
    multiple=True,
    help="A profile feature to cluster on (repeatable; default: the trait features).",
)
@click.option("--name", default="profile_mixture", show_default=True, help="The model's name.")
@click.option(
    "--models-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where versions are published (default: PSYMON_DATA_DIR/models).",
)
@click.option("--seed", default=0, show_default=True, type=int)
@models_topic_option("Where workers find versions (compacted, one partition; created if missing).")
@click.option(
    "--no-publish",
    is_flag=True,
    help="Archive the version only: no worker picks it up (a study's fit).",
)
def subgroups_fit(
    until: datetime | None,
    k: int | None,
    max_k: int,
    features: tuple[str, ...],
    name: str,
    models_dir: Path | None,
    seed: int,
    models_topic: str,
    no_publish: bool,
) -> None:
    """Fit the next subgroup model version from the stored events and publish it.

    Replays every stored input event through the core (PSYMON_CORE_CONFIG_FILE, else the
    built-in configuration), fits a Gaussian mixture to the patients' biomarker profiles
    (labels matched to the newest version) and writes it as <name>.v<version>.json to the
    models directory, archives it in the store's model_versions table (for replays and
    rebuilds) and publishes it to --models-topic on PSYMON_KAFKA_BOOTSTRAP, where every
    worker picks it up within seconds (not when the broker is not set, or --no-publish).
    Reads PSYMON_DATABASE_URL (else the embedded store); recorded in the audit log.
    Prints the file and the clusters.
    """
    from services.embedded.postgres import store_url
    from services.replay.audit import AuditUnavailable
    from services.replay.run import load_core_config
    from services.study.subgroup_models import fit_from_store

    settings = _settings()
    topic_store = None
    if not no_publish and settings.kafka_bootstrap is not None:
        from services.embedded.topics import BrokerError, ensure_models_topic
        from services.live_models import TopicModelStore

        try:
            ensure_models_topic(settings.kafka_bootstrap, models_topic)
        except BrokerError as error:
            raise click.ClickException(str(error)) from None
        topic_store = TopicModelStore(settings.kafka_bootstrap, models_topic)
    with store_url(settings) as url:
        try:
            config = (
                load_core_config(settings.core_config_file) if settings.core_config_file else None
            )
            report = fit_from_store(
                url,
                models_dir or settings.data_dir / "models",
                config=config,
                until=until,
                name=name,
                k=k,
                max_k=max_k,
                features=features or None,
                seed=seed,
                who=_who(),
                publish=None if topic_store is None else topic_store.publish,
            )
        except (ValueError, AuditUnavailable) as error:
            raise click.ClickException(str(error)) from None
        finally:
            if topic_store is not None:
                topic_store.close()
    snap = report.snapshot
    click.echo(
        f"{snap.name} v{snap.version}: {len(snap.labels)} clusters from {report.profiles_used} "
        f"of {report.patients} patients ({report.events:,} events), trained until "
        f"{snap.trained_until.isoformat() if snap.trained_until else '-'}"
    )
    for label, description in zip(snap.labels, snap.descriptions, strict=True):
        click.echo(f"  {label}: {description}")
    click.echo(f"{report.path}  sha256 {report.sha256}")
    if report.published:
        click.echo(f"published to {models_topic}: workers assign clusters with v{snap.version}")
    else:
        why = "--no-publish" if no_publish else "PSYMON_KAFKA_BOOTSTRAP is not set"
        click.echo(f"archived, not published ({why}): workers keep the version they have")


@cli.group()
def dashboards() -> None:
    """Grafana dashboards as code (dashboards/json, generated by `python -m dashboards`)."""


@dashboards.command("push")
@click.option(
    "--url", envvar="GRAFANA_URL", required=True, help="Grafana base URL (or GRAFANA_URL)."
)
@click.option(
    "--token",
    envvar="GRAFANA_TOKEN",
    required=True,
    help="A Grafana service-account token (or GRAFANA_TOKEN, which keeps it out of shell history).",
)
@click.option("--folder", default="psymon", show_default=True, help="Grafana folder to push into.")
def dashboards_push(url: str, token: str, folder: str) -> None:
    """Upload psymon's dashboards to a Grafana with grafana-client.

    Grafana instances provisioned by docker-compose.yml already load them from files;
    push is for other Grafana instances. Prints the URL of each dashboard.
    """
    from dashboards.push import PushError, push_dashboards

    try:
        for address in push_dashboards(url, token, folder):
            click.echo(address)
    except PushError as error:
        raise click.ClickException(str(error)) from None


@cli.group()
def tokens() -> None:
    """Manage API tokens (stored hashed in PSYMON_API_TOKENS_FILE)."""


@tokens.command("add")
@click.option("--name", required=True, help="Who or what uses the token.")
@click.option(
    "--role", required=True, type=click.Choice(["ingest", "clinician", "researcher", "admin"])
)
def tokens_add(name: str, role: str) -> None:
    """Create a token with ROLE; it is printed once and only its hash is stored."""
    from services.api.auth import TokenError, TokenStore

    settings = _settings()
    path = settings.tokens_path
    try:
        token = TokenStore.load(path).add(path, name, role)  # type: ignore[arg-type]
    except TokenError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"token for {name} ({role}), shown once; stored hashed in {path}:", err=True)
    click.echo(token)


_SIMULATION_START = datetime(2026, 1, 5, tzinfo=UTC)
#: Days after the last simulated day that the simulator's outcomes may still arrive
#: (detection up to 10 days + report up to 50; admission 14 + stay 35 + letter 7).
_LATEST_ARRIVAL_DAYS = 62


def _simulation_start(days: int, now: datetime | None = None) -> datetime:
    """The first day of a cohort sent to the broker: the fixed Monday, or earlier if needed.

    Every receiver refuses a ``received_at`` more than a day after its own clock
    (:func:`schemas.dispatch.decode`), so a simulated history must have arrived
    entirely by now. The fixed start keeps the same arguments giving the same
    events; only a cohort too long to end before today starts on an earlier
    Monday (``--out`` files keep the fixed start: no receiver judges them yet).

    >>> _simulation_start(180, now=datetime(2026, 11, 29, tzinfo=UTC)).date()
    datetime.date(2026, 1, 5)
    >>> _simulation_start(365, now=datetime(2026, 11, 29, tzinfo=UTC)).date()
    datetime.date(2025, 9, 22)
    """
    from datetime import timedelta

    latest = (now or datetime.now(UTC)) - timedelta(days=days + _LATEST_ARRIVAL_DAYS)
    if latest >= _SIMULATION_START:
        return _SIMULATION_START
    monday = latest - timedelta(days=latest.weekday())
    return monday.replace(hour=0, minute=0, second=0, microsecond=0)


def _print_verdict(verdict: Verdict) -> None:
    if verdict.status == "rejected":
        click.echo(f"REJECTED  {verdict.where}: {verdict.reason}")
        return
    if verdict.status in ("unsupported", "duplicate"):
        click.echo(f"{verdict.status.upper():<9} {verdict.where}: {verdict.reason or ''}")
        return
    for event in verdict.events:
        click.echo(f"ok        {verdict.where}: {event.model_dump_json()}")


def _bootstrap(settings: Settings) -> str:
    """The broker address every producing or consuming command needs."""
    if settings.kafka_bootstrap is None:
        raise click.ClickException(
            "PSYMON_KAFKA_BOOTSTRAP is not set; expected host:port of a broker "
            "(start one with `psymon broker`)"
        )
    return settings.kafka_bootstrap


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as error:
        raise click.ClickException(str(error)) from None


def main() -> None:
    """Entry point of the ``psymon`` console script."""
    cli()


__all__ = ["Path", "cli", "main"]
