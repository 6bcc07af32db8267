"""Which table each event kind goes to, and the row it becomes.

One :class:`TableSpec` per table: its columns in COPY order and a function
turning an event into a row of them. The columns must exist in the migrated
schema; the integration tests check that they do.

>>> from schemas.examples import envelope_fields
>>> from schemas.events import LabResult
>>> lab = LabResult(**envelope_fields(), analyte="crp", value=0.45, unit="mg/dL")
>>> spec = table_for(lab)
>>> spec.name
'lab_results'
>>> dict(zip(spec.columns, spec.row(lab)))["value"]
4.5
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter

from schemas.envelope import Envelope
from schemas.events import (
    Alert,
    ClinicalOutcome,
    ClinicalScore,
    CourseUpdate,
    DeadLetter,
    LabResult,
    RiskAssessment,
    SubgroupAssigned,
    WearableSample,
    WearableUpload,
)
from schemas.instruments import INSTRUMENTS

#: What the writer accepts: every event model (uploads are expanded to samples).
Storable = (
    ClinicalScore
    | WearableUpload
    | WearableSample
    | LabResult
    | ClinicalOutcome
    | CourseUpdate
    | RiskAssessment
    | Alert
    | DeadLetter
    | SubgroupAssigned
)

Row = tuple[Any, ...]

_ENVELOPE_COLUMNS = (
    "event_id",
    "patient_id",
    "observed_at",
    "received_at",
    "source_system",
    "source_device",
    "source_rater",
    "time_zone",
)


@dataclass(frozen=True)
class TableSpec:
    """A table the writer loads: its name, its columns in COPY order, its row builder."""

    name: str
    columns: tuple[str, ...]
    row: Callable[[Any], Row]
    partitioned: bool = True


def _envelope(event: Envelope) -> Row:
    source = event.source
    return (
        event.event_id,
        event.patient_id,
        event.observed_at,
        event.received_at,
        source.system,
        source.device,
        source.rater,
        event.time_zone,
    )


#: ``json.dumps(value, separators=(",", ":"))`` builds this encoder on every call;
#: the writer calls it once or twice per row.
_COMPACT = json.JSONEncoder(separators=(",", ":"))


def _json(value: Any) -> str | None:
    return None if value is None else _COMPACT.encode(value)


#: Item keys of the catalogue: plain ASCII, written by every JSON encoder alike.
_ITEM_KEYS = frozenset(item.key for instrument in INSTRUMENTS.values() for item in instrument.items)
_ITEMS: TypeAdapter[dict[str, int]] = TypeAdapter(dict[str, int])


def _items_json(items: dict[str, int] | None) -> str | None:
    """``_json(items)`` of a score's items, by pydantic's encoder in the usual case.

    A validated score's items are the instrument's own keys with whole-number
    values (:mod:`schemas.instruments`); for those pydantic writes what
    :func:`json.dumps` writes, at a third of the cost. Anything else goes
    through :func:`_json`.
    """
    if items is None:
        return None
    if not _usual_items(items):
        return _json(items)
    return _ITEMS.dump_json(items).decode()


#: The one type a usual item's value has.
_INT_ONLY = frozenset({int})


def _usual_items(items: dict[str, int]) -> bool:
    """Whether every key is a catalogue item key and every value a plain ``int``."""
    return _ITEM_KEYS.issuperset(items) and _INT_ONLY.issuperset(map(type, items.values()))


#: How a score's payload ends: its items, then its total (the model's last two fields).
_ITEMS_KEY = '"items":'
_TOTAL_KEY = ',"total":'


def _score_row(e: ClinicalScore) -> Row:
    """The score's row; its items' JSON cut from its payload in the usual case.

    The payload (``model_dump_json``) writes the items with the encoder
    :func:`_items_json` uses for usual items, right before the total, so the
    same text is already there: cut out, it saves encoding the items again.
    JSON escapes every quote inside a string, so ``,"total":`` can only be
    the total's key, and before it the last ``"items":`` the items' key (usual
    items are catalogue codes such as ``"9"`` or ``"P1"``). The payload is
    ``model_dump_json()`` with its defaults, from the serializer it calls: its
    keyword handling costs a quarter of the encoding.
    """
    payload = e.__pydantic_serializer__.to_json(e).decode()
    # The fields' values in one call (a model's fields are its __dict__'s).
    event_id, patient, observed, arrived, source, zone, instrument, version, by, items, total = (
        _SCORE_FIELDS(e.__dict__)
    )
    if items is not None and _usual_items(items):
        end = payload.rindex(_TOTAL_KEY)
        items_json: str | None = payload[payload.rindex(_ITEMS_KEY, 0, end) + len(_ITEMS_KEY) : end]
    else:
        items_json = _items_json(items)
    system, device, source_rater = _SOURCE_FIELDS(source.__dict__)
    return (  # _envelope(e)'s columns written out: one row per score, the sink's hot path
        event_id,
        patient,
        observed,
        arrived,
        system,
        device,
        source_rater,
        zone,
        instrument,
        version,
        by,
        items_json,
        total,
        payload,
    )


_SCORE_FIELDS = operator.itemgetter(
    "event_id",
    "patient_id",
    "observed_at",
    "received_at",
    "source",
    "time_zone",
    "instrument",
    "version",
    "rater",
    "items",
    "total",
)
_SOURCE_FIELDS = operator.itemgetter("system", "device", "rater")


def _sample_row(e: WearableSample, upload_id: Any = None) -> Row:
    return (
        *_envelope(e),
        e.metric,
        e.value,
        e.unit,
        e.interval_end,
        upload_id,
        e.model_dump_json(),
    )


def _upload_row(e: WearableUpload) -> Row:
    return (*_envelope(e), e.window_end, len(e.readings), e.model_dump_json())


def _lab_row(e: LabResult) -> Row:
    return (
        *_envelope(e),
        e.analyte,
        e.loinc,
        e.value,
        e.unit,
        e.reported_value,
        e.reported_unit,
        e.hours_since_dose,
        e.model_dump_json(),
    )


def _outcome_row(e: ClinicalOutcome) -> Row:
    medication = None if e.medication is None else e.medication.model_dump_json()
    return (*_envelope(e), e.outcome, e.episode, medication, e.model_dump_json())


def _course_row(e: CourseUpdate) -> Row:
    return (
        *_envelope(e),
        e.caused_by,
        e.signal,
        e.signal_kind,
        e.value,
        e.unit,
        e.day,
        e.band,
        e.baseline,
        e.change,
        e.rci,
        e.reliable_change,
        e.response,
        e.remission,
        e.status,
        e.level,
        e.level_sd,
        e.deviation,
        e.coverage,
        e.late,
        e.model_dump_json(),
    )


def _risk_row(e: RiskAssessment) -> Row:
    contributions = _json([c.model_dump() for c in e.contributions])
    return (
        *_envelope(e),
        e.caused_by,
        e.probability,
        e.horizon_days,
        e.model_name,
        e.model_version,
        contributions,
        e.model_dump_json(),
    )


def _alert_row(e: Alert) -> Row:
    return (
        *_envelope(e),
        e.caused_by,
        e.alert_id,
        e.rule,
        e.severity,
        e.status,
        e.message,
        _json(e.evidence),
        e.first_seen,
        e.last_seen,
        e.config_version,
        e.model_dump_json(),
    )


def _subgroup_row(e: SubgroupAssigned) -> Row:
    return (
        *_envelope(e),
        e.caused_by,
        e.scheme,
        e.scheme_name,
        e.subgroup,
        e.previous,
        e.version,
        e.probability,
        e.description,
        e.citation,
        _json(e.evidence),
        e.model_dump_json(),
    )


def _dead_letter_row(e: DeadLetter) -> Row:
    e = pg_safe_dead_letter(e)
    source = e.source
    return (
        e.event_id,
        e.patient_id,
        e.observed_at,
        e.received_at,
        source.system,
        source.device,
        source.rater,
        e.topic,
        e.reason,
        _json([error.model_dump() for error in e.errors]),
        e.raw,
        e.raw_size,
        e.raw_sha256,
        e.model_dump_json(),
    )


CLINICAL_SCORES = TableSpec(
    "clinical_scores",
    (*_ENVELOPE_COLUMNS, "instrument", "version", "rater", "items", "total", "payload"),
    _score_row,
)
WEARABLE_SAMPLES = TableSpec(
    "wearable_samples",
    (*_ENVELOPE_COLUMNS, "metric", "value", "unit", "interval_end", "upload_id", "payload"),
    _sample_row,
)
WEARABLE_UPLOADS = TableSpec(
    "wearable_uploads",
    (*_ENVELOPE_COLUMNS, "window_end", "readings", "payload"),
    _upload_row,
)
LAB_RESULTS = TableSpec(
    "lab_results",
    (
        *_ENVELOPE_COLUMNS,
        "analyte",
        "loinc",
        "value",
        "unit",
        "reported_value",
        "reported_unit",
        "hours_since_dose",
        "payload",
    ),
    _lab_row,
)
CLINICAL_OUTCOMES = TableSpec(
    "clinical_outcomes",
    (*_ENVELOPE_COLUMNS, "outcome", "episode", "medication", "payload"),
    _outcome_row,
)
COURSE_UPDATES = TableSpec(
    "course_updates",
    (
        *_ENVELOPE_COLUMNS,
        "caused_by",
        "signal",
        "signal_kind",
        "value",
        "unit",
        "day",
        "band",
        "baseline",
        "change",
        "rci",
        "reliable_change",
        "response",
        "remission",
        "status",
        "level",
        "level_sd",
        "deviation",
        "coverage",
        "late",
        "payload",
    ),
    _course_row,
)
RISK_ASSESSMENTS = TableSpec(
    "risk_assessments",
    (
        *_ENVELOPE_COLUMNS,
        "caused_by",
        "probability",
        "horizon_days",
        "model_name",
        "model_version",
        "contributions",
        "payload",
    ),
    _risk_row,
)
ALERTS = TableSpec(
    "alerts",
    (
        *_ENVELOPE_COLUMNS,
        "caused_by",
        "alert_id",
        "rule",
        "severity",
        "status",
        "message",
        "evidence",
        "first_seen",
        "last_seen",
        "config_version",
        "payload",
    ),
    _alert_row,
)
DEAD_LETTERS = TableSpec(
    "dead_letters",
    (
        "event_id",
        "patient_id",
        "observed_at",
        "received_at",
        "source_system",
        "source_device",
        "source_rater",
        "topic",
        "reason",
        "errors",
        "raw",
        "raw_size",
        "raw_sha256",
        "payload",
    ),
    _dead_letter_row,
    partitioned=False,
)
SUBGROUP_ASSIGNMENTS = TableSpec(
    "subgroup_assignments",
    (
        *_ENVELOPE_COLUMNS,
        "caused_by",
        "scheme",
        "scheme_name",
        "subgroup",
        "previous",
        "version",
        "probability",
        "description",
        "citation",
        "evidence",
        "payload",
    ),
    _subgroup_row,
    partitioned=False,
)

#: Every table the writer loads, in load order.
TABLES: tuple[TableSpec, ...] = (
    CLINICAL_SCORES,
    WEARABLE_UPLOADS,
    WEARABLE_SAMPLES,
    LAB_RESULTS,
    CLINICAL_OUTCOMES,
    COURSE_UPDATES,
    RISK_ASSESSMENTS,
    ALERTS,
    SUBGROUP_ASSIGNMENTS,
    DEAD_LETTERS,
)

_BY_KIND: dict[str, TableSpec] = {
    "clinical_score": CLINICAL_SCORES,
    "wearable_upload": WEARABLE_UPLOADS,
    "wearable_sample": WEARABLE_SAMPLES,
    "lab_result": LAB_RESULTS,
    "clinical_outcome": CLINICAL_OUTCOMES,
    "course_update": COURSE_UPDATES,
    "risk_assessment": RISK_ASSESSMENTS,
    "alert": ALERTS,
    "subgroup_assigned": SUBGROUP_ASSIGNMENTS,
    "dead_letter": DEAD_LETTERS,
}


#: The one kind of event each table holds, by table name.
KIND_BY_TABLE: dict[str, str] = {spec.name: kind for kind, spec in _BY_KIND.items()}


def table_for(event: Storable) -> TableSpec:
    """The table an event of this kind is stored in."""
    return _BY_KIND[event.kind]


def stored_events(event: Storable) -> list[tuple[Storable, Row]]:
    """The event(s) ``event`` is stored as, each with its row.

    An upload is stored whole (``wearable_uploads``, for replay) and as its
    samples, one row each (``wearable_samples``), with the upload's id in
    ``upload_id`` and the upload's time zone (the samples do not carry one).
    Expanding an upload validates its readings: a reading with an unknown
    metric or an implausible value raises :class:`pydantic.ValidationError`.
    """
    if isinstance(event, WearableUpload):
        stored: list[tuple[Storable, Row]] = [(event, _upload_row(event))]
        for sample in event.samples():
            if sample.time_zone is None and event.time_zone is not None:
                sample = sample.model_copy(update={"time_zone": event.time_zone})
            stored.append((sample, _sample_row(sample, event.event_id)))
        return stored
    return [(event, table_for(event).row(event))]


# PostgreSQL text and jsonb cannot hold U+0000; a dead letter keeps the
# record's text with U+FFFD in its place (raw_sha256 still names the original).
_NUL = re.compile("\x00")


def pg_safe_dead_letter(letter: DeadLetter) -> DeadLetter:
    """``letter`` with U+0000 in its raw text replaced, so PostgreSQL can store it."""
    if "\x00" not in letter.raw:
        return letter
    return letter.model_copy(update={"raw": _NUL.sub("\ufffd", letter.raw)})
