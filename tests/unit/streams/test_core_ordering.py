"""Event-time order, lateness, duplicates, purity and the state's two serial forms."""

from __future__ import annotations

import pickle
from datetime import timedelta

from schemas.events import DeadLetter
from schemas.examples import EXAMPLE_KEY
from schemas.identity import pseudonymise
from streams import CoreConfig, PatientState, process
from streams.config import OrderingConfig
from tests.factories import make_examples
from tests.unit.streams.core_history import (
    alerts,
    at,
    lab,
    outcome,
    phq9,
    replay,
    score,
    updates,
    wearable_day,
)

WAIT_TWO_DAYS = CoreConfig(
    ordering=OrderingConfig(
        score_lateness_hours=48, lab_lateness_hours=48, outcome_lateness_hours=48
    )
)


def test_out_of_order_ratings_within_the_lateness_are_applied_in_event_time_order() -> None:
    first, second, third = phq9(at(0), 15), phq9(at(1), 5), phq9(at(5), 6)
    state, outputs = replay([second, first], WAIT_TWO_DAYS)
    assert updates(outputs) == []  # both wait for the watermark
    state, outputs = replay([third], WAIT_TWO_DAYS, state)
    course = updates(outputs, "phq9")
    assert [(u.value, u.baseline, u.late) for u in course] == [(15, 15, False), (5, 15, False)]
    assert [u.caused_by for u in course] == [first.event_id, second.event_id]


def test_a_rating_older_than_the_watermark_is_late_reported_and_rewrites_nothing() -> None:
    state, _ = replay([phq9(at(0), 20), phq9(at(7), 12)])
    late = phq9(at(3), 16)
    after, outputs = replay([late], state=state)
    [update] = updates(outputs, "phq9")
    assert (update.late, update.value, update.baseline, update.change) == (True, 16, 20, -4)
    assert update.level == round(state.courses["phq9"].level.mean or 0, 4)
    assert after.courses == state.courses
    assert after.counters.late == 1
    assert alerts(outputs) == []  # non-safety rules judge the present, not the past


def test_safety_rules_act_on_arrival_and_never_wait_for_the_watermark() -> None:
    held = phq9(at(0), 14, item9=2)
    _, outputs = replay([held], WAIT_TWO_DAYS)
    assert [(a.rule, a.status) for a in alerts(outputs)] == [("phq9_item9", "open")]
    assert updates(outputs) == []
    _, outputs = replay([phq9(at(5), 3), phq9(at(1), 14, item9=1)])  # late, still urgent
    assert [a.rule for a in alerts(outputs, "phq9_item9")] == ["phq9_item9"]
    _, outputs = replay([outcome("suicidal_ideation", at(0))], WAIT_TWO_DAYS)
    assert [a.severity for a in alerts(outputs)] == ["urgent"]


def test_a_device_clock_running_ahead_does_not_hold_a_rating_back() -> None:
    ahead = phq9(at(0, minutes=10), 12, received_at=at(0))  # observed 10 min "after" receipt
    _, outputs = replay([ahead])
    assert [u.value for u in updates(outputs, "phq9")] == [12]


def test_late_outcomes_still_change_the_course() -> None:
    history = [
        score("panss", at(0), 70),
        outcome("remission", at(5)),
        outcome("hospitalisation", at(2)),
    ]
    _, outputs = replay(history)
    assert [(u.status, u.late) for u in updates(outputs, "panss")] == [
        ("stable", False),
        ("relapse", True),
    ]


def test_a_duplicate_changes_nothing_and_is_counted() -> None:
    events = [phq9(at(0), 12), lab("lithium", 1.3, at(1)), outcome("relapse", at(2))]
    state, _ = replay(events)
    for event in events:
        again, outputs = process(state, event, CoreConfig())
        assert outputs == []
        assert again.without_counters() == state.without_counters()
        assert again.counters.duplicates == state.counters.duplicates + 1


def test_held_events_beyond_the_limit_are_applied_early() -> None:
    config = CoreConfig(ordering=OrderingConfig(score_lateness_hours=100, max_pending_events=2))
    _, outputs = replay([phq9(at(n / 24), 10 + n) for n in range(4)], config)
    assert [u.value for u in updates(outputs, "phq9")] == [10, 11]


def test_process_never_changes_the_state_or_the_event_it_is_given() -> None:
    history = [
        wearable_day(at(0).date()),
        phq9(at(0.5), 14, item9=1),
        lab("lithium", 1.6, at(0.6)),
        wearable_day(at(1).date()),
        outcome("hospitalisation", at(1.2)),
        score("panss", at(1.3), 90),
        wearable_day(at(2).date()),
        phq9(at(0.7), 20),
    ]
    state = PatientState()
    for event in history:
        state_before, event_before = pickle.dumps(state), pickle.dumps(event)
        new, _ = process(state, event, WAIT_TWO_DAYS)
        assert pickle.dumps(state) == state_before
        assert pickle.dumps(event) == event_before
        assert new is not state
        state = new


def test_the_state_round_trips_through_json_and_pickle_mid_history() -> None:
    history = [
        wearable_day(at(0).date()),
        phq9(at(0.5), 14),
        lab("il6", 2.0, at(0.6)),
        phq9(at(0.9), 3),
        wearable_day(at(1).date()),
        wearable_day(at(2).date()),
    ]
    state, _ = replay(history[:4], WAIT_TWO_DAYS)
    assert state.order.held  # events are waiting
    for copy in (
        PatientState.model_validate_json(state.model_dump_json()),
        pickle.loads(pickle.dumps(state)),
    ):
        assert copy == state
        assert replay(history[4:], WAIT_TWO_DAYS, copy) == replay(history[4:], WAIT_TWO_DAYS, state)


def test_events_the_core_cannot_use_become_dead_letters() -> None:
    state, _ = replay([phq9(at(0), 10)])
    derived = make_examples()["CourseUpdate"]
    same, outputs = process(state, derived, CoreConfig())  # type: ignore[arg-type]
    assert same is state
    assert [type(o) for o in outputs] == [DeadLetter]
    other = phq9(at(1), 10).model_copy(
        update={"patient_id": pseudonymise("someone-else", EXAMPLE_KEY, system="example")}
    )
    same, outputs = process(state, other, CoreConfig())
    assert same is state and isinstance(outputs[0], DeadLetter)
    assert "patient_id" in outputs[0].reason and other.patient_id not in outputs[0].reason


def test_configuration_is_versioned_and_named_in_every_alert() -> None:
    config = CoreConfig.from_toml('version = "study-7"\n[alerts]\ncrp_above = 5.0\n')
    _, outputs = replay(
        [lab("crp", 4.0, at(0)), lab("crp", 6.0, at(1)), phq9(at(2), 3, item9=1)], config
    )
    assert [(a.rule, a.config_version) for a in alerts(outputs)] == [
        ("inflammation", "study-7"),
        ("phq9_item9", "study-7"),
    ]
    assert CoreConfig.from_json(config.model_dump_json()) == config


def test_same_history_same_outputs_bit_for_bit() -> None:
    history = [wearable_day(at(n).date()) for n in range(10)]
    history += [phq9(at(n + 0.5), 5 + n) for n in range(10)]
    history.sort(key=lambda e: e.observed_at + timedelta(hours=1))
    first = [o.model_dump_json() for o in replay(history)[1]]
    second = [o.model_dump_json() for o in replay(history)[1]]
    assert first == second and len(first) > 50
