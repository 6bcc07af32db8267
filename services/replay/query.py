"""Reading the stored input events back, per patient, in the order the worker applied them.

The live worker applies a patient's events in the order their records reach
it. The store keeps each input event once, whole (``v_input_events``: scores,
labs, outcomes, wearable uploads as uploaded, samples sent alone), with the
``received_at`` the ingest edge stamped on it. Replay reads them back
**per patient in arrival order**: ``received_at``, then ``observed_at``, then
``event_id``.

How exact is that?

* Within one input topic it is the live order: one patient's records of a
  topic share a partition, producers send them in ``received_at`` order, and
  the edge stamps ``received_at`` as records arrive.
* Ties in ``received_at`` (a file ingested at once gets one stamp) fall back
  to event time, then id: the order a chronologically sorted file has.
* Across topics (a score and a wearable upload of the same patient) the
  broker keeps no order, and faust interleaves its partitions as fetches
  happen to fall. Replay assumes arrival order, which is what a worker
  keeping up with real-time traffic sees (tests/integration/test_replay_equals_live.py
  shows the outputs are then identical). A worker far behind on one topic (a
  backlog) may apply a patient's events in another order; within the lateness
  windows (:class:`streams.config.OrderingConfig`) the core mostly absorbs
  that, beyond them replay differs from what such a worker did (wearable days
  close on other events, events count as late). The store records no finer
  order than ``received_at``.
* Re-delivered duplicates are stored once: replay does not see them. They
  change nothing but ``PatientState.counters.duplicates``.

>>> q = EventQuery(patients=("p-0123456789abcdef01234567",), kinds=("lab_result",))
>>> q.as_dict()["kinds"]
['lab_result']
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Collection, Generator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql
from pydantic import AwareDatetime, BaseModel, TypeAdapter
from pydantic_core import from_json

from schemas.events import (
    RAW_KINDS,
    ClinicalOutcome,
    ClinicalScore,
    LabResult,
    WearableReading,
    WearableSample,
    WearableUpload,
)
from schemas.identity import PSEUDONYM_PATTERN

InputEvent = ClinicalScore | WearableUpload | WearableSample | LabResult | ClinicalOutcome

#: The kinds ``v_input_events`` holds (what the core takes).
INPUT_KINDS: tuple[str, ...] = tuple(sorted(RAW_KINDS))

#: Arrival order within a patient (see the module docstring).
ARRIVAL_ORDER = "received_at, observed_at, event_id"

#: Rows fetched per round trip from the server-side cursor.
FETCH_ROWS = 5000


@dataclass(frozen=True)
class EventQuery:
    """Which stored input events to read.

    Attributes
    ----------
    patients
        Pseudonyms to read; ``None``: every patient.
    since, until
        Event time (``observed_at``) from ``since`` (included) to ``until``
        (excluded); tz-aware; ``None``: unbounded.
    kinds
        Input kinds (``clinical_score``, ``wearable_upload``,
        ``wearable_sample``, ``lab_result``, ``clinical_outcome``); ``None``: all.
    """

    patients: tuple[str, ...] | None = None
    since: datetime | None = None
    until: datetime | None = None
    kinds: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.patients is not None:
            bad = sum(1 for p in self.patients if not PSEUDONYM_PATTERN.fullmatch(p))
            if bad:
                raise ValueError(
                    f"patients: {bad} value(s) are not psymon pseudonyms ('p-' and 24 lowercase "
                    "hex characters); the store holds pseudonyms only (values not shown)"
                )
            object.__setattr__(self, "patients", tuple(dict.fromkeys(self.patients)))
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None and (value.tzinfo is None or value.utcoffset() is None):
                raise ValueError(
                    f"{name} {value.isoformat()} has no time zone; accepted: a tz-aware time "
                    "such as 2026-03-01T00:00:00+00:00"
                )
        if self.since is not None and self.until is not None and self.until <= self.since:
            raise ValueError(
                f"until {self.until.isoformat()} is not after since {self.since.isoformat()}"
            )
        if self.kinds is not None:
            unknown = sorted(set(self.kinds) - set(INPUT_KINDS))
            if unknown or not self.kinds:
                raise ValueError(
                    f"kinds {unknown or '(none)'} not accepted; accepted: {', '.join(INPUT_KINDS)}"
                )
            object.__setattr__(self, "kinds", tuple(sorted(set(self.kinds))))

    @classmethod
    def of(
        cls,
        patients: Sequence[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        kinds: Collection[str] | None = None,
    ) -> EventQuery:
        """A query from loosely typed arguments (any sequences)."""
        return cls(
            tuple(patients) if patients is not None else None,
            since,
            until,
            tuple(kinds) if kinds is not None else None,
        )

    def as_dict(self) -> dict[str, Any]:
        """The filters as JSON-ready data (for manifests and the audit log)."""
        return {
            "patients": list(self.patients) if self.patients is not None else None,
            "since": None if self.since is None else self.since.isoformat(),
            "until": None if self.until is None else self.until.isoformat(),
            "kinds": list(self.kinds) if self.kinds is not None else None,
            "order": f"per patient: {ARRIVAL_ORDER}",
        }

    def where(self, before: InputEvent | None = None) -> tuple[sql.Composable, list[Any]]:
        """The WHERE clause over ``v_input_events`` and its parameters."""
        clauses: list[sql.Composable] = [sql.SQL("true")]
        params: list[Any] = []
        if self.patients is not None:
            clauses.append(sql.SQL("patient_id = ANY(%s)"))
            params.append(list(self.patients))
        if self.since is not None:
            clauses.append(sql.SQL("observed_at >= %s"))
            params.append(self.since)
        if self.until is not None:
            clauses.append(sql.SQL("observed_at < %s"))
            params.append(self.until)
        if self.kinds is not None:
            clauses.append(sql.SQL("kind = ANY(%s)"))
            params.append(list(self.kinds))
        if before is not None:
            clauses.append(sql.SQL("(received_at, observed_at, event_id) < (%s, %s, %s)"))
            params += [before.received_at, before.observed_at, before.event_id]
        return sql.SQL(" AND ").join(clauses), params


def parse_when(text: str) -> datetime:
    """A ``--since``/``--until`` value: ISO 8601 with a UTC offset, or a date (UTC midnight).

    >>> parse_when("2026-03-01").isoformat()
    '2026-03-01T00:00:00+00:00'
    >>> parse_when("2026-03-01T08:00:00+01:00").isoformat()
    '2026-03-01T08:00:00+01:00'
    >>> parse_when("2026-03-01T08:00")
    Traceback (most recent call last):
    ...
    ValueError: '2026-03-01T08:00' has a time but no UTC offset; accepted: a date (2026-03-01, read as UTC midnight) or a time with its offset (2026-03-01T08:00:00+01:00, ...Z)
    """  # noqa: E501
    value = text.strip()
    accepted = (
        "accepted: a date (2026-03-01, read as UTC midnight) or a time with its offset "
        "(2026-03-01T08:00:00+01:00, ...Z)"
    )
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{text!r} is not a date or time; {accepted}") from None
    if len(value) == 10:
        return moment.replace(tzinfo=UTC)
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has a time but no UTC offset; {accepted}")
    return moment


def count_input_events(conn: psycopg.Connection[Any], query: EventQuery) -> int:
    """How many stored input events ``query`` selects (for progress bars)."""
    where, params = query.where()
    statement = sql.SQL("SELECT count(*) FROM v_input_events WHERE {}").format(where)
    row = conn.execute(statement, params).fetchone()
    return int(row[0]) if row else 0


def read_input_events(
    conn: psycopg.Connection[Any],
    query: EventQuery,
    *,
    before: InputEvent | None = None,
) -> Generator[InputEvent, None, None]:
    """The selected input events, grouped by patient, each patient's in arrival order.

    Streams through a server-side cursor, so memory stays flat however long
    the history. ``before``: only events that arrived before this one (by the
    arrival order), for rebuilding a state just before ``before`` is applied.

    The cursor runs in a transaction of its own (a savepoint when ``conn`` is
    already in one), closed when the iteration ends.
    """
    where, params = query.where(before)
    statement = sql.SQL(
        "SELECT payload::text FROM v_input_events WHERE {} ORDER BY patient_id, " + ARRIVAL_ORDER
    ).format(where)
    with conn.transaction(), conn.cursor(name="psymon_replay_events") as cursor:
        cursor.itersize = FETCH_ROWS
        cursor.execute(statement, params)
        while rows := cursor.fetchmany(FETCH_ROWS):
            for (payload,) in rows:
                yield stored_event(payload)


def stored_event(payload: str) -> InputEvent:
    """The input event a stored ``payload`` holds, rebuilt without validating it again.

    The store holds events the sink validated (``payload`` is the validated
    event's ``model_dump_json()``): validating them again on every replay
    cost ~3x the core's own time per event. The event is rebuilt from the
    JSON field by field, with pydantic's own parsers for times (the same
    ``tzinfo`` objects as validation makes), ``UUID`` for ids and
    ``model_construct`` for the models: equal to what ``validate_json`` would
    return (tests/unit/test_replay_rebuild.py). A payload of another kind is
    refused with ``ValueError``.
    """
    # pydantic's JSON parser: ~40 % faster than json.loads here; the payloads are pydantic's.
    document = from_json(payload)
    kind = document.get("kind") if isinstance(document, dict) else None
    build = _BUILDERS.get(kind) if isinstance(kind, str) else None
    if build is None:
        raise ValueError(
            f"a stored input event has kind {kind!r}; accepted: {', '.join(INPUT_KINDS)}"
        )
    try:
        event: InputEvent = build(document)
    except _NotAsDumped:
        # Stored by another schema version (a field added or dropped since):
        # validation fills defaults and says what no longer fits.
        event = _INPUT.validate_json(payload)
    return event


# ----------------------------------------------------------------- rebuilding

_Convert = Callable[[Any], Any]
_INPUT: TypeAdapter[InputEvent] = TypeAdapter(InputEvent)


class _NotAsDumped(Exception):
    """The JSON does not hold exactly the model's fields."""


