"""The core's per-event shortcuts of the third pass decide as the general code does.

Issue 10 (figure 4) cut the core's CPU per wearable upload: the day rules,
the risk features and the feature and zone histories are copied only when a
day closes (copy-on-write), a sample after the end of its stream's counted
time is not looked up in it, a day's bounds are cached, and the event memory
finds its oldest id without a key function. Each test runs the shortcut and
the general path on the same inputs and requires the same result;
``tests/integration/test_replay_equals_live.py`` keeps whole outputs identical.
"""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime
from typing import Any
from unittest import mock
from uuid import UUID

from hypothesis import given, settings
from hypothesis import strategies as st

from services.simulator import simulate_cohort
from streams import CoreConfig, PatientState, process
from streams.dedup import EventMemory, SampleCoverage, short_id
from streams.timezones import day_bounds
from streams.wearable_days import Sample, WearableDays

# --------------------------------------------------------------------------- event memory


def _remember_by_key(ids: dict[int, int], event_id: UUID, at: int, capacity: int) -> None:
    """What ``EventMemory.remember`` did before: the oldest found by a key function."""
    ids[short_id(event_id)] = at
    while len(ids) > capacity:
        oldest = min(ids.items(), key=lambda item: (item[1], item[0]))
        del ids[oldest[0]]


@settings(max_examples=300, deadline=None)
@given(
    arrivals=st.lists(
        st.tuples(st.integers(0, 40), st.integers(-3, 3)), max_size=60
    ),  # few ids and times: repeats and ties
    capacity=st.integers(1, 6),
)
def test_the_event_memory_forgets_the_oldest_by_time_then_id(
    arrivals: list[tuple[int, int]], capacity: int
) -> None:
    memory, general = EventMemory(), dict[int, int]()
    for number, at in arrivals:
        event_id = UUID(int=(number << 64) | 7)
        memory.remember(event_id, at, capacity)
        _remember_by_key(general, event_id, at, capacity)
        assert list(memory.ids.items()) == list(general.items())  # the same JSON form


# --------------------------------------------------------------------------- counted time


_INTERVALS = st.lists(st.tuples(st.integers(0, 400), st.integers(0, 40)), max_size=12)


@settings(max_examples=300, deadline=None)
@given(intervals=_INTERVALS, start=st.integers(-5, 500), length=st.integers(0, 40))
def test_nothing_from_the_end_of_the_counted_time_on_is_covered(
    intervals: list[tuple[int, int]], start: int, length: int
) -> None:
    coverage = SampleCoverage()
    for first, duration in intervals:
        coverage.add("watch|steps", first, first + duration, limit=4)
    until = coverage.counted_until("watch|steps")
    if until is None:
        assert not coverage.spans
    else:
        assert until == max(coverage.spans["watch|steps"])
        if start >= until:
            assert not coverage.covers("watch|steps", start, start + length)


_T = int(datetime(2026, 3, 28, 18, tzinfo=UTC).timestamp())  # the night Berlin springs forward
_SAMPLES = st.lists(
    st.tuples(
        st.sampled_from(["steps", "heart_rate", "sleep"]),
        st.integers(0, 24 * 60),  # minute after _T
        st.sampled_from([0, 1, 5, 15, 60]),  # minutes long
        st.sampled_from(["Europe/Berlin", "+05:30"]),
    ),
    max_size=12,
)


def _delivery(rows: list[tuple[str, int, int, str]]) -> list[Sample]:
    values = {"steps": 40.0, "heart_rate": 61.0, "sleep": 1.0}
    return [
        (metric, values[metric], _T + minute * 60, _T + (minute + minutes) * 60, key)
        for metric, minute, minutes, key in rows
    ]


def _always_asked(coverage: SampleCoverage, stream: str) -> int:
    """The general path: every sample's coverage looked up."""
    return sys.maxsize


