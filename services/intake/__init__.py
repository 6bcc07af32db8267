"""The one validation path of every edge: files, standard input and HTTP.

:func:`read_verdicts` turns a JSONL, CSV or FHIR document into one
:class:`Verdict` per record: the events it became, or the dead letter that
says why it could not. ``psymon validate`` prints verdicts, ``psymon ingest``
and ``POST /v1/events`` produce them to the broker.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from schemas.dispatch import InputEvent, dead_letter, decode_document, loads, with_raw_text
from schemas.envelope import Source
from schemas.events import DeadLetter
from schemas.identity import PSEUDONYM_PATTERN
from services.intake.csv_mapping import RowError, row_to_document

Status = Literal["accepted", "rejected", "unsupported", "duplicate"]
Format = Literal["jsonl", "csv", "fhir"]

#: The ``topic`` a dead letter names when a record was refused at the edge,
#: before it reached any broker topic.
EDGE_TOPIC = "psymon.edge"


@dataclass(frozen=True)
class Verdict:
    """What became of one input record."""

    where: str
    status: Status
    events: tuple[InputEvent, ...] = ()
    dead_letter: DeadLetter | None = None
    reason: str | None = None


def detect_format(name: str, head: bytes) -> Format:
    """Guess the format from the file name, else from the first bytes.

    >>> detect_format("export.csv", b"")
    'csv'
    >>> detect_format("-", b'{"resourceType": "Bundle"}')
    'fhir'
    >>> detect_format("-", b'{"kind": "lab_result"}\\n')
    'jsonl'
    """
    lowered = name.lower()
    if lowered.endswith(".csv"):
        return "csv"
    if lowered.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    stripped = head.lstrip()
    if b'"resourceType"' in stripped[:4096] and not stripped.startswith(b'{"kind"'):
        return "fhir"
    if stripped.startswith(b"{") or not stripped:
        return "jsonl"
    return "csv"


def read_verdicts(
    data: bytes,
    *,
    name: str,
    received_at: datetime,
    key: bytes | None,
    format: Format | None = None,
    edge: str = "cli",
) -> Iterator[Verdict]:
    """Judge every record of ``data`` (a whole file's bytes)."""
    chosen = format or detect_format(name, data[:4096])
    source = Source(system=f"psymon-{edge}")
    if chosen == "fhir":
        yield from _fhir_verdicts(data, received_at=received_at, key=key, source=source)
    elif chosen == "csv":
        yield from _csv_verdicts(data, name=name, received_at=received_at, key=key, source=source)
    else:
        lines = data.splitlines()
        yield from judge_documents(
            ((f"line {n}", line) for n, line in enumerate(lines, 1) if line.strip()),
            received_at=received_at,
            source=source,
        )


def judge_documents(
    records: Iterable[tuple[str, bytes | dict[str, Any]]],
    *,
    received_at: datetime,
    source: Source,
) -> Iterator[Verdict]:
    """Judge JSON event records (raw lines or parsed objects); shared with HTTP."""
    for where, record in records:
        if isinstance(record, bytes):
            try:
                document = loads(record)
            except ValueError as error:
                letter = dead_letter(
                    record, EDGE_TOPIC, received_at, f"not valid JSON: {error}", source=source
                )
                yield Verdict(where, "rejected", dead_letter=letter, reason=letter.reason)
                continue
            raw = record
        else:
            document, raw = record, json.dumps(record, default=str).encode()
        yield _judge(where, document, raw, received_at, source)


def _judge(
    where: str,
    document: Any,
    raw: bytes,
    received_at: datetime,
    source: Source,
    *,
    redacted: str | None = None,
) -> Verdict:
    if isinstance(document, dict) and "received_at" not in document:
        document = {**document, "received_at": received_at.isoformat()}
    outcome = decode_document(
        document, raw=raw, topic=EDGE_TOPIC, received_at=received_at, source=source
    )
    # decode_document refuses a received_at ahead of this edge's clock (received_at).
    if isinstance(outcome, DeadLetter):
        if redacted is not None:
            outcome = with_raw_text(outcome, redacted)  # cut as dead_letter cuts
        return Verdict(where, "rejected", dead_letter=outcome, reason=outcome.reason)
    return Verdict(where, "accepted", events=(outcome,))


def _csv_verdicts(
    data: bytes, *, name: str, received_at: datetime, key: bytes | None, source: Source
) -> Iterator[Verdict]:
    text = data.decode("utf-8-sig", errors="replace")
    reader = csv.DictReader(io.StringIO(text))
    fields = list(reader.fieldnames or [])
    for number, row in enumerate(reader, 2):
        where = f"row {number}"
        raw = _row_text(row, fields)
        redacted = _csv_redacted(row, fields)
        try:
            document = row_to_document(row, default_system=name, key=key)
        except RowError as error:
            letter = dead_letter(
                raw,
                EDGE_TOPIC,
                received_at,
                str(error),
                source=source,
                redacted=redacted,
            )
            yield Verdict(where, "rejected", dead_letter=letter, reason=letter.reason)
            continue
        yield _judge(where, document, raw, received_at, source, redacted=redacted)


def _row_text(row: dict[str, Any], fields: list[str]) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore")
    writer.writerow(row)
    return buffer.getvalue().encode()


def _csv_redacted(row: dict[str, Any], fields: list[str]) -> str | None:
    """The row as it may travel: source identifiers, and anything in ``patient_id``
    that is not a pseudonym, replaced; ``None`` when nothing needed replacing."""
    patient = row.get("patient_id")
    leaking_patient = bool(patient) and not PSEUDONYM_PATTERN.fullmatch(str(patient).strip())
    if not row.get("source_patient_id") and not leaking_patient:
        return None
    cleaned = {
        k: (
            "[redacted]"
            if k == "source_patient_id" or (k == "patient_id" and leaking_patient)
            else v
        )
        for k, v in row.items()
    }
    return _row_text(cleaned, fields).decode()


def _fhir_verdicts(
    data: bytes, *, received_at: datetime, key: bytes | None, source: Source
) -> Iterator[Verdict]:
    from schemas.fhir import import_fhir  # fhir.resources is slow to import: only when needed

    if key is None:
        raise ValueError("FHIR import needs the pseudonym key (PSYMON_PSEUDONYM_KEY)")
    try:
        reports = import_fhir(data, pseudonym_key=key, received_at=received_at, system="fhir")
    except ValueError as error:
        letter = dead_letter(
            data,
            EDGE_TOPIC,
            received_at,
            f"not a FHIR document psymon can read: {error}",
            source=source,
            redacted="[FHIR document withheld: it may hold patient identifiers]",
        )
        yield Verdict("document", "rejected", dead_letter=letter, reason=letter.reason)
        return
    for report in reports:
        where = f"entry {report.index} ({report.resource})"
        if report.status == "rejected":
            reason = report.reason or "rejected"
            letter = dead_letter(
                _fhir_entry(data, report.index),
                EDGE_TOPIC,
                received_at,
                reason,
                source=source,
                redacted=_fhir_redacted(data, report.index),
            )
            yield Verdict(where, "rejected", dead_letter=letter, reason=reason)
        else:
            yield Verdict(where, report.status, events=tuple(report.events), reason=report.reason)


#: FHIR elements that may carry a patient's identity; redacted before a
#: rejected resource is kept as a dead letter.
_FHIR_IDENTIFYING = frozenset(
    {"subject", "patient", "identifier", "performer", "author", "source", "contained", "text"}
)


def _fhir_resource(data: bytes, index: int) -> Any:
    try:
        document = json.loads(data)
    except ValueError:
        return None
    if isinstance(document, dict) and document.get("resourceType") == "Bundle":
        entries = document.get("entry") or []
        if 0 <= index < len(entries) and isinstance(entries[index], dict):
            return entries[index].get("resource")
        return None
    return document


def _fhir_entry(data: bytes, index: int) -> bytes:
    return json.dumps(_fhir_resource(data, index), sort_keys=True).encode()


def _fhir_redacted(data: bytes, index: int) -> str:
    resource = _fhir_resource(data, index)
    if not isinstance(resource, dict):
        return "[FHIR entry withheld: not an object]"
    cleaned = {k: ("[redacted]" if k in _FHIR_IDENTIFYING else v) for k, v in resource.items()}
    return json.dumps(cleaned, sort_keys=True)
