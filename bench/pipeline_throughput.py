"""Events per second through psymon's live pipeline, against a bare faust agent.

Both run in the same run, on the same embedded broker (Tansu), on the same
payloads, each as a worker subprocess:

* **psymon**: ``python -m services.worker``: decode and validate each record,
  read the patient's state from the changelog-backed table, run the core,
  write the state back, produce the outputs;
* **bare**: a faust agent with faust's default settings (raw values, and the
  same short session timeout so that joining the group on Tansu takes 3 s,
  not 30 s) that forwards each record to an output topic untouched: the cost
  of faust and the broker alone.

The input is produced before each worker starts; throughput is measured
between the broker timestamps of the first and the last output, so startup
and group join are not counted. Printed as events/s and the ratio psymon/bare.

Run: ``python bench/pipeline_throughput.py [--events 5000] [--patients 100]``
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from schemas.events import ClinicalScore
from schemas.examples import EXAMPLE_KEY
from schemas.identity import pseudonymise
from schemas.topics import CLINICAL_SCORES, COURSE
from services.embedded import EmbeddedBroker, ensure_topics, spawn_child, stop_child

BARE_IN = "bench.bare-in.v1"
BARE_OUT = "bench.bare-out.v1"
SESSION_TIMEOUT = 6.0
#: Give up on a worker after this long (the whole benchmark stays under ~2 minutes).
WAIT_LIMIT = 50.0


@dataclass(frozen=True)
class Measurement:
    """What one worker did: ``events`` records in ``seconds``, using ``cpu_seconds`` of CPU."""

    name: str
    events: int
    seconds: float
    cpu_seconds: float

    @property
    def rate(self) -> float:
        """Events per wall-clock second."""
        return self.events / self.seconds if self.seconds > 0 else float("inf")

    @property
    def cpu_ms_per_event(self) -> float:
        """Worker CPU per event: steadier than the rate on a busy machine."""
        return 1000 * self.cpu_seconds / self.events if self.events else float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def scores(events: int, patients: int, seed: int = 7) -> list[tuple[bytes, bytes]]:
    """``events`` PHQ-9 scores spread over ``patients``, a week apart per patient, as records."""
    rng = random.Random(seed)
    ids = [pseudonymise(f"bench-{n}", EXAMPLE_KEY, system="bench") for n in range(patients)]
    start = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    records = []
    for n in range(events):
        patient = ids[n % patients]
        when = start + timedelta(days=7 * (n // patients))
        score = ClinicalScore(
            event_id=uuid.UUID(int=rng.getrandbits(128), version=4),
            patient_id=patient,
            observed_at=when,
            received_at=when + timedelta(minutes=5),
            source={"system": "bench"},
            instrument="phq9",
            rater="self",
            items={str(i): rng.randint(0, 3) if i < 9 else 0 for i in range(1, 10)},
        )
        records.append((patient.encode(), score.model_dump_json().encode()))
    return records


def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
    for key, value in records:
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()


def output_span(bootstrap: str, topic: str, expected: int, worker: int) -> Measurement:
    """Wait for outputs of ``expected`` events on ``topic``; time from the first to the last.

    An output names its input in ``caused_by`` (psymon) or is the input itself
    (the bare agent). The worker's CPU is sampled when the first outputs are
    seen and when the last one is.
    """
    import json

    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    seen: set[object] = set()
    first = last = None
    cpu_start = cpu_end = 0.0
    seen_at_start = 0
    deadline = time.monotonic() + WAIT_LIMIT
    try:
        while len(seen) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=100).values():
                for message in batch:
                    document = json.loads(message.value)
                    seen.add(document.get("caused_by", document["event_id"]))
                    stamp = message.timestamp / 1000
                    first = stamp if first is None else min(first, stamp)
                    last = stamp if last is None else max(last, stamp)
            if seen and not seen_at_start:
                cpu_start, seen_at_start = cpu_seconds(worker), len(seen)
        cpu_end = cpu_seconds(worker)
    finally:
        consumer.close()
    if len(seen) < expected or first is None or last is None:
        raise SystemExit(
            f"only {len(seen)} of {expected} events came out on {topic} in {WAIT_LIMIT:.0f} s"
        )
    # n outputs span n-1 gaps; the first event's own processing time is not seen.
    return Measurement(
        topic,
        expected - 1,
        last - first,
        (cpu_end - cpu_start) * expected / (expected - seen_at_start),
    )


def run_worker(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return spawn_child(
            [sys.executable, *args],
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def measure(
    name: str, args: list[str], bootstrap: str, topic: str, events: int, workdir: Path
) -> Measurement:
    log = workdir / f"{name}.log"
    worker = run_worker(args, log)
    try:
        result = output_span(bootstrap, topic, events, worker.pid)
    except SystemExit:
        print(log.read_text(errors="replace")[-3000:], file=sys.stderr)
        raise
    finally:
        code = stop_child(worker, timeout=20)
    if code != 0:
        print(f"note: the {name} worker exited with {code}", file=sys.stderr)
    return Measurement(name, result.events, result.seconds, result.cpu_seconds)


# --------------------------------------------------------------------------- the bare agent


def bare_worker(bootstrap: str, partitions: int, data_dir: str) -> None:
    """A faust agent that forwards raw records: faust and the broker, nothing else."""
    import faust

    app = faust.App(
        "bench-bare",
        broker=f"kafka://{bootstrap}",
        value_serializer="raw",
        key_serializer="raw",
        topic_partitions=partitions,
        web_enabled=False,
        broker_session_timeout=SESSION_TIMEOUT,
        datadir=data_dir,
    )
    source = app.topic(BARE_IN)
    sink = app.topic(BARE_OUT)

    async def forward(stream: faust.StreamT[bytes]) -> None:
        async for key, value in stream.items():
            await sink.send(key=key, value=value)

    app.agent(source, name="bench.forward")(forward)
    worker = faust.Worker(app, loglevel="warning", quiet=True)
    worker.spinner = None  # as services.worker does: the spinner turns on debug logging
    worker.execute_from_commandline()


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--patients", type=int, default=100)
    parser.add_argument("--partitions", type=int, default=2)
    parser.add_argument("--bare-worker", metavar="BOOTSTRAP", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", default=None, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.bare_worker:
        bare_worker(options.bare_worker, options.partitions, options.data_dir)
        return

    started = time.monotonic()
    records = scores(options.events, options.patients)
    with (
        tempfile.TemporaryDirectory(prefix="psymon-bench-") as tmp,
        EmbeddedBroker(partitions=options.partitions) as broker,
    ):
        workdir = Path(tmp)
        ensure_topics(broker.bootstrap, options.partitions, [BARE_IN, BARE_OUT])
        produce(broker.bootstrap, CLINICAL_SCORES, records)
        produce(broker.bootstrap, BARE_IN, records)
        psymon = measure(
            "psymon",
            [
                "-m",
                "services.worker",
                "--bootstrap",
                broker.bootstrap,
                "--partitions",
                str(options.partitions),
                "--app-id",
                "bench-psymon",
                "--data-dir",
                str(workdir / "psymon"),
            ],
            broker.bootstrap,
            COURSE,
            options.events,
            workdir,
        )
        bare = measure(
            "bare",
            [
                str(Path(__file__).resolve()),
                "--bare-worker",
                broker.bootstrap,
                "--partitions",
                str(options.partitions),
                "--data-dir",
                str(workdir / "bare"),
            ],
            broker.bootstrap,
            BARE_OUT,
            options.events,
            workdir,
        )
    print(
        f"pipeline throughput, {options.events} PHQ-9 scores of {options.patients} patients, "
        f"{options.partitions} partitions, embedded Tansu broker, {os.cpu_count()} CPUs"
    )
    print(
        f"  psymon worker (decode, state, core, outputs): {psymon.rate:7.0f} events/s, "
        f"{psymon.cpu_ms_per_event:.2f} ms CPU/event"
    )
    print(
        f"  bare faust agent (forward raw bytes):         {bare.rate:7.0f} events/s, "
        f"{bare.cpu_ms_per_event:.2f} ms CPU/event"
    )
    print(
        f"  ratio psymon / bare: {psymon.rate / bare.rate:.2f} (events/s), "
        f"{psymon.cpu_ms_per_event / bare.cpu_ms_per_event:.1f}x CPU per event"
    )
    print(f"  (benchmark took {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
