"""The analyte catalogue: units, plausible ranges, cut-offs and lookup."""

from __future__ import annotations

import dataclasses
import math
import pickle
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.analytes import (
    ANALYTES,
    Analyte,
    AnalyteStatus,
    ImplausibleValue,
    UnitError,
    UnknownAnalyte,
    analyte_for_loinc,
    get_analyte,
)

EXPECTED = {
    # id: (LOINC, canonical UCUM unit)
    "crp": ("1988-5", "mg/L"),
    "hs_crp": ("30522-7", "mg/L"),
    "il6": ("26881-3", "pg/mL"),
    "lithium": ("14334-7", "mmol/L"),
    "valproate": ("4086-5", "ug/mL"),
    "clozapine": ("6896-5", "ng/mL"),
}


def test_catalogue_holds_every_analyte_of_clinical_md_with_its_loinc_and_unit() -> None:
    assert {a.id: (a.loinc, a.unit) for a in ANALYTES.values()} == EXPECTED
    for analyte in ANALYTES.values():
        assert analyte.loinc in analyte.loinc_codes
        assert analyte.citation
        assert analyte.accepted_units[0] == analyte.unit
        assert analyte.plausible_low == 0.0 < analyte.plausible_high


def test_the_catalogue_cannot_be_changed_at_run_time() -> None:
    with pytest.raises(TypeError):
        ANALYTES["crp"] = ANALYTES["il6"]  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        ANALYTES["lithium"].plausible_high = 100.0  # type: ignore[misc]


# --------------------------------------------------------------------------- units


@pytest.mark.parametrize(
    ("analyte_id", "value", "unit", "expected"),
    [
        ("crp", 4.0, "mg/L", 4.0),
        ("crp", 4.0, "mg/l", 4.0),
        ("crp", 0.4, "mg/dL", 4.0),
        ("crp", 0.4, "mg/dl", 4.0),
        ("crp", 0.33, "mg/dL", 3.3),  # 0.33 * 10 is 3.3000000000000003 in binary
        ("crp", 4.0, "ug/mL", 4.0),
        ("hs_crp", 0.52, "mg/dL", 5.2),
        ("il6", 3.5, "pg/mL", 3.5),
        ("il6", 3.5, "ng/L", 3.5),
        ("il6", 3.5, "pg/ml", 3.5),
        ("lithium", 0.8, "mmol/L", 0.8),
        ("lithium", 0.8, "mmol/l", 0.8),
        ("lithium", 0.8, "mEq/L", 0.8),
        ("lithium", 0.8, "meq/L", 0.8),
        ("valproate", 75.0, "ug/mL", 75.0),
        ("valproate", 75.0, "µg/mL", 75.0),
        ("valproate", 75.0, "μg/mL", 75.0),  # Greek mu, not the micro sign
        ("valproate", 75.0, "mcg/mL", 75.0),
        ("valproate", 75.0, "mg/L", 75.0),
        ("valproate", 75.0, " ug/ml ", 75.0),
        ("clozapine", 420.0, "ng/mL", 420.0),
        ("clozapine", 420.0, "ug/L", 420.0),
        ("clozapine", 420.0, "µg/L", 420.0),
        ("clozapine", 0.42, "mg/L", 420.0),
        ("clozapine", 0.35, "ug/mL", 350.0),
    ],
)
def test_supplied_units_convert_to_the_canonical_unit(
    analyte_id: str, value: float, unit: str, expected: float
) -> None:
    assert get_analyte(analyte_id).to_canonical(value, unit) == expected


def test_an_int_value_comes_back_as_a_float() -> None:
    result = get_analyte("lithium").to_canonical(1, "mmol/L")
    assert result == 1.0 and type(result) is float


