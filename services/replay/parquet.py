"""Replay outputs as Parquet files: trajectories, features, risk, alerts, subgroups, dead letters.

One file per stream of outputs, each with a fixed Arrow schema (so an empty
file still says what its columns are), written in row groups as the replay
goes, so memory stays flat on long replays:

================== ============================================================
file               rows
================== ============================================================
trajectories       course updates of instruments and labs (``signal_kind``
                   ``instrument`` or ``lab``): the course of illness
features           course updates of wearable signals: daily features per local
                   day (and ``late_samples`` counts)
risk               risk assessments
alerts             alert changes (raised, updated, closed)
subgroups          subgroup changes (``SubgroupAssigned``): a specifier met or
                   no longer met, a move to another cluster
dead_letters       events the core could not use (no raw payload: its sha256)
================== ============================================================

Times are ``timestamp[us, UTC]``; ``day`` is a date; ids are UUID text;
``evidence`` and ``contributions`` are JSON text.

Adding a stream adds a file and a key to the manifest's row counts; the
columns of an existing file never change meaning.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from schemas.events import Alert, CourseUpdate, DeadLetter, RiskAssessment, SubgroupAssigned
from services.replay.provenance import FileEntry, file_entry
from streams import Output

_TIME = pa.timestamp("us", tz="UTC")

_ENVELOPE: list[tuple[str, pa.DataType]] = [
    ("event_id", pa.string()),
    ("patient_id", pa.string()),
    ("observed_at", _TIME),
    ("received_at", _TIME),
    ("caused_by", pa.string()),
]

_ENVELOPE_NAMES = frozenset(name for name, _ in _ENVELOPE)

_COURSE = pa.schema(
    [
        *_ENVELOPE,
        ("signal", pa.string()),
        ("signal_kind", pa.string()),
        ("value", pa.float64()),
        ("unit", pa.string()),
        ("day", pa.date32()),
        ("band", pa.string()),
        ("baseline", pa.float64()),
        ("change", pa.float64()),
        ("rci", pa.float64()),
        ("reliable_change", pa.string()),
        ("response", pa.bool_()),
        ("remission", pa.bool_()),
        ("status", pa.string()),
        ("level", pa.float64()),
        ("level_sd", pa.float64()),
        ("deviation", pa.float64()),
        ("coverage", pa.float64()),
        ("late", pa.bool_()),
    ]
)

_RISK = pa.schema(
    [
        *_ENVELOPE,
        ("probability", pa.float64()),
        ("horizon_days", pa.int32()),
        ("model_name", pa.string()),
        ("model_version", pa.int32()),
        ("contributions", pa.string()),
    ]
)

_ALERTS = pa.schema(
    [
        *_ENVELOPE,
        ("alert_id", pa.string()),
        ("rule", pa.string()),
        ("severity", pa.string()),
        ("status", pa.string()),
        ("message", pa.string()),
        ("evidence", pa.string()),
        ("first_seen", _TIME),
        ("last_seen", _TIME),
        ("config_version", pa.string()),
    ]
)

_SUBGROUPS = pa.schema(
    [
        *_ENVELOPE,
        ("scheme", pa.string()),
        ("scheme_name", pa.string()),
        ("subgroup", pa.string()),
        ("previous", pa.string()),
        ("version", pa.string()),
        ("probability", pa.float64()),
        ("description", pa.string()),
        ("citation", pa.string()),
        ("evidence", pa.string()),
    ]
)

_DEAD_LETTERS = pa.schema(
    [
        ("event_id", pa.string()),
        ("patient_id", pa.string()),
        ("received_at", _TIME),
        ("topic", pa.string()),
        ("reason", pa.string()),
        ("raw_size", pa.int64()),
        ("raw_sha256", pa.string()),
    ]
)

#: File stem -> Arrow schema, in the order the manifest lists them.
SCHEMAS: dict[str, pa.Schema] = {
    "trajectories": _COURSE,
    "features": _COURSE,
    "risk": _RISK,
    "alerts": _ALERTS,
    "subgroups": _SUBGROUPS,
    "dead_letters": _DEAD_LETTERS,
}

#: Rows buffered per file before a row group is written.
ROW_GROUP = 20_000


def stream_of(output: Output) -> str:
    """Which file an output belongs in.

    >>> from schemas.examples import envelope_fields
    >>> from uuid import uuid4
    >>> update = CourseUpdate(**envelope_fields(), caused_by=uuid4(), signal="sleep_duration",
    ...                       signal_kind="wearable", value=410.0)
    >>> stream_of(update)
    'features'
    """
    if isinstance(output, CourseUpdate):
        return "features" if output.signal_kind == "wearable" else "trajectories"
    if isinstance(output, RiskAssessment):
        return "risk"
    if isinstance(output, Alert):
        return "alerts"
    if isinstance(output, SubgroupAssigned):
        return "subgroups"
    if isinstance(output, DeadLetter):
        return "dead_letters"
    raise TypeError(f"no replay file takes a {type(output).__name__} output")


def _envelope(o: CourseUpdate | RiskAssessment | Alert | SubgroupAssigned) -> dict[str, Any]:
    return {
        "event_id": str(o.event_id),
        "patient_id": o.patient_id,
        "observed_at": o.observed_at,
        "received_at": o.received_at,
        "caused_by": str(o.caused_by),
    }


def _course_row(o: CourseUpdate) -> dict[str, Any]:
    fields = o.model_dump(include=set(_COURSE.names) - _ENVELOPE_NAMES)
    return _envelope(o) | fields


def _risk_row(o: RiskAssessment) -> dict[str, Any]:
    contributions = json.dumps([c.model_dump() for c in o.contributions])
    return _envelope(o) | {
        "probability": o.probability,
        "horizon_days": o.horizon_days,
        "model_name": o.model_name,
        "model_version": o.model_version,
        "contributions": contributions,
    }


def _alert_row(o: Alert) -> dict[str, Any]:
    return _envelope(o) | {
        "alert_id": str(o.alert_id),
        "rule": o.rule,
        "severity": o.severity,
        "status": o.status,
        "message": o.message,
        "evidence": json.dumps(o.evidence, sort_keys=True),
        "first_seen": o.first_seen,
        "last_seen": o.last_seen,
        "config_version": o.config_version,
    }


def _subgroup_row(o: SubgroupAssigned) -> dict[str, Any]:
    return _envelope(o) | {
        "scheme": o.scheme,
        "scheme_name": o.scheme_name,
        "subgroup": o.subgroup,
        "previous": o.previous,
        "version": o.version,
        "probability": o.probability,
        "description": o.description,
        "citation": o.citation,
        "evidence": json.dumps(o.evidence, sort_keys=True),
    }


def _dead_letter_row(o: DeadLetter) -> dict[str, Any]:
    return {
        "event_id": str(o.event_id),
        "patient_id": o.patient_id,
        "received_at": o.received_at,
        "topic": o.topic,
        "reason": o.reason,
        "raw_size": o.raw_size,
        "raw_sha256": o.raw_sha256,
    }


_ROWS: dict[str, Callable[[Any], dict[str, Any]]] = {
    "trajectories": _course_row,
    "features": _course_row,
    "risk": _risk_row,
    "alerts": _alert_row,
    "subgroups": _subgroup_row,
    "dead_letters": _dead_letter_row,
}


class OutputFiles:
    """Parquet writers for a replay's outputs in ``out_dir`` (``<stream>.parquet``).

    ``add`` buffers a row; a full buffer becomes a row group; ``close``
    flushes, closes every file (each stream gets a file, empty or not) and
    returns their descriptions with sha256.
    """

    def __init__(self, out_dir: Path, *, row_group: int = ROW_GROUP) -> None:
        self.out_dir = out_dir
        self.row_group = row_group
        self.rows: dict[str, int] = dict.fromkeys(SCHEMAS, 0)
        self._buffers: dict[str, list[dict[str, Any]]] = {name: [] for name in SCHEMAS}
        self._writers: dict[str, pq.ParquetWriter] = {}

    def path(self, stream: str) -> Path:
        return self.out_dir / f"{stream}.parquet"

    def add(self, output: Output) -> None:
        stream = stream_of(output)
        buffer = self._buffers[stream]
        buffer.append(_ROWS[stream](output))
        self.rows[stream] += 1
        if len(buffer) >= self.row_group:
            self._flush(stream)

    def _flush(self, stream: str) -> None:
        buffer = self._buffers[stream]
        writer = self._writers.get(stream)
        if writer is None:
            writer = self._writers[stream] = pq.ParquetWriter(
                self.path(stream), SCHEMAS[stream], compression="zstd"
            )
        if buffer:
            writer.write_table(pa.Table.from_pylist(buffer, schema=SCHEMAS[stream]))
            buffer.clear()

    def close(self) -> list[FileEntry]:
        """Finish every file; return them in :data:`SCHEMAS` order."""
        entries = []
        for stream in SCHEMAS:
            self._flush(stream)
            self._writers.pop(stream).close()
            entries.append(file_entry(self.path(stream), self.rows[stream]))
        return entries

    def abort(self) -> None:
        """Close whatever is open after a failure (the files are incomplete)."""
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Every row of a Parquet file as dicts (for tests and small files)."""
    rows: list[dict[str, Any]] = pq.read_table(path).to_pylist()
    return rows


__all__ = ["ROW_GROUP", "SCHEMAS", "OutputFiles", "read_rows", "stream_of"]
