"""The wearable path's shortcuts of the fourth pass decide as the general code does.

Issue 10 (core CPU, fourth pass) cut the core's CPU per wearable upload again:
``WearableDays.add`` keeps what depends only on a sample's metric, zone or
start for the run of samples that share it, open days' totals and the
counted time's lists are copied on write, the end of a reading is its start
plus its span, a day's updates after the first are copies of it, and daily
steps' spread and the robust baselines skip ``statistics``' general code.
Each test runs a shortcut and a plain general version on the same inputs
and requires the same result, down to the state's JSON;
``tests/integration/test_replay_equals_live.py`` keeps whole outputs identical.
"""

from __future__ import annotations

import copy
import statistics
from bisect import bisect_right
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from typing import Any
from unittest import mock
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from streams import CoreConfig, PatientState, process
from streams import core as core_module
from streams.config import WearableConfig
from streams.dedup import SampleCoverage
from streams.outputs import _day_update, day_updates
from streams.robust import MAD_TO_SD, RobustBaseline
from streams.timezones import zone
from streams.wearable_days import Added, ClosedDay, Sample, WearableDays
from streams.wearable_features import FEATURES, DayTotals, spread_of_counts
from tests.unit.streams.core_history import upload

# --------------------------------------------------------------------------- the general path


def _cover_general(coverage: SampleCoverage, stream: str, start: int, end: int, limit: int) -> None:
    """``SampleCoverage.add`` as it was: the interval searched for and merged in place."""
    end = max(end, start + 1)
    spans = coverage.spans.get(stream)
    if spans is None:
        coverage.spans[stream] = [start, end]
        return
    i = bisect_right(spans, start) - 1
    i -= i % 2
    if i >= 0 and spans[i + 1] >= end:
        return
    lo = i if i >= 0 and spans[i + 1] >= start else i + 2
    hi, new_start, new_end = lo, start, end
    while hi < len(spans) and spans[hi] <= new_end:
        new_start, new_end = min(new_start, spans[hi]), max(new_end, spans[hi + 1])
        hi += 2
    spans[lo:hi] = [new_start, new_end]
    del spans[: max(0, len(spans) - 2 * limit)]


