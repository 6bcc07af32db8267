"""The ``psymon`` command line.

Each command says in its ``--help`` what it does and what it reads. Settings
come from ``PSYMON_*`` environment variables (see ``services.settings``).
"""

from __future__ import annotations

import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, cast

import click

from services.intake import Format, Verdict, read_verdicts
from services.settings import Settings, SettingsError, load_settings

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
    if settings.kafka_bootstrap is None:
        raise click.ClickException(
            "PSYMON_KAFKA_BOOTSTRAP is not set; expected host:port of a broker "
            "(start one with `psymon broker`)"
        )
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
        KafkaEventSink(settings.kafka_bootstrap) as sink,
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
    """Serve the HTTP API (POST /v1/events) in the foreground.

    Reads PSYMON_KAFKA_BOOTSTRAP (where events go) and PSYMON_API_TOKENS_FILE (who may
    call; create tokens with `psymon tokens add`). Events arrive already pseudonymised.
    """
    import uvicorn

    from services.api.app import create_app
    from services.api.auth import TokenStore
    from services.producer import KafkaEventSink

    settings = _settings()
    if settings.kafka_bootstrap is None:
        raise click.ClickException(
            "PSYMON_KAFKA_BOOTSTRAP is not set; expected host:port of a broker"
        )
    tokens = TokenStore.load(settings.tokens_path)
    app = create_app(
        sink=KafkaEventSink(settings.kafka_bootstrap, client_id="psymon-api"), tokens=tokens
    )
    uvicorn.run(app, host=host, port=port, log_level="info")


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
def worker(app_id: str, loglevel: str) -> None:
    """Run a stream worker: read the input topics, keep each patient's state, emit outputs.

    Reads PSYMON_KAFKA_BOOTSTRAP (required), PSYMON_PARTITIONS, PSYMON_DATA_DIR and
    PSYMON_CORE_CONFIG_FILE. Writes course updates, risk, alerts and dead letters to their
    topics. Start more workers with the same --app-id to share the partitions.
    """
    from services.worker import run_worker

    settings = _settings()
    if settings.kafka_bootstrap is None:
        raise click.ClickException(
            "PSYMON_KAFKA_BOOTSTRAP is not set; expected host:port of a broker "
            "(start one with `psymon broker`)"
        )
    sys.exit(
        run_worker(
            settings.kafka_bootstrap,
            settings.partitions,
            app_id=app_id,
            data_dir=settings.data_dir,
            config=_core_config(settings),
            loglevel=loglevel,
        )
    )


def _core_config(settings: Settings) -> CoreConfig | None:
    if settings.core_config_file is None:
        return None
    from streams import CoreConfig

    try:
        return CoreConfig.model_validate_json(settings.core_config_file.read_bytes())
    except (OSError, ValueError) as error:
        raise click.ClickException(
            f"PSYMON_CORE_CONFIG_FILE {settings.core_config_file}: {error}"
        ) from None


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
    from services.api.auth import TokenStore

    settings = _settings()
    path = settings.tokens_path
    token = TokenStore.load(path).add(path, name, role)  # type: ignore[arg-type]
    click.echo(f"token for {name} ({role}), shown once; stored hashed in {path}:", err=True)
    click.echo(token)


def _print_verdict(verdict: Verdict) -> None:
    if verdict.status == "rejected":
        click.echo(f"REJECTED  {verdict.where}: {verdict.reason}")
        return
    if verdict.status in ("unsupported", "duplicate"):
        click.echo(f"{verdict.status.upper():<9} {verdict.where}: {verdict.reason or ''}")
        return
    for event in verdict.events:
        click.echo(f"ok        {verdict.where}: {event.model_dump_json()}")


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as error:
        raise click.ClickException(str(error)) from None


def main() -> None:
    """Entry point of the ``psymon`` console script."""
    cli()


__all__ = ["Path", "cli", "main"]
