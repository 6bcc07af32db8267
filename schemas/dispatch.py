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
from datetime import UTC, datetime
from typing import Any

from pydantic import TypeAdapter, ValidationError
from pydantic_core import SchemaValidator

from schemas.envelope import MAX_CLOCK_SKEW, Source, utc, utc_difference
from schemas.events import (
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
from schemas.one_pass import validator_for
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
    event = _valid_at_once(data, topic)
    if event is not None:
        return _not_ahead(event, data, topic, received_at, source)
    try:
        document = loads(data)
    except ValueError as error:
        return dead_letter(data, topic, received_at, f"not valid JSON: {error}", source=source)
    return decode_document(document, raw=data, topic=topic, received_at=received_at, source=source)


def _not_ahead(
    event: InputEvent, raw: bytes, topic: str, received_at: datetime, source: Source
) -> InputEvent | DeadLetter:
    """``event``, unless it claims to have been received after the receiver's own clock.

    A producer sets ``received_at``; one record received "in 9999" would move
    the patient's watermark there and make every later real event late. The
    receiver's clock (the edge's, or the broker's timestamp for the worker and
    the sink) bounds it, with :data:`~schemas.envelope.MAX_CLOCK_SKEW` of slack.
    """
    if utc_difference(event.received_at, received_at) <= MAX_CLOCK_SKEW:
        return event
    reason = (
        f"field 'received_at': {event.received_at.isoformat()} is after the receiver's clock "
        f"({utc(received_at).isoformat()}) by more than {MAX_CLOCK_SKEW}; accepted: the time "
        "the record was received, or leave it out and the edge stamps it"
    )
    error = FieldError(field="received_at", message=reason, value=event.received_at.isoformat())
    return dead_letter(
        raw,
        topic,
        received_at,
        reason,
        errors=(error,),
        patient_id=event.patient_id,
        source=source,
    )


#: A run of digits too long for a float (from ~309 on ``float(int)`` overflows).
_LONG_RUN = 300
_LONG_NUMBER = b"0" * _LONG_RUN
_DIGITS_TO_ZERO = bytes.maketrans(b"0123456789", b"0" * 10)
#: Every run of ``_LONG_RUN`` bytes holds two consecutive multiples of this step.
_STEP = _LONG_RUN // 2
_N, _I = ord("N"), ord("I")


def _lenient_json(data: bytes) -> bool:
    """Whether pydantic's JSON parser could accept what :func:`loads` + ``validate_python`` refuse.

    NaN and Infinity literals (:func:`loads` refuses them), and integers too
    long for a float (pydantic reads them as infinity where ``float(int)``
    overflows). A plain substring search, not a regular expression: this runs
    on every record, and a regex scan costs as much as the validation. Most
    records hold no capital N or I at all: one byte is found faster than a word
    (as an ``int``: ``b"N" in data`` costs six times as much). A run of 300
    digits covers two consecutive multiples of 150: only a record with digits
    at two such offsets is searched for one (most have none).
    """
    if (_N in data and b"NaN" in data) or (_I in data and b"Infinity" in data):
        return True
    if len(data) < _LONG_RUN or data[::_STEP].translate(_DIGITS_TO_ZERO).find(b"00") < 0:
        return False
    return data.translate(_DIGITS_TO_ZERO).find(_LONG_NUMBER) >= 0


def _valid_at_once(data: bytes, topic: str) -> InputEvent | None:
    """The event, when ``data`` is a valid record for ``topic``, parsed and validated in one pass.

    The happy path of :func:`decode`: pydantic's ``validate_json`` instead of
    ``json.loads`` and ``validate_python`` (a second walk over the document),
    with the validator of the topic's kinds (:mod:`schemas.one_pass`).
    It accepts exactly what the full path accepts, and returns the same
    event: the records on which the two parsers could disagree are left to
    the full path (:func:`_lenient_json`), and so is every record that fails
    here, so that its dead letter is made as before. ``None``: use the full path.
    """
    one_pass = _ONE_PASS.get(topic)
    validator, accepted = one_pass if one_pass is not None else _one_pass(topic)
    if validator is None or _lenient_json(data):
        return None
    try:
        event: InputEvent = validator.validate_json(data)
    except ValidationError:
        return None
    return event if event.kind in accepted else None


_RAW_KIND_SET = frozenset(RAW_KINDS)


def _one_pass(topic: str) -> tuple[SchemaValidator | None, frozenset[str]]:
    """The one pass's validator of ``topic`` and the raw kinds accepted on it."""
    return validator_for(topic), KINDS_BY_TOPIC.get(topic, _RAW_KIND_SET) & _RAW_KIND_SET


#: :func:`_one_pass` of every psymon topic, looked up once per record.
_ONE_PASS = {topic: _one_pass(topic) for topic in KINDS_BY_TOPIC}


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
    return _not_ahead(event, raw, topic, received_at, source)


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


def broker_time(timestamp_s: float) -> datetime | None:
    """A broker timestamp (seconds after 1970) as a UTC time; ``None`` if no time can hold it.

    A producer sets the timestamp of its records (Kafka's ``CreateTime``),
    and nothing stops one from sending a time after the year 9999, which
    Python's ``datetime`` cannot hold.

    >>> broker_time(1772442300.0)
    datetime.datetime(2026, 3, 2, 9, 5, tzinfo=datetime.timezone.utc)
    >>> broker_time(1e15) is None
    True
    """
    try:
        return datetime.fromtimestamp(timestamp_s, UTC)
    except (ValueError, OverflowError, OSError):
        return None


def bad_broker_time(
    raw: bytes, topic: str, timestamp_s: float, *, source: Source = EDGE_SOURCE
) -> DeadLetter:
    """The dead letter of a record whose broker timestamp :func:`broker_time` cannot hold.

    Received now, as far as anyone can tell; the reason names the timestamp.
    """
    reason = (
        f"the record's broker timestamp, {timestamp_s * 1000:.0f} ms after 1970, is not a time "
        "psymon can hold; accepted: times before the year 10000"
    )
    return dead_letter(raw, topic, datetime.now(UTC), reason, source=source)


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

    A dead letter is kept under :data:`MAX_DEAD_LETTER_BYTES` of JSON, whatever
    the size of the record: a broker refuses a bigger message (Kafka's and
    aiokafka's default limit is 1 MiB), and a dead letter that cannot be sent
    is a record lost without a trace. A longer text is cut, and the reason
    says so and how big the record was.

    >>> from datetime import UTC, datetime
    >>> when = datetime(2026, 3, 2, 9, 10, tzinfo=UTC)
    >>> big = b'{"kind": "wearable_upload", "readings": [' + b"1.0, " * 400_000 + b"]}"
    >>> letter = dead_letter(big, "psymon.wearable-samples.v1", when, "too many readings")
    >>> len(letter.model_dump_json()) <= MAX_DEAD_LETTER_BYTES, letter.raw_size
    (True, 2000043)
    >>> print(letter.reason)  # doctest: +ELLIPSIS
    too many readings; 'raw' keeps the first 523,648 bytes of 2,000,043 (...)
    """
    digest = hashlib.sha256(raw).hexdigest()
    text = redacted if redacted is not None else raw.decode("utf-8", errors="replace")
    letter = DeadLetter(
        event_id=event_id_for("dead-letter", topic, digest),
        patient_id=patient_id,
        received_at=received_at,
        topic=topic,
        reason=_clip(reason, _MAX_REASON),
        errors=errors[:50],
        raw="",
        raw_size=len(raw),
        raw_sha256=digest,
        source=source,
    )
    return with_raw_text(letter, text)


#: Largest dead letter psymon makes, in bytes of JSON: half of the 1 MiB that a
#: Kafka broker (``message.max.bytes``) and its clients (``max_request_size``)
#: accept by default, so that every edge can send it whatever it holds.
MAX_DEAD_LETTER_BYTES = 512 * 1024
_MAX_REASON = 2000
#: What :func:`with_raw_text` appends to the reason of a dead letter whose text it cut.
_CUT_NOTE = "; 'raw' keeps the first {kept:,} bytes of {whole:,} ({why})"
_CUT_WHY = (
    "a dead letter is kept under {limit} KiB so that the broker takes it; "
    "raw_size and raw_sha256 describe the whole record"
)
_CUT_MARK = "; 'raw' keeps the first "


def with_raw_text(letter: DeadLetter, text: str) -> DeadLetter:
    """``letter`` holding ``text`` as its raw text, cut to keep it under the size limit.

    For an edge that replaces the stored text after judging a record (a
    redacted CSV row): the cut and the note in the reason are made again for
    the new text.

    >>> from datetime import UTC, datetime
    >>> when = datetime(2026, 3, 2, 9, 10, tzinfo=UTC)
    >>> letter = dead_letter(b"x" * 600_000, "psymon.lab-results.v1", when, "not valid JSON")
    >>> short = with_raw_text(letter, "row withheld")
    >>> short.raw, short.reason, short.raw_size
    ('row withheld', 'not valid JSON', 600000)
    """
    reason = letter.reason.split(_CUT_MARK, 1)[0]
    errors = letter.errors
    empty = letter.model_copy(update={"raw": "", "reason": reason, "errors": errors})
    room = MAX_DEAD_LETTER_BYTES - _json_size(empty) - len(_CUT_NOTE) - len(_CUT_WHY) - 64
    while room < MAX_DEAD_LETTER_BYTES // 2 and errors:
        # Pathological: errors so long that they crowd out the record itself.
        errors = errors[: len(errors) // 2]
        empty = empty.model_copy(update={"errors": errors})
        room = MAX_DEAD_LETTER_BYTES - _json_size(empty) - len(_CUT_NOTE) - len(_CUT_WHY) - 64
    kept = _prefix_within(text, room)
    if len(kept) < len(text):
        note = _CUT_NOTE.format(
            kept=len(kept.encode("utf-8", errors="replace")),
            whole=len(text.encode("utf-8", errors="replace")),
            why=_CUT_WHY.format(limit=MAX_DEAD_LETTER_BYTES // 1024),
        )
        reason = _clip(reason, _MAX_REASON - len(note)) + note
    return DeadLetter.model_validate(
        {**dict(empty), "reason": reason, "errors": errors, "raw": kept}
    )


def _json_size(letter: DeadLetter) -> int:
    return len(letter.model_dump_json().encode("utf-8", errors="replace"))


def _prefix_within(text: str, limit: int) -> str:
    """The longest prefix of ``text`` whose JSON string encoding takes at most ``limit`` bytes.

    JSON escapes control characters as six bytes (``\\u0000``) and a character
    takes up to four bytes of UTF-8, so characters are not bytes.

    >>> _prefix_within("ab\\x00cd", 8)
    'ab\\x00'
    >>> _prefix_within("ééé", 4)
    'éé'
    """
    if _encoded_size(text) <= limit:
        return text
    low, high = 0, min(len(text), limit)  # every character takes at least one byte
    while low < high:  # the longest prefix that fits, by bisection
        middle = (low + high + 1) // 2
        if _encoded_size(text[:middle]) <= limit:
            low = middle
        else:
            high = middle - 1
    return text[:low]


def _encoded_size(text: str) -> int:
    """Bytes of ``text`` as a JSON string, quotes excluded (as pydantic writes it)."""
    return len(json.dumps(text, ensure_ascii=False).encode("utf-8", errors="replace")) - 2


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
