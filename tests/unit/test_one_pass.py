"""The one pass of ``decode`` accepts nothing the event models refuse, and returns what they do.

:mod:`schemas.one_pass` checks a clinical score in fewer Python calls (the
pseudonym as a pattern in pydantic-core, the other checks merged, a usual
instrument's items in pydantic-core). Every record it refuses goes to the
full path, so what matters is: whatever it accepts, the models accept too,
with the same event (fields, their order, the fields set, the JSON); and
``decode`` judges every record, valid or not, as the full path does.
"""

from __future__ import annotations

import json
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from schemas import one_pass
from schemas.dispatch import decode
from schemas.events import AnyEvent, ClinicalScore
from schemas.examples import EXAMPLE_PATIENT, envelope_fields
from schemas.instruments import INSTRUMENTS, Instrument
from schemas.one_pass import SCORE_CHECKS_MERGED, validator_for
from schemas.topics import CLINICAL_SCORES, INPUT_TOPICS, KINDS_BY_TOPIC, topic_for_kind
from tests.factories import (
    T0,
    assert_decoded_as_by_full_path,
    assert_same_event,
    decoded_by_full_path,
    make_examples,
)

_MODELS: TypeAdapter[Any] = TypeAdapter(AnyEvent)
#: A topic psymon does not know: every raw kind is accepted there (the union's validator).
_ELSEWHERE = "psymon.elsewhere.v1"


def test_scores_are_checked_in_one_call() -> None:
    assert SCORE_CHECKS_MERGED  # else ClinicalScore gained a check: teach schemas.one_pass


# --------------------------------------------------------------------------- records

_ABSENT = object()


def _mostly(usual: list[Any], others: list[Any]) -> st.SearchStrategy[Any]:
    """One of ``usual`` 19 times in 20, else one of ``others``: a record is often all valid."""
    return st.sampled_from(usual * (19 * len(others)) + others * len(usual))


_PATIENTS = _mostly(
    [EXAMPLE_PATIENT],
    [
        EXAMPLE_PATIENT.upper(),
        EXAMPLE_PATIENT + "\n",
        EXAMPLE_PATIENT[:-1],
        EXAMPLE_PATIENT + "0",
        " " + EXAMPLE_PATIENT,
        "p-" + "\u0663" * 24,  # Arabic-Indic digits
        "MRN-0042",
        42,
        None,
    ],
)
_OBSERVED = _mostly(
    [
        "2026-03-02T09:00:00Z",
        "2026-03-02T11:00:00.250+02:00",
        "0001-01-02T12:00:00Z",
        "1970-01-01T00:00:00Z",
        "2026-03-02T09:00:00.000001-09:30",
    ],
    [
        "2026-03-02T09:00:00",  # no offset
        "2026-03-04T09:00:00Z",  # more than a day after received_at
        "0001-01-01T00:30:00+01:00",  # no UTC equivalent
        "1969-12-31T23:59:59Z",
        "1970-01-01T00:30:00+01:00",  # 1969 in UTC
        "9999-12-31T23:30:00-01:00",
        "not a time",
    ],
)
_RECEIVED = _mostly(
    ["2026-03-02T09:05:00Z", "2026-03-02T14:50:00+05:45"],
    [
        "2026-03-02T09:05:00",
        "9999-12-31T23:59:59Z",
        "0001-01-01T00:30:00+01:00",
        "2026-03-05T09:00:00Z",  # after the receiver's clock by more than a day
    ],
)
_INSTRUMENT_NAMES = _mostly(["id", "id", "name", "upper", " padded "], ["unknown", 9])
_RATERS = _mostly(["self", "clinician"], ["other"])
_VALUES = st.one_of(
    st.integers(-2, 9), st.booleans(), st.floats(-1, 8), st.sampled_from(["2", None])
)


@st.composite
def _items(draw: st.DrawFn, instrument: Instrument) -> Any:
    """The items as JSON text: usually valid, else missing, extra, repeated or odd values."""
    choice = draw(_mostly(["valid", "valid", "valid", "none", "absent"], ["odd"]))
    if choice == "absent":
        return _ABSENT
    if choice == "none":
        return "null"
    pairs = [
        (item.key, draw(st.integers(item.low, item.high)))
        for item in draw(st.permutations(instrument.items))
    ]
    if choice == "odd":
        edits = draw(st.lists(st.sampled_from(["drop", "extra", "value", "repeat"]), max_size=3))
        for edit in edits:
            where = draw(st.integers(0, len(pairs)))
            if edit == "drop" and pairs:
                del pairs[min(where, len(pairs) - 1)]
            elif edit == "extra":
                pairs.insert(where, (draw(st.sampled_from(["x", "99", "P1", "1"])), 1))
            elif edit == "value" and pairs:
                key, _ = pairs[min(where, len(pairs) - 1)]
                pairs[min(where, len(pairs) - 1)] = (key, draw(_VALUES))
            elif edit == "repeat" and pairs:  # a repeated key: the last value counts
                key, _ = pairs[min(where, len(pairs) - 1)]
                pairs.insert(where, (key, draw(_VALUES)))
    return "{" + ",".join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in pairs) + "}"


