"""Messages and samples per second through psymon's live pipeline, against its peers and limits.

Two workloads, each on its own embedded broker (Tansu), in one run:

* **single events**: PHQ-9 scores and lithium/CRP results of many patients
  (one event per message);
* **wearable uploads**: the simulator's uploads, an hour of one-minute
  samples per message (heart rate and sleep, ~120 readings, ~19 KB).

For each, the same records are consumed by:

* **raw aiokafka**: an ``AIOKafkaConsumer`` (default settings) reading the
  topics from the start and touching every value: the transport limit;
* **bare faust**: a faust agent with faust's default settings (raw codecs, and
  the short session timeout so that joining the group on Tansu takes 3 s,
  not 30 s) forwarding each record untouched to an output topic: the cost of
  faust and the broker alone;
* **psymon**: ``python -m services.worker``: decode and validate, dedup, course,
  features, models, rules, state table (changelog) and outputs;
* **handle() in-process**: :func:`streams.app.handle` in a plain loop on the
  same records, no broker: psymon's own share of the per-message CPU.

A worker's rate is taken between the broker timestamps of the first and the
last record it wrote (the bare agent's forwards, psymon's changelog records:
one per applied event), so start-up and group join are not counted. CPU per
message of the worker (and of the broker) over the same span is printed too:
it is steadier than the rate on a shared machine.

The bare agent and the psymon worker run twice each, alternately, and the
best round counts (``--rounds``).

Run: ``python bench/pipeline_throughput.py [--events 12000] [--patients 1200]
[--upload-patients 16] [--upload-days 8] [--rounds 2]`` (about two and a half minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import _harness as h

from schemas.topics import WEARABLE_SAMPLES
from services.embedded import EmbeddedBroker, ensure_topics
from streams import CoreConfig
from streams.app import Record, changelog_topics, handle

BARE_IN = "bench.bare-in.v1"
BARE_OUT = "bench.bare-out.v1"
WAIT = 90.0


@dataclass
class Row:
    """One line of the table: a consumer of the workload."""

    name: str
    messages: int
    seconds: float
    cpu_ms: float
    broker_cpu_ms: float | None = None
    rounds: list[tuple[float, float]] | None = None  # (bare, psymon) msg/s of each round

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else float("inf")


# --------------------------------------------------------------------------- children


def bare_worker(bootstrap: str, partitions: int, app_id: str, data_dir: str) -> None:
    """A faust agent with default settings that forwards raw records."""
    import faust

    app = faust.App(
        app_id,
        broker=f"kafka://{bootstrap}",
        value_serializer="raw",
        key_serializer="raw",
        topic_partitions=partitions,
        web_enabled=False,
        broker_session_timeout=h.SESSION_TIMEOUT,
        datadir=data_dir,
    )
    source = app.topic(BARE_IN)
    sink = app.topic(f"{BARE_OUT}.{app_id}")

    async def forward(stream: faust.StreamT[bytes]) -> None:
        async for key, value in stream.items():
            await sink.send(key=key, value=value)

    app.agent(source, name="bench.forward")(forward)
    worker = faust.Worker(app, loglevel="info", quiet=True)
    worker.spinner = None  # as services.worker does: the spinner turns on debug logging
    worker.execute_from_commandline()


async def raw_consume(bootstrap: str, topics: list[str], partitions: int, count: int) -> None:
    """Read ``count`` records of ``topics`` from the start with a default AIOKafkaConsumer."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(t, p) for t in topics for p in range(partitions)])
        await consumer.seek_to_beginning()
        seen = size = 0
        first = cpu_first = 0.0
        seen_first = 0
        deadline = time.monotonic() + WAIT
        while seen < count and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for messages in batches.values():
                for message in messages:
                    seen += 1
                    size += len(message.value or b"")
            if seen and not seen_first:
                first, cpu_first, seen_first = time.perf_counter(), time.process_time(), seen
        last, cpu_last = time.perf_counter(), time.process_time()
    finally:
        await consumer.stop()
    h.report_child_result(
        {
            "messages": seen - seen_first,
            "seconds": last - first,
            "cpu": cpu_last - cpu_first,
            "complete": seen >= count,
        }
    )