def test_a_unit_that_cannot_be_converted_names_the_analyte_and_the_accepted_units() -> None:
    with pytest.raises(UnitError) as caught:
        get_analyte("crp").to_canonical(1.0, "mmol/L")
    assert str(caught.value) == (
        "CRP: unit 'mmol/L' cannot be converted; accepted: mg/L, mg/dL, ug/mL (converted to mg/L)"
    )
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("analyte_id", "unit"),
    [
        ("lithium", "mg/L"),  # a mass concentration needs the molar mass: not guessed
        ("lithium", "umol/L"),
        ("valproate", "umol/L"),
        ("il6", "mg/L"),
        ("clozapine", "nmol/L"),
        ("crp", ""),
        ("crp", "mg"),
    ],
)
def test_units_of_another_kind_are_rejected(analyte_id: str, unit: str) -> None:
    analyte = get_analyte(analyte_id)
    pattern = rf"^{re.escape(analyte.name)}: unit .* accepted: {re.escape(analyte.unit)}"
    with pytest.raises(UnitError, match=pattern):
        analyte.to_canonical(1.0, unit)


def test_a_very_long_unit_is_shortened_in_the_message() -> None:
    with pytest.raises(UnitError) as caught:
        get_analyte("crp").to_canonical(1.0, "x" * 10_000)
    assert len(str(caught.value)) < 200


# --------------------------------------------------------------------------- plausibility


@pytest.mark.parametrize(
    ("analyte_id", "value", "unit", "message"),
    [
        (
            "lithium",
            10.5,
            "mmol/L",
            "lithium: 10.5 mmol/L is outside the plausible range 0-10 mmol/L; "
            "check the value and its unit",
        ),
        (
            "lithium",
            12.0,
            "mEq/L",
            "lithium: 12 mEq/L (= 12 mmol/L) is outside the plausible range 0-10 mmol/L; "
            "check the value and its unit",
        ),
        (
            "crp",
            1001.0,
            "mg/L",
            "CRP: 1001 mg/L is outside the plausible range 0-1000 mg/L; "
            "check the value and its unit",
        ),
        (
            "crp",
            101.0,
            "mg/dL",
            "CRP: 101 mg/dL (= 1010 mg/L) is outside the plausible range 0-1000 mg/L; "
            "check the value and its unit",
        ),
        (
            "valproate",
            -1.0,
            "ug/mL",
            "valproate: -1 ug/mL is outside the plausible range 0-3000 ug/mL; "
            "check the value and its unit",
        ),
        (
            "clozapine",
            350.0,
            "ug/mL",  # 350 ng/mL mistyped as ug/mL
            "clozapine: 350 ug/mL (= 350000 ng/mL) is outside the plausible range "
            "0-20000 ng/mL; check the value and its unit",
        ),
    ],
)
def test_impossible_values_are_rejected_naming_analyte_value_and_range(
    analyte_id: str, value: float, unit: str, message: str
) -> None:
    with pytest.raises(ImplausibleValue) as caught:
        get_analyte(analyte_id).to_canonical(value, unit)
    assert str(caught.value) == message
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_values_are_rejected(value: float) -> None:
    with pytest.raises(ImplausibleValue, match=r"^IL-6: value .* is not a finite number$"):
        get_analyte("il6").to_canonical(value, "pg/mL")


@pytest.mark.parametrize("analyte", list(ANALYTES.values()), ids=list(ANALYTES))
def test_the_plausible_limits_themselves_are_accepted(analyte: Analyte) -> None:
    assert analyte.to_canonical(analyte.plausible_low, analyte.unit) == analyte.plausible_low
    assert analyte.to_canonical(analyte.plausible_high, analyte.unit) == analyte.plausible_high


# --------------------------------------------------------------------------- status


