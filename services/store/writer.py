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
the same savepoint (:mod:`services.store.rollups`), so a rollup counts each
event once too. Everything of one :meth:`StoreWriter.write` call commits
together.

The first table of a batch is COPYed while the batch is still being read:
the sink decodes its records as the writer asks for them, so the server
inserts rows while Python decodes the next ones (:meth:`StoreWriter.write`).

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
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any

import psycopg
from psycopg import sql
from psycopg.adapt import Dumper
from psycopg.pq import Format

from schemas.dispatch import dead_letter
from schemas.envelope import FIXED_OFFSETS, Source
from schemas.events import DeadLetter, WearableUpload
from schemas.topics import topic_for_kind
from services.store.migrate import ensure_partitions, recorded_flavour
from services.store.rollups import ROLLUPS, Rollup
from services.store.tables import (
    DEAD_LETTERS,
    KIND_BY_TABLE,
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


#: What a row was made from: the event, an upload and the index of the
#: reading (a sample row built straight from the reading, see :func:`_upload_rows`),
#: or ``None``: an event not kept, whose row says all a dead letter needs (see :func:`_refused`).
Origin = Storable | tuple[WearableUpload, int] | None

#: Rows per table of one batch, each with its :data:`Origin` (mostly ``None``).
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
        self._rollups: dict[str, Rollup] = {}
        #: Plain PostgreSQL: monthly partitions, created before their rows come.
        self._partitioned = flavour == "postgres"
        if self._partitioned:
            self._rollups = ROLLUPS
            self._months = _partitioned_months(conn)
        if copy:
            _use_json_text_for_jsonb(conn)
            for spec in TABLES:
                self._types[spec.name] = _column_types(conn, spec)

    def write(self, events: Iterable[Storable]) -> WriteReport:
        """Store ``events`` (any kinds, any order) in one transaction; return what happened.

        ``events`` is read once, as the batch is loaded: the rows of the table
        of the first event (an upload's: its samples) go to the database while
        the next events are still being read (decoded, for the sink), so the
        server inserts while Python decodes. The other tables follow, in the
        order of :data:`~services.store.tables.TABLES`.

        That needs every month of the batch to have its partitions already;
        an event of a month that has none yet stops it (the transaction is
        rolled back before anything of it is committed), and the batch is
        loaded again, table by table, once the partitions exist. So is a
        batch whose transaction lost a deadlock to another writer loading the
        same events in another table order: table by table, every writer
        takes the same order.
        """
        batch = _Batch()
        source = iter(events)
        if self._copy:
            try:
                return self._write_streaming(batch, source)
            except (_NewMonth, psycopg.errors.DeadlockDetected):
                pass  # rolled back: nothing of it is stored
        for event in source:
            batch.add(event)
        self._ensure_months(batch.spans.months)
        report = batch.report
        report.inserted, report.refused = Counter(), 0  # of the attempt rolled back
        with self.conn.transaction():
            self._load_tables(batch, report, skip=None)
            self._register_patients(batch.spans.patients)
        return report

    def _write_streaming(self, batch: _Batch, source: Iterator[Storable]) -> WriteReport:
        """Load the first event's table while reading ``source``, then the rest (see write)."""
        first = next(source, None)
        if first is None:
            return batch.report
        batch.add(first)
        self._ensure_months(batch.spans.months)
        spec = WEARABLE_SAMPLES if isinstance(first, WearableUpload) else table_for(first)
        pending = batch.by_table.setdefault(spec.name, [])
        with self.conn.transaction():
            report = batch.report
            streamed = self._stream(spec, batch, pending, source)
            for event in source:  # what is left if the straight COPY stopped early
                batch.add(event)
            if self._partitioned and not batch.spans.months <= self._months:
                raise _NewMonth
            if streamed:
                report.inserted[spec.name] += len(pending)
            else:
                self._load_with_dead_letters(spec, pending, report, straight=False)
            self._load_tables(batch, report, skip=spec)
            self._register_patients(batch.spans.patients)
        return report

    def _stream(
        self, spec: TableSpec, batch: _Batch, pending: Pending, source: Iterator[Storable]
    ) -> bool:
        """COPY ``spec``'s rows straight into its table as ``source`` yields their events.

        Returns whether the COPY stored them all (the rollup too). ``False``:
        the database refused a row (already stored, or a value it cannot
        hold); nothing of the COPY is kept, and the rows are in ``pending``
        for the careful path, except those of events ``source`` still holds.
        Raises :class:`_NewMonth` when an event's month has no partitions.
        """
        known, months = self._months, batch.spans.months
        checked = len(months)
        reading = _Reading(source, batch)
        names = sql.SQL(", ").join(sql.Identifier(c) for c in spec.columns)
        statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
            sql.Identifier(spec.name), names
        )
        try:
            with self.conn.transaction(), self.conn.cursor() as cursor:
                with cursor.copy(statement) as copy:
                    copy.set_types(self._types[spec.name])
                    write_row = copy.write_row
                    for _, row in pending:
                        write_row(row)
                    written = len(pending)
                    for _ in reading:
                        if len(months) != checked and self._partitioned:
                            if not months <= known:
                                raise _NewMonth
                            checked = len(months)
                        count = len(pending)
                        if count == written + 1:  # one row per event but an upload's
                            write_row(pending[written][1])
                        else:
                            for _, row in pending[written:]:
                                write_row(row)
                        written = count
                rollup = self._rollups.get(spec.name)
                if rollup is not None:
                    rollup.add_rows(cursor, spec.columns, (row for _, row in pending))
        except (psycopg.DataError, psycopg.IntegrityError, UnicodeError):
            if reading.failed:
                raise  # not the database refusing a row: the batch is not loaded
            return False
        return True

    # ------------------------------------------------------------------ loading

    def _load_tables(self, batch: _Batch, report: WriteReport, skip: TableSpec | None) -> None:
        """Load every table of ``batch`` but ``skip``, in the order of ``TABLES``."""
        for spec in TABLES:
            pending = batch.by_table.get(spec.name)
            if pending and spec is not skip:
                self._load_with_dead_letters(spec, pending, report)

    def _load_with_dead_letters(
        self, spec: TableSpec, pending: Pending, report: WriteReport, *, straight: bool = True
    ) -> None:
        """Load ``pending`` into ``spec``'s table; what the database refuses, as dead letters."""
        inserted, refused = self._load(spec, pending, straight=straight)
        report.inserted[spec.name] += inserted
        if not refused:
            return
        report.refused += len(refused)
        letters: Pending = [(letter, DEAD_LETTERS.row(letter)) for letter in refused]
        dead_inserted, still_refused = self._load(DEAD_LETTERS, letters)
        report.inserted[DEAD_LETTERS.name] += dead_inserted
        if still_refused:
            raise RuntimeError(
                "the database refused even the dead letter of an event it refused; "
                "see the server log"
            )

    def _load(
        self, spec: TableSpec, pending: Pending, *, straight: bool = True
    ) -> tuple[int, list[DeadLetter]]:
        """Insert ``pending``; find and turn into dead letters the rows the database refuses.

        ``straight=False`` skips the attempt to COPY straight into the table
        (known to fail: the batch was streamed into it and refused).
        """
        try:
            with self.conn.transaction():
                return self._copy_and_insert(spec, [row for _, row in pending], straight), []
        except (psycopg.DataError, psycopg.IntegrityError, UnicodeError) as error:
            if len(pending) == 1:
                return 0, [_refused(spec, *pending[0], error)]
        middle = len(pending) // 2
        first, first_refused = self._load(spec, pending[:middle])
        second, second_refused = self._load(spec, pending[middle:])
        return first + second, first_refused + second_refused

    def _copy_and_insert(self, spec: TableSpec, rows: list[Row], straight: bool = True) -> int:
        if self._copy and straight:
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
            rollup = self._rollups.get(spec.name)
            if rollup is None:
                cursor.execute(insert)
                inserted = cursor.rowcount
            else:
                statement = sql.SQL(
                    "WITH ins AS ({} RETURNING {}), roll AS ({}) SELECT count(*) FROM ins"
                ).format(insert, sql.SQL(rollup.returning), sql.SQL(rollup.from_inserted))
                cursor.execute(statement)
                counted = cursor.fetchone()
                inserted = int(counted[0]) if counted else 0
            cursor.execute(sql.SQL("TRUNCATE {}").format(stage))
        return inserted

    def _copy_straight_in(self, spec: TableSpec, rows: list[Row]) -> int:
        """COPY ``rows`` into the table itself; the unique key refuses any already stored.

        Every row is then new, so all of them go to the daily rollup.
        """
        with self.conn.cursor() as cursor:
            self._binary_copy(
                cursor, sql.Identifier(spec.name), spec.columns, self._types[spec.name], rows
            )
            rollup = self._rollups.get(spec.name)
            if rollup is not None:
                rollup.add_rows(cursor, spec.columns, rows)
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
        if not self._partitioned:
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
               SELECT * FROM unnest(%b::text[], %b::timestamptz[], %b::timestamptz[],
                                    %b::timestamptz[])
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