def raw_consume_kafka_python(
    bootstrap: str, topics: list[str], partitions: int, count: int
) -> None:
    """The same with kafka-python (the sink's and the ingest's client), default settings."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        assigned = [TopicPartition(t, p) for t in topics for p in range(partitions)]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        seen = 0
        first = cpu_first = 0.0
        seen_first = 0
        deadline = time.monotonic() + WAIT
        while seen < count and time.monotonic() < deadline:
            for messages in consumer.poll(timeout_ms=500).values():
                seen += len(messages)
            if seen and not seen_first:
                first, cpu_first, seen_first = time.perf_counter(), time.process_time(), seen
        last, cpu_last = time.perf_counter(), time.process_time()
    finally:
        consumer.close()
    h.report_child_result(
        {
            "messages": seen - seen_first,
            "seconds": last - first,
            "cpu": cpu_last - cpu_first,
            "complete": seen >= count,
        }
    )


def crc32c_installed() -> bool:
    """Whether kafka-python checksums with the ``crc32c`` C extension (else: pure Python)."""
    try:
        import crc32c  # noqa: F401
    except ImportError:
        return False
    return True


# --------------------------------------------------------------------------- measuring


def measure_raw(
    bootstrap: str,
    topics: list[str],
    partitions: int,
    count: int,
    workdir: Path,
    client: str = "aiokafka",
) -> Row:
    log = workdir / f"raw-{uuid.uuid4().hex[:6]}.log"
    child = h.spawn(
        [
            str(Path(__file__).resolve()),
            "--raw-consumer" if client == "aiokafka" else "--raw-kafka-python",
            bootstrap,
            "--topics",
            ",".join(topics),
            "--partitions",
            str(partitions),
            "--count",
            str(count),
        ],
        log,
    )
    child.process.wait(timeout=WAIT + 30)
    result = h.read_child_result(child.log_text())
    if not result["complete"]:
        raise SystemExit(f"the raw consumer read fewer than {count} records:\n{child.log_text()}")
    name = "raw aiokafka consumer"
    if client != "aiokafka":
        name = f"raw kafka-python ({'crc32c' if crc32c_installed() else 'no crc32c'})"
    return Row(
        name,
        result["messages"],
        result["seconds"],
        1000 * result["cpu"] / max(1, result["messages"]),
    )


def best(rows: list[Row]) -> Row:
    """The round with the highest rate, with the lowest CPU per message of all rounds."""
    top = max(rows, key=lambda row: row.rate)
    top.cpu_ms = min(row.cpu_ms for row in rows)
    return top


def measure_worker(
    name: str,
    child: h.Child,
    bootstrap: str,
    topic: str,
    count: int,
    broker_pid: int,
    from_offsets: dict[int, int] | None = None,
) -> Row:
    broker_cpu = h.cpu_seconds(broker_pid)
    started = time.monotonic()
    try:
        span = h.timed_span(
            name, bootstrap, topic, count, child.pid, wait=WAIT, from_offsets=from_offsets
        )
    except SystemExit:
        print(child.log_text()[-3000:], file=sys.stderr)
        raise
    # The broker's CPU over the whole wait (start-up of the worker included):
    # scaled to the span, it is an upper bound of the broker's share per message.
    broker_seconds = (h.cpu_seconds(broker_pid) - broker_cpu) * min(
        1.0, span.seconds / max(1e-9, time.monotonic() - started)
    )
    return Row(name, span.records, span.seconds, span.cpu_ms, 1000 * broker_seconds / span.records)


def measure_in_process(records: list[h.Produced], partitions: int) -> Row:
    """:func:`streams.app.handle` over the records in a plain loop (no broker, no faust)."""
    states: dict[bytes, bytes] = {}
    config = CoreConfig()
    stamp = time.time()
    wrapped = [
        Record(topic, hash(key) % partitions, n, key, value, stamp)
        for n, (topic, key, value) in enumerate(records)
    ]
    started, cpu = time.perf_counter(), time.process_time()
    for record in wrapped:
        handle(record, states, config)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return Row("handle() in-process, no broker", len(records), seconds, 1000 * cpu / len(records))


def run_workload(
    label: str,
    records: list[h.Produced],
    partitions: int,
    workdir: Path,
    worker_command: str | None,
    rounds: int,
) -> list[Row]:
    """Every consumer of ``records`` on a fresh broker; the rows of the table.

    The bare agent and the psymon worker run ``rounds`` times, alternately, each
    time in a new consumer group; the best round of each counts (the machine
    may be busy with other work).
    """
    count = len(records)
    topics = h.topics_of(records)
    rows: list[Row] = []
    bare_rounds: list[Row] = []
    psymon_rounds: list[Row] = []
    with EmbeddedBroker(partitions=partitions) as broker:
        bootstrap = broker.bootstrap
        assert broker.pid is not None
        ensure_topics(bootstrap, partitions, [BARE_IN])
        h.produce(bootstrap, records)
        h.produce(bootstrap, h.retopic(records, BARE_IN))
        rows.append(measure_raw(bootstrap, topics, partitions, count, workdir))
        rows.append(measure_raw(bootstrap, topics, partitions, count, workdir, "kafka-python"))
        for n in range(rounds):
            app_id = f"bench-bare-{label}-{n}"
            # A new output topic each round, created beforehand (Tansu would
            # make it with 4 partitions).
            ensure_topics(bootstrap, partitions, [f"{BARE_OUT}.{app_id}"])
            bare = h.spawn(
                [
                    str(Path(__file__).resolve()),
                    "--bare-worker",
                    bootstrap,
                    "--partitions",
                    str(partitions),
                    "--app-id",
                    app_id,
                    "--data-dir",
                    str(workdir / app_id),
                ],
                workdir / f"{app_id}.log",
            )
            try:
                bare_rounds.append(
                    measure_worker(
                        "bare faust agent, defaults",
                        bare,
                        bootstrap,
                        f"{BARE_OUT}.{app_id}",
                        count,
                        broker.pid,
                    )
                )
            finally:
                bare.stop()

            app_id = f"bench-psymon-{label}-{n}"
            changelog = changelog_topics(app_id)
            ensure_topics(bootstrap, partitions, changelog, compacted=changelog)
            psymon = h.psymon_worker(bootstrap, partitions, app_id, workdir, worker_command)
            try:
                psymon_rounds.append(
                    measure_worker(
                        "psymon worker, full", psymon, bootstrap, changelog[0], count, broker.pid
                    )
                )
            finally:
                code = psymon.stop()
            if code != 0:
                print(f"note: the psymon worker exited with {code}", file=sys.stderr)
    rows.append(best(bare_rounds))
    rows.append(best(psymon_rounds))
    rows[-1].rounds = [(b.rate, p.rate) for b, p in zip(bare_rounds, psymon_rounds, strict=True)]
    rows.append(best([measure_in_process(records, partitions) for _ in range(rounds)]))
    return rows


def print_table(title: str, rows: list[Row], samples: int, count: int) -> None:
    print(title)
    per_message = samples / count if samples else 0
    unit = "samples/s" if samples else ""
    for row in rows:
        broker = (
            f"  broker {row.broker_cpu_ms:5.2f} ms CPU/msg" if row.broker_cpu_ms is not None else ""
        )
        extra = f"  {row.rate * per_message:>9,.0f} {unit}" if samples else ""
        print(
            f"  {row.name:<32} {row.rate:>8,.0f} msg/s{extra}  {row.cpu_ms:6.3f} ms CPU/msg{broker}"
        )
    by_name = {row.name: row for row in rows}
    psymon = by_name["psymon worker, full"]
    bare = by_name["bare faust agent, defaults"]
    raw = by_name["raw aiokafka consumer"]
    alone = by_name["handle() in-process, no broker"]
    print(
        f"  ratio psymon / bare faust:   {psymon.rate / bare.rate:5.2f} (msg/s)   "
        f"{bare.cpu_ms / psymon.cpu_ms:5.2f} (inverse CPU per msg)"
    )
    print(
        f"  ratio psymon / raw aiokafka: {psymon.rate / raw.rate:5.2f} (msg/s)   "
        f"{raw.cpu_ms / psymon.cpu_ms:5.2f} (inverse CPU per msg)"
    )
    if psymon.rounds:
        spread = ", ".join(f"{b:,.0f} / {p:,.0f}" for b, p in psymon.rounds)
        print(f"  msg/s of each round (bare faust / psymon): {spread}")
    capacity = 1000 / psymon.cpu_ms
    print(
        f"  CPU-bound capacity (1 / CPU per msg): psymon {capacity:,.0f} msg/s"
        + (f" = {capacity * per_message:,.0f} samples/s" if samples else "")
        + f", bare faust {1000 / bare.cpu_ms:,.0f} msg/s"
    )
    print(
        f"  psymon's own work (handle() alone) is {alone.cpu_ms / psymon.cpu_ms:.0%} "
        f"of the worker's CPU per message"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--events", type=int, default=12_000, help="single events")
    parser.add_argument("--patients", type=int, default=1_200, help="patients of the single events")
    parser.add_argument("--upload-patients", type=int, default=16)
    parser.add_argument("--upload-days", type=int, default=8)
    parser.add_argument("--partitions", type=int, default=2)
    parser.add_argument(
        "--only", choices=["single", "wearable"], default=None, help="run one workload only"
    )
    parser.add_argument(
        "--worker-command",
        default=None,
        help="python arguments that start a variant worker instead of `-m services.worker`",
    )
    parser.add_argument("--bare-worker", metavar="BOOTSTRAP", help=argparse.SUPPRESS)
    parser.add_argument("--raw-consumer", metavar="BOOTSTRAP", help=argparse.SUPPRESS)
    parser.add_argument("--raw-kafka-python", metavar="BOOTSTRAP", help=argparse.SUPPRESS)
    parser.add_argument("--topics", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--app-id", default="bench-bare", help=argparse.SUPPRESS)
    parser.add_argument(
        "--rounds", type=int, default=2, help="runs of the bare agent and psymon; best counts"
    )
    options = parser.parse_args()
    if options.bare_worker:
        bare_worker(options.bare_worker, options.partitions, options.app_id, options.data_dir)
        return
    if options.raw_kafka_python:
        raw_consume_kafka_python(
            options.raw_kafka_python, options.topics.split(","), options.partitions, options.count
        )
        return
    if options.raw_consumer:
        asyncio.run(
            raw_consume(
                options.raw_consumer, options.topics.split(","), options.partitions, options.count
            )
        )
        return

    started = time.monotonic()
    print(
        f"pipeline throughput, embedded Tansu broker, {options.partitions} partitions, "
        f"{h.machine()}"
    )
    with tempfile.TemporaryDirectory(prefix="psymon-bench-") as tmp:
        workdir = Path(tmp)
        if options.only in (None, "single"):
            records = h.single_events(options.events, options.patients)
            rows = run_workload(
                "single",
                records,
                options.partitions,
                workdir,
                options.worker_command,
                options.rounds,
            )
            print_table(
                f"single events: {len(records):,} PHQ-9 scores and lab results of "
                f"{options.patients:,} patients",
                rows,
                0,
                len(records),
            )
        if options.only in (None, "wearable"):
            uploads, samples = h.wearable_uploads(options.upload_patients, options.upload_days)
            assert all(topic == WEARABLE_SAMPLES for topic, _, _ in uploads)
            rows = run_workload(
                "wearable",
                uploads,
                options.partitions,
                workdir,
                options.worker_command,
                options.rounds,
            )
            print_table(
                f"wearable uploads: {len(uploads):,} uploads, {samples:,} one-minute samples "
                f"({samples / len(uploads):.0f} per upload) of {options.upload_patients} patients",
                rows,
                samples,
                len(uploads),
            )
    print(f"  (benchmark took {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
