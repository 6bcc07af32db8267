"""The live pipeline: records in, course updates, alerts and dead letters out.

A real Tansu broker and a real faust worker subprocess; events are produced
with kafka-python as the ingest edge produces them (JSON, keyed by patient).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas.events import ClinicalScore
from schemas.topics import ALERTS, CLINICAL_SCORES, COURSE, DEAD_LETTER, INPUT_TOPICS
from services.embedded import EmbeddedBroker
from tests.integration.workers import (
    WorkerProcess,
    caused_by,
    new_patient,
    outputs_of,
    process_alive,
    produce,
    read_until,
    uncommitted,
)

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def phq9(patient: str, *, item9: int, others: int = 1, day: int = 0) -> ClinicalScore:
    """A self-rated PHQ-9 with items 1-8 at ``others`` and item 9 at ``item9``."""
    items = {str(i): others for i in range(1, 9)} | {"9": item9}
    return ClinicalScore(
        event_id=uuid.uuid4(),
        patient_id=patient,
        observed_at=T0 + timedelta(days=day),
        received_at=T0 + timedelta(days=day, minutes=5),
        source={"system": "integration-test"},
        instrument="phq9",
        rater="self",
        items=items,
    )


def record(event: ClinicalScore) -> tuple[bytes, bytes]:
    return event.patient_id.encode(), event.model_dump_json().encode()


def test_a_phq9_with_item9_gives_a_course_update_and_an_urgent_alert(
    broker: EmbeddedBroker, worker: WorkerProcess
) -> None:
    patient = new_patient()
    score = phq9(patient, item9=1)
    produce(broker.bootstrap, CLINICAL_SCORES, [record(score)])

    course = outputs_of(broker.bootstrap, COURSE, score.event_id)
    assert course, f"no course update for the score:\n{worker.log_tail()}"
    assert {(c["patient_id"], c["_key"], c["signal"], c["value"]) for c in course} == {
        (patient, patient, "phq9", 9)
    }

    alerts = outputs_of(broker.bootstrap, ALERTS, score.event_id)
    item9 = [(a["severity"], a["status"]) for a in alerts if a["rule"] == "phq9_item9"]
    assert item9 == [("urgent", "open")], alerts
    assert {a["_key"] for a in alerts} == {patient}


def test_bad_records_become_dead_letters_with_reasons_and_the_worker_goes_on(
    broker: EmbeddedBroker, worker: WorkerProcess
) -> None:
    patient = new_patient()
    not_json = b'{"kind": "clinical_score", "instrument": "phq9", '
    out_of_range: dict[str, Any] = json.loads(phq9(patient, item9=0).model_dump_json())
    out_of_range["items"]["9"] = 7
    del out_of_range["total"]
    out_of_range_raw = json.dumps(out_of_range).encode()
    misrouted = phq9(patient, item9=0)
    after = phq9(patient, item9=0, day=1)
    produce(
        broker.bootstrap,
        CLINICAL_SCORES,
        [
            (patient.encode(), not_json),
            (patient.encode(), out_of_range_raw),
            (b"not-the-patient", misrouted.model_dump_json().encode()),
            record(after),
        ],
    )

    course = read_until(broker.bootstrap, COURSE, lambda r: bool(caused_by(r, after.event_id)))
    assert caused_by(course, after.event_id), f"the worker stopped:\n{worker.log_tail()}"
    assert worker.running

    digests = {
        hashlib.sha256(raw).hexdigest(): name
        for name, raw in [
            ("not_json", not_json),
            ("out_of_range", out_of_range_raw),
            ("misrouted", misrouted.model_dump_json().encode()),
        ]
    }
    letters = {
        digests[letter["raw_sha256"]]: letter
        for letter in read_until(
            broker.bootstrap,
            DEAD_LETTER,
            lambda r: digests.keys() <= {x["raw_sha256"] for x in r},
        )
        if letter["raw_sha256"] in digests
    }
    assert letters.keys() == {"not_json", "out_of_range", "misrouted"}
    assert letters["not_json"]["reason"].startswith("not valid JSON")
    assert letters["not_json"]["topic"] == CLINICAL_SCORES
    assert any(
        "item 9" in e["message"] and "0-3" in e["message"]
        for e in letters["out_of_range"]["errors"]
    ), letters["out_of_range"]["errors"]
    assert letters["out_of_range"]["patient_id"] == patient
    assert "key is not the event's patient_id" in letters["misrouted"]["reason"]
    assert not caused_by(course, misrouted.event_id)


def test_a_restarted_worker_resumes_from_its_offsets_and_state_without_repeating_alerts(
    broker: EmbeddedBroker, worker: WorkerProcess
) -> None:
    patient = new_patient()
    first = phq9(patient, item9=2, others=2)  # total 18: item-9 alert, baseline 18
    produce(broker.bootstrap, CLINICAL_SCORES, [record(first)])
    assert outputs_of(broker.bootstrap, COURSE, first.event_id), (
        f"no course update before the restart:\n{worker.log_tail()}"
    )

    old_pid = worker.process.pid if worker.process else None
    assert worker.stop() == 0, f"the worker did not stop cleanly:\n{worker.log_tail()}"
    assert old_pid is not None and not process_alive(old_pid)
    lag = _uncommitted(broker.bootstrap, worker.app_id)
    assert lag == {}, f"offsets not committed at a clean stop: {lag}"
    # The worker flushed everything before it stopped: this is all the first event caused.
    alerts_before = _ids(_everything_on(broker.bootstrap, ALERTS), first.event_id)
    assert alerts_before, "no alert for PHQ-9 item 9 before the restart"

    worker.start()
    took = worker.wait_ready()
    # The same record again (an at-least-once re-delivery), then a new one.
    later = phq9(patient, item9=0, others=1, day=7)  # total 8
    produce(broker.bootstrap, CLINICAL_SCORES, [record(first), record(later)])

    course = outputs_of(broker.bootstrap, COURSE, later.event_id)
    assert course, f"nothing after the restart:\n{worker.log_tail()}"
    # The state came back from the changelog: the baseline is still the first score.
    assert [(c["value"], c["baseline"], c["change"]) for c in course] == [(8, 18, -10)]
    everything = _everything_on(broker.bootstrap, ALERTS)
    assert _ids(everything, first.event_id) == alerts_before, "the re-delivered record alerted"
    assert len(caused_by(_everything_on(broker.bootstrap, COURSE), first.event_id)) == 1
    assert took < 30.0


def _everything_on(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    return read_until(bootstrap, topic, lambda r: False, timeout=1.0)


def _ids(records: list[dict[str, Any]], cause: uuid.UUID) -> list[str]:
    return sorted(r["event_id"] for r in caused_by(records, cause))


def _uncommitted(bootstrap: str, group: str) -> dict[str, int]:
    """Records of the input topics that ``group`` has not committed, by partition."""
    return uncommitted(bootstrap, group, INPUT_TOPICS)