class _Reading:
    """The events of ``source``, each added to ``batch`` before it is yielded.

    ``failed``: reading or adding raised. :meth:`StoreWriter._stream` takes
    some errors from its COPY for the database refusing a row; the same error
    from the events' side must not be taken for that, or the events after it
    would be left out of the batch.
    """

    def __init__(self, source: Iterator[Storable], batch: _Batch) -> None:
        self._source, self._batch = source, batch
        self.failed = False

    def __iter__(self) -> Iterator[Storable]:
        try:
            for event in self._source:
                self._batch.add(event)
                yield event
        except GeneratorExit:
            raise  # closed by the loop reading it, which stopped on an error of its own
        except BaseException:
            self.failed = True
            raise


class _NewMonth(Exception):
    """An event of a month without partitions came while its batch was being loaded."""


class _Batch:
    """The rows of one write call per table (each with its :data:`Origin`); what it offered."""

    def __init__(self) -> None:
        self.by_table: dict[str, Pending] = {}
        self.spans = _Spans()
        self.report = WriteReport()
        #: event_ids per table (every table's first column is event_id)
        self._seen: dict[str, set[Any]] = {}
        self._tables: dict[
            str, tuple[set[Any], Pending, Callable[[str, datetime, datetime], None] | None]
        ] = {}

    def add(self, event: Storable) -> None:
        """Add ``event``'s rows, but none of an event already added (the same event twice)."""
        if isinstance(event, WearableUpload):
            expanded = _upload_rows(event)
            self.spans.add_upload(event)
            self._add_rows(WEARABLE_UPLOADS.name, expanded[:1])
            self._add_rows(WEARABLE_SAMPLES.name, expanded[1:])
            return
        spec = table_for(event)
        row = spec.row(event)
        name = spec.name
        table = self._tables.get(name)
        if table is None:
            table = self._tables[name] = self._table(spec)
        seen, pending, spans = table
        if spans is not None:
            # The envelope's columns come first: event_id, patient_id, observed_at, received_at.
            spans(row[1], row[2], row[3])
        self.report.offered[name] += 1
        known = len(seen)
        seen.add(row[0])  # hashes the id once (a UUID's hash is Python code)
        if len(seen) != known:
            # Not the event itself: the batch does not keep 5,000 events alive,
            # and the row holds what a dead letter of it needs (see _refused).
            pending.append((event if spec is DEAD_LETTERS else None, row))

    def _table(
        self, spec: TableSpec
    ) -> tuple[set[Any], Pending, Callable[[str, datetime, datetime], None] | None]:
        """A table's ids seen, its rows, and how its events are noted in :attr:`spans`.

        Dead letters are not a patient's record and have no partitions.
        """
        seen = self._seen.setdefault(spec.name, set())
        pending = self.by_table.setdefault(spec.name, [])
        if spec is DEAD_LETTERS:
            return seen, pending, None
        return seen, pending, self.spans.note if spec.partitioned else self.spans.note_patient

    def _add_rows(self, spec_name: str, rows: Sequence[tuple[Origin, Row]]) -> None:
        self.report.offered[spec_name] += len(rows)
        seen = self._seen.setdefault(spec_name, set())
        pending = self.by_table.setdefault(spec_name, [])
        for item in rows:
            known = len(seen)
            seen.add(item[1][0])  # hashes the id once (a UUID's hash is Python code)
            if len(seen) != known:
                pending.append(item)


