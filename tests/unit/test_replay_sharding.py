"""Sharing a replay's patients out among processes: the plan, and why the outputs stay the same."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import pytest

from services.replay import shards
from services.replay.engine import run_core, run_patients
from services.replay.shards import (
    CHUNKS_PER_PROCESS,
    MAX_CHUNK_EVENTS,
    MIN_EVENTS_PER_PROCESS,
    check_jobs,
    chunks_of,
    default_jobs,
    processes_for,
)
from services.simulator import simulate_cohort
from streams import process
from tests.integration.pg_fixtures import arrival_order


def _cohort() -> list[Any]:
    events = simulate_cohort(5, 12, seed=21, start=datetime(2026, 1, 5, tzinfo=UTC)).events()
    return arrival_order(list(events))


def _outputs(events: list[Any]) -> list[str]:
    return [o.model_dump_json() for _, outputs in run_patients(events) for o in outputs]


def _of(events: list[Any], patient: str) -> list[Any]:
    return [e for e in events if e.patient_id == patient]


def test_a_patients_outputs_do_not_depend_on_the_patients_run_before_it() -> None:
    events = _cohort()
    patients = list(dict.fromkeys(e.patient_id for e in events))
    alone = {p: _outputs(_of(events, p)) for p in patients}
    assert all(alone.values())

    # All in one process, in order (a one-process replay), and in the reverse
    # order (a process that ran other chunks first): each patient's outputs as alone.
    assert _outputs(events) == [o for p in patients for o in alone[p]]
    backwards = [e for p in reversed(patients) for e in _of(events, p)]
    assert _outputs(backwards) == [o for p in reversed(patients) for o in alone[p]]


def test_chunks_keep_the_patients_in_order_and_split_the_events_evenly() -> None:
    counts = [(f"p{n:03d}", 10 + (n * 37) % 90) for n in range(200)]
    chunks = chunks_of(counts, processes=3)

    assert [p for chunk in chunks for p in chunk] == [p for p, _ in counts]
    assert len(chunks) == pytest.approx(3 * CHUNKS_PER_PROCESS, abs=2)
    sizes = [sum(dict(counts)[p] for p in chunk) for chunk in chunks]
    target = sum(n for _, n in counts) / (3 * CHUNKS_PER_PROCESS)
    assert max(sizes[:-1]) <= target + 100 and min(sizes[:-1]) >= target - 100


def test_a_chunk_holds_at_most_max_chunk_events_unless_one_patient_has_more() -> None:
    counts = [("a", MAX_CHUNK_EVENTS * 3), *((f"b{n}", 700) for n in range(200)), ("c", 5)]
    chunks = chunks_of(counts, processes=2)

    assert chunks[0] == ("a",)
    sizes = [sum(dict(counts)[p] for p in chunk) for chunk in chunks[1:]]
    assert max(sizes) <= MAX_CHUNK_EVENTS
    assert [p for chunk in chunks for p in chunk] == [p for p, _ in counts]


def test_a_small_replay_uses_fewer_processes() -> None:
    assert processes_for(MIN_EVENTS_PER_PROCESS - 1, 100, 8) == 1
    assert processes_for(2 * MIN_EVENTS_PER_PROCESS, 100, 8) == 2
    assert processes_for(100 * MIN_EVENTS_PER_PROCESS, 100, 8) == 8
    assert processes_for(100 * MIN_EVENTS_PER_PROCESS, 3, 8) == 3  # at most one per patient
    assert processes_for(0, 0, 8) == 1


def test_jobs_are_one_or_more_processes_or_none_for_one_per_cpu() -> None:
    assert check_jobs(None) == default_jobs() >= 1
    assert check_jobs(3) == 3
    for wrong in (0, -2, True, 2.0, "2"):
        with pytest.raises(ValueError, match="accepted: 1 or more processes"):
            check_jobs(wrong)  # type: ignore[arg-type]


def test_fork_is_used_only_while_no_other_thread_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    assert shards._context().get_start_method() == "fork"
    monkeypatch.setattr(threading, "active_count", lambda: 2)
    assert shards._context().get_start_method() == "forkserver"


def test_a_patient_whose_every_event_failed_does_not_stop_the_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events = _cohort()
    first, second = list(dict.fromkeys(e.patient_id for e in events))[:2]

    def failing_for_first(state: Any, event: Any, config: Any) -> Any:
        if event.patient_id == first:
            raise RuntimeError("the core failed")
        return process(state, event, config)

    monkeypatch.setattr("services.replay.engine.process", failing_for_first)
    mine = [e for e in events if e.patient_id in (first, second)]
    results = list(run_patients(mine))

    assert len(results) == len(mine)
    assert all(
        o.kind == "dead_letter" for e, outputs in results if e.patient_id == first for o in outputs
    )
    assert any(
        o.kind != "dead_letter" for e, outputs in results if e.patient_id == second for o in outputs
    )


def test_run_patients_gives_what_run_core_gives_also_when_the_core_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events = _cohort()
    patients = list(dict.fromkeys(e.patient_id for e in events))
    firsts = {e.patient_id: e.event_id for e in reversed(events)}
    # The first event of one patient (no state kept yet) and every 7th event fail.
    failing = {firsts[patients[1]], *(e.event_id for e in events[::7])}

    def sometimes_failing(state: Any, event: Any, config: Any) -> Any:
        if event.event_id in failing:
            raise RuntimeError("the core failed")
        return process(state, event, config)

    monkeypatch.setattr("services.replay.engine.process", sometimes_failing)
    # Grouped by patient (a replay), and a patient coming back after another.
    for order in (events, [*_of(events, patients[0]), *_of(events, patients[1]), *events]):
        mine = [
            (e.event_id, [o.model_dump_json() for o in outs]) for e, outs in run_patients(order)
        ]
        reference = []
        for patient_events in _runs_of_one_patient(order):
            reference += [
                (e.event_id, [o.model_dump_json() for o in outs])
                for e, outs in run_core(patient_events)
            ]
        assert mine == reference


def _runs_of_one_patient(events: list[Any]) -> list[list[Any]]:
    runs: list[list[Any]] = []
    for event in events:
        if runs and runs[-1][0].patient_id == event.patient_id:
            runs[-1].append(event)
        else:
            runs.append([event])
    return runs