# pydantic's own parsers (its core validators, called directly): the values
# are exactly those validation makes, ``tzinfo`` objects included.
_when: _Convert = TypeAdapter(AwareDatetime).validator.validate_python
_day: _Convert = TypeAdapter(date).validator.validate_python
_uuid: _Convert = TypeAdapter(UUID).validator.validate_python


def _builder(model: type[BaseModel]) -> Callable[[dict[str, Any]], Any]:
    """A function making ``model`` from its own ``model_dump(mode="json")``, unvalidated.

    Each field gets a converter from its annotation: JSON text to datetime,
    date or UUID, nested models recursively, everything else (text, numbers,
    literals, dicts of them) as JSON gives it. A field type with no converter
    here stops the import: a new field must not pass through unconverted.
    """
    steps = [
        (name, _converter(model, name, field.annotation))
        for name, field in model.model_fields.items()
    ]
    fields = model.model_fields.keys()
    make = _maker(model)

    def build(document: dict[str, Any]) -> Any:
        if document.keys() != fields:
            raise _NotAsDumped
        values = {}
        for name, convert in steps:
            value = document[name]
            values[name] = value if convert is None or value is None else convert(value)
        return make(values)

    return build


def _readings_builder() -> _Convert:
    """The readings of an upload (~8 per replayed event), built together.

    :func:`_builder` of :class:`WearableReading` written out, over the list:
    a reading's ``start`` is mostly the previous reading's ``end`` (the
    intervals of one metric follow each other), so that time is parsed once
    and the same (immutable) value used for both fields. Used only while the
    reading's fields are those written here (checked against the generic
    analysis); otherwise the generic builder, reading by reading.
    """
    generic = _builder(WearableReading)
    analysed = {
        name: _converter(WearableReading, name, field.annotation)
        for name, field in WearableReading.model_fields.items()
    }
    known = {
        "event_id": _uuid,
        "metric": None,
        "value": None,
        "unit": None,
        "start": _when,
        "end": _when,
    }
    if analysed != known or list(analysed) != list(known):
        return lambda readings: tuple(map(generic, readings))
    fields = WearableReading.model_fields.keys()
    make = _maker(WearableReading)
    uuid, when = _uuid, _when

    def build(readings: list[dict[str, Any]]) -> tuple[Any, ...]:
        built = []
        end_text, end = None, None
        for d in readings:
            if d.keys() != fields:
                raise _NotAsDumped
            start_text = d["start"]
            start = end if start_text == end_text else when(start_text)
            end_text = d["end"]
            end = start if end_text == start_text else when(end_text)
            built.append(
                make(
                    {
                        "event_id": uuid(d["event_id"]),
                        "metric": d["metric"],
                        "value": d["value"],
                        "unit": d["unit"],
                        "start": start,
                        "end": end,
                    }
                )
            )
        return tuple(built)

    return build


