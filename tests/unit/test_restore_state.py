"""A worker waits for the store only when it cannot reach it.

:func:`streams.app.restore_state` rebuilds a patient the table does not know
from the store. A store that does not answer (``ConnectionError``, what
:class:`services.rebuild.StateRebuilder` raises after its own second attempt)
is waited for, then the worker stops rather than start a known patient from an
empty state; any other error (a store that is not migrated, a bug) stops it at
once instead of being retried for two minutes.
"""

from __future__ import annotations

import asyncio

import pytest

from schemas.topics import WEARABLE_SAMPLES
from streams import PatientState
from streams import app as streams_app
from streams.app import Record, decode_state, restore_state
from tests.unit.streams.core_history import PATIENT, at, upload

KEY = PATIENT.encode()


def record() -> Record:
    event = upload([("steps", 100, at(hours=0), at(hours=1))], tag="0")
    return Record(WEARABLE_SAMPLES, 0, 0, KEY, event.model_dump_json().encode(), 1_772_442_300.0)


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streams_app, "REBUILD_RETRY_DELAYS", (0.0, 0.0, 0.0))


def test_an_unreachable_store_is_tried_again_until_it_answers() -> None:
    calls: list[str] = []

    def rebuild(patient: str, _event: object) -> PatientState:
        calls.append(patient)
        if len(calls) < 3:
            raise ConnectionError("the store did not answer a state rebuild")
        return PatientState(patient_id=patient)

    table: dict[bytes, bytes] = {}
    asyncio.run(restore_state(record(), table, rebuild))

    assert calls == [PATIENT] * 3
    assert decode_state(table[KEY]).patient_id == PATIENT


def test_a_store_that_never_answers_stops_the_worker() -> None:
    def rebuild(_patient: str, _event: object) -> PatientState:
        raise ConnectionError("the store did not answer a state rebuild")

    with pytest.raises(RuntimeError, match="store is unreachable"):
        asyncio.run(restore_state(record(), {}, rebuild))


def test_any_other_failure_is_not_waited_out() -> None:
    calls = 0

    def rebuild(_patient: str, _event: object) -> PatientState:
        nonlocal calls
        calls += 1
        raise ValueError("relation stored_events does not exist")

    with pytest.raises(ValueError, match="does not exist"):
        asyncio.run(restore_state(record(), {}, rebuild))
    assert calls == 1


def test_a_patient_the_table_knows_is_not_rebuilt() -> None:
    def rebuild(_patient: str, _event: object) -> PatientState:
        raise AssertionError("not called")

    table = {KEY: b"{}"}
    asyncio.run(restore_state(record(), table, rebuild))
    assert table == {KEY: b"{}"}


def test_the_rebuilder_says_the_store_did_not_answer_as_a_connection_error() -> None:
    from services.rebuild import StateRebuilder

    rebuilder = StateRebuilder("postgresql://psymon@127.0.0.1:1/psymon")  # nothing listens there
    with pytest.raises(ConnectionError, match="did not answer") as raised:
        rebuilder.rebuild(PATIENT)
    assert PATIENT not in str(raised.value)
