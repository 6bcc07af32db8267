"""Properties of ``process`` over generated histories (hypothesis).

* the same history in any arrival order within the lateness window gives the
  same final state and the same set of alerts;
* a duplicated event never changes them;
* ``process`` never mutates the state or the event it is given.

An arrival order is *within the lateness window* when every event arrives
before its family's watermark has passed it: a rating or lab result before
the newest of its family is more than the lateness past it, a wearable
upload before the day its earliest sample was taken in has closed. The
generator draws each event's arrival time between its own (latest) event
time and that deadline, and delivers events in order of arrival time.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams import CoreConfig, PatientState, process
from streams.config import OrderingConfig
from streams.outputs import InputEvent
from tests.unit.streams.core_history import (
    Reading,
    alert_set,
    lab,
    local,
    outcome,
    phq9,
    replay,
    upload,
)

CONFIG = CoreConfig(
    ordering=OrderingConfig(
        score_lateness_hours=48,
        lab_lateness_hours=48,
        outcome_lateness_hours=48,
        wearable_lateness_hours=12,
    )
)
LATENESS = {"score": 48.0, "lab": 48.0, "outcome": 48.0}
ZONES = ("Europe/Berlin", "America/New_York", "Asia/Kolkata")
FIRST_DAYS = (date(2026, 3, 27), date(2026, 10, 23), date(2026, 6, 1))


@dataclass(frozen=True)
class Timed:
    """An event with the window its arrival time may be drawn from."""

    event: InputEvent
    earliest: datetime
    deadline: datetime


def _day_uploads(day: date, zone: str, sleep: float, steps: float, hr: float) -> list[Timed]:
    """A day as three syncs: the night (23:00-07:00), the morning and the evening."""
    deadline = local(day, 24 + 12, zone)  # the day closes 12 hours after its midnight

    def span(hour: float, minutes: float) -> tuple[datetime, datetime]:
        return local(day, hour, zone), local(day, hour + minutes / 60, zone)

    night: list[Reading] = [("sleep", sleep / 8, *span(-1 + h, 60)) for h in range(8)]
    night += [("hrv_rmssd", 40.0 + h, *span(h, 5)) for h in range(0, 6, 2)]
    morning: list[Reading] = [("steps", steps / 8, *span(h, 60)) for h in range(7, 15)]
    morning += [("heart_rate", hr + h % 3, *span(h, 1)) for h in range(7, 15)]
    evening: list[Reading] = [("steps", steps / 8, *span(h, 60)) for h in range(15, 23)]
    evening += [("heart_rate", hr + h % 4, *span(h, 1)) for h in range(15, 23)]
    timed = []
    for part, readings in enumerate((night, morning, evening)):
        event = upload(readings, time_zone=zone, tag=str(part))
        first_day_end = local(day - timedelta(days=1), 36, zone) if part == 0 else deadline
        latest = max(r[2] for r in readings)
        timed.append(Timed(event, latest, first_day_end))
    return timed


@st.composite
def histories(draw: st.DrawFn) -> list[Timed]:
    zone = draw(st.sampled_from(ZONES))
    first = draw(st.sampled_from(FIRST_DAYS))
    n_days = draw(st.integers(2, 5))
    timed: list[Timed] = []
    for n in range(n_days):
        sleep = draw(st.floats(180, 540))
        steps = draw(st.floats(0, 16000))
        hr = draw(st.floats(50, 90))
        timed += _day_uploads(first + timedelta(days=n), zone, sleep, steps, hr)
    hours = st.integers(0, n_days * 24 - 1)
    for hour in draw(st.lists(hours, min_size=1, max_size=8, unique=True)):
        when = local(first, hour + 0.25, zone)
        item9 = draw(st.sampled_from([0, 0, 0, 1]))
        event = phq9(when, draw(st.integers(item9, 24)), item9=item9)
        timed.append(Timed(event, when, when + timedelta(hours=LATENESS["score"])))
    for hour in draw(st.lists(hours, max_size=4, unique=True)):
        when = local(first, hour + 0.5, zone)
        value = draw(st.sampled_from([0.4, 0.8, 1.0, 1.3, 1.6]))
        timed.append(Timed(lab("lithium", value, when), when, when + timedelta(hours=48)))
    for hour in draw(st.lists(hours, max_size=2, unique=True)):
        when = local(first, hour + 0.75, zone)
        kind = draw(st.sampled_from(["self_harm", "suicidal_ideation", "medication_change"]))
        event = outcome(kind, when) if kind != "medication_change" else None
        if event is not None:
            timed.append(Timed(event, when, when + timedelta(hours=48)))
    return timed


def _arrival_orders(draw: st.DrawFn, timed: list[Timed]) -> list[InputEvent]:
    arrivals = []
    for index, item in enumerate(timed):
        share = draw(st.floats(0, 0.999))
        window = (item.deadline - item.earliest) * share
        arrivals.append((item.earliest + window, index))
    return [timed[index].event for _, index in sorted(arrivals)]


def _in_event_time(timed: list[Timed]) -> list[InputEvent]:
    return [t.event for t in sorted(timed, key=lambda t: (t.earliest, str(t.event.event_id)))]


SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(data=st.data(), timed=histories())
def test_any_arrival_order_within_the_lateness_gives_the_same_state_and_alerts(
    data: st.DataObject, timed: list[Timed]
) -> None:
    reference_state, reference = replay(_in_event_time(timed), CONFIG)
    arrival = _arrival_orders(data.draw, timed)
    state, outputs = replay(arrival, CONFIG)
    assert state.counters.late == 0 and state.counters.late_samples == 0
    assert state.without_counters() == reference_state.without_counters()
    assert alert_set(outputs) == alert_set(reference)


@SETTINGS
@given(data=st.data(), timed=histories())
def test_a_duplicated_event_never_changes_the_state_or_the_alerts(
    data: st.DataObject, timed: list[Timed]
) -> None:
    events = _in_event_time(timed)
    reference_state, reference = replay(events, CONFIG)
    original = data.draw(st.integers(0, len(events) - 1))
    again_at = data.draw(st.integers(original + 1, len(events)))
    with_duplicate = [*events[:again_at], events[original], *events[again_at:]]
    state, outputs = replay(with_duplicate, CONFIG)
    assert state.without_counters() == reference_state.without_counters()
    assert alert_set(outputs) == alert_set(reference)
    assert state.counters.duplicates == reference_state.counters.duplicates + 1


@SETTINGS
@given(data=st.data(), timed=histories())
def test_process_never_mutates_its_inputs(data: st.DataObject, timed: list[Timed]) -> None:
    state = PatientState()
    for event in _arrival_orders(data.draw, timed):
        before = pickle.dumps(state), pickle.dumps(event), state.model_dump_json()
        new, _ = process(state, event, CONFIG)
        assert (pickle.dumps(state), pickle.dumps(event), state.model_dump_json()) == before
        state = new
