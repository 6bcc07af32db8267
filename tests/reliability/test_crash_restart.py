"""Crash and restart: SIGKILL the worker and the sink mid-stream, lose nothing, double nothing.

A seeded simulated cohort (6 patients x 30 days, wearable uploads at 2
samples an hour, scores, labs, re-sent duplicates) streams through the real
pipeline: embedded broker, a ``python -m services.worker`` subprocess, a
``psymon sink`` subprocess, embedded PostgreSQL. At seeded points the worker
and, separately, the sink are killed with SIGKILL (no flush, no offset commit,
no LeaveGroup) and started again, for several rounds.

Afterwards the store must hold every event that was sent and every output
the pure core derives from the same history offline, each exactly once, and
the alerts (ids, status changes, severities) must be those of an
uninterrupted run.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.reliability.broker_ends import ChangelogWrites, worker_lag
from tests.reliability.harness import (
    SEED,
    Census,
    cohort,
    compare_with_uninterrupted,
    expected_rows,
    fault_plan,
    kinds,
    offline_outputs,
    record_figures,
    send,
    stale_states,
    timer,
    wait_until,
    waves,
)

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

ROUNDS = int(__import__("os").environ.get("PSYMON_RELIABILITY_ROUNDS", "3"))
PATIENTS, DAYS = 6, 30


def test_killed_workers_and_sinks_lose_nothing_and_store_nothing_twice(
    make_broker: Any, make_pipeline: Any, store_url: str
) -> None:
    events = cohort(PATIENTS, DAYS, SEED)
    derived = offline_outputs(events)
    expected = expected_rows([*events, *derived])
    history = waves(events)
    plan = fault_plan(SEED, ROUNDS, len(history), ("worker", "sink"))
    figures: dict[str, Any] = {
        "title": f"crash/restart: kill -9 worker and sink x{ROUNDS}",
        "fault_rounds": len(plan),
        "plan": [f.__dict__ for f in plan],
        "inputs": kinds(events),
        "outputs": kinds(derived),
        "crashes": 0,
    }
    broker = make_broker(partitions=2)
    pipeline = make_pipeline(broker.bootstrap)
    with timer() as took:
        try:
            pipeline.add_worker()
            sink = pipeline.start_sink()
            pipeline.worker.wait_ready()
            patients = {e.patient_id for e in events}
            writes = ChangelogWrites(broker.bootstrap, pipeline.app_id, patients)
            pending = 0
            recoveries: list[dict[str, Any]] = []
            for index, wave in enumerate(history):
                send(broker.bootstrap, wave)
                pending += len(wave)
                for fault in (f for f in plan if f.wave == index):
                    time.sleep(fault.delay)
                    began = time.monotonic()
                    if fault.target == "worker":
                        pipeline.worker.kill()
                        pipeline.worker.start()
                        pipeline.worker.wait_ready()
                        wait_until(
                            lambda: worker_lag(broker.bootstrap, pipeline.app_id) == 0,
                            "the restarted worker to catch up",
                        )
                        writes.close()  # it was given again what it had not committed: count anew
                        writes = ChangelogWrites(broker.bootstrap, pipeline.app_id, patients)
                        pending = 0
                    else:
                        sink.kill()
                        sink.start()
                    recoveries.append(
                        {**fault.__dict__, "recovered_in_s": round(time.monotonic() - began, 1)}
                    )
                writes.wait_for(pending)
            writes.close()
            figures["recoveries"] = recoveries
            figures["settle_s"] = pipeline.settle(expected)
            figures["stale_states"] = stale_states(broker.bootstrap, pipeline.app_id, events)
            time.sleep(1.0)  # anything extra or doubled would be stored by now
            alive = pipeline.processes_alive()
            figures["crashes"] = sum(1 for up in alive.values() if not up)
            assert all(alive.values()), f"a process died on its own: {alive}\n{pipeline.logs()}"
        finally:
            census = Census.take(store_url, expected)
            totals = census.totals()
            figures.update(
                events_sent=totals["sent"],
                events_stored=totals["stored"],
                duplicated=totals["duplicated"],
                extra=totals["extra"],
                lost=totals["lost"],
                differences=census.differences(store_url, expected),
                seconds=took(),
            )
            record_figures("crash_restart", figures)

    problems = compare_with_uninterrupted(store_url, expected, derived, census)
    if figures.get("stale_states"):
        problems.append(
            "after a restart the worker went on from an older state for some patients "
            f"(events missing from their state): {figures['stale_states']}"
        )
    assert not problems, "\n".join(problems)
