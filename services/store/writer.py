"""Write events to the store: COPY into staging, then insert what is new.

Per table, a batch is first offered to the table itself in one binary COPY,
inside a savepoint: the usual case (nothing of the batch is stored yet) costs
what a raw COPY costs. If any row is already stored (same ``event_id`` and
``observed_at``: a re-delivered batch) the unique key refuses the COPY, the
savepoint is rolled back, and the batch takes the careful path: binary COPY
into a temporary staging table, then ``INSERT ... SELECT ... ON CONFLICT DO
NOTHING``, which skips what is stored. Either way the unique key decides, so
loading a batch twice stores every event once, also when two writers race. On
plain PostgreSQL the rows actually inserted are added to the daily rollups in
the same savepoint, so a rollup counts each event once too. Everything of one
:meth:`StoreWriter.write` call commits together.

Wearable uploads are expanded into sample rows straight from their validated
readings (no :class:`~schemas.events.WearableSample` per reading); the rows and
payloads are those :func:`services.store.tables.stored_events` builds.

An event the database refuses (text PostgreSQL cannot store, such as U+0000)
is found by splitting the batch (savepoints) and stored as a dead letter with
the database's reason; the rest of the batch is stored. A lost connection is
not handled here: it propagates as :class:`psycopg.OperationalError` with
nothing committed, and the caller retries the whole batch.
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

import psycopg
from psycopg import sql
from psycopg.adapt import Dumper
from psycopg.pq import Format
from pydantic import ValidationError

from schemas.dispatch import dead_letter, field_errors
from schemas.envelope import Source
from schemas.events import DeadLetter, WearableUpload
from schemas.topics import topic_for_kind
from services.store.migrate import ensure_partitions, recorded_flavour
from services.store.tables import (
    DEAD_LETTERS,
    TABLES,
    WEARABLE_SAMPLES,
    WEARABLE_UPLOADS,
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


#: What a row was made from: the event, or an upload and the index of the
#: reading (a sample row built straight from the reading, see :func:`_upload_rows`).
Origin = Storable | tuple[WearableUpload, int]

#: Rows per table of one batch, each with what it was made from.
Pending = list[tuple[Origin, Row]]


class StoreWriter:
    """Loads events into a migrated psymon database over one connection.

    Parameters
    ----------
    conn
        A psycopg connection to a migrated database, used by this writer only.
        The writer switches it to autocommit and runs its own transactions.
    copy
        Fill the tables with binary COPY (the default). ``False`` uses
        multi-row INSERT statements into staging instead, for servers that do
        not speak COPY (the WASM TimescaleDB used to test the TimescaleDB schema).
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
        self._types: dict[str, list[int]] = {}
        self._rollups: dict[str, _Rollup] = {}
        if copy:
            _use_json_text_for_jsonb(conn)
            for spec in TABLES:
                self._types[spec.name] = _column_types(conn, spec)
            if flavour == "postgres":
                for spec in TABLES:
                    if spec.name in _ROLLUPS:
                        self._rollups[spec.name] = _Rollup.create(conn, spec)

    def write(self, events: Iterable[Storable]) -> WriteReport:
        """Store ``events`` (any kinds, any order) in one transaction; return what happened."""
        by_table: dict[str, Pending] = {}
        seen: set[tuple[str, Any]] = set()
        report = WriteReport()
        spans = _Spans()
        for event in events:
            expanded = rows_of(event)
            if isinstance(event, WearableUpload):
                spans.add_upload(event)
            else:
                for origin, _ in expanded:
                    spans.add(origin)  # type: ignore[arg-type]  # only uploads make tuples
            for origin, row in expanded:
                spec_name = _spec_name(origin)
                report.offered[spec_name] += 1
                key = (spec_name, row[0])  # every table's first column is event_id
                if key in seen:  # the same event twice in one batch
                    continue
                seen.add(key)
                by_table.setdefault(spec_name, []).append((origin, row))
        self._ensure_months(spans.months)
        with self.conn.transaction():
            for spec in TABLES:
                pending = by_table.get(spec.name)
                if not pending:
                    continue
                inserted, refused = self._load(spec, pending)
                report.inserted[spec.name] += inserted
                if refused:
                    report.refused += len(refused)
                    letters: Pending = [(letter, DEAD_LETTERS.row(letter)) for letter in refused]
                    dead_inserted, still_refused = self._load(DEAD_LETTERS, letters)
                    report.inserted[DEAD_LETTERS.name] += dead_inserted
                    if still_refused:
                        raise RuntimeError(
                            "the database refused even the dead letter of an event it refused; "
                            "see the server log"
                        )
            self._register_patients(spans.patients)
        return report

    # ------------------------------------------------------------------ loading

    def _load(self, spec: TableSpec, pending: Pending) -> tuple[int, list[DeadLetter]]:
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
        if self._copy:
            try:
                with self.conn.transaction():
                    return self._copy_straight_in(spec, rows)
            except psycopg.errors.UniqueViolation:
                pass  # some rows are stored already (a re-delivery): the careful path
        # LIKE gave the staging table the target's column types, so COPY parses
        # each value once, into its final type (jsonb included).
        stage = _stage(spec)
        columns = sql.SQL(", ").join(sql.Identifier(c) for c in spec.columns)
        with self.conn.cursor() as cursor:
            if self._copy:
                self._binary_copy(cursor, stage, spec.columns, self._types[spec.name], rows)
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

    def _copy_straight_in(self, spec: TableSpec, rows: list[Row]) -> int:
        """COPY ``rows`` into the table itself; the unique key refuses any already stored.

        Every row is then new, so all of them go to the daily rollup (through
        a narrow temporary table holding only the columns the rollup reads).
        """
        with self.conn.cursor() as cursor:
            self._binary_copy(
                cursor, sql.Identifier(spec.name), spec.columns, self._types[spec.name], rows
            )
            rollup = self._rollups.get(spec.name)
            if rollup is not None:
                rollup.add(self, cursor, rows)
        return len(rows)

    @staticmethod
    def _binary_copy(
        cursor: psycopg.Cursor[Any],
        table: sql.Identifier,
        columns: Sequence[str],
        types: list[int],
        rows: Iterable[Row],
    ) -> None:
        names = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
        statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(table, names)
        with cursor.copy(statement) as copy:
            copy.set_types(types)
            for row in rows:
                copy.write_row(row)

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

    def _ensure_months(self, months: set[tuple[int, int]]) -> None:
        """Create the monthly partitions this batch needs before loading it."""
        if self.flavour != "postgres":
            return
        for year, month in sorted(months - self._months):
            start = datetime(year, month, 1, tzinfo=UTC)
            ensure_partitions(self.conn, start, start)
            self._months.add((year, month))

    def _register_patients(self, spans: dict[str, list[datetime]]) -> None:
        """Keep ``patients`` up to date: first and last observation, last arrival."""
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