def _maker(model: type[BaseModel]) -> Callable[[dict[str, Any]], Any]:
    """``model.model_construct`` for values holding every field, without its per-field loop.

    What ``model_construct`` leaves on an instance when every field is given
    and the model has no aliases, extra fields, private attributes or post-init
    hook (as psymon's events have none): the values as ``__dict__``, all fields
    set. ~3x faster than ``model_construct``, which matters for the readings of
    wearable uploads (~8 per replayed event). Other models use ``model_construct``.
    """
    simple = (
        not model.__private_attributes__
        and model.__pydantic_post_init__ is None
        and model.model_config.get("extra") != "allow"
        and not model.__pydantic_root_model__
        and all(f.alias is None and f.validation_alias is None for f in model.model_fields.values())
    )
    if not simple:
        return lambda values: model.model_construct(**values)
    new = model.__new__
    # BaseModel's slots, set through their descriptors (what object.__setattr__
    # finds by name each time): a quarter faster per instance.
    slots = BaseModel.__dict__
    set_values = slots["__dict__"].__set__
    set_fields = slots["__pydantic_fields_set__"].__set__
    set_extra = slots["__pydantic_extra__"].__set__
    set_private = slots["__pydantic_private__"].__set__

    def make(values: dict[str, Any]) -> Any:
        instance = new(model)
        set_values(instance, values)
        set_fields(instance, set(values))
        set_extra(instance, None)
        set_private(instance, None)
        return instance

    return make


