"""Sink throughput against a raw binary COPY into the same table, in the same run.

The sink's path for a batch of Kafka records: decode and validate every record
(``schemas.dispatch.decode``), expand wearable uploads into sample rows, one
binary COPY per table straight into the partitioned table inside a savepoint
(a batch holding an already stored event falls back to staging + ``INSERT ...
ON CONFLICT DO NOTHING``), the new rows added to the daily rollups, the
uploads and the patient registry written, one transaction per batch. The
records are decoded while the first table's COPY runs, so the server inserts
while Python decodes; the process collects garbage as rarely as ``psymon
sink`` does (:func:`services.sink.collect_garbage_rarely`).
The baseline is the fastest way PostgreSQL can take the same rows: one binary
COPY straight into the table, rows prepared beforehand, no checks. A second
reference is the fastest *idempotent* way: the same rows binary-COPYed into a
staging table, then ``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` (no
decoding, no rollups): what any exactly-once-effect sink pays in the database.

Run: ``python bench/sink_throughput.py`` (about 30-60 s; starts its own
embedded PostgreSQL in a temporary directory). Prints rows/s of each and
their ratios, the sink's CPU per row, and what decoding and expanding into
rows cost alone, as shares of the sink's time (the server's COPY runs
meanwhile), for wearable samples (uploads of 500 readings) and for clinical
scores (one row per record).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from schemas.envelope import Source
from schemas.events import ClinicalScore, WearableUpload
from schemas.examples import EXAMPLE_KEY
from schemas.identity import event_id_for, pseudonymise
from schemas.topics import topic_for_kind
from services.embedded.postgres import EmbeddedPostgres
from services.sink import Sink, SinkRecord, collect_garbage_rarely, decode_record
from services.store.migrate import migrate
from services.store.tables import (
    CLINICAL_SCORES,
    WEARABLE_SAMPLES,
    TableSpec,
    stored_events,
    table_for,
)
from services.store.writer import rows_of

START = datetime(2026, 3, 2, tzinfo=UTC)
BATCH_RECORDS = 5000


def uploads(samples: int, per_upload: int = 500) -> list[WearableUpload]:
    """Heart-rate uploads of ``per_upload`` one-minute readings from 20 patients."""
    result = []
    for n in range(samples // per_upload):
        patient = pseudonymise(f"bench-{n % 20}", EXAMPLE_KEY, system="bench")
        start = START + timedelta(minutes=per_upload * (n // 20))
        readings = [
            {
                "event_id": event_id_for("bench-hr", str(n), str(i)),
                "metric": "heart_rate",
                "value": 55.0 + (n * 7 + i) % 60,
                "unit": "/min",
                "start": start + timedelta(minutes=i),
                "end": start + timedelta(minutes=i + 1),
            }
            for i in range(per_upload)
        ]
        result.append(
            WearableUpload(
                event_id=event_id_for("bench-upload", str(n)),
                patient_id=patient,
                observed_at=start,
                received_at=start + timedelta(days=1),
                source=Source(system="bench", device="watch"),
                window_end=start + timedelta(minutes=per_upload),
                readings=readings,
            )
        )
    return result


def scores(count: int) -> list[ClinicalScore]:
    """PHQ-9 results with items from 200 patients."""
    return [
        ClinicalScore(
            event_id=event_id_for("bench-phq9", str(n)),
            patient_id=pseudonymise(f"bench-{n % 200}", EXAMPLE_KEY, system="bench"),
            observed_at=START + timedelta(hours=n // 200),
            received_at=START + timedelta(hours=n // 200, minutes=5),
            source=Source(system="bench"),
            instrument="phq9",
            rater="self",
            items={str(i): (n + i) % 4 for i in range(1, 10)},
        )
        for n in range(count)
    ]


def records_of(events: Sequence[Any]) -> list[SinkRecord]:
    """Kafka records of ``events``, stamped by the broker as they arrived (``received_at``)."""
    return [
        SinkRecord(
            topic_for_kind(e.kind),
            e.model_dump_json().encode(),
            int(e.received_at.timestamp() * 1000),
            0,
            i,
        )
        for i, e in enumerate(events)
    ]


_TYPES = {
    "event_id": "uuid",
    "patient_id": "text",
    "observed_at": "timestamptz",
    "received_at": "timestamptz",
    "source_system": "text",
    "source_device": "text",
    "source_rater": "text",
    "time_zone": "text",
    "metric": "text",
    "value": "float8",
    "unit": "text",
    "interval_end": "timestamptz",
    "upload_id": "uuid",
    "payload": "jsonb",
    "instrument": "text",
    "version": "text",
    "rater": "text",
    "items": "jsonb",
    "total": "int4",
}


def _prepared_rows(spec: TableSpec, events: Sequence[Any]) -> list[tuple[Any, ...]]:
    """``events``' rows for ``spec``'s table, ready for a binary COPY."""
    json_columns = {i for i, c in enumerate(spec.columns) if _TYPES[c] == "jsonb"}
    return [
        tuple(
            Jsonb(v, dumps=lambda s: s) if i in json_columns and v is not None else v
            for i, v in enumerate(row)
        )
        for event in events
        for stored, row in stored_events(event)
        if table_for(stored) is spec
    ]


def raw_copy(url: str, spec: TableSpec, events: Sequence[Any]) -> tuple[int, float]:
    """Rows and seconds for one binary COPY of ``events``' rows straight into the table."""
    rows = _prepared_rows(spec, events)
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in spec.columns)
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        sql.Identifier(spec.name), columns
    )
    with psycopg.connect(url) as conn:
        started = time.perf_counter()
        with conn.cursor() as cursor, cursor.copy(statement) as copy:
            copy.set_types([_TYPES[c] for c in spec.columns])
            for row in rows:
                copy.write_row(row)
        conn.commit()
        return len(rows), time.perf_counter() - started


