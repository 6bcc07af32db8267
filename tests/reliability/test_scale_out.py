"""Scale-out: two workers share the partitions; one leaves mid-stream, the other takes over.

Two ``python -m services.worker`` processes with the same ``--app-id`` (one
consumer group) share 4 partitions. Half way through the history one of them
is stopped with SIGTERM (a scale-down, a rolling deploy); the other is
assigned its partitions, restores their state from the changelog and goes on.
The outputs in the store must equal those of a single worker over the same
history: the pure core run in a plain loop in arrival order, which is what a
single worker produces (tests/integration/test_replay_equals_live.py proves
that equality on the live pipeline).
"""

from __future__ import annotations

import random
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
    offline_outputs,
    record_figures,
    send,
    stale_states,
    timer,
    wait_until,
    waves,
)

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

PARTITIONS = 4
#: A takeover is a rebalance and a changelog recovery: seconds, not minutes.
TAKEOVER_TIMEOUT = 90.0
STUCK = "No event received for active tp"


def test_two_workers_share_the_work_and_one_takes_over_when_the_other_leaves(
    make_broker: Any, make_pipeline: Any, store_url: str
) -> None:
    events = cohort(8, 21, SEED + 5)
    patients = {e.patient_id for e in events}
    history = waves(events)
    leave_at = random.Random(SEED + 5).randrange(len(history) // 3, 2 * len(history) // 3)
    derived = offline_outputs(events)
    expected = expected_rows([*events, *derived])
    figures: dict[str, Any] = {"title": "scale-out: 2 workers, one leaves", "fault_rounds": 1}
    broker = make_broker(partitions=PARTITIONS)
    pipeline = make_pipeline(broker.bootstrap, partitions=PARTITIONS)
    census = None
    with timer() as took:
        try:
            first, second = pipeline.add_worker(), pipeline.add_worker()
            pipeline.start_sink()
            first.wait_ready()
            second.wait_ready()
            wait_until(
                lambda: bool(_assigned(first.log()) and _assigned(second.log())),
                "both workers to hold partitions",
                timeout=45,
            )
            figures["assigned_before"] = [_assigned(first.log()), _assigned(second.log())]
            writes = ChangelogWrites(broker.bootstrap, pipeline.app_id, patients)
            pending = 0
            for index, wave in enumerate(history):
                send(broker.bootstrap, wave)
                pending += len(wave)
                if index == leave_at:
                    began = time.monotonic()
                    code = second.stop()
                    assert code == 0, f"the leaving worker did not stop cleanly ({code})"
                    wait_until(
                        lambda: worker_lag(broker.bootstrap, pipeline.app_id) == 0,
                        "the remaining worker to take over and catch up",
                        timeout=TAKEOVER_TIMEOUT,
                    )
                    figures["takeover_s"] = round(time.monotonic() - began, 1)
                    writes.close()
                    writes = ChangelogWrites(broker.bootstrap, pipeline.app_id, patients)
                    pending = 0
                writes.wait_for(pending)
            writes.close()
            figures["left_at_wave"] = f"{leave_at + 1} of {len(history)}"
            figures["settle_s"] = pipeline.settle(expected)
            figures["stale_states"] = stale_states(broker.bootstrap, pipeline.app_id, events)
            time.sleep(1.0)
            census = Census.take(store_url, expected)
            assert first.running, f"the remaining worker died:\n{first.log_tail()}"
            figures["crashes"] = 0 if first.running else 1
        finally:
            census = census or Census.take(store_url, expected)
            totals = census.totals()
            figures.update(
                events_sent=totals["sent"],
                events_stored=totals["stored"],
                duplicated=totals["duplicated"],
                extra=totals["extra"],
                lost=totals["lost"],
                seconds=took(),
                differences=census.differences(store_url, expected),
                rebuilds=[w.log().count("rebuilt a patient state") for w in (first, second)],
                recovery_stalls=[w.log().count(STUCK) for w in (first, second)],
                assignments=[
                    w.log().count("Setting newly assigned partitions") for w in (first, second)
                ],
            )
            record_figures("scale_out", figures)

    problems = compare_with_uninterrupted(store_url, expected, derived, census)
    if figures["stale_states"]:
        problems.append(
            "after the takeover the remaining worker went on from an older state for some "
            "patients (events missing from their state): "
            f"{figures['stale_states']}; the remaining worker logged '{STUCK}' "
            f"{figures['recovery_stalls'][0]} times while restoring the changelog; partition "
            f"assignments per worker: {figures['assignments']}"
        )
    assert not problems, "\n".join(problems)


def _assigned(log: str) -> str:
    """The input partitions a faust worker last logged as assigned to it, e.g. ``{0-1}``."""
    blocks = log.split("Setting newly assigned partitions")
    if len(blocks) < 2:
        return ""
    for line in blocks[-1].splitlines():
        if "psymon.clinical-scores.v1" in line:
            return line.split("|")[2].strip()
        if "for group" in line:
            break
    return ""