class _Spans:
    """What a batch needs besides its rows: its UTC months (partitions) and patients' spans.

    Noted per event, not per row: an upload's samples lie inside its window
    (its validation says so), so the window tells most of it.
    """

    def __init__(self) -> None:
        self.months: set[tuple[int, int]] = set()
        #: patient -> [first observed_at, last observed_at, last received_at]
        self.patients: dict[str, list[datetime]] = {}

    def add(self, event: Storable) -> None:
        if isinstance(event, DeadLetter):  # unpartitioned, and not a patient's record
            return
        if table_for(event).partitioned:
            self.months.add(_month(event.observed_at))
        self._span(event.patient_id, event.observed_at, event.observed_at, event.received_at)

    def add_upload(self, upload: WearableUpload) -> None:
        first = _month(upload.observed_at)
        self.months.add(first)
        if _month(upload.window_end) != first:  # readings may fall in either month
            self.months.update(_month(reading.start) for reading in upload.readings)
        # Readings start within [observed_at, window_end]: observed_at is the earliest.
        last = max(reading.start for reading in upload.readings)
        self._span(upload.patient_id, upload.observed_at, last, upload.received_at)

    def _span(self, patient: str, first: datetime, last: datetime, received: datetime) -> None:
        span = self.patients.get(patient)
        if span is None:
            self.patients[patient] = [first, last, received]
            return
        if first < span[0]:
            span[0] = first
        if last > span[1]:
            span[1] = last
        if received > span[2]:
            span[2] = received


