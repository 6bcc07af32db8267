"""The writer's rows are the rows the table specs define, however they are built.

The writer builds an upload's sample rows straight from its readings
(:func:`services.store.writer.rows_of`) instead of through a ``WearableSample``
per reading, and a score's items column from its payload; what it stores must
not change: same values, same payload text.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from schemas.envelope import Source, utc
from schemas.events import ClinicalScore, WearableUpload
from schemas.examples import EXAMPLE_KEY, envelope_fields
from schemas.identity import event_id_for, pseudonymise
from schemas.instruments import INSTRUMENTS
from services.simulator import simulate_cohort
from services.store.rollups import ROLLUPS
from services.store.tables import (
    CLINICAL_SCORES,
    DEAD_LETTERS,
    TABLES,
    Row,
    _envelope,
    _json,
    stored_events,
    table_for,
)
from services.store.writer import _Batch, _month, _Reading, _refused, _Spans, rows_of

BERLIN_SUMMER = timezone(timedelta(hours=2))


def _upload(start: datetime, minutes: int, *, time_zone: str | None = None) -> WearableUpload:
    patient = pseudonymise("rows-test", EXAMPLE_KEY, system="tests")
    readings = [
        {
            "event_id": event_id_for("rows-test", str(start), str(i)),
            "metric": ("heart_rate", "steps", "sleep", "hrv_rmssd")[i % 4],
            "value": (72, 120, 0.5, 0.042)[i % 4],
            "unit": ("bpm", "count", "h", "s")[i % 4],  # converted to canonical units
            "start": start + timedelta(minutes=i),
            "end": start + timedelta(minutes=i + 1),
        }
        for i in range(minutes)
    ]
    return WearableUpload(
        event_id=event_id_for("rows-test", str(start)),
        patient_id=patient,
        observed_at=start,
        received_at=start + timedelta(minutes=minutes, seconds=30),
        source=Source(system="tests", device="watch-\u00e9"),
        time_zone=time_zone,
        window_end=start + timedelta(minutes=minutes),
        readings=readings,
    )


def _uploads() -> list[WearableUpload]:
    simulated = simulate_cohort(3, 2, seed=5, start=datetime(2026, 1, 30, tzinfo=UTC))
    return [
        *(e for e in simulated.events() if isinstance(e, WearableUpload)),
        _upload(datetime(2026, 3, 29, 23, 50, tzinfo=BERLIN_SUMMER), 30),
        _upload(datetime(2026, 4, 30, 23, 45, 0, 250_000, tzinfo=UTC), 40, time_zone="Asia/Tokyo"),
    ]


def test_upload_rows_equal_the_rows_of_the_table_specs() -> None:
    for upload in _uploads():
        fast = rows_of(upload)
        assert [row for _, row in fast] == [row for _, row in stored_events(upload)]


def test_sample_payloads_are_the_samples_json_byte_for_byte() -> None:
    for upload in _uploads():
        payloads = [row[-1] for _, row in rows_of(upload)[1:]]
        expected = [sample.model_dump_json() for sample in upload.samples()]
        assert payloads == expected


def test_a_sample_row_knows_the_event_it_stands_for() -> None:
    upload = _uploads()[-1]
    origin, row = rows_of(upload)[7]
    assert origin == (upload, 6)
    assert row[0] == upload.readings[6].event_id


def test_spans_note_every_month_and_each_patients_first_and_last_observation() -> None:
    spans = _Spans()
    crossing = _uploads()[-1]  # 30 April 23:45 UTC to 1 May 00:25 UTC
    spans.add_upload(crossing)
    score = ClinicalScore(
        **envelope_fields(observed_at=datetime(2026, 2, 27, 9, tzinfo=UTC)),
        instrument="phq9",
        rater="self",
        total=3,
    )
    spans.note(score.patient_id, score.observed_at, score.received_at)
    assert spans.months == {(2026, 4), (2026, 5), (2026, 2)}
    first, last, received = spans.patients[crossing.patient_id]
    rows = [row for _, row in rows_of(crossing)]
    assert first == min(row[2] for row in rows)
    assert last == max(row[2] for row in rows)
    assert received == crossing.received_at


def test_rollup_partials_group_by_utc_day_and_keep_the_latest_value() -> None:
    rollup = ROLLUPS["lab_results"]
    columns = ("patient_id", "observed_at", "received_at", "analyte", "value", "unit")
    late_evening = datetime(2026, 3, 1, 23, 30, tzinfo=UTC)
    rows = [
        ("p1", late_evening, late_evening, "crp", 2.0, "mg/L"),
        # 00:15 in Berlin on 2 March is still 1 March in UTC
        (
            "p1",
            datetime(2026, 3, 2, 0, 15, tzinfo=timezone(timedelta(hours=1))),
            late_evening,
            "crp",
            5.0,
            "mg/L",
        ),
        # same time as the first, received later: the latest of the two
        ("p1", late_evening, late_evening + timedelta(minutes=1), "crp", 3.0, "mg/L"),
        # same time and arrival as the first: not later than the latest, so not "last"
        ("p1", late_evening, late_evening, "crp", 9.0, "mg/L"),
        ("p1", datetime(2026, 3, 2, 0, 0, tzinfo=UTC), late_evening, "crp", 1.0, "mg/L"),
        ("p1", late_evening, late_evening, "crp", 4.0, "g/L"),
    ]
    partials = list(zip(*rollup.partials(columns, rows), strict=True))
    march_1, march_2 = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC)
    assert partials == [
        (
            "p1",
            "crp",
            march_1,
            "mg/L",
            4,
            19.0,
            2.0,
            9.0,
            3.0,
            late_evening,
            late_evening + timedelta(minutes=1),
        ),
        ("p1", "crp", march_2, "mg/L", 1, 1.0, 1.0, 1.0, 1.0, rows[4][1], late_evening),
        ("p1", "crp", march_1, "g/L", 1, 4.0, 4.0, 4.0, 4.0, late_evening, late_evening),
    ]


# --------------------------------------------------------------------------- score rows


def _score_row_in_full(score: ClinicalScore) -> Row:
    """A score's row built the general way: each JSON column encoded on its own."""
    return (
        *_envelope(score),
        score.instrument,
        score.version,
        score.rater,
        _json(score.items),
        score.total,
        score.model_dump_json(),
    )


_TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=12)
_OFFSETS = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=45)), timezone(timedelta(hours=-3))]
)


@st.composite
def _scores(draw: st.DrawFn) -> ClinicalScore:
    instrument = draw(st.sampled_from(sorted(INSTRUMENTS.values(), key=lambda i: i.id)))
    items = draw(
        st.one_of(
            st.none(),
            st.fixed_dictionaries(
                {item.key: st.integers(item.low, item.high) for item in instrument.items}
            ),
        )
    )
    total = (
        None
        if items is not None
        else draw(st.integers(instrument.total_low, instrument.total_high))
    )
    observed = draw(st.datetimes(datetime(2020, 1, 1), datetime(2030, 1, 1), timezones=_OFFSETS))
    source = Source(
        system=draw(_TEXT.filter(str.strip)), device=draw(st.sampled_from([None, 'w"atch']))
    )
    return ClinicalScore(
        **envelope_fields(
            observed_at=observed, received_at=observed + timedelta(minutes=5), source=source
        ),
        instrument=draw(st.sampled_from([instrument.id, instrument.name])),
        version=draw(st.one_of(st.none(), _TEXT.filter(str.strip))),
        rater=draw(st.sampled_from(sorted(instrument.raters))),
        items=items,
        total=total,
        time_zone=draw(st.sampled_from([None, "Europe/Berlin"])),
    )


@settings(max_examples=300, deadline=None)
@given(_scores())
def test_score_rows_equal_the_rows_built_in_full(score: ClinicalScore) -> None:
    row = CLINICAL_SCORES.row(score)
    assert row == _score_row_in_full(score)
    assert row[-1] == score.model_dump_json()


def _refused_both_ways(event: Any) -> None:
    """A refused row's dead letter, from the row alone, is the one made from the event."""
    spec = table_for(event)
    row = spec.row(event)
    error = ValueError("PostgreSQL cannot hold U+0000")
    assert _refused(spec, None, row, error) == _refused(spec, event, row, error)


def test_every_table_but_dead_letters_has_the_envelope_first_and_the_payload_last() -> None:
    for spec in TABLES:
        if spec is not DEAD_LETTERS:
            assert spec.columns[1] == "patient_id" and spec.columns[3] == "received_at"
            assert spec.columns[-1] == "payload"


def test_a_refused_rows_dead_letter_is_the_one_its_event_makes() -> None:
    simulated = simulate_cohort(3, 4, seed=5, start=datetime(2026, 1, 30, tzinfo=UTC))
    events = [e for e in simulated.events() if not isinstance(e, WearableUpload)]
    events += _uploads()[-1].samples()  # samples sent alone, on the samples' topic
    assert {e.kind for e in events} >= {"clinical_score", "wearable_sample", "lab_result"}
    for event in events:
        _refused_both_ways(event)


