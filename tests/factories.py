"""Factories for valid events, shared by the tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.dispatch import dead_letter, decode, decode_document, loads
from schemas.events import (
    Alert,
    ClinicalOutcome,
    ClinicalScore,
    CourseUpdate,
    LabResult,
    RiskAssessment,
    SubgroupAssigned,
    WearableSample,
    WearableUpload,
)
from schemas.examples import envelope_fields, example_uuid

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def make_examples() -> dict[str, Any]:
    """One valid instance of every event model, keyed by model name."""
    env = envelope_fields
    upload_start = T0
    readings = [
        {
            "event_id": example_uuid(100 + i),
            "metric": "heart_rate",
            "value": 60.0 + i,
            "unit": "/min",
            "start": upload_start + timedelta(minutes=i),
            "end": upload_start + timedelta(minutes=i + 1),
        }
        for i in range(3)
    ]
    derived = {"caused_by": example_uuid(1), "source": {"system": "psymon"}}
    return {
        "ClinicalScore": ClinicalScore(
            **env(), instrument="phq9", rater="self", items={str(i): 2 for i in range(1, 10)}
        ),
        "WearableUpload": WearableUpload(
            **env(observed_at=upload_start),
            window_end=upload_start + timedelta(minutes=3),
            readings=readings,
        ),
        "WearableSample": WearableSample(
            **env(),
            metric="steps",
            value=120,
            unit="{steps}",
            interval_end=T0 + timedelta(minutes=1),
        ),
        "LabResult": LabResult(**env(), analyte="crp", value=0.45, unit="mg/dL"),
        "ClinicalOutcome": ClinicalOutcome(
            **env(),
            outcome="medication_change",
            medication={
                "name": "lithium carbonate",
                "action": "start",
                "dose": 400,
                "dose_unit": "mg",
            },
        ),
        "CourseUpdate": CourseUpdate(
            **env(**derived),
            signal="phq9",
            signal_kind="instrument",
            value=18,
            band="moderately severe",
        ),
        "RiskAssessment": RiskAssessment(
            **env(**derived),
            probability=0.31,
            horizon_days=28,
            model_name="relapse-logistic",
            model_version=3,
            contributions=[{"feature": "sleep_z", "value": -2.1, "contribution": 0.4}],
        ),
        "Alert": Alert(
            **env(**derived),
            alert_id=example_uuid(7),
            rule="phq9_item9",
            severity="urgent",
            status="open",
            message="PHQ-9 item 9 answered 2",
            evidence={"item9": 2},
            first_seen=T0,
            last_seen=T0,
            config_version="2026.1",
        ),
        "DeadLetter": dead_letter(
            b'{"kind": 1}', "psymon.clinical-scores.v1", T0, "field 'kind': bad"
        ),
        "SubgroupAssigned": SubgroupAssigned(
            **env(**derived),
            scheme="specifier",
            scheme_name="inflammatory_depression",
            subgroup="inflammatory_depression",
            version="core-2026.1",
            description="depressive syndrome with CRP above 3 mg/L on 2 of the last 3 results",
            citation="Osimo 2019; Miller & Raison 2016",
            evidence={"crp_above": 2, "crp_latest": 4.2},
        ),
    }


def decoded_by_full_path(raw: bytes, topic: str) -> Any:
    """What ``decode``'s full path makes of ``raw`` (``json.loads`` without NaN, then the models).

    The reference the one-pass shortcuts of :func:`schemas.dispatch.decode`
    are checked against; ``"not valid JSON"`` where the full path refuses
    the text itself.
    """
    try:
        document = loads(raw)
    except ValueError:
        return "not valid JSON"
    return decode_document(document, raw=raw, topic=topic, received_at=T0)


def assert_same_event(fast: Any, expected: Any) -> None:
    """``fast`` is ``expected`` down to its field order, the fields set and its JSON."""
    assert fast == expected
    assert list(fast.__dict__) == list(expected.__dict__)
    assert fast.__pydantic_fields_set__ == expected.__pydantic_fields_set__
    assert fast.model_dump_json() == expected.model_dump_json()


def assert_decoded_as_by_full_path(raw: bytes, topic: str) -> None:
    """``decode`` judges ``raw`` as :func:`decoded_by_full_path` does: same event or dead letter."""
    decoded = decode(raw, topic=topic, received_at=T0)
    expected = decoded_by_full_path(raw, topic)
    if expected == "not valid JSON":
        assert decoded.kind == "dead_letter"
        assert decoded.reason.startswith("not valid JSON")
    elif decoded.kind == "dead_letter":
        assert decoded == expected
    else:
        assert_same_event(decoded, expected)