def _month(when: datetime) -> tuple[int, int]:
    utc = when.astimezone(UTC)
    return utc.year, utc.month


@dataclass(frozen=True)
class _Rollup:
    """The daily rollup of rows COPYed straight into their table.

    The rollup statement of :data:`_ROLLUPS` reads the inserted rows from
    ``ins``; here ``ins`` is a temporary table holding only the columns it
    reads, filled by a narrow binary COPY.
    """

    table: sql.Identifier
    columns: tuple[str, ...]
    types: list[int]
    pick: Any  # operator.itemgetter of those columns in the full row
    statement: sql.Composed

    @classmethod
    def create(cls, conn: psycopg.Connection[Any], spec: TableSpec) -> _Rollup:
        returning, rollup_sql = _ROLLUPS[spec.name]
        columns = tuple(c.strip() for c in returning.split(","))
        table = sql.Identifier(f"psymon_rollup_{spec.name}")
        names = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
        conn.execute(
            sql.SQL(
                "CREATE TEMPORARY TABLE IF NOT EXISTS {} AS SELECT {} FROM {} WITH NO DATA"
            ).format(table, names, sql.Identifier(spec.name))
        )
        all_types = dict(zip(spec.columns, _column_types(conn, spec), strict=True))
        statement = sql.SQL("WITH ins AS (SELECT {} FROM {}) {}").format(
            names, table, sql.SQL(rollup_sql)
        )
        return cls(
            table,
            columns,
            [all_types[c] for c in columns],
            itemgetter(*(spec.columns.index(c) for c in columns)),
            statement,
        )

    def add(self, writer: StoreWriter, cursor: psycopg.Cursor[Any], rows: list[Row]) -> None:
        pick = self.pick
        writer._binary_copy(cursor, self.table, self.columns, self.types, map(pick, rows))
        cursor.execute(self.statement)
        cursor.execute(sql.SQL("TRUNCATE {}").format(self.table))


class _JsonTextBinaryDumper(Dumper):
    """Binary ``jsonb`` from JSON text: the version byte, then the text as it is.

    The rows carry JSON already serialised (pydantic's ``model_dump_json``);
    psycopg's own jsonb dumper would serialise it again, as a JSON string.
    """

    format = Format.BINARY

    def dump(self, obj: Any) -> bytes:
        text: str = obj
        return b"\x01" + text.encode()


def _use_json_text_for_jsonb(conn: psycopg.Connection[Any]) -> None:
    """Make the binary COPYs of this connection take ``str`` JSON text for jsonb columns."""
    info = conn.adapters.types.get("jsonb")
    if info is None:  # pragma: no cover - jsonb is a built-in type
        raise RuntimeError("psycopg knows no jsonb type")
    dumper = type("JsonbTextBinaryDumper", (_JsonTextBinaryDumper,), {"oid": info.oid})
    conn.adapters.register_dumper(None, dumper)


