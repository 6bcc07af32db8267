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

import contextlib
import queue
import threading
import types
import typing
from collections.abc import Callable, Collection, Generator, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import partial
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql
from pydantic import AwareDatetime, BaseModel, TypeAdapter, ValidationError
from pydantic_core import SchemaValidator, core_schema, from_json

from schemas.events import (
    RAW_KINDS,
    ClinicalOutcome,
    ClinicalScore,
    LabResult,
    WearableSample,
    WearableUpload,
)
from schemas.identity import PSEUDONYM_PATTERN

InputEvent = ClinicalScore | WearableUpload | WearableSample | LabResult | ClinicalOutcome

#: The kinds ``v_input_events`` holds (what the core takes).
INPUT_KINDS: tuple[str, ...] = tuple(sorted(RAW_KINDS))

#: Arrival order within a patient (see the module docstring).
ARRIVAL_ORDER = "received_at, observed_at, event_id"

#: Rows fetched per round trip from the server-side cursor. 500 to 5,000 made
#: no difference to a replay's CPU (docs/benchmarks.md section 4); the smaller
#: batch holds less memory (a prefetching read holds two) and gives a reader
#: its first events sooner.
FETCH_ROWS = 500


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
    prefetch: bool = False,
) -> Generator[InputEvent, None, None]:
    """The selected input events, grouped by patient, each patient's in arrival order.

    Streams through a server-side cursor, so memory stays flat however long
    the history. ``before``: only events that arrived before this one (by the
    arrival order), for rebuilding a state just before ``before`` is applied.
    ``prefetch``: fetch the next :data:`FETCH_ROWS` rows in a thread while the
    caller works on these (:class:`_Prefetch`; for long reads, such as a
    replay's).

    The cursor runs in a transaction of its own (a savepoint when ``conn`` is
    already in one), closed when the iteration ends.
    """
    where, params = query.where(before)
    statement = sql.SQL(
        "SELECT payload::text FROM v_input_events WHERE {} ORDER BY patient_id, " + ARRIVAL_ORDER
    ).format(where)
    rebuild = _REBUILD.validate_json
    with conn.transaction(), conn.cursor(name="psymon_replay_events") as cursor:
        cursor.itersize = FETCH_ROWS
        cursor.execute(statement, params)
        ahead = _Prefetch(cursor) if prefetch else None
        batches = ahead if ahead is not None else iter(partial(cursor.fetchmany, FETCH_ROWS), [])
        try:
            for rows in batches:
                for (payload,) in rows:
                    try:  # stored_event, inlined: a replay comes here for every event
                        event: InputEvent = rebuild(payload)
                    except ValidationError:
                        event = _validated_instead(payload)
                    yield event
        finally:
            if ahead is not None:
                ahead.close()


class _Prefetch:
    """The rows of ``cursor`` in batches, the next one fetched in a thread meanwhile.

    The server makes each batch (the ``jsonb`` payloads turned into text,
    ~8 µs per event) while this process rebuilds and replays the one before,
    instead of this process waiting for it. psycopg waits for the server
    without holding the GIL. One batch waits ready at most. :meth:`close`
    (also when the caller stops early) stops the thread, cancelling a fetch
    under way, before the cursor is closed.
    """

    def __init__(self, cursor: psycopg.ServerCursor[Any]) -> None:
        self._cursor = cursor
        self._ready: queue.Queue[list[Any] | BaseException] = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._fetch, name="psymon-replay-fetch", daemon=True)
        self._thread.start()

    def _fetch(self) -> None:
        try:
            while not self._stop.is_set():
                rows = self._cursor.fetchmany(FETCH_ROWS)
                self._ready.put(rows)
                if not rows:
                    return
        except BaseException as error:  # handed to the reader, which raises it
            self._ready.put(error)

    def __iter__(self) -> Iterator[list[Any]]:
        while True:
            rows = self._ready.get()
            if isinstance(rows, BaseException):
                raise rows
            if not rows:
                return
            yield rows

    def close(self) -> None:
        """Stop fetching; returns once the thread has ended."""
        self._stop.set()
        with contextlib.suppress(queue.Empty):
            self._ready.get_nowait()  # a thread waiting to hand a batch over goes on
        self._thread.join(timeout=0.05)
        if self._thread.is_alive():  # a fetch under way: not worth waiting for
            self._cursor.connection.cancel_safe()
            self._thread.join()


