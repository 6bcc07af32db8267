"""Event-to-alert latency at a steady load of half the worker's measured maximum.

In one run, on the embedded broker (Tansu), one ``python -m services.worker``:

1. **maximum**: a backlog of PHQ-9 scores with item 9 > 0 (thoughts of
   self-harm: the safety rule raises an urgent alert on arrival) is produced
   and the worker's rate is measured between the broker timestamps of its
   first and last changelog record (one per applied event);
2. **steady load**: new scores of the same kind are produced at half that
   rate for ``--seconds``, each record stamped with its produce time; a
   consumer of ``psymon.alerts.v1`` notes when each ``phq9_item9`` alert
   arrives. Latency = arrival - produce time, per event (p50, p90, p99, max).
   The worker's own share (the alert record's broker timestamp, set when the
   worker sent it, minus the produce time) is printed too.

Run: ``python bench/alert_latency.py [--patients 1000] [--backlog 6000] [--seconds 20]``
(about a minute). Target: p99 <= 250 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import quantiles

import _harness as h

from schemas.topics import ALERTS, CLINICAL_SCORES
from services.embedded import EmbeddedBroker, ensure_topics
from streams.app import changelog_topics

RULE = "phq9_item9"


#: When the first score was observed: far enough back for every score to lie in the past
#: (a score received after the broker's clock is a dead letter, and raises no alert).
#: A fixed date ran out: a worker as fast as 4,400 events/s reached December 2026.
START = (datetime.now(UTC) - timedelta(weeks=520)).replace(
    hour=9, minute=0, second=0, microsecond=0
)


def scores(patients: list[str], count: int, offset: int) -> list[tuple[str, bytes, bytes]]:
    """``count`` item-9 scores round the patients, a week apart per patient."""
    records = []
    for n in range(offset, offset + count):
        patient = patients[n % len(patients)]
        when = START + timedelta(days=7 * (n // len(patients)))
        score = h.item9_score(patient, n, when)
        records.append((CLINICAL_SCORES, patient.encode(), score.model_dump_json().encode()))
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--backlog", type=int, default=6000, help="events to measure the maximum")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the steady load")
    parser.add_argument("--partitions", type=int, default=2)
    parser.add_argument(
        "--rate", type=float, default=None, help="steady events/s (default: half the maximum)"
    )
    parser.add_argument("--worker-command", default=None, help=argparse.SUPPRESS)
    options = parser.parse_args()
    started = time.monotonic()
    print(
        f"event-to-alert latency, embedded Tansu broker, {options.partitions} partitions, "
        f"{h.machine()}"
    )
    patients = h.patient_ids(options.patients, prefix="latency")
    app_id = "bench-latency"
    changelog = changelog_topics(app_id)[0]
    with (
        tempfile.TemporaryDirectory(prefix="psymon-bench-") as tmp,
        EmbeddedBroker(partitions=options.partitions) as broker,
    ):
        bootstrap = broker.bootstrap
        ensure_topics(bootstrap, options.partitions, [changelog], compacted=[changelog])
        worker = h.psymon_worker(
            bootstrap, options.partitions, app_id, Path(tmp), options.worker_command
        )
        try:
            worker.wait_ready()
            # 1. the maximum, on a backlog
            backlog = scores(patients, options.backlog, 0)
            before = h.end_offsets(bootstrap, changelog)
            h.produce(bootstrap, backlog)
            span = h.timed_span(
                "maximum", bootstrap, changelog, len(backlog), worker.pid, from_offsets=before
            )
            rate = options.rate or span.rate / 2
            print(
                f"  maximum: {span.rate:,.0f} events/s ({span.cpu_ms:.3f} ms worker CPU/event); "
                f"steady load: {rate:,.0f} events/s for {options.seconds:.0f} s"
            )
            # 2. half of it, steadily
            steady = scores(patients, int(rate * options.seconds), options.backlog)
            cpu, wall = h.cpu_seconds(worker.pid), time.monotonic()
            bench_cpu = time.process_time()
            latencies, worker_part = measure_steady(
                bootstrap, steady, rate, options.seconds, options.partitions
            )
            wall = time.monotonic() - wall
            busy = (h.cpu_seconds(worker.pid) - cpu) / wall
            bench_busy = (time.process_time() - bench_cpu) / wall
            print(
                f"  during the steady load the worker used {busy:.0%} of a CPU, "
                f"this benchmark's producer and consumer {bench_busy:.0%}"
            )
        finally:
            worker.stop()
    if len(latencies) < len(steady):
        print(
            f"  note: {len(steady) - len(latencies)} of {len(steady)} alerts did not arrive in time"
        )
    report("event -> alert arrival", latencies)
    report("event -> alert sent by the worker", worker_part)
    p99 = quantiles(latencies, n=100)[98]
    print(f"  target p99 <= 250 ms: {'met' if p99 <= 250 else 'missed'} ({p99:.0f} ms)")
    print(f"  (benchmark took {time.monotonic() - started:.0f} s)")


def measure_steady(
    bootstrap: str,
    records: list[tuple[str, bytes, bytes]],
    rate: float,
    seconds: float,
    partitions: int,
) -> tuple[list[float], list[float]]:
    """Produce ``records`` at ``rate``; the latency (ms) of each item-9 alert that arrives.

    Producer and consumer share one asyncio loop with aiokafka (its record
    batches are built in C), so that the load generator takes little of the
    CPU the worker needs.
    """
    return asyncio.run(_steady(bootstrap, records, rate, seconds, partitions))


async def _steady(
    bootstrap: str,
    records: list[tuple[str, bytes, bytes]],
    rate: float,
    seconds: float,
    partitions: int,
) -> tuple[list[float], list[float]]:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    ids = [json.loads(value)["event_id"] for _, _, value in records]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=10
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2)
    await consumer.start()
    await producer.start()
    sent_at: dict[str, float] = {}

    async def send_steadily() -> None:
        started = time.time()
        for n, (topic, key, value) in enumerate(records):
            pause = started + n / rate - time.time()
            if pause > 0:
                await asyncio.sleep(pause)
            now = time.time()
            sent_at[ids[n]] = now
            await producer.send(topic, value=value, key=key, timestamp_ms=int(now * 1000))
        await producer.flush()

    latencies: list[float] = []
    worker_part: list[float] = []
    try:
        assigned = [TopicPartition(ALERTS, p) for p in range(partitions)]
        consumer.assign(assigned)
        await consumer.seek_to_end(*assigned)
        for tp in assigned:
            await consumer.position(tp)  # resolve the end now, before anything is produced
        sending = asyncio.create_task(send_steadily())
        deadline = time.monotonic() + seconds + 30
        while len(latencies) < len(records) and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=20)
            arrived = time.time()
            for messages in batches.values():
                for message in messages:
                    alert = json.loads(message.value or b"{}")
                    sent = sent_at.get(alert.get("caused_by", ""))
                    if alert.get("rule") != RULE or sent is None:
                        continue
                    latencies.append(1000 * (arrived - sent))
                    worker_part.append(message.timestamp - 1000 * sent)
        await sending
    finally:
        await producer.stop()
        await consumer.stop()
    return latencies, worker_part


def report(label: str, values: list[float]) -> None:
    if len(values) < 2:
        print(f"  {label}: too few values ({len(values)})")
        return
    cuts = quantiles(values, n=100)
    print(
        f"  {label:<36} p50 {cuts[49]:6.1f} ms  p90 {cuts[89]:6.1f} ms  "
        f"p99 {cuts[98]:6.1f} ms  max {max(values):6.1f} ms  ({len(values):,} alerts)"
    )


if __name__ == "__main__":
    main()