def _column_types(conn: psycopg.Connection[Any], spec: TableSpec) -> list[int]:
    """The type oid of each of ``spec``'s columns, in its COPY order (binary COPY needs them)."""
    found = dict(
        conn.execute(
            """SELECT attname, atttypid::int FROM pg_attribute
               WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped""",
            (spec.name,),
        ).fetchall()
    )
    missing = [c for c in spec.columns if c not in found]
    if missing:
        raise RuntimeError(
            f"table {spec.name} has no column(s) {', '.join(missing)}; "
            "run `psymon db migrate` with this version of psymon"
        )
    return [found[c] for c in spec.columns]


def rows_of(event: Storable) -> list[tuple[Origin, Row]]:
    """The rows ``event`` is stored as (uploads: its own and one per reading), with origins.

    The rows :func:`services.store.tables.stored_events` makes, built faster
    for uploads.
    """
    if isinstance(event, WearableUpload):
        return _upload_rows(event)
    try:
        stored = stored_events(event)
    except ValidationError as error:
        stored = stored_events(_unexpandable(event, error))
    return list(stored)


def _upload_rows(upload: WearableUpload) -> list[tuple[Origin, Row]]:
    """The upload's own row and one row per reading, as ``stored_events`` makes them.

    Built from the validated readings and the upload's JSON form (pydantic's
    spelling of times and ids), without a :class:`WearableSample` per reading:
    that costs ~4x as much per sample (the wearable sink's hot path). The
    payload is the sample's ``model_dump_json()``, byte for byte
    (tests/unit/test_store_rows.py).
    """
    document = upload.model_dump(mode="json")
    source = upload.source
    patient = upload.patient_id
    received = upload.received_at
    time_zone = upload.time_zone
    envelope = (received, source.system, source.device, source.rater, time_zone)
    # Everything of a sample's JSON between its start and its metric is the upload's.
    head = f'","patient_id":{_js(document["patient_id"])},"observed_at":"'
    middle = (
        f'","received_at":{_js(document["received_at"])},"source":{_js(document["source"])},'
        f'"time_zone":{_js(document["time_zone"])},'
        f'"schema_version":{_js(document["schema_version"])},"kind":"wearable_sample",'
    )
    upload_id = upload.event_id
    rows: list[tuple[Origin, Row]] = [(upload, WEARABLE_UPLOADS.row(upload))]
    append = rows.append
    for index, (reading, text) in enumerate(
        zip(upload.readings, document["readings"], strict=True)
    ):
        metric, unit = reading.metric, reading.unit
        # Ids and times in pydantic's JSON are ASCII without quotes or backslashes.
        payload = (
            f'{{"event_id":"{text["event_id"]}{head}{text["start"]}{middle}"metric":'
            f'{_quoted(metric)},"value":{text["value"]!r},"unit":{_quoted(unit)},'
            f'"interval_end":"{text["end"]}"}}'
        )
        append(
            (
                (upload, index),
                (
                    reading.event_id,
                    patient,
                    reading.start,
                    *envelope,
                    metric,
                    reading.value,
                    unit,
                    reading.end,
                    upload_id,
                    payload,
                ),
            )
        )
    return rows


@functools.lru_cache(maxsize=256)
def _quoted(text: str) -> str:
    """A metric id or unit as a JSON string (a handful of distinct values)."""
    return _js(text)


def _js(value: Any) -> str:
    """JSON as pydantic writes it: compact, non-ASCII unescaped."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _stage(spec: TableSpec) -> sql.Identifier:
    return sql.Identifier(f"psymon_stage_{spec.name}")


def _spec_name(origin: Origin) -> str:
    return WEARABLE_SAMPLES.name if isinstance(origin, tuple) else table_for(origin).name


def _event_of(origin: Origin) -> Storable:
    """The event a row was made from (a sample of an upload is built here, when needed)."""
    if not isinstance(origin, tuple):
        return origin
    upload, index = origin
    alone = upload.model_copy(update={"readings": (upload.readings[index],)})
    return alone.samples()[0]


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


def _refused(origin: Origin, error: BaseException) -> DeadLetter:
    """A dead letter for an event the database would not store."""
    event = _event_of(origin)
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