@st.composite
def _score_records(draw: st.DrawFn) -> bytes:
    """A clinical-score record, usually valid, with any of the ways one can be wrong."""
    instrument = draw(st.sampled_from(sorted(INSTRUMENTS.values(), key=lambda i: i.id)))
    document: dict[str, Any] = {
        "event_id": draw(_mostly(["4f8e7a55-8a43-4d1c-9e9f-2b7c0a1d3e5f"], ["nope"])),
        "patient_id": draw(_PATIENTS),
        "observed_at": draw(_OBSERVED),
        "received_at": draw(_RECEIVED),
        "source": draw(_mostly([{"system": "ehr"}, {"system": " ehr "}], [{"system": " "}, {}])),
        "kind": draw(_mostly(["clinical_score"], ["lab_result", _ABSENT])),
        "rater": draw(_RATERS),
        "time_zone": draw(_mostly([_ABSENT, None, "Europe/Berlin"], ["Mars/Olympus"])),
        "version": draw(_mostly([_ABSENT, None, "2", " v2 "], [" ", ""])),
        "extra": draw(_mostly([_ABSENT], ["field"])),
    }
    name = draw(_INSTRUMENT_NAMES)
    document["instrument"] = {
        "id": instrument.id,
        "name": instrument.name,
        "upper": instrument.id.upper(),
        " padded ": f" {instrument.id} ",
    }.get(name, "unknown" if name == "unknown" else name)
    items = draw(_items(instrument))
    text = json.dumps({k: v for k, v in document.items() if v is not _ABSENT})
    if items is not _ABSENT:
        text = text[:-1] + f', "items": {items}}}'
    total = draw(_mostly(["absent", "sum", "sum", "null"], ["wrong", "low", "text"]))
    if total != "absent":
        given = {"wrong": "999", "low": "-1", "null": "null", "text": '"3"'}.get(total)
        if given is None:  # the sum of the items, where they are valid
            try:
                parsed = json.loads(items) if isinstance(items, str) else None
                given = str(sum(parsed.values())) if isinstance(parsed, dict) else "5"
            except TypeError:
                given = "5"
        text = text[:-1] + f', "total": {given}}}'
    return text.encode()


@settings(max_examples=600, deadline=None)
@given(_score_records(), st.sampled_from([CLINICAL_SCORES, _ELSEWHERE]))
def test_decode_judges_every_score_record_as_the_full_path(raw: bytes, topic: str) -> None:
    assert_decoded_as_by_full_path(raw, topic)


@settings(max_examples=600, deadline=None)
@given(_score_records(), st.sampled_from([CLINICAL_SCORES, _ELSEWHERE]))
def test_what_the_one_pass_accepts_the_models_accept_alike(raw: bytes, topic: str) -> None:
    validator = validator_for(topic)
    assert validator is not None
    try:
        fast = validator.validate_json(raw)
    except ValidationError:
        return  # the full path decides
    assert_same_event(fast, _MODELS.validate_json(raw))


@pytest.mark.parametrize("instrument", sorted(INSTRUMENTS), ids=str)
@pytest.mark.parametrize("topic", [CLINICAL_SCORES, _ELSEWHERE])
def test_a_usual_score_passes_the_one_pass(instrument: str, topic: str) -> None:
    """The usual record (an instrument's id, valid items) is not left to the full path."""
    score = make_examples()["ClinicalScore"].model_copy(
        update={
            "instrument": instrument,
            "items": {item.key: item.high for item in INSTRUMENTS[instrument].items},
            "total": INSTRUMENTS[instrument].total_high,
        }
    )
    raw = score.model_dump_json().encode()
    validator = validator_for(topic)
    assert validator is not None
    expected = _MODELS.validate_json(raw)
    assert_same_event(validator.validate_json(raw), expected)
    uniform = len({(item.low, item.high) for item in INSTRUMENTS[instrument].items}) == 1
    if uniform:  # its items are checked in pydantic-core, without Python's walk
        broken = mock.patch.object(Instrument, "_all_items_valid", side_effect=AssertionError)
        with broken:
            assert_same_event(validator.validate_json(raw), expected)


