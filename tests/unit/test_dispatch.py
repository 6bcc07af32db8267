"""Raw bytes become the right event or a dead letter a person can act on."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.dispatch import decode
from schemas.events import ClinicalScore, DeadLetter, LabResult
from schemas.examples import envelope_fields
from schemas.topics import CLINICAL_SCORES, LAB_RESULTS
from tests.factories import T0


def _doc(**fields: object) -> dict[str, object]:
    env = envelope_fields()
    base = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in env.items()}
    base["event_id"] = str(base["event_id"])
    base.update(fields)
    return base


def _phq9(**fields: object) -> bytes:
    doc = _doc(kind="clinical_score", instrument="phq9", rater="self", **fields)
    return json.dumps(doc).encode()


def test_valid_score_decodes_with_total_computed() -> None:
    items = {str(i): 1 for i in range(1, 10)}
    event = decode(_phq9(items=items), topic=CLINICAL_SCORES, received_at=T0)
    assert isinstance(event, ClinicalScore)
    assert event.total == 9


def test_out_of_range_item_names_instrument_item_value_and_range() -> None:
    items = {str(i): 1 for i in range(1, 10)} | {"9": 4}
    letter = decode(_phq9(items=items), topic=CLINICAL_SCORES, received_at=T0)
    assert isinstance(letter, DeadLetter)
    assert "PHQ-9" in letter.reason and "9" in letter.reason and "4" in letter.reason
    assert "0-3" in letter.reason
    assert letter.errors[0].field == "items.9"


def test_total_that_disagrees_with_items_is_rejected() -> None:
    items = {str(i): 1 for i in range(1, 10)}
    letter = decode(_phq9(items=items, total=12), topic=CLINICAL_SCORES, received_at=T0)
    assert isinstance(letter, DeadLetter)
    assert "12" in letter.reason and "9" in letter.reason


def test_wrong_topic_for_kind_is_dead_lettered() -> None:
    letter = decode(_phq9(total=5), topic=LAB_RESULTS, received_at=T0)
    assert isinstance(letter, DeadLetter)
    assert "lab_result" in letter.reason and LAB_RESULTS in letter.reason


def test_truncated_json_keeps_the_payload() -> None:
    raw = _phq9(total=5)[:-7]
    letter = decode(raw, topic=CLINICAL_SCORES, received_at=T0)
    assert isinstance(letter, DeadLetter)
    assert letter.reason.startswith("not valid JSON")
    assert letter.raw.encode() == raw and letter.raw_size == len(raw)


def test_nan_is_refused() -> None:
    raw = _phq9().replace(b'"rater": "self"', b'"rater": "self", "total": NaN')
    letter = decode(raw, topic=CLINICAL_SCORES, received_at=T0)
    assert isinstance(letter, DeadLetter) and "NaN" in letter.reason


def test_naive_timestamp_is_rejected_naming_the_field() -> None:
    letter = decode(
        _phq9(total=3, observed_at="2026-03-02T09:00:00"), topic=CLINICAL_SCORES, received_at=T0
    )
    assert isinstance(letter, DeadLetter)
    assert "observed_at" in letter.reason and "timezone" in letter.reason.lower()


def test_future_observation_is_rejected() -> None:
    letter = decode(
        _phq9(total=3, observed_at="2031-01-01T00:00:00Z"), topic=CLINICAL_SCORES, received_at=T0
    )
    assert isinstance(letter, DeadLetter) and "future" in letter.reason


def test_source_identifier_in_patient_id_never_reaches_the_dead_letter() -> None:
    mrn = "MRN-998877"
    letter = decode(_phq9(total=3, patient_id=mrn), topic=CLINICAL_SCORES, received_at=T0)
    assert isinstance(letter, DeadLetter)
    assert mrn not in letter.model_dump_json()
    assert "patient_id" in letter.reason
    assert letter.raw_size == len(_phq9(total=3, patient_id=mrn))


def test_lab_unit_converted_and_reported_kept() -> None:
    doc = _doc(kind="lab_result", analyte="crp", value=0.5, unit="mg/dL")
    event = decode(json.dumps(doc).encode(), topic=LAB_RESULTS, received_at=T0)
    assert isinstance(event, LabResult)
    assert event.value == pytest.approx(5.0)
    assert event.unit == "mg/L" and event.reported_unit == "mg/dL" and event.reported_value == 0.5


def test_unconvertible_unit_names_analyte_and_accepted_units() -> None:
    doc = _doc(kind="lab_result", analyte="lithium", value=0.8, unit="mg/dL")
    letter = decode(json.dumps(doc).encode(), topic=LAB_RESULTS, received_at=T0)
    assert isinstance(letter, DeadLetter)
    assert "mg/dL" in letter.reason and "mmol/L" in letter.reason


def test_same_bad_record_gets_the_same_dead_letter_id() -> None:
    one = decode(b"{oops", topic=CLINICAL_SCORES, received_at=T0)
    two = decode(b"{oops", topic=CLINICAL_SCORES, received_at=T0)
    assert isinstance(one, DeadLetter) and one.event_id == two.event_id


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_give_an_event_or_a_dead_letter(raw: bytes) -> None:
    outcome = decode(raw, topic=CLINICAL_SCORES, received_at=T0)
    assert isinstance(outcome, ClinicalScore | DeadLetter)


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            ["kind", "instrument", "total", "items", "rater", "observed_at", "patient_id"]
        ),
        st.one_of(st.none(), st.integers(), st.text(max_size=20), st.floats(allow_nan=False)),
    )
)
def test_hostile_fields_never_raise(fields: dict[str, object]) -> None:
    doc = _doc(kind="clinical_score") | fields
    outcome = decode(json.dumps(doc).encode(), topic=CLINICAL_SCORES, received_at=T0)
    assert isinstance(outcome, ClinicalScore | DeadLetter)
    if isinstance(outcome, DeadLetter):
        assert outcome.reason