def _converter(model: type[BaseModel], name: str, annotation: Any) -> _Convert | None:
    """How to turn the JSON of one field into its value; ``None``: as it is."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _converter(model, name, typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        found = {_converter(model, name, a) for a in options}
        if len(found) != 1:
            raise TypeError(f"{model.__name__}.{name}: no rebuild for a union of {options}")
        return found.pop()
    if origin is tuple:
        item, *rest = typing.get_args(annotation)
        if rest != [Ellipsis]:
            raise TypeError(f"{model.__name__}.{name}: no rebuild for {annotation}")
        if item is WearableReading:
            return _readings_builder()
        each = _converter(model, name, item)
        if each is None:
            return tuple
        return lambda values: tuple(map(each, values))
    if annotation is AwareDatetime or annotation is datetime:
        return _when
    if annotation is date:
        return _day
    if annotation is UUID:
        return _uuid
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _builder(annotation)
    if origin in (typing.Literal, dict) or annotation in (str, int, float, bool):
        if origin is dict and any(_converter(model, name, a) for a in typing.get_args(annotation)):
            raise TypeError(f"{model.__name__}.{name}: no rebuild for {annotation}")
        return None
    raise TypeError(f"{model.__name__}.{name}: no rebuild for {annotation}")


_BUILDERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    model.model_fields["kind"].default: _builder(model)
    for model in (ClinicalScore, WearableUpload, WearableSample, LabResult, ClinicalOutcome)
}


__all__ = [
    "ARRIVAL_ORDER",
    "INPUT_KINDS",
    "EventQuery",
    "InputEvent",
    "count_input_events",
    "parse_when",
    "read_input_events",
    "stored_event",
]