@pytest.mark.parametrize("name", sorted(make_examples()))
def test_every_raw_kind_decodes_on_its_topic_as_the_full_path(name: str) -> None:
    event = make_examples()[name]
    if event.kind not in {kind for topic in INPUT_TOPICS for kind in KINDS_BY_TOPIC[topic]}:
        return
    document = json.loads(event.model_dump_json())
    without_kind = {k: v for k, v in document.items() if k != "kind"}
    for topic in {*INPUT_TOPICS, topic_for_kind(event.kind)}:
        for record in (document, without_kind):
            raw = json.dumps(record).encode()
            decoded = decode(raw, topic=topic, received_at=T0)
            expected = decoded_by_full_path(raw, topic)
            if decoded.kind == "dead_letter":
                assert decoded == expected
            else:
                assert_same_event(decoded, expected)


def test_output_topics_have_no_one_pass() -> None:
    for topic in KINDS_BY_TOPIC:
        assert (validator_for(topic) is None) == (topic not in INPUT_TOPICS)


# --------------------------------------------------------------------------- totals


@settings(max_examples=300, deadline=None)
@given(instrument=st.sampled_from(list(INSTRUMENTS.values())), data=st.data())
def test_the_total_of_valid_items_is_the_score(instrument: Instrument, data: st.DataObject) -> None:
    items = {item.key: data.draw(st.integers(item.low, item.high)) for item in instrument.items}
    total = data.draw(st.one_of(st.none(), st.integers(-1, 200), st.just(sum(items.values()))))

    def judged(score: Any) -> Any:
        try:
            return score(items, total)
        except ValueError as error:
            return str(error)

    assert judged(instrument.total_of_valid_items) == judged(instrument.score)


def _uniform(instrument: Instrument) -> bool:
    """Whether the items share one range (a score's items are then checked in pydantic-core)."""
    return len({(item.low, item.high) for item in instrument.items}) == 1


@settings(max_examples=300, deadline=None)
@given(
    instrument=st.sampled_from([i for i in INSTRUMENTS.values() if _uniform(i)]),
    data=st.data(),
)
def test_the_checks_of_valid_items_judge_as_the_scores_checks(
    instrument: Instrument, data: st.DataObject
) -> None:
    items = {item.key: data.draw(st.integers(item.low, item.high)) for item in instrument.items}
    summed = sum(items.values())
    total = data.draw(
        st.one_of(
            st.none(),
            st.just(summed),
            st.integers(instrument.total_low - 2, instrument.total_high + 2),
            st.integers(-(2**70), 2**70),
        )
    )

    def judged(checks: Any) -> Any:
        score = ClinicalScore(
            **envelope_fields(),
            instrument=instrument.id,
            rater=sorted(instrument.raters)[0],
            items=items,
        )
        # The total as pydantic-core hands it to the checks (not yet checked).
        object.__setattr__(score, "total", total)
        try:
            checked = checks(score)
        except ValueError as error:
            return type(error), str(error)
        return checked.model_dump()

    merged = judged(one_pass._valid_items_checks(instrument))
    assert merged == judged(one_pass._score_checks)


def test_the_items_check_is_kept_only_where_the_models_own_limits_hold() -> None:
    from pydantic_core import SchemaValidator, core_schema

    phq9 = INSTRUMENTS["phq9"]
    roomy = SchemaValidator(
        core_schema.dict_schema(core_schema.str_schema(max_length=8), core_schema.int_schema())
    )
    assert one_pass._models_accept_items(roomy, phq9, 0, 3)
    for too_tight in (
        core_schema.dict_schema(core_schema.str_schema(), core_schema.int_schema(), max_length=5),
        core_schema.dict_schema(core_schema.str_schema(max_length=0), core_schema.int_schema()),
        core_schema.dict_schema(core_schema.str_schema(), core_schema.int_schema(le=2)),
    ):
        assert not one_pass._models_accept_items(SchemaValidator(too_tight), phq9, 0, 3)


def test_a_pseudonym_schema_with_more_than_a_length_keeps_the_models_own_checks() -> None:
    union = dict(TypeAdapter(AnyEvent).core_schema)
    choice = union["choices"]["clinical_score"]
    one_pass._merged_score(choice)  # as it is: merged
    fields = one_pass._model(choice)["schema"]["fields"]
    pseudonym = fields["patient_id"]["schema"]
    stricter = {**pseudonym, "schema": {**pseudonym["schema"], "min_length": 30}}
    changed = one_pass._with_fields(
        choice, {**fields, "patient_id": {**fields["patient_id"], "schema": stricter}}
    )
    with pytest.raises(one_pass._Unexpected):
        one_pass._merged_score(changed)
