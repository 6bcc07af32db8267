"""Rebuilding a patient's state from the store gives the state the live worker had.

"Live" is the pure core called over the same events in arrival order, as
the worker's agent calls it (``streams.app.handle``): for every patient the
rebuilt state pickles to the same bytes, and a worker that lost its state
half way, rebuilt it and went on produces the outputs it would have produced.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from services.embedded.postgres import EmbeddedPostgres
from services.rebuild import StateRebuilder, rebuild_state
from services.replay.engine import final_states, run_core
from services.simulator import simulate_cohort
from streams import CoreConfig, PatientState
from tests.integration.pg_fixtures import arrival_order, loaded_store
from tests.integration.workers import new_patient

pytest_plugins = ("tests.integration.pg_fixtures",)
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cohort() -> list[Any]:
    start = datetime(2026, 1, 5, tzinfo=UTC)
    return list(simulate_cohort(4, 30, seed=5, start=start, samples_per_hour=2).events())


@pytest.fixture(scope="module")
def loaded(embedded_pg: EmbeddedPostgres, cohort: list[Any]) -> Iterator[str]:
    with loaded_store(embedded_pg, cohort, "rebuild") as url:
        yield url


def test_the_rebuilt_state_is_the_live_state(loaded: str, cohort: list[Any]) -> None:
    live = final_states(arrival_order(cohort))
    with_duplicates = final_states(cohort)  # what the worker saw: re-sent uploads too
    assert len(live) == 4
    with psycopg.connect(loaded, autocommit=True) as conn:
        for patient, state in live.items():
            rebuilt = rebuild_state(conn, patient, CoreConfig())
            assert rebuilt == state
            # A pickle also records which equal values are one shared object, which
            # differs between a rebuilt and a live state; what it restores is equal.
            assert pickle.loads(pickle.dumps(rebuilt)) == state
            assert rebuilt.model_dump_json() == state.model_dump_json()
            # Re-deliveries are stored once, so only their count is not rebuilt.
            seen = with_duplicates[patient]
            assert rebuilt.without_counters() == seen.without_counters()
            assert replace(rebuilt.counters, duplicates=seen.counters.duplicates) == seen.counters
    assert any(s.counters.duplicates for s in with_duplicates.values())


def test_a_patient_the_store_does_not_know_gives_none(loaded: str) -> None:
    with StateRebuilder(loaded) as rebuilder:
        assert rebuilder.rebuild(new_patient()) is None
        assert rebuilder.rebuilt == 0
    stranger = new_patient()
    assert rebuild_state(loaded, stranger) == PatientState(patient_id=stranger)


def test_a_worker_that_lost_its_state_rebuilds_it_and_goes_on_as_before(
    loaded: str, cohort: list[Any]
) -> None:
    """The store already holds events the worker has not applied yet (the sink is
    ahead): the rebuild stops before the event about to be applied."""
    ordered = arrival_order(cohort)
    patient = ordered[0].patient_id
    history = [e for e in ordered if e.patient_id == patient]
    live_outputs = [outputs for _, outputs in run_core(history)]
    cut = len(history) * 2 // 3
    with StateRebuilder(loaded, CoreConfig()) as rebuilder:
        state = rebuilder.rebuild(patient, before=history[cut])
        assert state is not None and rebuilder.rebuilt == 1
    assert state == final_states(history[:cut])[patient]
    states = {patient: state}
    went_on = [outputs for _, outputs in run_core(history[cut:], CoreConfig(), states)]
    assert went_on == live_outputs[cut:]
    assert sum(len(o) for o in went_on) > 0


def test_the_rebuilder_reconnects_after_losing_the_database_connection(
    loaded: str, cohort: list[Any]
) -> None:
    patient = arrival_order(cohort)[-1].patient_id
    with StateRebuilder(loaded) as rebuilder:
        first = rebuilder.rebuild(patient)
        with psycopg.connect(loaded, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        assert rebuilder.rebuild(patient) == first is not None
