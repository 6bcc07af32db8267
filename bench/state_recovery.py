"""Recovery of a worker's state from its changelog: N patients, restart, first new event.

On the embedded broker (Tansu), in one run:

* the changelog topic of a worker is filled with the states of N patients
  (90-day simulated states, each a copy under its own pseudonym, keyed and
  partitioned as the worker writes them);
* a worker with that app id is started and, at once, a new PHQ-9 of one of
  those patients is produced; the time from the worker's start to that
  event's course update on ``psymon.course.v1`` is measured, and the update
  is checked to carry the restored baseline (the state was really restored);
* the same with an empty changelog gives the start-up cost (process start,
  group join, ~3 s on Tansu): recovery time = the difference.

The worker's resident memory once it has restored the N states is printed too.

Run: ``python bench/state_recovery.py [--counts 10000,100000]`` (about two minutes).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import _harness as h

from schemas.events import ClinicalScore
from schemas.topics import CLINICAL_SCORES, COURSE
from services.embedded import EmbeddedBroker, ensure_topics
from streams.app import changelog_topics

WAIT = 240.0


def probe(patient: str) -> ClinicalScore:
    """A new PHQ-9 of ``patient``, later than any simulated history and not after now.

    A fixed date ran out: a score received more than a day after the worker's
    clock is a dead letter, and then no course update ever comes.
    """
    when = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    return ClinicalScore(
        event_id=uuid.uuid4(),
        patient_id=patient,
        observed_at=when,
        received_at=when,
        source={"system": "bench"},
        instrument="phq9",
        rater="self",
        items={str(i): 3 if i < 9 else 0 for i in range(1, 10)},
    )


def first_output(bootstrap: str, event_id: str, deadline: float) -> dict[str, object]:
    """The course update caused by ``event_id``, once it is on the topic."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=20
    )
    partitions = [TopicPartition(COURSE, p) for p in sorted(consumer.partitions_for_topic(COURSE))]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    try:
        while time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=50).values():
                for message in batch:
                    update: dict[str, object] = json.loads(message.value)
                    if update.get("caused_by") == event_id:
                        return update
    finally:
        consumer.close()
    raise SystemExit(f"no course update for the probe event within {WAIT} s")


def restart(
    bootstrap: str, partitions: int, app_id: str, patient: str, workdir: Path
) -> tuple[float, float, dict[str, object], int]:
    """Start a worker, send a new event of ``patient`` at once; (s to ready, s to output, ...)."""
    score = probe(patient)
    started = time.monotonic()
    worker = h.psymon_worker(bootstrap, partitions, app_id, workdir)
    try:
        h.produce(
            bootstrap, [(CLINICAL_SCORES, patient.encode(), score.model_dump_json().encode())]
        )
        update = first_output(bootstrap, str(score.event_id), started + WAIT)
        to_output = time.monotonic() - started
        ready_at = _ready_seconds(worker.log_text(), started, to_output)
        rss = h.rss_bytes(worker.pid)
    finally:
        worker.stop()
    return ready_at, to_output, update, rss


def _ready_seconds(log: str, started: float, to_output: float) -> float:
    """Seconds from start to faust's "Ready" log line, else ``to_output``."""
    stamps = [line[1:24] for line in log.splitlines() if h.READY in line and line.startswith("[")]
    if not stamps:
        return to_output
    ready = datetime.strptime(stamps[-1], "%Y-%m-%d %H:%M:%S,%f").timestamp()
    wall_start = time.time() - (time.monotonic() - started)
    return ready - wall_start


def fill_changelog(
    bootstrap: str, changelog: str, count: int, templates: list[tuple[str, bytes]]
) -> tuple[str, int, float]:
    """N cloned states on ``changelog``; (a patient with a PHQ-9 course, its baseline, seconds)."""
    patients = h.patient_ids(count, prefix=f"recovery-{count}")
    with_phq9 = [
        n for n, (_, text) in enumerate(templates) if json.loads(text)["courses"].get("phq9")
    ]
    if not with_phq9:
        raise SystemExit("no simulated patient has a PHQ-9 course; raise --patients")
    chosen = with_phq9[0]
    started = time.monotonic()
    h.produce(
        bootstrap,
        (
            (changelog, patient.encode(), h.clone_state(templates[n % len(templates)], patient))
            for n, patient in enumerate(patients)
        ),
    )
    baseline = json.loads(templates[chosen][1])["courses"]["phq9"]["baseline"]
    return patients[chosen], int(baseline), time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--counts", default="10000,100000", help="patients in the changelog")
    parser.add_argument("--patients", type=int, default=12, help="simulated patients (templates)")
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--partitions", type=int, default=2)
    options = parser.parse_args()
    started = time.monotonic()
    print(
        f"state recovery from the changelog, embedded Tansu broker, {options.partitions} "
        f"partitions, {h.machine()}"
    )
    templates = h.simulated_states(options.patients, options.days)
    sizes = sorted(len(text) for _, text in templates)
    print(
        f"  states: {options.days}-day simulated states, JSON {sizes[len(sizes) // 2]:,} B median"
    )
    with (
        tempfile.TemporaryDirectory(prefix="psymon-bench-") as tmp,
        EmbeddedBroker(partitions=options.partitions) as broker,
    ):
        bootstrap = broker.bootstrap
        workdir = Path(tmp)
        empty_id = "bench-recovery-empty"
        empty_patient = h.patient_ids(1, prefix="recovery-empty")[0]
        ensure_topics(
            bootstrap,
            options.partitions,
            changelog_topics(empty_id),
            compacted=changelog_topics(empty_id),
        )
        ready0, output0, _, rss0 = restart(
            bootstrap, options.partitions, empty_id, empty_patient, workdir
        )
        print(
            f"  empty changelog:   ready after {ready0:5.1f} s, first new event processed after "
            f"{output0:5.1f} s, worker RSS {rss0 / 2**20:5.0f} MiB"
        )
        for count in (int(c) for c in options.counts.split(",")):
            app_id = f"bench-recovery-{count}"
            changelog = changelog_topics(app_id)[0]
            ensure_topics(bootstrap, options.partitions, [changelog], compacted=[changelog])
            patient, baseline, fill = fill_changelog(bootstrap, changelog, count, templates)
            ready, output, update, rss = restart(
                bootstrap, options.partitions, app_id, patient, workdir
            )
            restored = update.get("baseline") == baseline
            recovery = output - output0
            print(
                f"  {count:>7,} patients: ready after {ready:5.1f} s, first new event processed "
                f"after {output:5.1f} s -> recovery {recovery:5.1f} s "
                f"({count / max(recovery, 1e-3):,.0f} patients/s), "
                f"worker RSS {rss / 2**20:5.0f} MiB "
                f"({(rss - rss0) / count / 1024:.1f} KiB/patient); state restored: "
                f"{'yes' if restored else 'NO'} (changelog filled in {fill:.0f} s)"
            )
    print(f"  (benchmark took {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
