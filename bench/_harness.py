"""Shared pieces of the benchmarks: workloads, worker subprocesses, timing from the broker.

Not a benchmark itself (``make bench`` runs it and it prints one line). Every
benchmark script imports it as ``_harness`` (scripts run as
``python bench/<name>.py``, so ``bench/`` is on ``sys.path``).

Rates are measured between broker timestamps of the first and the last record
a worker wrote, so process start, consumer-group join and table recovery are
not counted; CPU is read from ``/proc/<pid>/stat`` over the same span, which
is steadier than the rate when the machine is busy with other work.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from schemas.events import ClinicalScore, LabResult
from schemas.examples import EXAMPLE_KEY
from schemas.identity import pseudonymise
from schemas.topics import topic_for_kind
from services.embedded import spawn_child, stop_child

#: What faust logs (at info level) once a worker has its partitions and recovered its tables.
READY = "[^Worker]: Ready"
SESSION_TIMEOUT = 6.0

#: (topic, key, value) of one record to produce.
Produced = tuple[str, bytes, bytes]


# --------------------------------------------------------------------------- processes


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    """Resident set size of process ``pid`` (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def rss_bytes_self() -> int:
    """Resident set size of this process."""
    return rss_bytes(os.getpid())


def machine() -> str:
    """One line naming what the figures were measured on."""
    load = os.getloadavg()[0]
    return (
        f"{os.cpu_count()} CPUs, load average {load:.1f} at start, Python {sys.version.split()[0]}"
    )


@dataclass
class Child:
    """A subprocess of the benchmark with its log file."""

    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Seconds until faust logs that the worker is ready."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                raise SystemExit(f"the worker exited early:\n{self.log_text()[-3000:]}")
            if READY in self.log_text():
                return time.monotonic() - started
            time.sleep(0.05)
        raise SystemExit(f"the worker was not ready after {timeout} s:\n{self.log_text()[-3000:]}")

    def stop(self) -> int | None:
        return stop_child(self.process, timeout=20)


def spawn(args: Sequence[str], log: Path) -> Child:
    """Start ``python ARGS`` with its output in ``log``."""
    with log.open("ab") as out:
        process = spawn_child(
            [sys.executable, *args],
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return Child(process, log)


def psymon_worker(
    bootstrap: str, partitions: int, app_id: str, workdir: Path, command: str | None = None
) -> Child:
    """``python -m services.worker`` (or ``command``, for trying a variant) in its own group."""
    prefix = command.split() if command else ["-m", "services.worker"]
    return spawn(
        [
            *prefix,
            "--bootstrap",
            bootstrap,
            "--partitions",
            str(partitions),
            "--app-id",
            app_id,
            "--data-dir",
            str(workdir / app_id),
            "--loglevel",
            "info",
        ],
        workdir / f"{app_id}.log",
    )


# --------------------------------------------------------------------------- topics


def produce(bootstrap: str, records: Iterable[Produced]) -> int:
    """Send records (keyed, in order) and wait until the broker has them all.

    aiokafka, not kafka-python: without the ``crc32c`` package kafka-python
    checksums every batch in pure Python (~18x slower for 8 KB values, measured).
    """

    async def send_all() -> int:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            linger_ms=20,
            max_batch_size=1_000_000,
            max_request_size=8 * 1024 * 1024,
        )
        await producer.start()
        count = 0
        try:
            for topic, key, value in records:
                await producer.send(topic, value=value, key=key)
                count += 1
            await producer.flush()
        finally:
            await producer.stop()
        return count

    return asyncio.run(send_all())


@dataclass(frozen=True)
class Span:
    """``records`` records written between two broker timestamps, and the writer's CPU."""

    name: str
    records: int
    seconds: float
    cpu_seconds: float
    units: int = 0  # samples, for wearable uploads

    @property
    def rate(self) -> float:
        """Records per wall-clock second."""
        return self.records / self.seconds if self.seconds > 0 else float("inf")

    @property
    def unit_rate(self) -> float:
        """Units (samples) per wall-clock second."""
        return self.units / self.seconds if self.seconds > 0 else float("inf")

    @property
    def cpu_ms(self) -> float:
        """Writer CPU milliseconds per record."""
        return 1000 * self.cpu_seconds / self.records if self.records else float("nan")


def timed_span(
    name: str,
    bootstrap: str,
    topic: str,
    expected: int,
    pid: int,
    *,
    wait: float = 60.0,
    from_offsets: dict[int, int] | None = None,
) -> Span:
    """Wait for ``expected`` records on ``topic``; time from the first one to the last.

    The worker's CPU (``pid``) is sampled when the first records are seen and
    when the last one is, and scaled to the records in between.
    """
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        fetch_max_wait_ms=50,
        max_partition_fetch_bytes=16 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
    consumer.assign(partitions)
    for tp in partitions:
        if from_offsets is not None and tp.partition in from_offsets:
            consumer.seek(tp, from_offsets[tp.partition])
        else:
            consumer.seek_to_beginning(tp)
    seen = 0
    first = last = None
    cpu_start = 0.0
    seen_at_start = 0
    deadline = time.monotonic() + wait
    try:
        while seen < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=100).values():
                for message in batch:
                    seen += 1
                    stamp = message.timestamp / 1000
                    first = stamp if first is None else min(first, stamp)
                    last = stamp if last is None else max(last, stamp)
            if seen and not seen_at_start:
                cpu_start, seen_at_start = cpu_seconds(pid), seen
        cpu_end = cpu_seconds(pid)
    finally:
        consumer.close()
    if seen < expected or first is None or last is None:
        raise SystemExit(
            f"{name}: only {seen} of {expected} records came out on {topic} in {wait} s"
        )
    # n records span n-1 gaps; the CPU seen between the first poll and the end is
    # scaled to the records written in that time.
    share = (expected - seen_at_start) / expected if expected > seen_at_start else 1.0
    return Span(name, expected - 1, last - first, (cpu_end - cpu_start) / max(share, 1e-9))


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """The next offset of every partition of ``topic`` (not ListOffsets': short on Tansu)."""
    from kafka import KafkaConsumer, TopicPartition

    from services.embedded.offsets import end_offsets as fetched_ends

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        return {tp.partition: end for tp, end in fetched_ends(consumer, partitions).items()}
    finally:
        consumer.close()


