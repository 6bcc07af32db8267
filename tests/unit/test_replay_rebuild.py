"""Replay rebuilds stored events without validating them again, and gets the same events."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from schemas.events import ClinicalOutcome, LabResult, Medication, WearableSample
from schemas.examples import envelope_fields
from services.replay.query import InputEvent, stored_event
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
