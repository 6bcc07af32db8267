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
from collections import Counter
from typing import Any

import psycopg
import pytest
from pydantic import TypeAdapter

from schemas.events import AnyEvent
from tests.reliability.harness import (
    SEED,
    Census,
    StateWrites,
    alert_transitions,
    cohort,
    expected_rows,
    fault_plan,
    kinds,
    offline_outputs,
    record_figures,
    send,
    store_holds,
    stored_alerts,
    stored_payloads,
    timer,
    wait_until,
    waves,
)

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

ROUNDS = int(__import__("os").environ.get("PSYMON_RELIABILITY_ROUNDS", "3"))
PATIENTS, DAYS = 6, 30
_ANY: TypeAdapter[Any] = TypeAdapter(AnyEvent)


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
            writes = StateWrites(broker.bootstrap, pipeline.app_id, patients)
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
                            lambda: pipeline.worker_lag() == 0,
                            "the restarted worker to catch up",
                        )
                        writes.close()  # it re-applied what it had not committed: count anew
                        writes = StateWrites(broker.bootstrap, pipeline.app_id, patients)
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
            figures["settle_s"] = round(
                wait_until(
                    lambda: store_holds(store_url, expected), "the store to hold everything"
                ),
                1,
            )
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
                duplicated=totals["duplicated"] + totals["extra"],
                lost=totals["lost"],
                per_table={"sent": census.sent, "lost": census.lost, "extra": census.extra},
                seconds=took(),
            )
            record_figures("crash_restart", figures)

    problems = []
    if census.totals()["lost"] or census.totals()["duplicated"]:
        problems.append(f"lost or stored twice: {census.problems()}")
    if census.totals()["extra"]:
        problems.append(
            f"stored, but an uninterrupted run does not derive them: {census.problems()} "
            f"({_extra_kinds(store_url, expected)})"
        )
    live = alert_transitions(stored_alerts(store_url))
    uninterrupted = alert_transitions(o for o in derived if o.kind == "alert")
    if live != uninterrupted:
        problems.append(
            f"the alerts differ from an uninterrupted run: {len(live)} alert ids stored, "
            f"{len(uninterrupted)} expected; differing: "
            f"{sorted(k for k in live.keys() | uninterrupted.keys() if live.get(k) != uninterrupted.get(k))}"
        )
    outputs = stored_payloads(store_url, ("course_updates", "risk_assessments", "alerts"))
    stored = {i: _ANY.validate_python(p).model_dump(mode="json") for i, p in outputs.items()}
    offline = {str(o.event_id): o.model_dump(mode="json") for o in derived}
    differing = [i for i in offline if i in stored and stored[i] != offline[i]]
    if differing:
        problems.append(f"{len(differing)} outputs differ in content from the uninterrupted run")
    assert not problems, "\n".join(problems)


def _extra_kinds(url: str, expected: dict[str, Any]) -> str:
    """What the unexpected course updates are: ``signal (late) x count``."""
    known = {str(i) for i in expected.get("course_updates", ())}
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT event_id::text, signal, late FROM course_updates").fetchall()
    counts = Counter((signal, late) for event_id, signal, late in rows if event_id not in known)
    return ", ".join(f"{s} (late={late}) x{n}" for (s, late), n in counts.most_common()) or "none"
