"""Given these wearable uploads, then these daily features and alerts."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from schemas.events import WearableSample
from streams import CoreConfig, PatientState, process
from tests.unit.streams.core_history import (
    PATIENT,
    alerts,
    day_readings,
    local,
    phq9,
    replay,
    updates,
    upload,
    wearable_day,
)

BERLIN = "Europe/Berlin"
D0 = date(2026, 2, 1)


def days(first: date, count: int, zone: str = BERLIN, **values: float) -> list:
    return [wearable_day(first + timedelta(days=n), zone, **values) for n in range(count)]


def by_day(outputs: list, signal: str) -> dict[date, float | None]:
    return {u.day: u.value for u in updates(outputs, signal)}


def test_a_day_closes_only_when_the_watermark_passes_its_local_midnight() -> None:
    state, outputs = replay([wearable_day(D0)])
    assert updates(outputs) == []  # 1 February is still open
    state, outputs = replay([wearable_day(D0 + timedelta(days=1))], state=state)
    closed = updates(outputs)
    assert {u.day for u in closed} == {D0}
    steps = updates(outputs, "steps")[0]
    assert steps.value == 7995  # 15 hours of round(8000 / 15)
    assert steps.observed_at == datetime(2026, 2, 2, tzinfo=ZoneInfo(BERLIN))
    assert steps.coverage == 1.0 and steps.late is False
    sleep = updates(outputs, "sleep_duration")[0]
    assert (
        sleep.value == pytest.approx(450.0, abs=0.5)
        and updates(outputs, "sleep_midpoint")[0].value == 3.0
    )
    assert updates(outputs, "resting_hr")[0].value == 62.0
    assert updates(outputs, "hrv_rmssd")[0].value == 45.0
    assert updates(outputs, "active_minutes")[0].value == 30.0


def test_day_features_carry_a_robust_baseline_and_deviation() -> None:
    history = [*days(D0, 10), wearable_day(D0 + timedelta(days=10), sleep=240.0)]
    history += days(D0 + timedelta(days=11), 2)
    _, outputs = replay(history)
    sleep = {u.day: u for u in updates(outputs, "sleep_duration")}
    assert sleep[D0 + timedelta(days=5)].deviation is None  # fewer than 7 earlier days
    short = sleep[D0 + timedelta(days=10)]
    assert short.baseline == pytest.approx(450.0, abs=0.5)
    assert short.deviation is not None and short.deviation < -10
    variability = updates(outputs, "step_variability")
    assert variability and all(u.value == 0.0 for u in variability)


@pytest.mark.parametrize(
    ("day", "hours"), [(date(2026, 3, 29), 23), (date(2026, 10, 25), 25), (date(2026, 3, 30), 24)]
)
@pytest.mark.parametrize("time_zone", ["same", None])
def test_daylight_saving_days_are_one_local_day_with_23_or_25_hours(
    day: date, hours: int, time_zone: str | None
) -> None:
    history = [
        wearable_day(day + timedelta(days=n), BERLIN, time_zone=time_zone) for n in (-1, 0, 1)
    ]
    _, outputs = replay(history)
    coverage = by_day(outputs, "coverage")
    assert coverage[day] == 1.0  # every one of its 23 (or 25) hours has data
    heart = {u.day: u for u in updates(outputs, "steps")}
    assert heart[day].observed_at == datetime.combine(
        day + timedelta(days=1), datetime.min.time(), tzinfo=ZoneInfo(BERLIN)
    )
    # data in only 24 real hours are 24/25 of the autumn day
    if hours == 25:
        partial = [r for r in day_readings(day, BERLIN) if r[2] < local(day, 24, BERLIN)]
        # a score 3 days + 13 h later moves the watermark past the day (other families
        # close wearable days only other_families_close_after_hours = 72 h later)
        later = phq9(local(day + timedelta(days=4), 13, BERLIN), 5)
        _, outputs = replay([upload(partial, time_zone=BERLIN), later])
        assert by_day(outputs, "coverage")[day] == pytest.approx(24 / 25)


def test_features_follow_the_patient_across_time_zones() -> None:
    berlin = days(D0, 8)
    new_york = days(D0 + timedelta(days=8), 8, "America/New_York")
    state, outputs = replay(berlin + new_york)
    midpoints = by_day(outputs, "sleep_midpoint")
    assert set(midpoints.values()) == {3.0}  # 03:00 local time, before and after the flight
    assert len(midpoints) == 15
    assert by_day(outputs, "steps")[D0 + timedelta(days=12)] == 7995
    assert state.wearable.zones.changes == [
        (D0, BERLIN),
        (D0 + timedelta(days=8), "America/New_York"),
    ]


def test_sustained_sleep_loss_opens_holds_and_closes() -> None:
    normal, short = {"sleep": 450.0}, {"sleep": 300.0}
    plan = [normal] * 10 + [short, normal, short, short, short] + [normal] * 5
    history = [wearable_day(D0 + timedelta(days=n), **values) for n, values in enumerate(plan)]
    history.append(wearable_day(D0 + timedelta(days=len(plan))))
    _, outputs = replay(history)
    changes = alerts(outputs, "sleep_loss")
    assert [(a.status, a.severity) for a in changes] == [("open", "warning"), ("closed", "warning")]
    opened, closed = changes
    assert opened.evidence["day"] == (D0 + timedelta(days=13)).isoformat()  # 3 of 4 short
    assert closed.evidence["day"] == (D0 + timedelta(days=17)).isoformat()  # 1 of 4 short


def test_loss_of_wearable_data_is_seen_by_later_events_and_closes_when_data_return() -> None:
    history = days(D0, 5)
    # no wearable data for five days, but the patient still answers the PHQ-9
    history += [phq9(local(D0 + timedelta(days=n), 13, BERLIN), 6) for n in range(5, 10)]
    history += days(D0 + timedelta(days=10), 3)
    _, outputs = replay(history)
    coverage = by_day(outputs, "coverage")
    assert [coverage[D0 + timedelta(days=n)] for n in range(5, 9)] == [0.0] * 4
    changes = alerts(outputs, "wearable_data_loss")
    assert [(a.status, a.severity) for a in changes] == [("open", "warning"), ("closed", "warning")]
    assert changes[0].evidence["day"] == (D0 + timedelta(days=6)).isoformat()
    # data return with the night before day 10: day 9 ends with data
    assert changes[1].evidence["day"] == (D0 + timedelta(days=9)).isoformat()


def test_a_sample_for_a_closed_day_is_late_counted_and_flagged() -> None:
    state, _ = replay(days(D0, 3))
    late = upload([("steps", 500.0, local(D0, 10.5, BERLIN), local(D0, 10.6, BERLIN))], tag="late")
    state, outputs = replay([late], state=state)
    assert [(u.signal, u.day, u.value, u.late) for u in updates(outputs)] == [
        ("late_samples", D0, 1.0, True)
    ]
    assert state.counters.late_samples == 1


def test_a_redelivered_upload_changes_nothing_and_is_counted() -> None:
    first = wearable_day(D0)
    state, _ = replay([first])
    again, outputs = process(state, first, CoreConfig())
    assert outputs == []
    assert again.counters.duplicates == 1
    assert again.without_counters() == state.without_counters()


def test_a_resent_overlapping_upload_counts_only_its_new_samples() -> None:
    readings = [
        ("steps", 100.0, local(D0, 8 + n / 6, BERLIN), local(D0, 8 + (n + 1) / 6, BERLIN))
        for n in range(12)
    ]
    state, _ = replay([upload(readings[:8])])
    state, _ = replay([upload(readings[4:], tag="retry")], state=state)  # 4 old, 4 new
    assert (state.counters.samples, state.counters.duplicate_samples) == (12, 4)
    once, _ = replay([upload(readings)])
    assert once.wearable.open == state.wearable.open


def test_single_wearable_samples_are_accepted_and_deduplicated() -> None:
    start = local(D0, 9, BERLIN)
    sample = WearableSample(
        event_id=upload([("steps", 1.0, start, start)]).readings[0].event_id,
        patient_id=PATIENT,
        observed_at=start,
        received_at=start + timedelta(minutes=1),
        source={"system": "phone"},
        time_zone=BERLIN,
        metric="steps",
        value=120,
        unit="{steps}",
        interval_end=start + timedelta(minutes=1),
    )
    state, _ = replay([sample, sample])
    assert (state.counters.samples, state.counters.duplicate_samples) == (1, 1)
    assert state.wearable.open[D0].steps == 120


def test_empty_days_stop_after_the_configured_gap() -> None:
    state, outputs = replay([*days(D0, 2), phq9(local(D0 + timedelta(days=40), 12, BERLIN), 5)])
    coverage = by_day(outputs, "coverage")
    assert len([d for d, v in coverage.items() if v == 0.0]) == CoreConfig().wearable.max_gap_days
    assert state.wearable.tracking is False


def test_a_patient_state_with_three_months_of_data_stays_under_8_kb() -> None:
    from streams import state_size

    history = days(date(2026, 1, 1), 90)
    history += [
        phq9(local(date(2026, 1, 1) + timedelta(days=n), 10, BERLIN), 9) for n in range(0, 90, 7)
    ]
    state, _ = replay(sorted(history, key=lambda e: e.observed_at))
    assert state_size(state) <= 8 * 1024
    assert PatientState.model_validate_json(state.model_dump_json()) == state


def test_scores_read_ahead_of_the_wearable_stream_do_not_declare_data_lost() -> None:
    # After a backlog, the small score topic drains before the wearable topic: the
    # worker sees a PHQ-9 from days ahead (within other_families_close_after_hours)
    # before these days' uploads.
    ahead = phq9(local(D0 + timedelta(days=3), 9, BERLIN), 5)
    _, outputs = replay([days(D0, 1)[0], ahead, *days(D0 + timedelta(days=1), 12)])
    assert alerts(outputs, "wearable_data_loss") == []
