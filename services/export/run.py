"""``psymon export``: tables and views of the store as Parquet, CSV or FHIR, with a manifest.

Everything is read in one read-only, repeatable-read transaction: the files
are one consistent snapshot of the store even while the sink keeps writing,
and the manifest names that snapshot. The export is recorded in the audit
log before it starts and completed with its row counts and the manifest's
sha256 when it ends.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import psycopg
from psycopg import IsolationLevel

from schemas.fhir.export import BundleType
from services.export.fhir import fhir_kind, fhir_query, fhir_resources, write_bundles
from services.export.relations import Relation, describe, select
from services.export.tabular import CsvRows, ParquetRows, RowWriter, write_rows
from services.replay.audit import audit_finished, audit_started, describe_error, require_audit_log
from services.replay.provenance import (
    MANIFEST_VERSION,
    FileEntry,
    Manifest,
    code_version,
    code_version_text,
    file_entry,
    iso,
    prepare_out_dir,
    store_schema,
    utc_now,
    write_manifest,
)
from services.replay.query import EventQuery

Format = Literal["parquet", "csv", "fhir"]
FORMATS: tuple[Format, ...] = ("parquet", "csv", "fhir")

#: Rows fetched per round trip and written per Parquet row group.
BATCH_ROWS = 20_000


def export(
    url: str,
    *,
    tables_or_views: Sequence[str],
    format: Format = "parquet",
    out_dir: Path,
    patients: Sequence[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    who: str = "cli",
    include_raw_dead_letters: bool = False,
    bundle_type: BundleType = "transaction",
    bundle_size: int = 1000,
) -> Manifest:
    """Export tables or views to files in ``out_dir`` with a ``manifest.json``.

    Parameters
    ----------
    url
        The store.
    tables_or_views
        Names such as ``v_course``, ``v_patient_scores``, ``alerts`` (see
        :mod:`services.export.relations`; for FHIR :data:`services.export.fhir.FHIR_SOURCES`).
    format
        ``parquet`` or ``csv`` (one file per relation, ``<name>.<ext>``), or
        ``fhir`` (R4 Bundles, ``fhir-<relation>-NNNN.json``).
    out_dir
        A new or empty directory.
    patients, since, until
        Only these pseudonyms; only rows whose time column (``observed_at``,
        else ``day``, ``updated_at``, ``received_at``...) lies in
        ``[since, until)``. A relation without the column refuses the filter.
    who
        Who exports, for the audit log.
    include_raw_dead_letters
        Also export the raw payload text of dead letters (left out by default).
    bundle_type, bundle_size
        FHIR only: ``transaction`` (conditional updates, for an EHR) or
        ``collection``; entries per Bundle file.

    Returns
    -------
    Manifest
        What was written, as in ``manifest.json``.
    """
    if format not in FORMATS:
        raise ValueError(f"format {format!r} is not known; accepted: {', '.join(FORMATS)}")
    names = list(dict.fromkeys(tables_or_views))
    if not names:
        raise ValueError("name at least one table or view to export (e.g. v_course)")
    if format == "fhir":
        for name in names:
            fhir_kind(name)
    filters = EventQuery.of(patients, since, until)  # the same checks as replay
    directory = prepare_out_dir(out_dir)
    version = code_version()
    started = utc_now()
    parameters = {
        "relations": names,
        "format": format,
        "filters": _filters(filters),
        "out_dir": str(directory.resolve()),
        "include_raw_dead_letters": include_raw_dead_letters,
    }
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as audit_conn:
        require_audit_log(audit_conn)
        audit_id = audit_started(
            audit_conn,
            "export",
            who,
            parameters,
            code_version=code_version_text(version),
            started_at=started,
        )
        counts: dict[str, int] = {}
        try:
            with _snapshot(url) as conn:
                schema = store_schema(conn)
                snapshot = conn.execute("SELECT pg_current_snapshot()::text, now()").fetchone()
                relations = [
                    _export_fhir(conn, name, directory, filters, started, bundle_type, bundle_size)
                    if format == "fhir"
                    else _export_table(
                        conn, name, format, directory, filters, include_raw_dead_letters
                    )
                    for name in names
                ]
            counts = {r["name"]: r["rows"] for r in relations}
            manifest = {
                "manifest_version": MANIFEST_VERSION,
                "kind": "export",
                "audit_id": str(audit_id),
                "who": who,
                "format": format,
                "filters": _filters(filters),
                "snapshot": {
                    "as_of": iso(snapshot[1]) if snapshot else None,
                    "pg_snapshot": snapshot[0] if snapshot else None,
                    "isolation": "repeatable read, read only",
                },
                "relations": relations,
                "row_counts": counts,
                "files": [f for r in relations for f in r["files"]],
                "schema": schema,
                "code": version,
                "started_at": iso(started),
                "finished_at": iso(utc_now()),
            }
            written = write_manifest(directory, manifest)
        except BaseException as error:
            audit_finished(audit_conn, audit_id, row_counts=counts, error=describe_error(error))
            raise
        audit_finished(audit_conn, audit_id, row_counts=counts, manifest_sha256=written.sha256)
    return Manifest(directory / written.name, manifest, written.sha256)


def _filters(filters: EventQuery) -> dict[str, Any]:
    data = filters.as_dict()
    return {"patients": data["patients"], "since": data["since"], "until": data["until"]}


def _snapshot(url: str) -> psycopg.Connection[Any]:
    conn = psycopg.connect(url, connect_timeout=10)
    conn.isolation_level = IsolationLevel.REPEATABLE_READ
    conn.read_only = True
    conn.execute("SET TIME ZONE 'UTC'")
    return conn


def _batches(
    conn: psycopg.Connection[Any], statement: Any, params: list[Any]
) -> Iterator[list[tuple[Any, ...]]]:
    with conn.cursor(name="psymon_export") as cursor:
        cursor.itersize = BATCH_ROWS
        cursor.execute(statement, params)
        while batch := cursor.fetchmany(BATCH_ROWS):
            yield batch


def _export_table(
    conn: psycopg.Connection[Any],
    name: str,
    format: Format,
    out_dir: Path,
    filters: EventQuery,
    include_raw: bool,
) -> dict[str, Any]:
    relation = describe(conn, name, include_raw=include_raw)
    statement, params = select(
        relation, patients=filters.patients, since=filters.since, until=filters.until
    )
    path = out_dir / f"{name}.{format}"
    writer: RowWriter = (
        ParquetRows(path, relation.columns)
        if format == "parquet"
        else CsvRows(path, relation.columns)
    )
    rows = write_rows(writer, _batches(conn, statement, params))
    return _relation_entry(relation, statement.as_string(conn), rows, [file_entry(path, rows)])


def _relation_entry(
    relation: Relation, query: str, rows: int, files: list[FileEntry]
) -> dict[str, Any]:
    return {
        "name": relation.name,
        "query": query,
        "columns": [{"name": c.name, "type": c.pg_type} for c in relation.columns],
        "omitted_columns": list(relation.omitted),
        "time_column": relation.time_column,
        "rows": rows,
        "files": [f.as_dict() for f in files],
    }


def _export_fhir(
    conn: psycopg.Connection[Any],
    name: str,
    out_dir: Path,
    filters: EventQuery,
    timestamp: datetime,
    bundle_type: BundleType,
    bundle_size: int,
) -> dict[str, Any]:
    kind = fhir_kind(name)
    statement, params = fhir_query(
        kind, patients=filters.patients, since=filters.since, until=filters.until
    )
    files = write_bundles(
        fhir_resources(conn, statement, params),
        out_dir,
        name.replace("_", "-"),
        timestamp=timestamp,
        bundle_type=bundle_type,
        bundle_size=bundle_size,
    )
    return {
        "name": name,
        "query": statement.as_string(conn),
        "fhir": {"version": "4.0.1", "resources": kind, "bundle_type": bundle_type},
        "rows": sum(f.rows for f in files),
        "files": [f.as_dict() for f in files],
    }


__all__ = ["FORMATS", "Format", "export"]
