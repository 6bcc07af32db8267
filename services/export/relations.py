"""What may be exported, and the query that reads it.

Any view psymon creates (``v_*``, the form dashboards read) and the store's
tables may be exported. Only pseudonymised data is in the store; still, the
raw text of dead letters (a record psymon could not accept may hold anything
a producer sent) is left out unless the caller asks for it: ``raw`` and
``payload`` of ``dead_letters``, ``raw`` of ``v_dead_letters``.

Rows come in a fixed order (patient, time, event id, then every other
column), so exporting the same data twice gives byte-identical files.

>>> "v_course" in exportable_names(["v_course"]) and "dead_letters" in BASE_TABLES
True
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

#: The store's tables that may be exported by name (views: any ``v_*``).
BASE_TABLES: tuple[str, ...] = (
    "clinical_scores",
    "wearable_samples",
    "wearable_uploads",
    "lab_results",
    "clinical_outcomes",
    "course_updates",
    "risk_assessments",
    "alerts",
    "dead_letters",
    "alert_history",
    "patients",
    "daily_wearable",
    "daily_scores",
    "daily_labs",
    "audit_log",
)

#: Columns holding raw dead-letter payloads, exported only when asked for.
RAW_COLUMNS: dict[str, frozenset[str]] = {
    "dead_letters": frozenset({"raw", "payload"}),
    "v_dead_letters": frozenset({"raw"}),
}

#: The column a time filter applies to: the first of these a relation has.
TIME_COLUMNS: tuple[str, ...] = ("observed_at", "day", "updated_at", "received_at", "started_at")

#: Relations whose rows are not events in time (one row per patient): no time filter.
UNTIMED: frozenset[str] = frozenset({"patients", "v_cohort_overview"})

#: Types read as text: ids, JSON, and anything without an obvious Arrow type.
_TEXT_TYPES = ("uuid", "json", "jsonb")
_NATIVE_TYPES = frozenset(
    {
        "boolean",
        "smallint",
        "integer",
        "bigint",
        "real",
        "double precision",
        "numeric",
        "date",
        "timestamp with time zone",
        "timestamp without time zone",
        "text",
    }
)


@dataclass(frozen=True)
class Column:
    """A column as exported: its name and PostgreSQL type (as ``format_type`` names it)."""

    name: str
    pg_type: str

    @property
    def as_text(self) -> bool:
        """Whether it is read as text (ids, JSON, arrays, anything unusual)."""
        base = self.pg_type.split("(")[0].strip()
        return base in _TEXT_TYPES or base.startswith("character") or base not in _NATIVE_TYPES


@dataclass(frozen=True)
class Relation:
    """A table or view to export: its columns, what filters apply, what was left out."""

    name: str
    columns: tuple[Column, ...]
    omitted: tuple[str, ...]
    time_column: str | None
    has_patient: bool

    def names(self) -> list[str]:
        return [c.name for c in self.columns]


def exportable_names(views: Iterable[str]) -> list[str]:
    """The names accepted, given the views the store has."""
    return sorted({*BASE_TABLES, *(v for v in views if v.startswith("v_"))})


def store_views(conn: psycopg.Connection[Any]) -> list[str]:
    """psymon's views in the store (``v_*`` in the current schema)."""
    rows = conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = current_schema() AND c.relkind IN ('v', 'm') "
        "AND c.relname LIKE 'v\\_%'"
    ).fetchall()
    return [str(r[0]) for r in rows]


def describe(conn: psycopg.Connection[Any], name: str, *, include_raw: bool) -> Relation:
    """Look up ``name``; raise ``ValueError`` listing what is accepted when it is not exportable."""
    views = store_views(conn)
    accepted = exportable_names(views)
    if name not in accepted:
        raise ValueError(
            f"{name!r} cannot be exported; accepted tables and views: {', '.join(accepted)}"
        )
    rows = conn.execute(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        (name,),
    ).fetchall()
    if not rows:
        raise ValueError(f"{name!r} does not exist in this store; run `psymon db migrate` first")
    private = RAW_COLUMNS.get(name, frozenset()) if not include_raw else frozenset()
    columns = tuple(Column(str(n), str(t)) for n, t in rows if n not in private)
    present = {c.name for c in columns}
    time_column = None if name in UNTIMED else next((c for c in TIME_COLUMNS if c in present), None)
    omitted = tuple(str(n) for n, _ in rows if n in private)
    return Relation(name, columns, omitted, time_column, "patient_id" in present)


def select(
    relation: Relation,
    *,
    patients: Sequence[str] | None,
    since: datetime | None,
    until: datetime | None,
) -> tuple[sql.Composed, list[Any]]:
    """The SELECT that reads ``relation`` with the filters, in a fixed order."""
    if patients is not None and not relation.has_patient:
        raise ValueError(f"{relation.name} has no patient_id column; drop the patient filter")
    if (since is not None or until is not None) and relation.time_column is None:
        raise ValueError(
            f"{relation.name} has no time column to filter on (one of "
            f"{', '.join(TIME_COLUMNS)}); export it without since/until"
        )
    fields = [
        sql.SQL("{}::text AS {}").format(sql.Identifier(c.name), sql.Identifier(c.name))
        if c.as_text
        else sql.Identifier(c.name)
        for c in relation.columns
    ]
    clauses: list[sql.Composable] = [sql.SQL("true")]
    params: list[Any] = []
    if patients is not None:
        clauses.append(sql.SQL("patient_id = ANY(%s)"))
        params.append(list(patients))
    if since is not None and relation.time_column is not None:
        clauses.append(sql.SQL("{} >= %s").format(sql.Identifier(relation.time_column)))
        params.append(since)
    if until is not None and relation.time_column is not None:
        clauses.append(sql.SQL("{} < %s").format(sql.Identifier(relation.time_column)))
        params.append(until)
    statement = sql.SQL("SELECT {} FROM {} WHERE {} ORDER BY {}").format(
        sql.SQL(", ").join(fields),
        sql.Identifier(relation.name),
        sql.SQL(" AND ").join(clauses),
        sql.SQL(", ").join(sql.Identifier(c) for c in _order(relation)),
    )
    return statement, params


def _order(relation: Relation) -> list[str]:
    first = [
        c
        for c in ("patient_id", relation.time_column, "event_id", "audit_id")
        if c is not None and c in relation.names()
    ]
    # json has no ordering; every other column makes the order total.
    rest = [c.name for c in relation.columns if c.name not in first and c.pg_type != "json"]
    return first + rest


__all__ = [
    "BASE_TABLES",
    "RAW_COLUMNS",
    "TIME_COLUMNS",
    "UNTIMED",
    "Column",
    "Relation",
    "describe",
    "exportable_names",
    "select",
    "store_views",
]