def idempotent_copy(url: str, spec: TableSpec, events: Sequence[Any]) -> tuple[int, float]:
    """Rows and seconds for binary COPY into staging + ``INSERT ... ON CONFLICT DO NOTHING``."""
    rows = _prepared_rows(spec, events)
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in spec.columns)
    stage = sql.Identifier(f"bench_stage_{spec.name}")
    with psycopg.connect(url) as conn:
        conn.execute(
            sql.SQL("CREATE TEMPORARY TABLE {} (LIKE {} INCLUDING DEFAULTS)").format(
                stage, sql.Identifier(spec.name)
            )
        )
        conn.commit()
        started = time.perf_counter()
        with conn.cursor() as cursor:
            copy_sql = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(stage, columns)
            with cursor.copy(copy_sql) as copy:
                copy.set_types([_TYPES[c] for c in spec.columns])
                for row in rows:
                    copy.write_row(row)
            cursor.execute(
                sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT DO NOTHING").format(
                    sql.Identifier(spec.name), columns, columns, stage
                )
            )
            inserted = cursor.rowcount
        conn.commit()
        seconds = time.perf_counter() - started
    assert inserted == len(rows), (inserted, len(rows))
    return len(rows), seconds


def sink_load(url: str, table: str, records: list[SinkRecord]) -> tuple[int, float, float]:
    """Rows stored in ``table``, seconds and CPU seconds of the sink's path, connection warm.

    The sink writes more than those rows in that time: the uploads themselves
    (``wearable_uploads``), the daily rollups and the patient registry.
    """
    inserted = 0
    with Sink(url) as sink:
        sink.load_batch([])  # connect and prepare staging tables: a running sink has
        started, cpu = time.perf_counter(), time.process_time()
        for first in range(0, len(records), BATCH_RECORDS):
            report = sink.load_batch(records[first : first + BATCH_RECORDS])
            inserted += report.inserted[table]
        return inserted, time.perf_counter() - started, time.process_time() - cpu


def decode_seconds(records: list[SinkRecord]) -> float:
    """Seconds to decode and validate ``records`` alone (an upload's readings with it)."""
    started = time.perf_counter()
    for record in records:
        decode_record(record)
    return time.perf_counter() - started


