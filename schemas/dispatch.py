"""One way in: raw bytes become the right event, or a dead letter with a reason.

Every edge (the ``psymon validate`` and ``ingest`` commands, the HTTP API, the
stream worker reading a topic) calls :func:`decode` so that one record is
judged the same way wherever it enters.

>>> from datetime import UTC, datetime
>>> when = datetime(2026, 3, 2, 9, 10, tzinfo=UTC)
>>> letter = decode(b'{"kind": "lab_result"', topic="psymon.lab-results.v1", received_at=when)
>>> letter.kind, letter.reason.startswith("not valid JSON")
('dead_letter', True)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter, ValidationError

from schemas.envelope import Source
from schemas.events import (
    MAX_DEAD_LETTER_RAW,
    RAW_KINDS,
    AnyEvent,
    ClinicalOutcome,
    ClinicalScore,
    DeadLetter,
    FieldError,
    LabResult,
    WearableSample,
    WearableUpload,
)
from schemas.identity import PSEUDONYM_PATTERN, event_id_for
from schemas.instruments import ScoreError
from schemas.topics import KINDS_BY_TOPIC

InputEvent = ClinicalScore | WearableUpload | WearableSample | LabResult | ClinicalOutcome

_ANY_EVENT: TypeAdapter[Any] = TypeAdapter(AnyEvent)

#: Fields whose values are never echoed into a reason: they may identify a patient.
_PRIVATE_FIELDS = frozenset({"patient_id"})
_MAX_VALUE_TEXT = 80

EDGE_SOURCE = Source(system="psymon-edge")


def decode(
    raw: bytes | str,
    *,
    topic: str,
    received_at: datetime,
    source: Source = EDGE_SOURCE,
) -> InputEvent | DeadLetter:
    """Judge one raw record arriving on ``topic``.

    Returns the validated event when the record is a raw event of a kind that
    ``topic`` carries; otherwise a :class:`DeadLetter` holding the payload and
    reasons that name the field, the value and what is accepted.
    """
    data = raw.encode() if isinstance(raw, str) else raw
    try:
        document = loads(data)
    except ValueError as error:
        return dead_letter(data, topic, received_at, f"not valid JSON: {error}", source=source)
    return decode_document(document, raw=data, topic=topic, received_at=received_at, source=source)


def decode_document(
    document: Any,
    *,
    raw: bytes,
    topic: str,
    received_at: datetime,
    source: Source = EDGE_SOURCE,
) -> InputEvent | DeadLetter:
    """Like :func:`decode` for a record already parsed from JSON (or CSV)."""
    if not isinstance(document, Mapping):
        shape = type(document).__name__
        reason = f"a record must be a JSON object with a 'kind' field, got a JSON {shape}"
        return dead_letter(raw, topic, received_at, reason, source=source)
    kind = document.get("kind")
    accepted_here = KINDS_BY_TOPIC.get(topic, frozenset(RAW_KINDS)) & set(RAW_KINDS)
    if not isinstance(kind, str) or kind not in accepted_here:
        reason = (
            f"field 'kind': value {_short(kind)} is not accepted on {topic}; "
            f"accepted: {', '.join(sorted(accepted_here))}"
        )
        kind_error = (FieldError(field="kind", message=reason, value=_short(kind)),)
        return dead_letter(raw, topic, received_at, reason, errors=kind_error, source=source)
    try:
        event: InputEvent = _ANY_EVENT.validate_python(document)
    except ValidationError as error:
        errors = field_errors(error)
        reason = "; ".join(f"field '{e.field}': {e.message}" for e in errors)
        patient = document.get("patient_id")
        known = (
            patient if isinstance(patient, str) and PSEUDONYM_PATTERN.fullmatch(patient) else None
        )
        if patient is not None and known is None:
            # Whatever stands where a pseudonym belongs may be a medical record
            # number: it never reaches the dead-letter topic.
            return dead_letter(
                raw,
                topic,
                received_at,
                reason,
                errors=errors,
                source=source,
                redacted=_redacted(document, "patient_id"),
            )
        return dead_letter(
            raw, topic, received_at, reason, errors=errors, patient_id=known, source=source
        )
    return event


def field_errors(error: ValidationError) -> tuple[FieldError, ...]:
    """Turn pydantic's errors into ones a person can act on.

    The location drops pydantic's union tags (``clinical_score.items.9`` reads
    ``items.9``); values of private fields are never shown.
    """
    result = []
    for item in error.errors(include_url=False):
        location = [str(part) for part in item["loc"]]
        if location and location[0] in RAW_KINDS:
            location = location[1:]
        cause = item.get("ctx", {}).get("error")
        if isinstance(cause, ScoreError) and cause.items and cause.items != ("total",):
            # The total's validator scores the items: name the items at fault.
            location = [*location[:-1], "items", ",".join(cause.items)]
        field = ".".join(location) or "(record)"
        message = str(item["msg"]).removeprefix("Value error, ")
        private = bool(_PRIVATE_FIELDS & set(location))
        value = None if private or item["type"] == "missing" else _short(item.get("input"))
        if item["type"] == "missing":
            message = "required field is missing"
        elif value is not None and "value" not in message:
            message = f"{message} (got {value})"
        result.append(
            FieldError(field=_clip(field, 256), message=_clip(message, 2000), value=value)
        )
    return tuple(result)


def dead_letter(
    raw: bytes,
    topic: str,
    received_at: datetime,
    reason: str,
    *,
    errors: tuple[FieldError, ...] = (),
    patient_id: str | None = None,
    source: Source = EDGE_SOURCE,
    redacted: str | None = None,
) -> DeadLetter:
    """A dead letter for ``raw``; its id is derived from topic and content.

    The same bad record sent twice gets the same ``event_id``, so the store
    keeps it once. ``redacted`` replaces the stored text when the payload holds
    something that must not travel (a source identifier); ``raw_size`` and
    ``raw_sha256`` still describe the original bytes.
    """
    digest = hashlib.sha256(raw).hexdigest()
    text = redacted if redacted is not None else raw.decode("utf-8", errors="replace")
    text = text[:MAX_DEAD_LETTER_RAW]
    return DeadLetter(
        event_id=event_id_for("dead-letter", topic, digest),
        patient_id=patient_id,
        received_at=received_at,
        topic=topic,
        reason=reason[:2000],
        errors=errors[:50],
        raw=text,
        raw_size=len(raw),
        raw_sha256=digest,
        source=source,
    )


def _redacted(document: Mapping[str, Any], *fields: str) -> str:
    cleaned = {k: ("[redacted]" if k in fields else v) for k, v in document.items()}
    return json.dumps(cleaned, default=str)


def loads(data: bytes) -> Any:
    """Parse JSON strictly: NaN and Infinity are refused, deep nesting is an error.

    >>> loads(b'{"value": 1.5}')
    {'value': 1.5}
    >>> loads(b'{"value": NaN}')
    Traceback (most recent call last):
    ...
    ValueError: NaN is not a number psymon accepts (JSON has no NaN or Infinity)
    """
    try:
        return json.loads(data, parse_constant=_reject_constant)
    except RecursionError:
        raise ValueError("the JSON is nested too deeply") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number psymon accepts (JSON has no NaN or Infinity)")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_VALUE_TEXT else text[: _MAX_VALUE_TEXT - 3] + "..."