def _add_general(
    days: WearableDays, samples: list[Sample], stream: str, config: CoreConfig
) -> Added:
    """``WearableDays.add`` with nothing kept from one sample to the next."""
    shift = timedelta(hours=24 - config.wearable.sleep_window_start_hour)
    new = duplicates = 0
    late: dict[date, int] = {}
    newest: int | None = None
    here: set[tuple[str, int, int]] = set()
    spans: dict[str, tuple[int, int]] = {}
    for metric, value, start, end, key in samples:
        first, last = spans.get(metric, (start, max(end, start + 1)))
        spans[metric] = (min(first, start), max(last, end, start + 1))
        local = datetime.fromtimestamp(start, zone(key))
        if days.last_closed is not None and local.date() <= days.last_closed:
            late[local.date()] = late.get(local.date(), 0) + 1
            continue
        if metric == "sleep":
            day = (local + shift).date()
            middle = datetime.fromtimestamp((start + max(start, end)) // 2, zone(key))
            minute = (middle.date() - day).days * 1440 + middle.hour * 60 + middle.minute
        else:
            day, minute = local.date(), 0
        if (metric, start, end) in here or days.seen.covers(f"{stream}|{metric}", start, end):
            duplicates += 1
            continue
        here.add((metric, start, end))
        new += 1
        days.open.setdefault(day, DayTotals()).add(metric, value, start, key, minute)
        days._cover(start, end)
        newest = start if newest is None else max(newest, start)
    for metric, (first, last) in spans.items():
        _cover_general(
            days.seen, f"{stream}|{metric}", first, last, config.dedup.intervals_per_stream
        )
    return Added(new, duplicates, late, newest)


def _json(days: WearableDays) -> bytes:
    return TypeAdapter(WearableDays).dump_json(days)


# --------------------------------------------------------------------------- add


_T = int(datetime(2026, 3, 28, 6, tzinfo=UTC).timestamp())  # the day before Berlin springs forward
_METRICS = {"steps": 40.0, "heart_rate": 61.0, "sleep": 3.0, "hrv_rmssd": 41.5}
_ROWS = st.lists(
    st.tuples(
        st.sampled_from(sorted(_METRICS)),
        st.integers(0, 48 * 60),  # minute after _T
        st.sampled_from([0, 1, 5, 15, 60, 180]),  # minutes long
        st.sampled_from(["Europe/Berlin", "+05:30", "America/New_York"]),
        st.integers(0, 2),  # seconds off the minute
    ),
    max_size=16,
)


def _samples(rows: list[tuple[str, int, int, str, int]]) -> list[Sample]:
    return [
        (metric, _METRICS[metric], _T + minute * 60 + s, _T + (minute + minutes) * 60 + s, key)
        for metric, minute, minutes, key, s in rows
    ]


@settings(max_examples=300, deadline=None)
@given(
    deliveries=st.lists(st.tuples(_ROWS, st.booleans()), min_size=1, max_size=5),
    sleep_from=st.integers(0, 23),
    limit=st.sampled_from([16, 2048]),
)
def test_adding_runs_of_samples_counts_as_adding_each_alone(
    deliveries: list[tuple[list[tuple[str, int, int, str, int]], bool]],
    sleep_from: int,
    limit: int,
) -> None:
    """Runs, repeats, late samples, zone changes and sleep either side of its window."""
    config = CoreConfig(
        wearable={"sleep_window_start_hour": sleep_from}, dedup={"intervals_per_stream": limit}
    )
    fast, general = WearableDays(), WearableDays()
    for rows, close_first_day in deliveries:
        if close_first_day:  # samples of that day are late from now on
            fast.last_closed = general.last_closed = date(2026, 3, 28)
        before, before_json = fast, _json(fast)
        fast = fast.clone()
        assert fast.add(_samples(rows), "sim|watch", config) == _add_general(
            general, _samples(rows), "sim|watch", config
        )
        assert _json(fast) == _json(general)
        assert _json(before) == before_json  # the state cloned from is unchanged


# --------------------------------------------------------------------------- counted time


@settings(max_examples=300, deadline=None)
@given(
    intervals=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 40)), max_size=20),
    limit=st.integers(1, 4),
)
def test_counting_time_in_a_copy_counts_as_merging_in_place(
    intervals: list[tuple[int, int]], limit: int
) -> None:
    fast, general = SampleCoverage(), SampleCoverage()
    for start, length in intervals:
        before = fast
        frozen = copy.deepcopy(before.spans)
        fast = fast.clone()
        fast.add("watch|steps", start, start + length, limit)
        _cover_general(general, "watch|steps", start, start + length, limit)
        assert fast.spans == general.spans
        assert before.spans == frozen
    moment = intervals[len(intervals) // 2][0] if intervals else 0
    before, frozen = fast, copy.deepcopy(fast.spans)
    fast = fast.clone()
    fast.forget_before(moment)
    assert before.spans == frozen


# --------------------------------------------------------------------------- reading ends


_ZONES = st.one_of(
    st.just(UTC),
    st.builds(
        timezone,
        st.timedeltas(timedelta(hours=-23, minutes=-59), timedelta(hours=23, minutes=59)),
    ),
    st.builds(
        lambda s: TypeAdapter(datetime).validate_python(s).tzinfo,
        st.sampled_from(
            ["2026-01-01T00:00:00Z", "2026-01-01T00:00:00+05:30", "2026-01-01T00:00:00-03:00"]
        ),
    ),
)


@settings(max_examples=500, deadline=None)
@given(
    start=st.datetimes(datetime(1960, 1, 1), datetime(2300, 1, 1), timezones=_ZONES),
    span=st.one_of(
        st.timedeltas(timedelta(0), timedelta(days=3)),
        st.integers(0, 3 * 86_400).map(lambda s: timedelta(seconds=s)),
    ),
    end_zone=_ZONES,
)
def test_a_reading_ends_at_its_timestamps_second(
    start: datetime, span: timedelta, end_zone: tzinfo
) -> None:
    end = (start + span).astimezone(end_zone)
    second = int(start.timestamp())
    assert core_module._end_second(second, end, end - start) == int(end.timestamp())


_BERLIN = ZoneInfo("Europe/Berlin")
_FALL_BACK = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 Berlin twice: 00:30 and 01:30 UTC
_READING_ZONES = st.sampled_from(
    [UTC, timezone(timedelta(hours=1)), timezone(timedelta(hours=-5, minutes=-30)), _BERLIN]
)


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.integers(0, 180),  # minutes after _FALL_BACK - 1 h
            st.integers(0, 90),  # minutes long
            st.sampled_from([0, 1, 500_000]),  # microseconds
            _READING_ZONES,
            _READING_ZONES,
            st.booleans(),  # starts where the reading before ended (the same object)
        ),
        min_size=1,
        max_size=8,
    ),
)
def test_readings_give_the_samples_their_timestamps_give(
    rows: list[tuple[int, int, int, tzinfo, tzinfo, bool]],
) -> None:
    """Every reading's start and end second is ``int(timestamp())``: folds, zones, fractions."""
    readings: list[tuple[str, float, datetime, datetime]] = []
    for minute, length, micro, start_zone, end_zone, chained in rows:
        begin = _FALL_BACK + timedelta(minutes=minute - 60, microseconds=micro)
        begin = begin.astimezone(start_zone)
        if chained and readings:
            begin = readings[-1][3]
        finish = (begin.astimezone(UTC) + timedelta(minutes=length)).astimezone(end_zone)
        readings.append(("heart_rate", 60.0, begin, finish))
    # Steps in UTC first and last: the upload's window is then found in UTC.
    hours = timedelta(hours=1)
    first = ("steps", 1.0, _FALL_BACK - 2 * hours, _FALL_BACK - 2 * hours + timedelta(minutes=1))
    last = ("steps", 1.0, _FALL_BACK + 4 * hours - timedelta(minutes=1), _FALL_BACK + 4 * hours)
    sent = upload([first, *readings, last])
    seen: list[list[Sample]] = []
    add = WearableDays.add

    def recording(days: WearableDays, samples: list[Sample], *args: Any) -> Added:
        seen.append(list(samples))
        return add(days, samples, *args)

    with mock.patch.object(WearableDays, "add", recording):
        process(PatientState(), sent, CoreConfig())
    assert [(s[2], s[3]) for s in seen[0]] == [
        (int(r.start.timestamp()), int(r.end.timestamp())) for r in sent.readings
    ]


