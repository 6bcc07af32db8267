"""Write events to the store: COPY into staging, then insert what is new.

Per table, a batch is copied into a temporary staging table and moved with
``INSERT ... SELECT ... ON CONFLICT DO NOTHING``: an event already stored
(same ``event_id`` and ``observed_at``) is skipped, so loading a batch twice
stores every event once. On plain PostgreSQL the same statement adds the newly
inserted rows to the daily rollups, so a rollup counts each event once too.
Everything of one :meth:`StoreWriter.write` call commits together.

An event the database refuses (text PostgreSQL cannot store, such as U+0000)
is found by splitting the batch (savepoints) and stored as a dead letter with
the database's reason; the rest of the batch is stored. A lost connection is
not handled here: it propagates as :class:`psycopg.OperationalError` with
nothing committed, and the caller retries the whole batch.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql
from pydantic import ValidationError

from schemas.dispatch import dead_letter, field_errors
from schemas.envelope import Source
from schemas.events import DeadLetter
from schemas.topics import topic_for_kind
from services.store.migrate import ensure_partitions, recorded_flavour
from services.store.tables import (
    DEAD_LETTERS,
    TABLES,
    Row,
    Storable,
    TableSpec,
    stored_events,
    table_for,
)

#: Who wrote dead letters the writer makes itself.
STORE_SOURCE = Source(system="psymon-store")

_DAY = "date_trunc('day', observed_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"

#: Incremental daily rollups (plain PostgreSQL): the rows just inserted, grouped.
_ROLLUPS: dict[str, tuple[str, str]] = {
    "wearable_samples": (
        "patient_id, metric, observed_at, value, unit",
        f"""INSERT INTO daily_wearable AS d
            (patient_id, metric, day, n, value_sum, value_min, value_max, unit)
        SELECT patient_id, metric, {_DAY}, count(*), sum(value), min(value), max(value), max(unit)
        FROM ins GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (patient_id, metric, day) DO UPDATE SET
            n = d.n + EXCLUDED.n,
            value_sum = d.value_sum + EXCLUDED.value_sum,
            value_min = least(d.value_min, EXCLUDED.value_min),
            value_max = greatest(d.value_max, EXCLUDED.value_max),
            unit = EXCLUDED.unit""",
    ),
    "clinical_scores": (
        "patient_id, instrument, observed_at, received_at, total",
        f"""INSERT INTO daily_scores AS d
            (patient_id, instrument, day, n, total_sum, total_min, total_max,
             last_total, last_observed_at)
        SELECT patient_id, instrument, {_DAY}, count(*), sum(total), min(total), max(total),
               (array_agg(total ORDER BY observed_at DESC, received_at DESC))[1],
               max(observed_at)
        FROM ins GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (patient_id, instrument, day) DO UPDATE SET
            n = d.n + EXCLUDED.n,
            total_sum = d.total_sum + EXCLUDED.total_sum,
            total_min = least(d.total_min, EXCLUDED.total_min),
            total_max = greatest(d.total_max, EXCLUDED.total_max),
            last_total = CASE WHEN EXCLUDED.last_observed_at >= d.last_observed_at
                              THEN EXCLUDED.last_total ELSE d.last_total END,
            last_observed_at = greatest(d.last_observed_at, EXCLUDED.last_observed_at)""",
    ),
    "lab_results": (
        "patient_id, analyte, observed_at, received_at, value, unit",
        f"""INSERT INTO daily_labs AS d
            (patient_id, analyte, day, n, value_sum, value_min, value_max,
             last_value, last_observed_at, unit)
        SELECT patient_id, analyte, {_DAY}, count(*), sum(value), min(value), max(value),
               (array_agg(value ORDER BY observed_at DESC, received_at DESC))[1],
               max(observed_at), max(unit)
        FROM ins GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (patient_id, analyte, day) DO UPDATE SET
            n = d.n + EXCLUDED.n,
            value_sum = d.value_sum + EXCLUDED.value_sum,
            value_min = least(d.value_min, EXCLUDED.value_min),
            value_max = greatest(d.value_max, EXCLUDED.value_max),
            last_value = CASE WHEN EXCLUDED.last_observed_at >= d.last_observed_at
                              THEN EXCLUDED.last_value ELSE d.last_value END,
            last_observed_at = greatest(d.last_observed_at, EXCLUDED.last_observed_at),
            unit = EXCLUDED.unit""",
    ),
}


@dataclass
class WriteReport:
    """What one :meth:`StoreWriter.write` call did, per table."""

    offered: Counter[str] = field(default_factory=Counter)
    inserted: Counter[str] = field(default_factory=Counter)
    refused: int = 0

    @property
    def duplicates(self) -> Counter[str]:
        """Rows offered that were already stored (or repeated within the batch)."""
        return self.offered - self.inserted

    def add(self, other: WriteReport) -> None:
        """Accumulate ``other`` into this report."""
        self.offered.update(other.offered)
        self.inserted.update(other.inserted)
        self.refused += other.refused


class StoreWriter:
    """Loads events into a migrated psymon database over one connection.

    Parameters
    ----------
    conn
        A psycopg connection to a migrated database, used by this writer only.
        The writer switches it to autocommit and runs its own transactions.
    copy
        Fill the staging tables with COPY (the default). ``False`` uses
        multi-row INSERT statements instead, for servers that do not speak
        COPY (the WASM TimescaleDB used to test the TimescaleDB schema).
    """

    #: Rows per INSERT statement when COPY is not used.
    INSERT_CHUNK = 200

    def __init__(self, conn: psycopg.Connection[Any], *, copy: bool = True) -> None:
        self._copy = copy
        if not conn.autocommit:
            conn.rollback()
            conn.autocommit = True
        self.conn = conn
        flavour = recorded_flavour(conn)
        if flavour is None:
            raise RuntimeError(
                "the database has no psymon schema yet; run `psymon db migrate` first"
            )
        self.flavour = flavour
        # Staging tables live as long as the session. Created here, outside any
        # transaction, so that a rolled-back batch cannot take them away.
        for spec in TABLES:
            conn.execute(
                sql.SQL(
                    "CREATE TEMPORARY TABLE IF NOT EXISTS {} (LIKE {} INCLUDING DEFAULTS)"
                ).format(_stage(spec), sql.Identifier(spec.name))
            )
        self._months: set[tuple[int, int]] = set()

    def write(self, events: Iterable[Storable]) -> WriteReport:
        """Store ``events`` (any kinds, any order) in one transaction; return what happened."""
        by_table: dict[str, list[tuple[Storable, Row]]] = {}
        seen: set[tuple[str, Any]] = set()
        report = WriteReport()
        for event in events:
            try:
                expanded = stored_events(event)
            except ValidationError as error:
                expanded = stored_events(_unexpandable(event, error))
            for stored, row in expanded:
                spec_name = _spec_name(stored)
                report.offered[spec_name] += 1
                key = (spec_name, stored.event_id)
                if key in seen:  # the same event twice in one batch
                    continue
                seen.add(key)
                by_table.setdefault(spec_name, []).append((stored, row))
        self._ensure_months(by_table)
        with self.conn.transaction():
            for spec in TABLES:
                pending = by_table.get(spec.name)
                if not pending:
                    continue
                inserted, refused = self._load(spec, pending)
                report.inserted[spec.name] += inserted
                if refused:
                    report.refused += len(refused)
                    letters = [(letter, DEAD_LETTERS.row(letter)) for letter in refused]
                    dead_inserted, still_refused = self._load(DEAD_LETTERS, letters)
                    report.inserted[DEAD_LETTERS.name] += dead_inserted
                    if still_refused:
                        raise RuntimeError(
                            "the database refused even the dead letter of an event it refused; "
                            "see the server log"
                        )
            self._register_patients(by_table)
        return report

    # ------------------------------------------------------------------ loading

    def _load(
        self, spec: TableSpec, pending: Sequence[tuple[Storable, Row]]
    ) -> tuple[int, list[DeadLetter]]:
        """Insert ``pending``; find and turn into dead letters the rows the database refuses."""
        try:
            with self.conn.transaction():
                return self._copy_and_insert(spec, [row for _, row in pending]), []
        except (psycopg.DataError, psycopg.IntegrityError, UnicodeError) as error:
            if len(pending) == 1:
                return 0, [_refused(pending[0][0], error)]
        middle = len(pending) // 2
        first, first_refused = self._load(spec, pending[:middle])
        second, second_refused = self._load(spec, pending[middle:])
        return first + second, first_refused + second_refused

    def _copy_and_insert(self, spec: TableSpec, rows: list[Row]) -> int:
        # LIKE gave the staging table the target's column types, so COPY parses
        # each value once, into its final type (jsonb included).
        stage = _stage(spec)
        columns = sql.SQL(", ").join(sql.Identifier(c) for c in spec.columns)
        with self.conn.cursor() as cursor:
            if self._copy:
                copy_sql = sql.SQL("COPY {} ({}) FROM STDIN").format(stage, columns)
                with cursor.copy(copy_sql) as copy:
                    for row in rows:
                        copy.write_row(row)
            else:
                self._insert_into_stage(cursor, stage, spec, rows)
            insert = sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT DO NOTHING").format(
                sql.Identifier(spec.name), columns, columns, stage
            )
            rollup = _ROLLUPS.get(spec.name) if self.flavour == "postgres" else None
            if rollup is None:
                cursor.execute(insert)
                inserted = cursor.rowcount
            else:
                returning, rollup_sql = rollup
                statement = sql.SQL(
                    "WITH ins AS ({} RETURNING {}), roll AS ({}) SELECT count(*) FROM ins"
                ).format(insert, sql.SQL(returning), sql.SQL(rollup_sql))
                cursor.execute(statement)
                counted = cursor.fetchone()
                inserted = int(counted[0]) if counted else 0
            cursor.execute(sql.SQL("TRUNCATE {}").format(stage))
        return inserted

    def _insert_into_stage(
        self, cursor: psycopg.Cursor[Any], stage: sql.Identifier, spec: TableSpec, rows: list[Row]
    ) -> None:
        columns = sql.SQL(", ").join(sql.Identifier(c) for c in spec.columns)
        one_row = sql.SQL("({})").format(sql.SQL(", ").join(sql.Placeholder() * len(spec.columns)))
        for first in range(0, len(rows), self.INSERT_CHUNK):
            chunk = rows[first : first + self.INSERT_CHUNK]
            statement = sql.SQL("INSERT INTO {} ({}) VALUES {}").format(
                stage, columns, sql.SQL(", ").join([one_row] * len(chunk))
            )
            cursor.execute(statement, [value for row in chunk for value in row])

    def _ensure_months(self, by_table: dict[str, list[tuple[Storable, Row]]]) -> None:
        """Create the monthly partitions this batch needs before loading it."""
        if self.flavour != "postgres":
            return
        months = {
            (when.year, when.month)
            for spec in TABLES
            if spec.partitioned
            for stored, _ in by_table.get(spec.name, ())
            for when in (stored.observed_at.astimezone(UTC),)
        }
        for year, month in sorted(months - self._months):
            start = datetime(year, month, 1, tzinfo=UTC)
            ensure_partitions(self.conn, start, start)
            self._months.add((year, month))

    def _register_patients(self, by_table: dict[str, list[tuple[Storable, Row]]]) -> None:
        """Keep ``patients`` up to date: first and last observation, last arrival."""
        spans: dict[str, list[datetime]] = {}
        for spec in TABLES:
            if spec is DEAD_LETTERS:
                continue
            for stored, _ in by_table.get(spec.name, ()):
                patient = stored.patient_id
                if patient is None:
                    continue
                span = spans.get(patient)
                if span is None:
                    spans[patient] = [stored.observed_at, stored.observed_at, stored.received_at]
                else:
                    span[0] = min(span[0], stored.observed_at)
                    span[1] = max(span[1], stored.observed_at)
                    span[2] = max(span[2], stored.received_at)
        if not spans:
            return
        patients = sorted(spans)  # one lock order for every writer: no deadlocks
        self.conn.execute(
            """INSERT INTO patients AS p
                   (patient_id, first_observed_at, last_observed_at, last_received_at)
               SELECT * FROM unnest(%s::text[], %s::timestamptz[], %s::timestamptz[],
                                    %s::timestamptz[])
               ON CONFLICT (patient_id) DO UPDATE SET
                   first_observed_at = least(p.first_observed_at, EXCLUDED.first_observed_at),
                   last_observed_at = greatest(p.last_observed_at, EXCLUDED.last_observed_at),
                   last_received_at = greatest(p.last_received_at, EXCLUDED.last_received_at),
                   updated_at = now()""",
            (
                patients,
                [spans[p][0] for p in patients],
                [spans[p][1] for p in patients],
                [spans[p][2] for p in patients],
            ),
        )


def _stage(spec: TableSpec) -> sql.Identifier:
    return sql.Identifier(f"psymon_stage_{spec.name}")


def _spec_name(stored: Storable) -> str:
    return table_for(stored).name


def _unexpandable(event: Storable, error: ValidationError) -> DeadLetter:
    """A dead letter for an upload whose readings do not make valid samples."""
    if isinstance(event, DeadLetter):  # only uploads expand; nothing else raises here
        raise error
    errors = field_errors(error)
    reason = "; ".join(f"field '{e.field}': {e.message}" for e in errors)
    return dead_letter(
        event.model_dump_json().encode(),
        topic_for_kind(event.kind),
        event.received_at,
        f"a reading does not make a valid sample: {reason}",
        errors=errors,
        patient_id=event.patient_id,
        source=STORE_SOURCE,
    )


def _refused(event: Storable, error: BaseException) -> DeadLetter:
    """A dead letter for an event the database would not store."""
    if isinstance(event, DeadLetter):
        raise RuntimeError(
            f"the database refused a dead letter ({type(error).__name__}); see the server log"
        ) from error
    raw = event.model_dump_json().encode()
    reason = f"the database refused the event ({type(error).__name__}): {str(error)[:500]}"
    return dead_letter(
        raw,
        topic_for_kind(event.kind),
        event.received_at,
        reason,
        patient_id=event.patient_id,
        source=STORE_SOURCE,
    )
