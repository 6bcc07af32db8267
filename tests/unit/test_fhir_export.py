"""FHIR R4 export: valid resources, and psymon's importer reads scores and labs back unchanged."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID, uuid4

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.flag import Flag
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.riskassessment import RiskAssessment as FhirRiskAssessment
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.analytes import ANALYTES
from schemas.events import Alert, ClinicalScore, LabResult, RiskAssessment
from schemas.fhir import import_fhir
from schemas.fhir.export import (
    EVENT_ID_SYSTEM,
    INSTRUMENT_SYSTEM,
    PSEUDONYM_SYSTEM,
    alert_flag,
    export_bundle,
    lab_observation,
    resource_for,
    risk_assessment,
    score_observation,
)
from schemas.identity import pseudonymise
from schemas.instruments import INSTRUMENTS

KEY = b"test-key-for-fhir-export-0123456789abcdef"
PATIENT = pseudonymise("MRN-7", KEY, system="tests")
RECEIVED = datetime(2026, 3, 3, 12, 0, tzinfo=UTC)
#: The instruments LOINC has a total code for: the ones psymon's importer reads.
LOINC_INSTRUMENTS = sorted(i.id for i in INSTRUMENTS.values() if i.loinc_total)

offsets = st.integers(-12 * 4, 14 * 4).map(lambda q: timezone(timedelta(minutes=15 * q)))
times = st.builds(
    lambda seconds, micro, tz: (
        datetime(2025, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds, microseconds=micro)
    ).astimezone(tz),
    st.integers(0, 400 * 86400),
    st.integers(0, 999_999),
    offsets,
)


def envelope(observed: datetime) -> dict[str, Any]:
    return {
        "event_id": uuid4(),
        "patient_id": PATIENT,
        "observed_at": observed,
        "received_at": observed + timedelta(minutes=5),
        "source": {"system": "psymon-tests"},
    }


@st.composite
def scores(draw: st.DrawFn, instruments: list[str] = LOINC_INSTRUMENTS) -> ClinicalScore:
    instrument = INSTRUMENTS[draw(st.sampled_from(instruments))]
    items = {i.key: draw(st.integers(i.low, i.high)) for i in instrument.items}
    rater = sorted(instrument.raters)[0]
    return ClinicalScore(
        **envelope(draw(times)), instrument=instrument.id, rater=rater, items=items
    )


@st.composite
def labs(draw: st.DrawFn) -> LabResult:
    analyte = draw(st.sampled_from(sorted(ANALYTES.values(), key=lambda a: a.id)))
    value = draw(st.floats(analyte.plausible_low, analyte.plausible_high, allow_nan=False))
    return LabResult(
        **envelope(draw(times)), analyte=analyte.id, value=round(value, 4), unit=analyte.unit
    )


def reimport(resources: list[dict[str, Any]], bundle_type: Any = "transaction") -> list[Any]:
    bundle = export_bundle(resources, bundle_id="b", timestamp=RECEIVED, bundle_type=bundle_type)
    Bundle.model_validate(bundle)
    # Through JSON text, as a file or an HTTP body would carry it.
    reports = import_fhir(json.dumps(bundle), pseudonym_key=KEY, received_at=RECEIVED)
    assert all(r.status == "accepted" for r in reports), [r.reason for r in reports]
    return [e for r in reports for e in r.events]


@settings(max_examples=60, deadline=None)
@given(st.lists(scores(), min_size=1, max_size=5), st.sampled_from(["transaction", "collection"]))
def test_scores_import_back_unchanged(originals: list[ClinicalScore], bundle_type: str) -> None:
    back = reimport([score_observation(s) for s in originals], bundle_type)
    assert len(back) == len(originals)
    for original, imported in zip(originals, back, strict=True):
        assert imported.patient_id == original.patient_id  # the pseudonym, not re-pseudonymised
        assert imported.observed_at == original.observed_at
        assert imported.observed_at.utcoffset() == original.observed_at.utcoffset()
        assert (imported.instrument, imported.rater) == (original.instrument, original.rater)
        assert (imported.items, imported.total) == (original.items, original.total)


@settings(max_examples=60, deadline=None)
@given(st.lists(labs(), min_size=1, max_size=5))
def test_labs_import_back_unchanged(originals: list[LabResult]) -> None:
    back = reimport([lab_observation(lab) for lab in originals])
    for original, imported in zip(originals, back, strict=True):
        assert imported.patient_id == original.patient_id
        assert imported.observed_at == original.observed_at
        assert (imported.analyte, imported.value, imported.unit) == (
            original.analyte,
            original.value,
            original.unit,
        )
        assert imported.loinc == ANALYTES[original.analyte].loinc


def test_a_lab_reported_in_another_unit_is_exported_in_the_canonical_ucum_unit() -> None:
    crp = LabResult(
        **envelope(RECEIVED), analyte="crp", value=0.45, unit="mg/dL", hours_since_dose=None
    )
    observation = lab_observation(crp)
    Observation.model_validate(observation)
    assert observation["valueQuantity"] == {
        "value": 4.5,
        "unit": "mg/L",
        "system": "http://unitsofmeasure.org",
        "code": "mg/L",
    }
    lithium = LabResult(
        **envelope(RECEIVED), analyte="lithium", value=0.8, unit="mmol/L", hours_since_dose=12
    )
    extension = lab_observation(lithium)["extension"][0]
    assert extension["valueQuantity"]["value"] == 12 and extension["valueQuantity"]["code"] == "h"


def test_an_instrument_without_a_loinc_code_uses_psymons_code_system() -> None:
    madrs = INSTRUMENTS["madrs"]
    score = ClinicalScore(
        **envelope(RECEIVED),
        instrument="madrs",
        rater="clinician",
        items={i.key: 2 for i in madrs.items},
    )
    observation = score_observation(score)
    Observation.model_validate(observation)
    assert observation["code"]["coding"] == [
        {"system": INSTRUMENT_SYSTEM, "code": "madrs", "display": "MADRS"}
    ]
    assert observation["valueInteger"] == score.total == 20
    assert len(observation["component"]) == len(madrs.items)
    assert observation["performer"] == [{"type": "Practitioner", "display": "clinician"}]
    # psymon's importer reads LOINC-coded instruments only: reported, not guessed.
    [report] = import_fhir(observation, pseudonym_key=KEY, received_at=RECEIVED)
    assert report.status == "unsupported" and "not a LOINC code" in (report.reason or "")


def test_every_exported_resource_names_its_event_and_only_the_pseudonym() -> None:
    score = ClinicalScore(
        **envelope(RECEIVED),
        instrument="phq9",
        rater="self",
        items={str(i): 1 for i in range(1, 10)},
    )
    text = json.dumps(score_observation(score))
    assert "MRN-7" not in text and PATIENT in text
    resource = score_observation(score)
    assert resource["identifier"] == [{"system": EVENT_ID_SYSTEM, "value": str(score.event_id)}]
    assert resource["subject"] == {
        "type": "Patient",
        "identifier": {"system": PSEUDONYM_SYSTEM, "value": PATIENT},
    }


def test_risk_assessments_are_valid_and_carry_probability_horizon_and_model() -> None:
    risk = RiskAssessment(
        **envelope(RECEIVED),
        caused_by=uuid4(),
        probability=0.27,
        horizon_days=28,
        model_name="relapse-logistic",
        model_version=3,
        contributions=[{"feature": "phq9", "value": 14.0, "contribution": 0.41}],
    )
    resource = risk_assessment(risk)
    FhirRiskAssessment.model_validate(resource)
    [prediction] = resource["prediction"]
    assert prediction["probabilityDecimal"] == 0.27
    assert prediction["whenRange"]["high"]["value"] == 28
    assert resource["method"]["coding"][0]["version"] == "3"
    assert "phq9 +0.410" in resource["note"][0]["text"]


@pytest.mark.parametrize(
    ("status", "override", "flag_status"),
    [
        ("open", None, "active"),
        ("open", "acknowledged", "active"),
        ("open", "resolved", "inactive"),
        ("closed", None, "inactive"),
    ],
)
def test_alerts_become_flags_active_until_closed_or_resolved(
    status: str, override: str | None, flag_status: str
) -> None:
    alert = Alert(
        **envelope(RECEIVED),
        caused_by=uuid4(),
        alert_id=UUID(int=7),
        rule="phq9_item9",
        severity="urgent",
        status=status,
        message="PHQ-9 item 9 answered 2",
        first_seen=RECEIVED,
        last_seen=RECEIVED + timedelta(days=1),
        config_version="core-2026.1",
    )
    flag = alert_flag(alert, status=override)
    Flag.model_validate(flag)
    assert flag["status"] == flag_status
    assert ("end" in flag["period"]) == (flag_status == "inactive")
    assert flag["id"] == str(UUID(int=7))


def test_a_transaction_bundle_updates_by_identifier_so_sending_it_twice_changes_nothing() -> None:
    score = ClinicalScore(**envelope(RECEIVED), instrument="gad7", rater="self", total=11)
    bundle = export_bundle([resource_for(score)], bundle_id="b", timestamp=RECEIVED)
    [entry] = bundle["entry"]
    assert entry["request"] == {
        "method": "PUT",
        "url": f"Observation?identifier={EVENT_ID_SYSTEM}|{score.event_id}",
    }
    assert "id" not in entry["resource"] and entry["fullUrl"] == f"urn:uuid:{score.event_id}"
    with pytest.raises(ValueError, match="tz-aware"):
        export_bundle([], bundle_id="b", timestamp=datetime(2026, 3, 3))


def test_a_pseudonym_identifier_that_is_no_pseudonym_is_rejected_without_showing_it() -> None:
    score = ClinicalScore(
        **envelope(RECEIVED),
        instrument="phq9",
        rater="self",
        items={str(i): 0 for i in range(1, 10)},
    )
    observation = score_observation(score)
    observation["subject"]["identifier"]["value"] = "MRN-0042"
    [report] = import_fhir(observation, pseudonym_key=KEY, received_at=RECEIVED)
    assert report.status == "rejected" and "urn:psymon:pseudonym" in (report.reason or "")
    assert "MRN-0042" not in (report.reason or "")