@settings(max_examples=200, deadline=None)
@given(deliveries=st.lists(_SAMPLES, min_size=1, max_size=5))
def test_adding_samples_without_looking_up_new_time_counts_as_looking_it_up(
    deliveries: list[list[tuple[str, int, int, str]]],
) -> None:
    """Re-sent and overlapping deliveries count the same duplicates either way."""
    config = CoreConfig()

    def run(general: bool) -> tuple[list[Any], WearableDays]:
        days, results = WearableDays(), []
        for rows in deliveries:
            if general:
                with mock.patch.object(SampleCoverage, "counted_until", _always_asked):
                    results.append(days.add(_delivery(rows), "sim|watch", config))
            else:
                results.append(days.add(_delivery(rows), "sim|watch", config))
        return results, days

    fast, general = run(general=False), run(general=True)
    assert fast == general


# --------------------------------------------------------------------------- day bounds


_KEYS = st.sampled_from(
    ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "+00:00", "-03:30"]
)


@settings(max_examples=300, deadline=None)
@given(day=st.dates(date(1990, 1, 1), date(2060, 12, 31)), start_key=_KEYS, end_key=_KEYS)
def test_cached_day_bounds_are_the_computed_ones(day: date, start_key: str, end_key: str) -> None:
    assert day_bounds(day, start_key, end_key) == day_bounds.__wrapped__(day, start_key, end_key)


# --------------------------------------------------------------------------- copy-on-write


def _history() -> list[Any]:
    """Two patients' uploads (re-sent and late ones too), scores, labs: days close often."""
    cohort = simulate_cohort(2, 21, seed=5, start=datetime(2026, 1, 5, tzinfo=UTC))
    return list(cohort.events())


_COPY = PatientState.copy
_CLONE = WearableDays.clone


def _copy_everything(state: PatientState, **_: object) -> PatientState:
    return _COPY(
        state,
        events=True,
        uploads=True,
        order=True,
        courses=True,
        labs=True,
        wearable=True,
        rules=True,
        risk=True,
        strata=True,
    )


def _clone_everything(days: WearableDays) -> WearableDays:
    twin = _CLONE(days)
    twin.history, twin.zones = days.history.clone(), days.zones.clone()
    twin.open = {day: totals.clone() for day, totals in days.open.items()}
    twin.seen = SampleCoverage({stream: list(spans) for stream, spans in days.seen.spans.items()})
    return twin


def test_sharing_what_an_event_does_not_change_gives_what_copying_everything_gives() -> None:
    config = CoreConfig()
    events = _history()
    assert {"clinical_score", "lab_result", "wearable_upload"} <= {e.kind for e in events}

    def run(share: bool) -> tuple[list[tuple[bytes, list[str]]], dict[str, int]]:
        states: dict[str, PatientState] = {}
        trace: list[tuple[bytes, list[str]]] = []
        kept: list[tuple[PatientState, bytes]] = []
        shared = {"no day closed, rules shared": 0, "a day closed, rules copied": 0}
        for event in events:
            state = states.get(event.patient_id, PatientState())
            if share:
                new, outputs = process(state, event, config)
            else:
                with (
                    mock.patch.object(PatientState, "copy", _copy_everything),
                    mock.patch.object(WearableDays, "clone", _clone_everything),
                ):
                    new, outputs = process(state, event, config)
            applied = new.counters.duplicates == state.counters.duplicates
            if event.kind == "wearable_upload" and applied:
                same = new.rules.sleep_loss is state.rules.sleep_loss
                assert same is (new.risk is state.risk)
                if new.wearable.history is state.wearable.history:
                    assert same  # a day that closed copied the histories first
                shared["no day closed, rules shared" if same else "a day closed, rules copied"] += 1
            states[event.patient_id] = new
            encoded = new.json_bytes()
            kept.append((new, encoded))
            trace.append((encoded, [o.model_dump_json() for o in outputs]))
        # No later event changed an earlier state through a part they share.
        assert all(state.json_bytes() == encoded for state, encoded in kept)
        return trace, shared

    fast, shared = run(share=True)
    general, copied = run(share=False)
    assert fast == general
    assert all(shared.values()), shared  # both paths were taken
    assert copied["no day closed, rules shared"] == 0
