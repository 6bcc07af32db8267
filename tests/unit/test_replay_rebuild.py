"""Replay rebuilds stored events without validating them again, and gets the same events."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError
from pydantic_core import SchemaValidator

from schemas.events import ClinicalOutcome, LabResult, Medication, WearableSample
from schemas.examples import envelope_fields
from services.replay.query import InputEvent, _rebuild_schema, stored_event
from services.simulator import simulate_cohort

VALIDATED: TypeAdapter[Any] = TypeAdapter(InputEvent)


def _events() -> list[Any]:
    simulated = list(
        simulate_cohort(3, 4, seed=11, start=datetime(2026, 1, 5, tzinfo=UTC)).events()
    )
    offset = timezone(timedelta(hours=-5, minutes=-30))
    return [
        *simulated,
        LabResult(**envelope_fields(), analyte="crp", value=0.45, unit="mg/dL"),
        LabResult(
            **envelope_fields(observed_at=datetime(2026, 3, 1, 8, tzinfo=offset)),
            analyte="lithium",
            value=0.8,
            unit="mmol/L",
            hours_since_dose=12.5,
        ),
        ClinicalOutcome(
            **envelope_fields(time_zone="Europe/Berlin"),
            outcome="medication_change",
            medication=Medication(name="lithium", atc="N05AN01", action="start", dose=400),
        ),
        ClinicalOutcome(**envelope_fields(), outcome="relapse", episode="manic"),
        WearableSample(
            **envelope_fields(),
            metric="steps",
            value=120,
            unit="count",
            interval_end=datetime(2026, 3, 2, 9, 1, tzinfo=UTC),
        ),
    ]


def _same(rebuilt: Any, validated: Any) -> None:
    assert type(rebuilt) is type(validated)
    assert rebuilt == validated
    assert rebuilt.model_dump_json() == validated.model_dump_json()
    assert rebuilt.model_fields_set == validated.model_fields_set
    for name in type(validated).model_fields:
        mine, theirs = getattr(rebuilt, name), getattr(validated, name)
        assert type(mine) is type(theirs), name
        if isinstance(theirs, datetime):
            assert type(mine.tzinfo) is type(theirs.tzinfo), name
            assert mine.tzname() == theirs.tzname(), name
        if isinstance(theirs, tuple):
            for a, b in zip(mine, theirs, strict=True):
                _same(a, b)


def test_every_input_kind_is_rebuilt_as_validation_would_make_it() -> None:
    events = _events()
    assert {e.kind for e in events} >= {
        "clinical_score",
        "wearable_upload",
        "wearable_sample",
        "lab_result",
        "clinical_outcome",
    }
    for event in events:
        payload = event.model_dump_json()
        _same(stored_event(payload), VALIDATED.validate_json(payload))


def test_a_payload_of_an_older_schema_is_validated_instead() -> None:
    score = next(e for e in _events() if e.kind == "clinical_score")
    document = json.loads(score.model_dump_json())
    del document["time_zone"]  # a field with a default, added after the event was stored
    rebuilt = stored_event(json.dumps(document))
    assert rebuilt == score.model_copy(update={"time_zone": None})
    document["no_such_field"] = 1
    with pytest.raises(ValidationError, match="no_such_field"):
        stored_event(json.dumps(document))


def test_a_payload_that_is_not_an_input_event_is_refused() -> None:
    with pytest.raises(ValueError, match="accepted: clinical_outcome"):
        stored_event('{"kind": "alert"}')


def _as_jsonb(payload: str) -> str:
    """``payload`` as PostgreSQL gives a ``jsonb`` column back as text.

    Keys by length, then bytes; ``", "`` and ``": "`` between items; numbers
    as ``numeric`` prints them: no exponent, so ``1e+16`` comes back as the
    integer ``10000000000000000`` and ``1.5e-07`` as ``0.00000015``.
    """

    def text(value: Any) -> str:
        if isinstance(value, dict):
            keys = sorted(value, key=lambda k: (len(k.encode()), k.encode()))
            return "{" + ", ".join(f"{json.dumps(k)}: {text(value[k])}" for k in keys) + "}"
        if isinstance(value, list):
            return "[" + ", ".join(text(v) for v in value) + "]"
        if isinstance(value, Decimal):
            return format(value, "f")
        return json.dumps(value)

    return text(json.loads(payload, parse_float=Decimal))


def test_events_read_back_from_jsonb_are_rebuilt_as_validation_would_make_them() -> None:
    for event in _events():
        payload = _as_jsonb(event.model_dump_json())
        _same(stored_event(payload), VALIDATED.validate_json(payload))


@settings(max_examples=60, deadline=None)
@given(
    reported=st.one_of(
        st.none(),
        st.floats(allow_nan=False, allow_infinity=False, width=64),
        st.integers(-(10**20), 10**20),
    ),
    hours=st.one_of(st.none(), st.floats(0, 168)),
    offset_minutes=st.integers(-23 * 60, 23 * 60),
    utc_z=st.booleans(),
)
def test_lab_results_are_rebuilt_as_validation_makes_them_whatever_the_numbers_and_offsets(
    reported: float | None, hours: float | None, offset_minutes: int, utc_z: bool
) -> None:
    zone = UTC if utc_z else timezone(timedelta(minutes=offset_minutes))
    lab = LabResult(
        **envelope_fields(observed_at=datetime(2026, 3, 1, 8, 30, 15, 250, tzinfo=zone)),
        analyte="lithium",
        value=0.8,
        unit="mmol/L",
        reported_value=reported,
        reported_unit=None if reported is None else "mmol/L",
        hours_since_dose=hours,
    )
    for payload in (lab.model_dump_json(), _as_jsonb(lab.model_dump_json())):
        _same(stored_event(payload), VALIDATED.validate_json(payload))


def test_a_payload_that_would_not_validate_is_not_rebuilt() -> None:
    upload = next(e for e in _events() if e.kind == "wearable_upload")
    document = json.loads(upload.model_dump_json())
    document["readings"][0]["extra"] = 1  # a field no reading has
    with pytest.raises(ValidationError, match="extra"):
        stored_event(json.dumps(document))
    document = json.loads(upload.model_dump_json())
    document["observed_at"] = "2026-01-05T00:00:00"  # no time zone
    with pytest.raises(ValidationError, match="timezone"):
        stored_event(json.dumps(document))
    document = json.loads(upload.model_dump_json())
    document["schema_version"] = 2
    with pytest.raises(ValidationError, match="schema_version"):
        stored_event(json.dumps(document))
    with pytest.raises(ValueError, match="accepted: clinical_outcome"):
        stored_event("[1, 2]")


class _Other(BaseModel):
    """Field types no input event has today, which a new field may bring."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    amount: int | float
    ids: tuple[UUID, ...]
    days: dict[str, date] | None
    flag: bool


def test_other_field_types_are_rebuilt_as_validation_makes_them() -> None:
    rebuild = SchemaValidator(_rebuild_schema(_Other))
    for amount in (3, 3.5, 10**20):
        other = _Other(
            amount=amount, ids=(uuid4(), uuid4()), days={"start": date(2026, 3, 1)}, flag=True
        )
        payload = other.model_dump_json()
        rebuilt, validated = rebuild.validate_json(payload), _Other.model_validate_json(payload)
        assert rebuilt == validated
        assert rebuilt.model_fields_set == validated.model_fields_set
        assert type(rebuilt.amount) is type(validated.amount)
        assert [type(i) for i in rebuilt.ids] == [UUID, UUID]
        assert type(rebuilt.days["start"]) is date