def stored_event(payload: str | bytes) -> InputEvent:
    """The input event a stored ``payload`` holds, rebuilt without validating it again.

    The store holds events the sink validated (``payload`` is the validated
    event's JSON, as PostgreSQL gives ``jsonb`` back): validating them again
    on every replay cost ~3x the core's own time per event. The event is
    rebuilt by :data:`_REBUILD`, which reads each field's JSON with pydantic's
    own parsers for its type (the same ``datetime``, ``tzinfo``, ``UUID`` and
    number values as validation makes) and skips the checks and conversions
    the sink already made: equal to what ``validate_json`` would return
    (tests/unit/test_replay_rebuild.py). A payload that does not hold exactly
    the fields of its kind (stored by another schema version) is validated
    instead; a payload of another kind is refused with ``ValueError``.
    """
    try:
        event: InputEvent = _REBUILD.validate_json(payload)
    except ValidationError:
        return _validated_instead(payload)
    return event


def _validated_instead(payload: str | bytes) -> InputEvent:
    """A payload :data:`_REBUILD` refused: validated, or refused if not an input event."""
    document = from_json(payload)
    kind = document.get("kind") if isinstance(document, dict) else None
    if kind not in INPUT_KINDS:
        raise ValueError(
            f"a stored input event has kind {kind!r}; accepted: {', '.join(INPUT_KINDS)}"
        )
    # Stored by another schema version (a field added or dropped since):
    # validation fills defaults and says what no longer fits.
    return _INPUT.validate_json(payload)


# ----------------------------------------------------------------- rebuilding

_INPUT: TypeAdapter[InputEvent] = TypeAdapter(InputEvent)


def _rebuild_schema(model: type[BaseModel]) -> core_schema.CoreSchema:
    """A pydantic-core schema making ``model`` from its own JSON, without its checks.

    Each field is read with the parser of its type (:func:`_field_schema`);
    constraints, field and model validators are left out: the stored event
    passed them when the sink validated it, and the values they set (a unit
    converted, a metric renamed) are the ones stored. Every field must be
    there and no other (else the payload is validated instead). The instance
    is made as validation makes it: its values as ``__dict__``, every field
    set, no extra fields, and the model's post-init hook if it has one.
    """
    if model.__pydantic_root_model__ or model.model_config.get("extra") == "allow":
        raise TypeError(f"{model.__name__}: no rebuild for a root model or extra fields")
    fields: dict[str, core_schema.ModelField] = {}
    for name, field in model.model_fields.items():
        if field.alias is not None or field.validation_alias is not None:
            raise TypeError(f"{model.__name__}.{name}: no rebuild for a field with an alias")
        fields[name] = core_schema.model_field(_field_schema(model, name, field.annotation))
    return core_schema.model_schema(
        model,
        core_schema.model_fields_schema(fields, model_name=model.__name__, extra_behavior="forbid"),
        post_init=model.__pydantic_post_init__,
    )


def _field_schema(model: type[BaseModel], name: str, annotation: Any) -> core_schema.CoreSchema:
    """How one field's JSON is read: the parser of its type, with none of its constraints.

    A field type not handled here stops the import: a new field must not pass
    through unread.
    """
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _field_schema(model, name, args[0])
    if origin in (typing.Union, types.UnionType):
        options = [_field_schema(model, name, a) for a in args if a is not type(None)]
        schema = options[0] if len(options) == 1 else core_schema.union_schema([*options])
        return core_schema.nullable_schema(schema) if type(None) in args else schema
    if origin is typing.Literal:
        return core_schema.literal_schema(list(args))
    if origin is tuple:
        item, *rest = args
        if rest != [Ellipsis]:
            raise TypeError(f"{model.__name__}.{name}: no rebuild for {annotation}")
        return core_schema.tuple_schema([_field_schema(model, name, item)], variadic_item_index=0)
    if origin is dict:
        keys, values = args
        return core_schema.dict_schema(
            _field_schema(model, name, keys), _field_schema(model, name, values)
        )
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _rebuild_schema(annotation)
    if annotation in _PLAIN:
        return _PLAIN[annotation]()
    raise TypeError(f"{model.__name__}.{name}: no rebuild for {annotation}")


#: The parsers of plain types (as validation has them, without constraints).
_PLAIN: dict[Any, Callable[[], core_schema.CoreSchema]] = {
    AwareDatetime: lambda: core_schema.datetime_schema(tz_constraint="aware"),
    datetime: core_schema.datetime_schema,
    date: core_schema.date_schema,
    UUID: core_schema.uuid_schema,
    str: core_schema.str_schema,
    int: core_schema.int_schema,
    float: core_schema.float_schema,
    bool: core_schema.bool_schema,
}

#: Every input kind, chosen by its ``kind`` field.
_REBUILD = SchemaValidator(
    core_schema.tagged_union_schema(
        {
            model.model_fields["kind"].default: _rebuild_schema(model)
            for model in (ClinicalScore, WearableUpload, WearableSample, LabResult, ClinicalOutcome)
        },
        discriminator="kind",
    )
)


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