@pytest.mark.parametrize(
    ("analyte_id", "value", "label", "severity"),
    [
        ("crp", 0.0, "normal", "ok"),
        ("crp", 3.0, "normal", "ok"),
        ("crp", 3.1, "low-grade inflammation", "info"),
        ("crp", 10.0, "low-grade inflammation", "info"),
        ("crp", 10.1, "acute-phase range", "warning"),
        ("hs_crp", 3.0, "normal", "ok"),
        ("hs_crp", 3.1, "low-grade inflammation", "info"),
        ("hs_crp", 5.0, "low-grade inflammation", "info"),
        ("hs_crp", 5.1, "high inflammation", "info"),
        ("hs_crp", 10.1, "acute-phase range", "warning"),
        ("lithium", 0.0, "subtherapeutic", "info"),
        ("lithium", 0.59, "subtherapeutic", "info"),
        ("lithium", 0.6, "therapeutic", "ok"),
        ("lithium", 1.2, "therapeutic", "ok"),
        ("lithium", 1.21, "above range", "warning"),
        ("lithium", 1.5, "above range", "warning"),
        ("lithium", 1.51, "toxic", "urgent"),
        ("lithium", 10.0, "toxic", "urgent"),
        ("valproate", 49.9, "subtherapeutic", "info"),
        ("valproate", 50.0, "therapeutic", "ok"),
        ("valproate", 100.0, "therapeutic", "ok"),
        ("valproate", 100.1, "above range", "info"),
        ("valproate", 120.0, "above range", "info"),
        ("valproate", 120.1, "above alert level", "warning"),
        ("clozapine", 349.9, "subtherapeutic", "info"),
        ("clozapine", 350.0, "therapeutic", "ok"),
        ("clozapine", 600.0, "therapeutic", "ok"),
        ("clozapine", 600.1, "above range", "info"),
        ("clozapine", 1000.0, "above range", "info"),
        ("clozapine", 1000.1, "above alert level", "warning"),
    ],
)
def test_status_at_every_band_edge(
    analyte_id: str, value: float, label: str, severity: str
) -> None:
    status = get_analyte(analyte_id).status(value)
    assert status is not None
    assert (status.label, status.severity) == (label, severity)


def test_a_converted_value_at_an_edge_is_judged_as_the_lab_meant_it() -> None:
    crp = get_analyte("crp")
    status = crp.status(crp.to_canonical(0.3, "mg/dL"))
    assert status is not None and status.label == "normal"
    clozapine = get_analyte("clozapine")
    status = clozapine.status(clozapine.to_canonical(0.35, "mg/L"))
    assert status is not None and status.label == "therapeutic"
    # 1.001 * 1000 is 1000.9999999999999 in binary; the lab meant 1001 ng/mL.
    assert clozapine.to_canonical(1.001, "mg/L") == 1001.0


@pytest.mark.parametrize(
    ("analyte_id", "value", "source"),
    [
        ("crp", 3.1, "Osimo 2019"),
        ("crp", 1.0, "Pearson 2003"),
        ("hs_crp", 6.0, "Raison 2013"),
        ("lithium", 1.6, "NICE CG185"),
        ("lithium", 0.8, "Malhi 2017"),
        ("valproate", 70.0, "Hiemke 2018"),
        ("clozapine", 400.0, "Hiemke 2018"),
    ],
)
def test_each_rule_says_what_it_is_and_where_it_comes_from(
    analyte_id: str, value: float, source: str
) -> None:
    status = get_analyte(analyte_id).status(value)
    assert status is not None
    assert source in status.rule
    assert get_analyte(analyte_id).unit in status.rule


def test_il6_has_no_cutoff_so_no_status() -> None:
    il6 = get_analyte("il6")
    assert not il6.has_cutoffs
    assert il6.status(2.0) is None
    assert il6.status(5000.0) is None
    assert all(a.has_cutoffs for a in ANALYTES.values() if a.id != "il6")


def test_status_refuses_an_impossible_value() -> None:
    with pytest.raises(ImplausibleValue, match="lithium: 11 mmol/L is outside"):
        get_analyte("lithium").status(11.0)
    with pytest.raises(ImplausibleValue, match="not a finite number"):
        get_analyte("crp").status(math.nan)


def test_lithium_records_that_its_cutoffs_assume_a_12_hour_trough() -> None:
    assert "12 h" in get_analyte("lithium").sampling


# --------------------------------------------------------------------------- lookup


@pytest.mark.parametrize(
    ("name", "analyte_id"),
    [
        ("crp", "crp"),
        ("CRP", "crp"),
        ("C-reactive protein", "crp"),
        ("1988-5", "crp"),
        ("hs-CRP", "hs_crp"),
        ("hs_crp", "hs_crp"),
        ("hsCRP", "hs_crp"),
        ("30522-7", "hs_crp"),
        ("IL-6", "il6"),
        ("interleukin 6", "il6"),
        ("26881-3", "il6"),
        ("Lithium", "lithium"),
        ("Li", "lithium"),
        ("14334-7", "lithium"),
        ("Valproic acid", "valproate"),
        ("VPA", "valproate"),
        ("4086-5", "valproate"),
        (" clozapine ", "clozapine"),
        ("6896-5", "clozapine"),
    ],
)
def test_lookup_by_id_name_alias_or_loinc_is_case_insensitive(name: str, analyte_id: str) -> None:
    assert get_analyte(name).id == analyte_id