def _partitioned_months(conn: psycopg.Connection[Any]) -> set[tuple[int, int]]:
    """The UTC months for which every table ``psymon_ensure_partitions`` keeps has its partition.

    Read when a writer starts: an event of a month not known to have them
    stops a streamed batch (see :meth:`StoreWriter.write`).
    """
    found: dict[str, set[tuple[int, int]]] = {}
    for parent, partition in conn.execute(
        """SELECT p.relname, c.relname
           FROM pg_partitioned_table pt
           JOIN pg_class p ON p.oid = pt.partrelid
           JOIN pg_inherits i ON i.inhparent = p.oid
           JOIN pg_class c ON c.oid = i.inhrelid
           WHERE p.relnamespace = current_schema()::regnamespace
             AND to_regclass(quote_ident(p.relname || '_default')) IS NOT NULL"""
    ).fetchall():
        months = found.setdefault(parent, set())
        match = re.fullmatch(rf"{re.escape(parent)}_p(\d{{4}})_(\d{{2}})", partition)
        if match:
            months.add((int(match[1]), int(match[2])))
    return set.intersection(*found.values()) if found else set()


class _Spans:
    """What a batch needs besides its rows: its UTC months (partitions) and patients' spans.

    Noted per event, not per row: an upload's samples lie inside its window
    (its validation says so), so the window tells most of it.
    """

    def __init__(self) -> None:
        self.months: set[tuple[int, int]] = set()
        #: patient -> [first observed_at, last observed_at, last received_at]
        self.patients: dict[str, list[datetime]] = {}
        #: A fixed time zone of offset zero, as the last such time had (see :meth:`_month`).
        self._utc_zone: tzinfo = UTC

    def note(self, patient: str, observed: datetime, received: datetime) -> None:
        """Note an event of a partitioned table: its month, and its patient's span."""
        if observed.tzinfo is self._utc_zone:  # as _month, inline: one row per score
            self.months.add((observed.year, observed.month))
        else:
            self.months.add(self._month(observed))
        span = self.patients.get(patient)  # as _span, inline
        if span is None:
            self.patients[patient] = [observed, observed, received]
            return
        if observed < span[0]:
            span[0] = observed
        if observed > span[1]:
            span[1] = observed
        if received > span[2]:
            span[2] = received

    def note_patient(self, patient: str, observed: datetime, received: datetime) -> None:
        """Note an event of an unpartitioned table: its patient's span."""
        self._span(patient, observed, observed, received)

    def _month(self, when: datetime) -> tuple[int, int]:
        """:func:`_month`, without asking again the offset of a fixed zone known to be UTC.

        pydantic gives every time it parses with offset zero the same zone
        object: one batch's times mostly share it.
        """
        zone = when.tzinfo
        if zone is self._utc_zone:
            return when.year, when.month
        if zone is not None and type(zone) in FIXED_OFFSETS and not when.utcoffset():
            self._utc_zone = zone
            return when.year, when.month
        return _month(when)

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
    """The UTC month of ``when``; converted only when its offset is not zero (pydantic's UTC)."""
    utc = when if when.tzinfo is UTC or not when.utcoffset() else when.astimezone(UTC)
    return utc.year, utc.month


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
    return list(stored_events(event))


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


