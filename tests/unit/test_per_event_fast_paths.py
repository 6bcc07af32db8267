"""The per-event fast paths decide exactly as the general code they stand in for.

Issue 10 cut per-event CPU in validation and in the core with shortcuts that
skip work when it cannot change the answer: time comparisons without UTC
conversion, catalogue lookups without name folding, item checks without
building messages, rule states copied only where the event can change them,
validated readings not converted again. Each test here runs the shortcut and
the general path on the same inputs and requires the same result (or the same
error); the identity of whole outputs is kept by
``tests/integration/test_replay_equals_live.py`` and the core's own tests.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from unittest import mock
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from schemas.dispatch import _lenient_json, decode, decode_document, loads
from schemas.envelope import utc, utc_before, utc_difference
from schemas.events import ClinicalOutcome, LabResult, WearableUpload
from schemas.examples import envelope_fields
from schemas.instruments import INSTRUMENTS, ScoreError, get_instrument
from schemas.instruments.model import Instrument
from schemas.topics import CLINICAL_OUTCOMES, LAB_RESULTS
from schemas.wearables import METRICS, get_metric
from services.store.tables import _ITEM_KEYS, _items_json, _json
from streams import CoreConfig, PatientState, process
from streams.state import RuleStates
from tests.factories import T0

_PARSED: TypeAdapter[datetime] = TypeAdapter(datetime)

# --------------------------------------------------------------------------- time order

_ZONES = st.sampled_from(
    [
        UTC,
        timezone(timedelta(hours=2)),
        timezone(timedelta(hours=-5, minutes=-30)),
        ZoneInfo("Europe/Berlin"),
        ZoneInfo("America/New_York"),
        ZoneInfo("Australia/Lord_Howe"),  # a 30-minute daylight-saving shift
        _PARSED.validate_json('"2026-01-01T00:00:00Z"').tzinfo,  # pydantic's own
        _PARSED.validate_json('"2026-01-01T00:00:00+05:45"').tzinfo,
    ]
)
_MOMENTS = st.builds(
    lambda naive, zone, fold: naive.replace(tzinfo=zone, fold=fold),
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59)),
    _ZONES,
    st.sampled_from([0, 1]),
)


def _outcome(function: Any, *args: datetime) -> Any:
    try:
        return function(*args)
    except OverflowError as error:
        return ("OverflowError", str(error))


@settings(max_examples=400, deadline=None)
@given(first=_MOMENTS, second=_MOMENTS, same_zone=st.booleans())
def test_time_order_is_utc_order(first: datetime, second: datetime, same_zone: bool) -> None:
    if same_zone:  # one tzinfo object: where Python compares wall times
        second = second.replace(tzinfo=first.tzinfo)
    assert _outcome(utc_before, first, second) == _outcome(
        lambda a, b: utc(a) < utc(b), first, second
    )
    assert _outcome(utc_difference, first, second) == _outcome(
        lambda a, b: utc(a) - utc(b), first, second
    )


@settings(max_examples=400, deadline=None)
@given(
    moment=st.one_of(
        _MOMENTS,
        st.builds(
            lambda naive, zone: naive.replace(tzinfo=zone),
            st.datetimes(min_value=datetime(1969, 12, 30), max_value=datetime(1971, 1, 2)),
            _ZONES,
        ),
    )
)
def test_the_earliest_observation_is_judged_in_utc(moment: datetime) -> None:
    """The envelope converts only times whose wall-clock year is 1970 or earlier."""
    try:
        before_1970 = utc(moment) < datetime(1970, 1, 1, tzinfo=UTC)
    except OverflowError:
        return  # refused by the field itself (test_a_record_at_the_edge_of_the_calendar_...)
    fields = envelope_fields(observed_at=moment, received_at=moment)
    try:
        ClinicalOutcome(**fields, outcome="relapse")
    except ValidationError as error:
        assert before_1970 and "is before 1970-01-01" in str(error)
    else:
        assert not before_1970


def test_a_fall_back_hour_in_one_zone_is_ordered_in_utc() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    first = datetime(2026, 10, 25, 2, 30, tzinfo=berlin)  # +02:00
    later = datetime(2026, 10, 25, 2, 0, fold=1, tzinfo=berlin)  # +01:00, 30 min after
    assert utc_before(first, later) and not utc_before(later, first)
    assert utc_difference(later, first) == timedelta(minutes=30)


def test_a_record_at_the_edge_of_the_calendar_is_refused_with_a_reason() -> None:
    """``utc()`` overflows in year 1 and 9999; the field refuses such a time first."""
    lab = json.loads(
        LabResult(**envelope_fields(), analyte="crp", value=0.45, unit="mg/L").model_dump_json()
    )
    lab["observed_at"] = "0001-01-01T00:30:00+01:00"
    with pytest.raises(ValidationError, match="once converted to UTC"):
        LabResult.model_validate(lab)


# --------------------------------------------------------------------------- catalogue lookups


def _folded_metric(name: str) -> str:
    from schemas.wearables import _BY_NAME, _key

    return _BY_NAME[_key(name)].id


def _folded_instrument(name: str) -> str:
    from schemas.instruments.catalogue import _BY_NAME, _normalise

    return _BY_NAME[_normalise(name)].id


def test_every_catalogue_spelling_finds_what_folding_finds() -> None:
    for metric in METRICS.values():
        for name in (metric.id, metric.name, *metric.aliases):
            for spelling in (name, name.upper(), f" {name} ", name.replace("_", "-")):
                assert get_metric(spelling).id == _folded_metric(spelling)
    for instrument in INSTRUMENTS.values():
        for name in (instrument.id, instrument.name, *instrument.aliases):
            for spelling in (name, name.upper(), name.replace("-", "_")):
                assert get_instrument(spelling).id == _folded_instrument(spelling)


# --------------------------------------------------------------------------- item checks


def _judged(instrument: Instrument, items: dict[Any, Any], total: Any) -> Any:
    try:
        return instrument.score(items, total)
    except ScoreError as error:
        return (str(error), error.items)


_ITEM_VALUES = st.one_of(
    st.integers(min_value=-2, max_value=9), st.booleans(), st.floats(-1, 8), st.none()
)


@settings(max_examples=300, deadline=None)
@given(
    instrument=st.sampled_from(list(INSTRUMENTS.values())),
    data=st.data(),
    total=st.one_of(st.none(), st.integers(-1, 200)),
)
def test_item_checks_judge_as_the_full_walk(
    instrument: Instrument, data: st.DataObject, total: int | None
) -> None:
    keys = [item.key for item in instrument.items]
    chosen = data.draw(st.lists(st.sampled_from([*keys, "x", "99"]), unique=True))
    items = {key: data.draw(_ITEM_VALUES) for key in chosen}
    if data.draw(st.booleans()):  # mostly complete, valid ratings: the fast path
        items = {item.key: data.draw(st.integers(item.low, item.high)) for item in instrument.items}
    fast = _judged(instrument, items, total)
    with mock.patch.object(Instrument, "_all_items_valid", return_value=False):
        assert _judged(instrument, items, total) == fast


# --------------------------------------------------------------------------- non-finite numbers


def _lab_with(field: str, literal: str) -> bytes:
    document = json.loads(
        LabResult(**envelope_fields(), analyte="crp", value=0.45, unit="mg/dL").model_dump_json()
    )
    document[field] = 1.25
    text = json.dumps(document).replace(f'"{field}": 1.25', f'"{field}": {literal}')
    return text.encode()


@pytest.mark.parametrize("literal", ["1e400", "-1e400"])
@pytest.mark.parametrize("field", ["reported_value", "value", "hours_since_dose"])
def test_a_number_too_big_for_a_float_is_refused_on_both_paths(field: str, literal: str) -> None:
    raw = _lab_with(field, literal)
    letter = decode(raw, topic=LAB_RESULTS, received_at=T0)
    full = decode_document(loads(raw), raw=raw, topic=LAB_RESULTS, received_at=T0)
    assert letter.kind == "dead_letter" and letter == full
    assert field in letter.reason


def test_an_infinite_reported_value_is_named_in_the_error() -> None:
    letter = decode(_lab_with("reported_value", "1e400"), topic=LAB_RESULTS, received_at=T0)
    assert letter.kind == "dead_letter"
    assert [error.field for error in letter.errors] == ["reported_value"]
    assert "finite number" in letter.errors[0].message
    with pytest.raises(ValidationError, match="reported_value must be a finite number"):
        LabResult(
            **envelope_fields(), analyte="crp", value=4.5, unit="mg/L", reported_value=float("nan")
        )


def test_an_infinite_medication_dose_is_refused() -> None:
    outcome = ClinicalOutcome(
        **envelope_fields(),
        outcome="medication_change",
        medication={"name": "lithium carbonate", "action": "start", "dose": 400, "dose_unit": "mg"},
    )
    raw = outcome.model_dump_json().replace('"dose":400.0', '"dose":1e400').encode()
    assert b"1e400" in raw
    letter = decode(raw, topic=CLINICAL_OUTCOMES, received_at=T0)
    assert letter.kind == "dead_letter"
    assert [error.field for error in letter.errors] == ["medication.dose"]


def _lenient_in_full(data: bytes) -> bool:
    """What :func:`schemas.dispatch._lenient_json` decides, by plain substring searches."""
    digits = data.translate(bytes.maketrans(b"0123456789", b"0" * 10))
    return b"NaN" in data or b"Infinity" in data or b"0" * 300 in digits


_FRAGMENTS = st.sampled_from(
    [b"N", b"Na", b"NaN", b"aN", b"I", b"Inf", b"Infinity", b"nfinity", b"7" * 150, b'"x":1', b" "]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(_FRAGMENTS, st.binary(max_size=8)), max_size=40).map(b"".join))
def test_records_the_parsers_may_disagree_on_are_found_as_in_full(data: bytes) -> None:
    assert _lenient_json(data) == _lenient_in_full(data)


# --------------------------------------------------------------------------- rule states


def test_clone_only_copies_the_named_rules_and_shares_the_others() -> None:
    rules = RuleStates()
    copied = rules.clone_only(frozenset({"bands", "relapse_risk"}))
    assert copied.bands is not rules.bands and copied.relapse_risk is not rules.relapse_risk
    assert copied.deterioration is rules.deterioration and copied.lithium is rules.lithium
    assert copied == rules
    with pytest.raises(ValueError, match="no such rule state"):
        rules.clone_only(frozenset({"band"}))


def test_the_core_names_only_rules_that_exist() -> None:
    from streams import core

    named = core._SCORE_RULES | core._LAB_RULES | core._OUTCOME_RULES | core._DAY_RULES
    assert named <= {field for field in RuleStates.__dataclass_fields__}


def _clone_all(rules: RuleStates, names: frozenset[str]) -> RuleStates:
    return rules.clone()


def _history() -> list[Any]:
    """Wearable days open and closing, scores that alert, labs, an outcome: every rule family."""
    from services.simulator import simulate_cohort

    cohort = simulate_cohort(2, 21, seed=5, start=datetime(2026, 1, 5, tzinfo=UTC))
    return [event for event in cohort.events()]


def test_copying_some_rules_gives_what_copying_all_gives_and_leaves_the_input_alone() -> None:
    config = CoreConfig()
    events = _history()
    kinds = {event.kind for event in events}
    assert {"clinical_score", "lab_result", "wearable_upload"} <= kinds

    def run(clone_all: bool) -> list[tuple[str, list[str]]]:
        states: dict[str, PatientState] = {}
        trace = []
        for event in events:
            state = states.get(event.patient_id, PatientState())
            before = state.model_dump_json()
            if clone_all:
                with mock.patch.object(RuleStates, "clone_only", _clone_all):
                    new, outputs = process(state, event, config)
            else:
                new, outputs = process(state, event, config)
            assert state.model_dump_json() == before  # the given state is never changed
            states[event.patient_id] = new
            trace.append((new.model_dump_json(), [o.model_dump_json() for o in outputs]))
        return trace

    assert run(clone_all=False) == run(clone_all=True)


# --------------------------------------------------------------------------- wearable readings


def test_readings_built_without_validation_are_still_converted() -> None:
    """The core skips converting canonical readings, and only those."""
    upload = WearableUpload(
        **envelope_fields(observed_at=T0),
        window_end=T0 + timedelta(minutes=2),
        readings=[
            {
                "event_id": envelope_fields()["event_id"],
                "metric": "sleep",
                "value": 0.5,
                "unit": "h",
                "start": T0,
                "end": T0 + timedelta(minutes=1),
            }
        ],
    )
    assert upload.readings[0].unit == "min" and upload.readings[0].value == 30.0
    raw_reading = upload.readings[0].model_copy(update={"value": 0.5, "unit": "h"})
    unvalidated = upload.model_copy(update={"readings": (raw_reading,)})
    config = CoreConfig()
    validated_state, _ = process(PatientState(), upload, config)
    rebuilt_state, _ = process(PatientState(), unvalidated, config)
    assert rebuilt_state.model_dump_json() == validated_state.model_dump_json()


# --------------------------------------------------------------------------- store rows


@pytest.mark.parametrize(
    "value",
    [
        {"1": 2, "9": 0},
        {"ratio": 0.1 + 0.2, "note": 'Müller "quoted"\n', "flag": True, "none": None},
        [{"feature": "sleep", "value": 1e-7}],
    ],
)
def test_row_json_is_what_json_dumps_writes(value: Any) -> None:
    assert _json(value) == json.dumps(value, separators=(",", ":"))


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.one_of(st.sampled_from(sorted(_ITEM_KEYS)), st.text(max_size=4)),
        st.one_of(st.integers(), st.integers(-(2**80), 2**80), st.booleans(), st.floats()),
        max_size=20,
    )
)
def test_score_items_json_is_what_json_dumps_writes(items: dict[str, Any]) -> None:
    assert _items_json(items) == json.dumps(items, separators=(",", ":"))


def test_item_keys_need_no_escapes() -> None:
    assert all(json.dumps(key) == f'"{key}"' and key.isascii() for key in _ITEM_KEYS)
    assert _items_json(None) is None