def count_records(bootstrap: str, topic: str) -> int:
    """Records on ``topic`` now (end offsets; the topics are never compacted here)."""
    return sum(end_offsets(bootstrap, topic).values())


# --------------------------------------------------------------------------- workloads


def patient_ids(count: int, prefix: str = "bench") -> list[str]:
    return [pseudonymise(f"{prefix}-{n}", EXAMPLE_KEY, system="bench") for n in range(count)]


def single_events(
    events: int, patients: int, seed: int = 7, lab_share: float = 0.2
) -> list[Produced]:
    """``events`` single events of ``patients`` patients: PHQ-9 scores and lithium/CRP labs.

    Each patient is rated weekly; item 9 (thoughts of self-harm) is 0, so the
    workload is the ordinary path (course, bands, deterioration), not alerts.
    """
    rng = random.Random(seed)
    ids = patient_ids(patients)
    start = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    records: list[Produced] = []
    for n in range(events):
        patient = ids[n % patients]
        when = start + timedelta(days=7 * (n // patients), minutes=rng.randrange(600))
        envelope: dict[str, Any] = {
            "event_id": uuid.UUID(int=rng.getrandbits(128), version=4),
            "patient_id": patient,
            "observed_at": when,
            "received_at": when + timedelta(minutes=5),
            "source": {"system": "bench"},
        }
        event: ClinicalScore | LabResult
        if rng.random() < lab_share:
            analyte, value, unit = rng.choice(
                [("lithium", rng.uniform(0.4, 1.1), "mmol/L"), ("crp", rng.uniform(0.5, 8), "mg/L")]
            )
            event = LabResult(**envelope, analyte=analyte, value=round(value, 2), unit=unit)
        else:
            items = {str(i): rng.randint(0, 3) if i < 9 else 0 for i in range(1, 10)}
            event = ClinicalScore(**envelope, instrument="phq9", rater="self", items=items)
        records.append(
            (topic_for_kind(event.kind), patient.encode(), event.model_dump_json().encode())
        )
    return records


def item9_score(patient: str, n: int, when: datetime) -> ClinicalScore:
    """A PHQ-9 with item 9 (thoughts of self-harm) > 0: the safety rule alerts on arrival."""
    items = {str(i): (n + i) % 3 for i in range(1, 9)} | {"9": 1 + n % 3}
    return ClinicalScore(
        event_id=uuid.uuid4(),
        patient_id=patient,
        observed_at=when,
        received_at=when,
        source={"system": "bench"},
        instrument="phq9",
        rater="self",
        items=items,
    )


def wearable_uploads(patients: int, days: int, seed: int = 11) -> tuple[list[Produced], int]:
    """The simulator's uploads of one-minute samples (an hour per upload), and their samples.

    Heart rate and sleep every minute (steps where recorded), with the
    simulator's artefacts: re-sent uploads, late uploads, gaps.
    """
    from services.simulator import simulate_cohort

    cohort = simulate_cohort(
        patients, days, seed=seed, start=datetime(2026, 1, 5, tzinfo=UTC), samples_per_hour=60
    )
    records: list[Produced] = []
    samples = 0
    for event in cohort.events():
        if event.kind != "wearable_upload":
            continue
        samples += len(event.readings)
        records.append(
            (
                topic_for_kind(event.kind),
                event.patient_id.encode(),
                event.model_dump_json().encode(),
            )
        )
    return records, samples


def simulated_states(patients: int, days: int, seed: int = 21) -> list[tuple[str, bytes]]:
    """(pseudonym, JSON state) of simulated patients after ``days`` of history.

    Wearable readings are 4 per hour: the state keeps daily features, not
    samples, so the sampling rate barely changes its size.
    """
    from services.replay.engine import final_states
    from services.simulator import simulate_cohort

    cohort = simulate_cohort(
        patients, days, seed=seed, start=datetime(2026, 1, 5, tzinfo=UTC), samples_per_hour=4
    )
    states = final_states(cohort.events())
    return [(patient, state.model_dump_json().encode()) for patient, state in states.items()]


def clone_state(template: tuple[str, bytes], patient: str) -> bytes:
    """``template``'s JSON state as the state of ``patient``."""
    original, text = template
    return text.replace(original.encode(), patient.encode())


def topics_of(records: Iterable[Produced]) -> list[str]:
    return sorted({topic for topic, _, _ in records})


def retopic(records: Iterable[Produced], topic: str) -> list[Produced]:
    """The same keys and values on another topic."""
    return [(topic, key, value) for _, key, value in records]


__all__ = [
    "Child",
    "Span",
    "clone_state",
    "count_records",
    "cpu_seconds",
    "end_offsets",
    "item9_score",
    "machine",
    "produce",
    "psymon_worker",
    "retopic",
    "rss_bytes",
    "rss_bytes_self",
    "simulated_states",
    "single_events",
    "spawn",
    "timed_span",
    "topics_of",
    "wearable_uploads",
]


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def report_child_result(result: dict[str, Any]) -> None:
    """A child process's measurement, as one JSON line on stdout."""
    print("RESULT " + _json(result), flush=True)


def read_child_result(text: str) -> dict[str, Any]:
    """The measurement a child printed with :func:`report_child_result`."""
    for line in reversed(text.splitlines()):
        if line.startswith("RESULT "):
            loaded: dict[str, Any] = json.loads(line[len("RESULT ") :])
            return loaded
    raise SystemExit(f"the child printed no result:\n{text[-3000:]}")


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``condition`` until it holds; seconds waited."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise SystemExit(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - started


if __name__ == "__main__":
    print("shared helpers of the benchmarks (nothing to measure here)")
