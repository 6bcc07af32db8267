"""Rows of a relation into a Parquet or CSV file, streamed in batches.

Types: PostgreSQL ``boolean``, integers, ``real``/``double precision``,
``date`` and ``timestamptz`` keep their types in Parquet (``timestamp[us,
UTC]``; ``numeric`` becomes ``float64``); ids, JSON and everything else are
text. In CSV, times are ISO 8601 in UTC, booleans ``true``/``false``, NULL an
empty field, JSON its text, floats their shortest exact decimal form.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from services.export.relations import Column

_ARROW: dict[str, pa.DataType] = {
    "boolean": pa.bool_(),
    "smallint": pa.int16(),
    "integer": pa.int32(),
    "bigint": pa.int64(),
    "real": pa.float32(),
    "double precision": pa.float64(),
    "numeric": pa.float64(),
    "date": pa.date32(),
    "timestamp with time zone": pa.timestamp("us", tz="UTC"),
    "timestamp without time zone": pa.timestamp("us"),
}


def arrow_type(column: Column) -> pa.DataType:
    """The Arrow type a column is written as.

    >>> arrow_type(Column("observed_at", "timestamp with time zone"))
    TimestampType(timestamp[us, tz=UTC])
    >>> arrow_type(Column("event_id", "uuid"))
    DataType(string)
    """
    if column.as_text:
        return pa.string()
    return _ARROW.get(column.pg_type.split("(")[0].strip(), pa.string())


def arrow_schema(columns: Sequence[Column]) -> pa.Schema:
    return pa.schema(
        [pa.field(c.name, arrow_type(c), metadata={"pg_type": c.pg_type}) for c in columns]
    )


class RowWriter(Protocol):
    """Writes batches of rows (tuples in column order) to one file."""

    def write(self, rows: Sequence[tuple[Any, ...]]) -> None: ...

    def close(self) -> None: ...


class ParquetRows:
    """A Parquet file with a fixed schema; one row group per batch."""

    def __init__(self, path: Path, columns: Sequence[Column]) -> None:
        self.schema = arrow_schema(columns)
        self._numeric = [c.pg_type.startswith("numeric") and not c.as_text for c in columns]
        self._writer = pq.ParquetWriter(path, self.schema, compression="zstd")

    def write(self, rows: Sequence[tuple[Any, ...]]) -> None:
        if not rows:
            return
        arrays = []
        for index, field in enumerate(self.schema):
            values = [row[index] for row in rows]
            if self._numeric[index]:
                values = [None if v is None else float(v) for v in values]
            arrays.append(pa.array(values, type=field.type))
        self._writer.write_table(pa.Table.from_arrays(arrays, schema=self.schema))

    def close(self) -> None:
        self._writer.close()


def csv_value(value: Any) -> str:
    """A value as CSV text.

    >>> from decimal import Decimal
    >>> [csv_value(v) for v in (None, True, 0.1, Decimal("2.50"), date(2026, 3, 2))]
    ['', 'true', '0.1', '2.50', '2026-03-02']
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, float):
        return repr(value)
    return str(value)


class CsvRows:
    """A UTF-8 CSV file with a header row."""

    def __init__(self, path: Path, columns: Sequence[Column]) -> None:
        self._handle = path.open("w", encoding="utf-8", newline="")
        self._writer = csv.writer(self._handle, lineterminator="\n")
        self._writer.writerow([c.name for c in columns])

    def write(self, rows: Sequence[tuple[Any, ...]]) -> None:
        self._writer.writerows([csv_value(v) for v in row] for row in rows)

    def close(self) -> None:
        self._handle.close()


def write_rows(writer: RowWriter, batches: Iterable[Sequence[tuple[Any, ...]]]) -> int:
    """Write every batch; close the file; return the number of rows."""
    count = 0
    try:
        for batch in batches:
            writer.write(batch)
            count += len(batch)
    finally:
        writer.close()
    return count


__all__ = ["CsvRows", "ParquetRows", "RowWriter", "arrow_schema", "arrow_type", "csv_value"]