# --------------------------------------------------------------------------- day updates


_NUMBER = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-10_000, 10_000),
)


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(_NUMBER, min_size=len(FEATURES), max_size=len(FEATURES)),
    baselines=st.lists(_NUMBER, min_size=len(FEATURES), max_size=len(FEATURES)),
    deviations=st.lists(_NUMBER, min_size=len(FEATURES), max_size=len(FEATURES)),
    coverage=st.floats(0, 1),
)
def test_a_days_updates_copied_are_those_validated(
    values: list[Any], baselines: list[Any], deviations: list[Any], coverage: float
) -> None:
    start = datetime(2026, 3, 2, 9, tzinfo=UTC)
    cause = upload([("steps", 5.0, start, start + timedelta(minutes=1))])
    day = ClosedDay(
        date(2026, 3, 1),
        datetime(2026, 3, 2, tzinfo=UTC),
        True,
        coverage,
        None,
        dict(zip(FEATURES, values, strict=True)),
        dict(zip(FEATURES, baselines, strict=True)),
        dict(zip(FEATURES, deviations, strict=True)),
    )
    fast = day_updates(cause, day)

    def validated(feature: str) -> Any:
        from schemas.identity import event_id_for

        value, base, deviation = values_of(feature)
        return _day_update(
            cause,
            day,
            event_id_for(cause.patient_id, "wearable-day", feature, "2026-03-01"),
            feature,
            round(value, 4),
            None if base is None else round(base, 4),
            None if deviation is None else round(deviation, 4),
        )

    def values_of(feature: str) -> tuple[Any, Any, Any]:
        return day.values[feature], day.baselines[feature], day.deviations[feature]

    general = [validated(f) for f in FEATURES if day.values[f] is not None]
    assert [u.model_dump_json() for u in fast] == [u.model_dump_json() for u in general]
    assert [repr(u) for u in fast] == [repr(u) for u in general]  # == fails on NaN
    assert [u.model_fields_set for u in fast] == [u.model_fields_set for u in general]


# --------------------------------------------------------------------------- statistics


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.integers(0, 200_000).map(float),
            st.integers(-(2**70), 2**70).map(float),
            st.floats(allow_nan=False, allow_infinity=False),
        ),
        min_size=1,
        max_size=28,
    )
)
def test_the_spread_of_daily_steps_is_statistics_pstdev(values: list[float]) -> None:
    assert spread_of_counts(values) == statistics.pstdev(values)


@settings(max_examples=500, deadline=None)
@given(
    values=st.lists(
        st.one_of(st.none(), st.floats(-1e6, 1e6), st.integers(-1000, 1000)), max_size=28
    ),
    min_count=st.integers(0, 8),
)
def test_a_robust_baseline_is_the_median_and_mad_of_statistics(
    values: list[float | None], min_count: int
) -> None:
    present = [v for v in values if v is not None]
    base = RobustBaseline.of(values, min_count, min_scale=0.5)
    if len(present) < max(1, min_count):
        assert base is None
        return
    middle = statistics.median(present)
    mad = statistics.median(abs(v - middle) for v in present)
    assert base == RobustBaseline(middle, max(MAD_TO_SD * mad, 0.5), len(present))


def test_a_clone_shares_open_days_until_one_is_added_to() -> None:
    days, config = WearableDays(), CoreConfig()
    t = _T
    days.add([("steps", 10.0, t, t + 60, "+00:00")], "watch", config)
    days.add([("steps", 10.0, t + 86_400, t + 86_460, "+00:00")], "watch", config)
    twin = days.clone()
    assert all(twin.open[d] is days.open[d] for d in days.open)
    twin.add([("steps", 5.0, t + 120, t + 180, "+00:00")], "watch", config)
    first, second = sorted(days.open)
    assert twin.open[first] is not days.open[first]
    assert twin.open[second] is days.open[second]
    assert (days.open[first].steps, twin.open[first].steps) == (10, 15)
    assert WearableConfig().sleep_window_start_hour == 12  # the default the doctests use
