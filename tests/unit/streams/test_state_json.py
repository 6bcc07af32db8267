"""The patient state's JSON form: what the worker's changelog holds, old records included.

:meth:`PatientState.json_bytes` leaves out rule states that are still as new
(they read back as new ones). Earlier workers wrote every rule state: a
changelog they wrote must still give each patient the same state, and the
core the same outputs from it.
"""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest

from streams import CoreConfig, PatientState, process, stored_state
from streams.outputs import InputEvent
from streams.state import _ADAPTER, RuleStates
from tests.unit.streams.core_history import at, lab, outcome, phq9, wearable_day


def history() -> list[InputEvent]:
    """Scores, labs, an outcome and wearable days that open and close alerts of several rules."""
    events: list[InputEvent] = [phq9(at(days=7 * n), total) for n, total in enumerate([6, 19, 8])]
    events += [lab("lithium", value, at(days=2 + 7 * n)) for n, value in enumerate([0.3, 0.8])]
    events += [lab("crp", 12.0, at(days=3)), phq9(at(days=22), 14, item9=2)]
    days = [date(2026, 3, 24) + timedelta(days=n) for n in range(14)]
    events += [wearable_day(day, sleep=450.0 if n < 10 else 240.0) for n, day in enumerate(days)]
    events += [outcome("relapse", at(days=40))]
    return events


def states_of(events: list[InputEvent]) -> list[PatientState]:
    """The state after each event, from a new patient on."""
    state, states = PatientState(), []
    for event in events:
        state, _ = process(state, event, CoreConfig())
        states.append(state)
    return states


STATES = states_of(history())


def written_by_earlier_workers(state: PatientState) -> bytes:
    """The state with every rule state in it, as workers before the omission wrote it."""
    return _ADAPTER.dump_json(state)


@pytest.mark.parametrize("n", range(len(STATES)))
def test_a_state_reads_back_equal_from_both_forms(n: int) -> None:
    state = STATES[n]
    assert PatientState.model_validate_json(state.json_bytes()) == state
    assert PatientState.model_validate_json(written_by_earlier_workers(state)) == state


def test_the_history_opens_alerts_in_several_rules_and_leaves_others_as_new() -> None:
    # Otherwise the tests here would not test both kinds of rule state.
    rules = json.loads(STATES[-1].json_bytes())["rules"]
    assert {"bands", "lithium", "inflammation", "sleep_loss"} <= set(rules)
    assert {"mania", "lab_status"}.isdisjoint(rules)


def test_only_rule_states_equal_to_new_ones_are_left_out() -> None:
    new = RuleStates()
    for state in STATES:
        kept = set(json.loads(state.json_bytes())["rules"])
        for name in json.loads(written_by_earlier_workers(state))["rules"]:
            assert (name in kept) == (getattr(state.rules, name) != getattr(new, name)), name


def test_a_new_patient_is_written_without_rule_states() -> None:
    new = PatientState(patient_id="p-1")
    assert json.loads(new.json_bytes())["rules"] == {}
    assert new.model_dump_json().encode() == new.json_bytes()


def test_the_core_gives_the_same_outputs_from_a_state_an_earlier_worker_wrote() -> None:
    events, config = history(), CoreConfig()
    for state, following in zip(STATES, events[1:], strict=False):
        old = PatientState.model_validate_json(written_by_earlier_workers(state))
        new = PatientState.model_validate_json(state.json_bytes())
        (old_state, old_out), (new_state, new_out) = (
            process(old, following, config),
            process(new, following, config),
        )
        assert [o.model_dump_json() for o in new_out] == [o.model_dump_json() for o in old_out]
        assert new_state == old_state


def test_the_applied_member_is_written_as_json_dumps_writes_it() -> None:
    applied = {"psymon.clinical-scores.v1": (1, 40, 1772442300000), 'odd "topic" é': (0, 0, 7)}
    value = stored_state.encode(PatientState(patient_id="p-1"), applied)
    member = json.dumps({t: list(last) for t, last in applied.items()}, separators=(",", ":"))
    assert value.startswith(b'{"applied":' + member.encode() + b",")
    assert stored_state.decode(value)[0] == applied