def expand_seconds(records: list[SinkRecord]) -> float:
    """Seconds to turn decoded events into table rows as the writer does (uploads: + samples)."""
    decoded = [decode_record(record) for record in records]
    started = time.perf_counter()
    for event in decoded:
        rows_of(event)
    return time.perf_counter() - started


def compare(
    url: str,
    label: str,
    spec: TableSpec,
    events: Sequence[Any],
    reset: Callable[[], None],
    repeat: int,
) -> float:
    """Best of ``repeat`` runs of each path (the machine may be busy with other work)."""
    records = records_of(events)
    raw_seconds = floor_seconds = sink_seconds = sink_cpu = float("inf")
    rows = 0
    for _ in range(repeat):
        reset()
        rows, seconds = raw_copy(url, spec, events)
        raw_seconds = min(raw_seconds, seconds)
        reset()
        floor_rows, seconds = idempotent_copy(url, spec, events)
        assert floor_rows == rows, (floor_rows, rows)
        floor_seconds = min(floor_seconds, seconds)
        reset()
        sink_rows, seconds, cpu = sink_load(url, spec.name, records)
        assert sink_rows == rows, (sink_rows, rows)
        sink_seconds = min(sink_seconds, seconds)
        sink_cpu = min(sink_cpu, cpu)
    decoding = min(decode_seconds(records) for _ in range(repeat))
    expanding = min(expand_seconds(records) for _ in range(repeat))
    raw_rate, floor_rate, sink_rate = rows / raw_seconds, rows / floor_seconds, rows / sink_seconds
    ratio = sink_rate / raw_rate
    print(
        f"{label:<16} {rows:>8,} rows  raw COPY {raw_rate:>9,.0f} rows/s  "
        f"idempotent COPY {floor_rate:>9,.0f} rows/s  sink {sink_rate:>9,.0f} rows/s"
    )
    print(
        f"{'':<16} ratio sink/raw {ratio:.2f}   sink/idempotent {sink_rate / floor_rate:.2f}   "
        f"idempotent/raw {floor_rate / raw_rate:.2f}   "
        f"sink CPU {1e6 * sink_cpu / rows:.1f} us/row (this process)"
    )
    print(
        f"{'':<16} alone, as shares of the sink's time: decoding {decoding / sink_seconds:.0%}, "
        f"expanding into rows {expanding / sink_seconds:.0%} (the COPY runs meanwhile)"
    )
    return ratio


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--samples", type=int, default=60_000, help="wearable samples")
    parser.add_argument("--scores", type=int, default=10_000, help="clinical scores")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each path; best counts")
    args = parser.parse_args(argv)
    collect_garbage_rarely()  # as the sink process does (run_sink): every path measured alike

    base = Path(tempfile.mkdtemp(prefix="psymon-bench-"))
    base.chmod(0o711)
    try:
        with EmbeddedPostgres(base / "data") as pg:
            url = pg.url
            with psycopg.connect(url, autocommit=True) as conn:
                migrate(conn)

            def reset(*tables: str) -> Callable[[], None]:
                def run() -> None:
                    with psycopg.connect(url, autocommit=True) as conn:
                        conn.execute(f"TRUNCATE {', '.join(tables)}")
                        conn.execute(f"VACUUM ANALYZE {', '.join(tables)}")

                return run

            print(
                f"PostgreSQL 18 (embedded), batches of up to {BATCH_RECORDS} records, "
                f"best of {args.repeat}"
            )
            compare(
                url,
                "wearable_samples",
                WEARABLE_SAMPLES,
                uploads(args.samples),
                reset("wearable_samples", "wearable_uploads", "daily_wearable", "patients"),
                args.repeat,
            )
            compare(
                url,
                "clinical_scores",
                CLINICAL_SCORES,
                scores(args.scores),
                reset("clinical_scores", "daily_scores", "patients"),
                args.repeat,
            )
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