def _event_of(origin: Storable | tuple[WearableUpload, int]) -> Storable:
    """The event a row was made from (a sample of an upload is built here, when needed)."""
    if not isinstance(origin, tuple):
        return origin
    upload, index = origin
    alone = upload.model_copy(update={"readings": (upload.readings[index],)})
    return alone.samples()[0]


def _refused(spec: TableSpec, origin: Origin, row: Row, error: BaseException) -> DeadLetter:
    """A dead letter for an event the database would not store (its row is ``row``).

    An event not kept (``origin`` ``None``) is read off its row: the payload
    is the event's ``model_dump_json()``, the envelope's columns come first
    (``event_id, patient_id, observed_at, received_at``), and the table holds
    one kind of event: the same dead letter as from the event itself
    (tests/unit/test_store_rows.py).
    """
    reason = f"the database refused the event ({type(error).__name__}): {str(error)[:500]}"
    if origin is None:
        return dead_letter(
            row[-1].encode(),
            topic_for_kind(KIND_BY_TABLE[spec.name]),
            row[3],
            reason,
            patient_id=row[1],
            source=STORE_SOURCE,
        )
    event = _event_of(origin)
    if isinstance(event, DeadLetter):
        raise RuntimeError(
            f"the database refused a dead letter ({type(error).__name__}); see the server log"
        ) from error
    raw = event.model_dump_json().encode()
    return dead_letter(
        raw,
        topic_for_kind(event.kind),
        event.received_at,
        reason,
        patient_id=event.patient_id,
        source=STORE_SOURCE,
    )
