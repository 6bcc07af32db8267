"""FHIR import: what becomes of every resource of real-looking exports."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.events import ClinicalScore, LabResult
from schemas.fhir import ResourceReport, import_fhir
from schemas.identity import event_id_for, pseudonymise

DATA = Path(__file__).parents[1] / "data" / "fhir"
KEY = b"test-key-for-fhir-import-0123456789abcdef"
OTHER_KEY = b"another-test-key-for-fhir-import-987654321"
RECEIVED = datetime(2026, 3, 3, 12, 0, tzinfo=UTC)
SYSTEM = "ehr-lindenhall"
LOINC = "http://loinc.org"
ORDINAL = "http://hl7.org/fhir/StructureDefinition/ordinalValue"
PHQ9_ITEMS = (
    "44250-9",
    "44255-8",
    "44259-0",
    "44254-1",
    "44251-7",
    "44258-2",
    "44252-5",
    "44253-3",
    "44260-8",
)


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / name).read_text())
    return data


def run(document: Any, key: bytes = KEY) -> list[ResourceReport]:
    return import_fhir(document, pseudonym_key=key, received_at=RECEIVED, system=SYSTEM)


def only(report: ResourceReport) -> Any:
    assert report.status == "accepted", report.reason
    assert len(report.events) == 1
    return report.events[0]


def observation(code: str, **fields: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": "Patient/pat-9001"},
        "effectiveDateTime": "2026-03-01T08:00:00+01:00",
    }
    resource.update(fields)
    return resource


def response(items: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "QuestionnaireResponse",
        "id": "qr-1",
        "status": "completed",
        "subject": {"reference": "Patient/pat-9001"},
        "authored": "2026-03-01T08:00:00+01:00",
        "item": items,
    }
    resource.update(fields)
    return resource


def bundle(*resources: dict[str, Any], kind: str = "collection") -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": kind,
        "entry": [{"resource": resource} for resource in resources],
    }


# --------------------------------------------------------------------------- fixtures


def test_questionnaire_scores_only_in_extensions_give_the_right_totals() -> None:
    reports = run(load("phq9_questionnaire_extensions.json"))
    assert [r.status for r in reports] == ["unsupported", "accepted", "accepted"]
    first, second = only(reports[1]), only(reports[2])
    assert isinstance(first, ClinicalScore) and isinstance(second, ClinicalScore)
    assert first.items is not None and second.items is not None
    assert (first.instrument, first.total, first.items["9"]) == ("phq9", 14, 0)
    assert (second.instrument, second.total, second.items["9"]) == ("phq9", 21, 1)
    assert first.rater == second.rater == "self"
    assert first.observed_at == datetime(2026, 2, 16, 9, 12, 47, tzinfo=UTC)
    assert "/69722-7" in (reports[1].reason or "")  # the unscored "how difficult" item is named


def test_patient_resource_is_reported_unsupported_without_its_id() -> None:
    patient = run(load("phq9_questionnaire_extensions.json"))[0]
    assert patient.status == "unsupported"
    assert patient.resource == "Patient/(id not shown)"
    assert "subject" in (patient.reason or "")


def test_mixed_export_says_what_happened_to_every_entry() -> None:
    document = load("mixed_export.json")
    reports = run(document)
    assert [r.index for r in reports] == list(range(len(document["entry"])))
    statuses = {r.resource: r.status for r in reports if r.status != "duplicate"}
    assert statuses == {
        "Observation/obs-phq9-total-0223": "accepted",
        "Observation/obs-gad7-0223": "accepted",
        "Observation/obs-crp-0224": "accepted",
        "Observation/obs-li-0225": "accepted",
        "Observation/obs-glu-0224": "unsupported",
        "Observation/obs-vpa-0226": "rejected",
        "Observation/obs-hscrp-0115": "accepted",
        "Observation/obs-il6-0115": "rejected",
        "Observation/obs-crp-0301": "rejected",
        "Encounter/enc-20260115": "unsupported",
    }
    assert all(r.events == () for r in reports if r.status != "accepted")


def test_instrument_observations_become_scores() -> None:
    reports = run(load("mixed_export.json"))
    phq9, gad7 = only(reports[0]), only(reports[1])
    assert (phq9.instrument, phq9.total, phq9.items) == ("phq9", 12, None)
    # GAD-7 items answered with LOINC answer codes (list LL358-3) and no extension
    assert gad7.instrument == "gad7"
    assert gad7.items == {"1": 2, "2": 1, "3": 2, "4": 1, "5": 1, "6": 1, "7": 1}
    assert gad7.total == 9


def test_crp_in_mg_per_dl_is_converted_to_mg_per_l() -> None:
    crp = only(run(load("mixed_export.json"))[2])
    assert isinstance(crp, LabResult)
    assert (crp.analyte, crp.value, crp.unit) == ("crp", 4.2, "mg/L")
    assert (crp.reported_value, crp.reported_unit, crp.loinc) == (0.42, "mg/dL", "1988-5")
    assert crp.observed_at == datetime(2026, 2, 24, 12, 42, tzinfo=UTC)


def test_lithium_keeps_its_canonical_unit() -> None:
    lithium = only(run(load("mixed_export.json"))[3])
    assert (lithium.analyte, lithium.value, lithium.unit) == ("lithium", 0.82, "mmol/L")


def test_unknown_code_is_unsupported_and_named() -> None:
    glucose = run(load("mixed_export.json"))[4]
    assert glucose.status == "unsupported"
    assert "2345-7" in (glucose.reason or "")
    assert "1988-5" in (glucose.reason or "")  # says what is accepted


def test_missing_unit_is_rejected_with_the_accepted_units() -> None:
    valproate = run(load("mixed_export.json"))[5]
    assert valproate.status == "rejected"
    assert "no unit" in (valproate.reason or "")
    assert "ug/mL" in (valproate.reason or "")


def test_second_copy_of_a_resource_version_is_a_duplicate() -> None:
    reports = run(load("mixed_export.json"))
    assert reports[6].status == "duplicate"
    assert reports[6].resource == reports[2].resource
    assert "entry 2" in (reports[6].reason or "")


def test_stu3_shaped_resource_is_read_and_noted() -> None:
    hs_crp = run(load("mixed_export.json"))[7]
    assert only(hs_crp).analyte == "hs_crp"
    assert "STU3" in (hs_crp.reason or "")


def test_date_without_time_and_missing_subject_are_rejected_with_reasons() -> None:
    reports = run(load("mixed_export.json"))
    assert "date without a time" in (reports[8].reason or "")
    assert "no subject" in (reports[9].reason or "")


def test_single_observation_panel_with_components() -> None:
    [report] = run(load("observation_single.json"))
    score = only(report)
    assert report.index == 0 and report.resource == "Observation/obs-phq9-panel-0302"
    assert score.total == 13 and score.items["9"] == 1 and score.items["3"] == 3


# --------------------------------------------------------------------------- identity


def all_events(reports: list[ResourceReport]) -> list[Any]:
    return [event for report in reports for event in report.events]


def test_reimport_gives_identical_events() -> None:
    for name in ("phq9_questionnaire_extensions.json", "mixed_export.json"):
        raw = (DATA / name).read_bytes()
        first = run(raw)
        assert run(raw) == first
        assert run(raw.decode()) == first
        assert run(json.loads(raw)) == first


def test_event_id_derives_from_resource_id_and_version() -> None:
    crp = only(run(load("mixed_export.json"))[2])
    assert crp.event_id == event_id_for("fhir", SYSTEM, "Observation/obs-crp-0224", "1")
    without_version = copy.deepcopy(load("observation_single.json"))
    del without_version["meta"]
    score = only(run(without_version)[0])
    assert score.event_id == event_id_for("fhir", SYSTEM, "Observation/obs-phq9-panel-0302")


def test_no_reason_or_label_shows_a_patient_reference_or_identifier() -> None:
    private = (
        "pat-4821",
        "pat-9001",
        "MRN-00731942",
        "MRN-00588210",
        "1.2.276.0.76.4.8",
        "Beispiel",
        "1987-05-14",
    )
    documents = [load(name) for name in sorted(p.name for p in DATA.glob("*.json"))]
    odd_subjects = bundle(
        observation("1988-5", id="x", subject={"reference": "Group/pat-4821"}),
        observation("1988-5", id="y", subject={"reference": "https://h/MRN-00731942/pat-4821"}),
        observation("1988-5", id="z", subject={"reference": "#pat-4821"}),
        observation("1988-5", id="w", subject={"type": "MRN-00731942", "reference": "Patient/1"}),
    )
    reports = [r for document in (*documents, odd_subjects) for r in run(document)]
    assert any(r.status == "rejected" for r in reports)
    for report in reports:
        stored = " ".join(event.model_dump_json() for event in report.events)
        for value in private:
            assert value not in (report.reason or ""), report
            assert value not in report.resource, report
            assert value not in stored, report


def test_pseudonym_depends_on_the_key_and_not_on_the_reference_form() -> None:
    relative = only(run(load("mixed_export.json"))[0])  # subject "Patient/pat-4821"
    absolute = only(run(load("observation_single.json"))[0])  # "https://.../Patient/pat-4821"
    assert relative.patient_id == absolute.patient_id
    assert relative.patient_id == pseudonymise("Patient/pat-4821", KEY, system=SYSTEM)
    other = only(run(load("mixed_export.json"), key=OTHER_KEY)[0])
    assert other.patient_id != relative.patient_id
    assert other.event_id == relative.event_id


def test_subject_by_identifier_and_by_transaction_urn() -> None:
    patient = {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:oid:1.2.3", "value": "MRN-77"}],
    }
    by_urn = observation("14334-7", subject={"reference": "urn:uuid:9d1c"})
    by_urn["valueQuantity"] = {"value": 0.7, "unit": "mmol/L"}
    by_identifier = observation(
        "14334-7",
        id="li-2",
        subject={"identifier": {"system": "urn:oid:1.2.3", "value": "MRN-77"}},
        valueQuantity={"value": 0.9, "code": "mmol/L", "system": "http://unitsofmeasure.org"},
    )
    document = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:9d1c", "resource": patient, "request": {"method": "POST"}},
            {"fullUrl": "urn:uuid:0b7e", "resource": by_urn, "request": {"method": "POST"}},
            {"resource": by_identifier, "request": {"method": "PUT"}},
            {"request": {"method": "DELETE", "url": "Observation/old-1"}},
        ],
    }
    reports = run(document)
    assert [r.status for r in reports] == ["unsupported", "accepted", "accepted", "unsupported"]
    assert reports[1].resource == "urn:uuid:0b7e"
    assert reports[0].resource == "Patient/(id not shown)"
    expected = pseudonymise("urn:oid:1.2.3|MRN-77", KEY, system=SYSTEM)
    assert only(reports[1]).patient_id == only(reports[2]).patient_id == expected


# --------------------------------------------------------------------------- shapes


def phq9_member(index: int, score: int) -> dict[str, Any]:
    member = observation(PHQ9_ITEMS[index], id=f"item-{index + 1}", valueInteger=score)
    return member


def test_panel_with_has_member_items_in_the_bundle() -> None:
    scores = [1, 1, 2, 0, 1, 1, 0, 0, 2]
    panel = observation(
        "44249-1",
        id="panel",
        hasMember=[{"reference": f"Observation/item-{n}"} for n in range(1, 10)],
    )
    members = [phq9_member(i, s) for i, s in enumerate(scores)]
    reports = run(bundle(*members, panel))
    score = only(reports[9])
    assert score.total == 8 and score.items["9"] == 2
    for report in reports[:9]:
        assert report.status == "accepted" and report.events == ()
        assert "Observation/panel" in (report.reason or "")


def test_panel_member_missing_from_the_document_rejects_the_panel() -> None:
    panel = observation("44249-1", id="panel", hasMember=[{"reference": "Observation/item-1"}] * 1)
    reports = run(bundle(panel, *[phq9_member(i, 1) for i in range(1, 9)]))
    assert reports[0].status == "rejected"
    assert "Observation/item-1" in (reports[0].reason or "")


def test_item_observation_alone_is_rejected() -> None:
    [report] = run(phq9_member(8, 1))
    assert report.status == "rejected"
    assert "44249-1" in (report.reason or "")  # names the panel code it needs


def test_phq2_recognised_from_its_item_link_ids() -> None:
    items = [
        {"linkId": "/44250-9", "answer": [{"valueInteger": 2}]},
        {"linkId": "/44255-8", "answer": [{"valueInteger": 1}]},
    ]
    score = only(run(response(items))[0])
    assert (score.instrument, score.total) == ("phq2", 3)


def test_phq9_with_item_9_skipped_is_not_mistaken_for_a_phq8() -> None:
    items = [{"linkId": code, "answer": [{"valueInteger": 1}]} for code in PHQ9_ITEMS[:8]]
    items.append({"linkId": "44261-6", "answer": [{"valueInteger": 8}]})
    [report] = run(response(items))
    assert report.status == "rejected"
    assert "PHQ-9: missing item 9" in (report.reason or "")


def test_instrument_read_from_item_codes_is_noted() -> None:
    items = [{"linkId": code, "answer": [{"valueInteger": 1}]} for code in PHQ9_ITEMS[:8]]
    [report] = run(response(items))
    assert only(report).instrument == "phq8"
    assert "from its answered item codes" in (report.reason or "")


def test_gad7_by_questionnaire_name_with_numeric_codings() -> None:
    items = [
        {"linkId": str(n), "answer": [{"valueCoding": {"code": str(n % 4), "display": "x"}}]}
        for n in range(1, 8)
    ]
    qr = response(items, questionnaire="https://forms.example/Questionnaire/GAD-7|3")
    score = only(run(qr)[0])
    assert (score.instrument, score.total) == ("gad7", 1 + 2 + 3 + 0 + 1 + 2 + 3)


def test_clinician_rated_instrument_gets_a_clinician_rater() -> None:
    items = [{"linkId": f"madrs-{n}", "answer": [{"valueInteger": 2}]} for n in range(1, 11)]
    score = only(run(response(items, questionnaire="Questionnaire/madrs"))[0])
    assert (score.instrument, score.total, score.rater) == ("madrs", 20, "clinician")


def test_stu3_questionnaire_reference_and_ordinal_on_the_answer() -> None:
    items = [
        {
            "linkId": f"q{n}",
            "answer": [
                {
                    "extension": [{"url": ORDINAL, "valueDecimal": 1}],
                    "valueCoding": {"system": "urn:local", "code": "some"},
                }
            ],
        }
        for n in range(1, 10)
    ]
    qr = response(items, questionnaire={"reference": "Questionnaire/phq-9"})
    report = run(qr)[0]
    assert only(report).total == 9
    assert "STU3" in (report.reason or "")


def test_total_that_disagrees_with_the_items_is_rejected() -> None:
    items = [{"linkId": code, "answer": [{"valueInteger": 1}]} for code in PHQ9_ITEMS]
    items.append({"linkId": "44261-6", "answer": [{"valueInteger": 10}]})
    [report] = run(response(items))
    assert report.status == "rejected"
    assert "disagrees" in (report.reason or "") and "9" in (report.reason or "")


def test_out_of_range_item_names_instrument_item_and_range() -> None:
    items = [{"linkId": code, "answer": [{"valueInteger": 1}]} for code in PHQ9_ITEMS]
    items[3]["answer"] = [{"valueInteger": 5}]
    [report] = run(response(items))
    assert report.status == "rejected"
    assert "PHQ-9 item 4" in (report.reason or "") and "0-3" in (report.reason or "")
    assert "p-" not in (report.reason or "")  # no pseudonym echoed either


def test_answer_without_a_score_is_rejected() -> None:
    items = [
        {"linkId": code, "answer": [{"valueCoding": {"system": "urn:x", "code": "often"}}]}
        for code in PHQ9_ITEMS
    ]
    [report] = run(response(items))
    assert report.status == "rejected"
    assert "ordinalValue" in (report.reason or "")


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ("2026-03-01T08:00:00", "no UTC offset"),
        ("2026-03-01", "date without a time"),
        ("2026-03", "date without a time"),
        ("yesterday", "not a FHIR dateTime"),
    ],
)
def test_times_without_offset_are_rejected(when: str, expected: str) -> None:
    [report] = run(observation("44261-6", effectiveDateTime=when, valueInteger=3))
    assert report.status == "rejected"
    assert expected in (report.reason or "")


def test_effective_period_start_and_issued_are_used_in_turn() -> None:
    period = observation(
        "44261-6", valueInteger=3, effectivePeriod={"start": "2026-03-01T07:00:00Z"}
    )
    del period["effectiveDateTime"]
    issued = observation("44261-6", valueInteger=3, issued="2026-03-01T06:00:00Z")
    del issued["effectiveDateTime"]
    assert only(run(period)[0]).observed_at == datetime(2026, 3, 1, 7, tzinfo=UTC)
    assert only(run(issued)[0]).observed_at == datetime(2026, 3, 1, 6, tzinfo=UTC)


@pytest.mark.parametrize("status", ["entered-in-error", "cancelled", "registered"])
def test_results_that_do_not_exist_are_rejected(status: str) -> None:
    [report] = run(observation("44261-6", valueInteger=3, status=status))
    assert report.status == "rejected" and status in (report.reason or "")


def test_in_progress_questionnaire_is_rejected() -> None:
    items = [{"linkId": code, "answer": [{"valueInteger": 1}]} for code in PHQ9_ITEMS]
    [report] = run(response(items, status="in-progress"))
    assert report.status == "rejected" and "in-progress" in (report.reason or "")


def test_lab_bound_and_unconvertible_unit_are_rejected() -> None:
    bound = observation("1988-5", valueQuantity={"value": 0.3, "comparator": "<", "unit": "mg/L"})
    wrong = observation("1988-5", valueQuantity={"value": 3, "unit": "mmol/L"})
    text = observation("1988-5", valueString="<0.3 mg/L")
    reasons = [run(r)[0].reason or "" for r in (bound, wrong, text)]
    assert "bound" in reasons[0]
    assert "mmol/L" in reasons[1] and "mg/dL" in reasons[1]
    assert "valueString" in reasons[2]


def test_ndjson_and_arrays_are_read_line_by_line() -> None:
    lines = [observation("44261-6", id=f"o{n}", valueInteger=n) for n in range(3)]
    ndjson = "\n".join(json.dumps(line) for line in lines) + "\n"
    reports = run(ndjson.encode())
    assert [(r.index, r.resource, r.status) for r in reports] == [
        (0, "Observation/o0", "accepted"),
        (1, "Observation/o1", "accepted"),
        (2, "Observation/o2", "accepted"),
    ]
    assert run(json.dumps(lines)) == reports


def test_a_document_that_is_not_fhir_gives_one_rejected_report() -> None:
    for document in (b"{not json", b"[1, 2", "42", {"kind": "lab_result"}):
        [report] = run(document)
        assert (report.resource, report.status) == ("document", "rejected")
        assert "accepted" in (report.reason or "")


def test_caller_mistakes_raise() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        import_fhir({}, pseudonym_key=b"short", received_at=RECEIVED)
    with pytest.raises(ValueError, match="tz-aware"):
        import_fhir({}, pseudonym_key=KEY, received_at=datetime(2026, 3, 3))
    with pytest.raises(ValueError, match="system"):
        import_fhir({}, pseudonym_key=KEY, received_at=RECEIVED, system="")


def test_has_member_cycle_terminates() -> None:
    first = observation("44249-1", id="a", hasMember=[{"reference": "Observation/b"}])
    second = observation("44249-1", id="b", hasMember=[{"reference": "Observation/a"}])
    reports = run(bundle(first, second))
    assert len(reports) == 2
    assert all(r.status in ("accepted", "rejected") for r in reports)


def test_long_has_member_chain_does_not_recurse() -> None:
    chain = [
        observation("44249-1", id=f"p{n}", hasMember=[{"reference": f"Observation/p{n + 1}"}])
        for n in range(1200)
    ]
    reports = run(bundle(*chain))
    assert len(reports) == 1200 and reports[-1].status == "rejected"


# --------------------------------------------------------------------------- robustness

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=10,
)
elements = st.sampled_from(
    [
        "id",
        "status",
        "code",
        "subject",
        "effectiveDateTime",
        "valueQuantity",
        "component",
        "hasMember",
        "item",
        "questionnaire",
        "authored",
        "meta",
        "entry",
    ]
)


@settings(max_examples=150, deadline=None)
@given(
    kind=st.sampled_from(["Observation", "QuestionnaireResponse", "Patient", "Bundle"]),
    fields=st.dictionaries(elements, json_values, max_size=6),
    base=st.sampled_from(["phq9", "crp", "qr"]),
)
def test_malformed_resources_are_reported_never_raised(
    kind: str, fields: dict[str, Any], base: str
) -> None:
    start = {
        "phq9": observation("44261-6", valueInteger=4),
        "crp": observation("1988-5", valueQuantity={"value": 1, "unit": "mg/L"}),
        "qr": response([{"linkId": code, "answer": [{"valueInteger": 1}]} for code in PHQ9_ITEMS]),
    }[base]
    resource = {**start, **fields, "resourceType": kind}
    reports = run(resource)
    assert len(reports) >= 1
    for report in reports:
        assert report.status in ("accepted", "rejected", "unsupported", "duplicate")
        assert "pat-9001" not in (report.reason or "")


@settings(max_examples=100, deadline=None)
@given(entries=st.lists(json_values, max_size=4))
def test_malformed_bundles_are_reported_never_raised(entries: list[Any]) -> None:
    document = {"resourceType": "Bundle", "type": "collection", "entry": entries}
    reports = run(document)
    assert len(reports) >= 1 and len({r.index for r in reports}) == len(reports)