@settings(max_examples=100, deadline=None)
@given(_scores())
def test_a_refused_scores_dead_letter_is_the_one_the_score_makes(score: ClinicalScore) -> None:
    _refused_both_ways(score)


class _Rating(enum.IntEnum):
    TWO = 2


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.one_of(
            st.sampled_from(["1", "9", "P1", '"items":', ',"total":', "\u00e9", "x"]),
            st.text(max_size=4),
        ),
        st.one_of(
            st.integers(-5, 30), st.integers(-(2**80), 2**80), st.booleans(), st.just(_Rating.TWO)
        ),
        max_size=12,
    )
)
def test_score_rows_of_items_a_validated_score_cannot_hold_take_the_general_path(
    items: dict[str, Any],
) -> None:
    """Made without validation (``model_copy``), the items column is still ``json.dumps``'s."""
    score = ClinicalScore(**envelope_fields(), instrument="phq9", rater="self", total=5)
    odd = score.model_copy(update={"items": items})
    assert CLINICAL_SCORES.row(odd) == _score_row_in_full(odd)


# --------------------------------------------------------------------------- months


_ZONES = st.sampled_from(
    [
        UTC,
        timezone(timedelta(0)),
        timezone(timedelta(hours=2)),
        timezone(timedelta(hours=-9, minutes=-30)),
        ZoneInfo("Europe/London"),  # +00:00 in winter, +01:00 in summer
        ZoneInfo("Pacific/Kiritimati"),
        TypeAdapter(datetime).validate_json('"2026-01-01T00:00:00Z"').tzinfo,  # pydantic's
        TypeAdapter(datetime).validate_json('"2026-01-01T00:00:00-00:30"').tzinfo,
    ]
)


@settings(max_examples=400, deadline=None)
@given(
    st.builds(
        lambda naive, zone: naive.replace(tzinfo=zone),
        st.datetimes(datetime(1970, 1, 1), datetime(2100, 1, 1)),
        _ZONES,
    )
)
def test_a_rows_month_is_its_utc_month(moment: datetime) -> None:
    assert _month(moment) == (utc(moment).year, utc(moment).month)


_MOMENTS = st.builds(
    lambda naive, zone: naive.replace(tzinfo=zone),
    st.datetimes(datetime(1970, 1, 2), datetime(2100, 1, 1)),
    _ZONES,
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_MOMENTS, min_size=1, max_size=12))
def test_a_batch_notes_the_utc_month_of_every_event_whatever_its_zone(moments: list[Any]) -> None:
    """The spans ask a fixed zone's offset once; a zone that moves is asked every time."""
    spans = _Spans()
    for moment in moments:
        score = ClinicalScore.model_construct(
            **envelope_fields(observed_at=moment, received_at=moment),
            instrument="phq9",
            rater="self",
            total=3,
        )
        spans.note(score.patient_id, score.observed_at, score.received_at)
    assert spans.months == {(utc(m).year, utc(m).month) for m in moments}


@settings(max_examples=200, deadline=None)
@given(st.lists(_MOMENTS, min_size=1, max_size=12))
def test_rollup_partials_fall_on_the_utc_day_whatever_the_zone(moments: list[Any]) -> None:
    rollup = ROLLUPS["lab_results"]
    columns = ("patient_id", "observed_at", "received_at", "analyte", "value", "unit")
    rows = [("p1", moment, moment, "crp", 1.0, "mg/L") for moment in moments]
    arrays = rollup.partials(columns, rows)
    counted = dict(zip(arrays[2], arrays[4], strict=True))
    expected: dict[datetime, int] = {}
    for moment in moments:
        day = datetime.combine(utc(moment).date(), datetime.min.time(), UTC)
        expected[day] = expected.get(day, 0) + 1
    assert counted == expected


def test_an_error_of_the_copy_while_reading_is_not_a_failure_to_read() -> None:
    """The COPY's loop stopping on an error of its own closes the reading: not a failure of it."""
    batch = _Batch()
    reading = _Reading(iter(simulated_scores()), batch)
    with pytest.raises(ValueError):
        for _ in reading:
            raise ValueError("the database refused a row")
    assert not reading.failed

    def broken() -> Any:
        yield from simulated_scores()[:1]
        raise RuntimeError("decoding failed")

    reading = _Reading(broken(), _Batch())
    with pytest.raises(RuntimeError):
        for _ in reading:
            pass
    assert reading.failed


def simulated_scores() -> list[ClinicalScore]:
    return [
        ClinicalScore(
            **envelope_fields(event_id=event_id_for("reading", str(n))),
            instrument="phq9",
            rater="self",
            total=n,
        )
        for n in range(3)
    ]
