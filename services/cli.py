"""The ``psymon`` command line.

Each command says in its ``--help`` what it does and what it reads. Settings
come from ``PSYMON_*`` environment variables (see ``services.settings``).
"""

from __future__ import annotations

import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import click

from services.intake import Verdict, read_verdicts
from services.settings import SettingsError, load_settings


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
        click.echo("note: PSYMON_PSEUDONYM_KEY is not set; pseudonyms below use a throwaway key", err=True)
    data = file.read()
    name = getattr(file, "name", "-")
    received_at = datetime.now(UTC)
    counts: Counter[str] = Counter()
    events = 0
    try:
        verdicts = list(read_verdicts(data, name=str(name), received_at=received_at, key=key, format=format_))  # type: ignore[arg-type]
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    for verdict in verdicts:
        counts[verdict.status] += 1
        events += len(verdict.events)
        if not quiet or verdict.status == "rejected":
            _print_verdict(verdict)
    summary = ", ".join(f"{counts[s]} {s}" for s in ("accepted", "rejected", "unsupported", "duplicate") if counts[s])
    click.echo(f"{sum(counts.values())} records: {summary or 'none'}; {events} events")
    if counts["rejected"]:
        sys.exit(1)


def _print_verdict(verdict: Verdict) -> None:
    if verdict.status == "rejected":
        click.echo(f"REJECTED  {verdict.where}: {verdict.reason}")
        return
    if verdict.status in ("unsupported", "duplicate"):
        click.echo(f"{verdict.status.upper():<9} {verdict.where}: {verdict.reason or ''}")
        return
    for event in verdict.events:
        click.echo(f"ok        {verdict.where}: {event.model_dump_json()}")


def _settings():  # noqa: ANN202 - click glue
    try:
        return load_settings()
    except SettingsError as error:
        raise click.ClickException(str(error)) from None


def main() -> None:
    """Entry point of the ``psymon`` console script."""
    cli()


__all__ = ["cli", "main", "Path"]