def test_an_unknown_analyte_lists_the_accepted_ids() -> None:
    with pytest.raises(UnknownAnalyte) as caught:
        get_analyte("ferritin")
    message = str(caught.value)
    assert message.startswith("unknown analyte 'ferritin'; accepted: ")
    for analyte_id in ANALYTES:
        assert analyte_id in message
    assert isinstance(caught.value, ValueError)


def test_an_unknown_analyte_message_stays_short() -> None:
    with pytest.raises(UnknownAnalyte) as caught:
        get_analyte("y" * 5000)
    assert len(str(caught.value)) < 300


def test_analyte_for_loinc_finds_tracked_codes_only() -> None:
    for analyte in ANALYTES.values():
        for code in analyte.loinc_codes:
            assert analyte_for_loinc(code) is analyte
    assert analyte_for_loinc("2345-7") is None  # glucose
    assert analyte_for_loinc("lithium") is None  # a name is not a code


# --------------------------------------------------------------------------- pickling


@pytest.mark.parametrize("analyte", list(ANALYTES.values()), ids=list(ANALYTES))
def test_analytes_pickle_and_still_work(analyte: Analyte) -> None:
    copy = pickle.loads(pickle.dumps(analyte))
    assert copy == analyte
    assert hash(copy) == hash(analyte)
    unit = analyte.accepted_units[-1]
    assert copy.to_canonical(1.0, unit) == analyte.to_canonical(1.0, unit)
    assert copy.status(analyte.plausible_low) == analyte.status(analyte.plausible_low)


def test_status_and_errors_pickle() -> None:
    status = AnalyteStatus("toxic", "urgent", "> 1.5 mmol/L")
    assert pickle.loads(pickle.dumps(status)) == status
    for error in (UnitError("x: unit"), UnknownAnalyte("unknown"), ImplausibleValue("x: 1")):
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error) and str(copy) == str(error)


# --------------------------------------------------------------------------- properties


def _unit_cases() -> list[tuple[Analyte, str, float]]:
    return [
        (analyte, unit, factor)
        for analyte in ANALYTES.values()
        for unit, factor in analyte.conversions
    ]


@given(case=st.sampled_from(_unit_cases()), fraction=st.floats(0.0, 1.0))
def test_conversion_round_trips_over_the_plausible_range(
    case: tuple[Analyte, str, float], fraction: float
) -> None:
    analyte, unit, factor = case
    canonical = analyte.plausible_low + fraction * (analyte.plausible_high - analyte.plausible_low)
    supplied = canonical / factor
    back = analyte.to_canonical(supplied, unit)
    assert math.isclose(back, canonical, rel_tol=1e-9, abs_tol=1e-8)


@given(analyte=st.sampled_from(list(ANALYTES.values())), data=st.data())
def test_any_finite_plausible_value_converts_and_has_a_status(
    analyte: Analyte, data: st.DataObject
) -> None:
    value = data.draw(st.floats(analyte.plausible_low, analyte.plausible_high))
    assert analyte.to_canonical(value, analyte.unit) == value
    status = analyte.status(value)
    assert (status is not None) == analyte.has_cutoffs


@given(analyte=st.sampled_from(list(ANALYTES.values())), data=st.data())
def test_any_value_outside_the_plausible_range_is_rejected(
    analyte: Analyte, data: st.DataObject
) -> None:
    value = data.draw(
        st.floats(max_value=analyte.plausible_low, exclude_max=True)
        | st.floats(min_value=analyte.plausible_high, exclude_min=True)
    )
    with pytest.raises(ImplausibleValue, match=f"^{re.escape(analyte.name)}: "):
        analyte.to_canonical(value, analyte.unit)
