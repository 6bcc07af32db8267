"""Events per second of an offline replay against the live pipeline, on the same data.

In one run, on one simulated cohort (wearable uploads, scores, labs, re-sent
duplicates, late uploads):

* **live**: the embedded broker (Tansu), a stream worker subprocess
  (``python -m services.worker``) and the sink (``run_sink`` in a thread) into
  the embedded PostgreSQL. The cohort is produced keyed by patient, each
  patient's history in arrival order; before a patient switches topic the
  producer waits until the worker has applied what was sent (it writes one
  changelog record per applied event), as a worker keeping up with real-time
  traffic would see it. The worker's rate is measured between the broker
  timestamps of its first and last changelog record of each such wave
  (startup, group join and the waits between waves are not counted).
* **replay, one process**: :func:`services.replay.replay_outputs` over the
  stored history (``jobs=1``): read from PostgreSQL, decode, run the core.
* **replay, N processes**: the same with ``jobs=N`` (default: one per CPU),
  patients shared out among N processes and the outputs merged in the
  one-process order (:mod:`services.replay.shards`). Its CPU per event is
  that of all the processes (this one and its children).
* **core only**: the same events already in memory through the core, for
  reference.

Both replays run after the sink has stored the live outputs and stopped (a
first, unmeasured replay tells when it has), so that they are measured in
the same conditions and this process runs no other thread (the replay's
processes are then forked, as under ``psymon replay``). Each is run three
times, alternately, and the median rate is printed with the range: a run
takes under a second, so a moment of other work on the machine moves one run
a lot. Their outputs are compared with the live outputs the sink stored
(event ids and content), and with each other (the same outputs in the same
order): the ratios are only printed for identical outputs. Also printed: the
time to rebuild one patient's state from the store
(:class:`services.rebuild.StateRebuilder`).

Run: ``python bench/replay_throughput.py [--patients 12] [--days 30] [--samples-per-hour 4]
[--jobs N]`` (about half a minute).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from pydantic import TypeAdapter

from schemas.events import AnyEvent
from services.embedded import EmbeddedBroker, spawn_child, stop_child
from services.embedded.offsets import end_offsets
from services.embedded.postgres import EmbeddedPostgres
from services.producer import key_of, topic_of
from services.rebuild import StateRebuilder
from services.replay import replay_outputs
from services.replay.engine import run_core
from services.replay.shards import default_jobs, processes_for
from services.simulator import simulate_cohort
from services.sink import run_sink
from services.store.migrate import migrate
from services.store.migrations import MIGRATIONS, v0005_audit
from streams.app import changelog_topics

_ANY: TypeAdapter[Any] = TypeAdapter(AnyEvent)
WAIT = 60.0
#: Timed runs of each replay (the median is printed: one run is under a second).
RUNS = 3
READY = "[^Worker]: Ready"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_worker(bootstrap: str, partitions: int, workdir: Path) -> tuple[Any, Path, str]:
    """A worker subprocess with its own consumer group, once faust says it is ready."""
    app_id = f"bench-replay-{uuid.uuid4().hex[:6]}"
    log = workdir / "worker.log"
    with log.open("ab") as out:
        child = spawn_child(
            [
                sys.executable,
                "-m",
                "services.worker",
                "--bootstrap",
                bootstrap,
                "--partitions",
                str(partitions),
                "--app-id",
                app_id,
                "--data-dir",
                str(workdir / "worker"),
                "--loglevel",
                "info",
            ],
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + WAIT
    while READY not in log.read_text(errors="replace"):
        if child.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the worker did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    return child, log, app_id


def produce_in_waves(
    bootstrap: str, changelog: str, events: list[Any], worker_pid: int
) -> tuple[int, float, float]:
    """Produce each patient's history in arrival order (see the module docstring).

    Returns the events applied, the worker's busy seconds and its CPU seconds.
    """
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    runs: dict[str, list[list[Any]]] = {}
    for event in events:
        mine = runs.setdefault(event.patient_id, [])
        if mine and topic_of(mine[-1][-1]) == topic_of(event):
            mine[-1].append(event)
        else:
            mine.append([event])
    keys = {p.encode() for p in runs}
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    partitions = [TopicPartition(changelog, p) for p in consumer.partitions_for_topic(changelog)]
    consumer.assign(partitions)
    # From the true ends: Tansu lists them short of the last batch (services.embedded.offsets).
    for tp, end in end_offsets(consumer, partitions).items():
        consumer.seek(tp, end)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
    sent = applied = 0
    busy = cpu = 0.0
    try:
        while any(runs.values()):
            wave = [mine.pop(0) for mine in runs.values() if mine]
            cpu_before = cpu_seconds(worker_pid)
            for run in wave:
                for e in run:
                    producer.send(topic_of(e), key=key_of(e), value=e.model_dump_json().encode())
            producer.flush()
            sent += sum(len(run) for run in wave)
            first = last = None
            deadline = time.monotonic() + WAIT
            while applied < sent:
                if time.monotonic() > deadline:
                    raise SystemExit(f"the worker applied {applied} of {sent} events")
                for batch in consumer.poll(timeout_ms=50).values():
                    for message in batch:
                        if message.key in keys:
                            applied += 1
                            stamp = message.timestamp / 1000
                            first = stamp if first is None else min(first, stamp)
                            last = stamp if last is None else max(last, stamp)
            busy += (last or 0.0) - (first or 0.0)
            cpu += cpu_seconds(worker_pid) - cpu_before
    finally:
        producer.close()
        consumer.close()
    return applied, busy, cpu


def children_cpu_seconds() -> float:
    """User + system CPU time of this process's finished (waited-for) children."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Replays:
    """Timed runs of one kind of replay: their outputs, seconds and CPU seconds."""

    jobs: int
    outputs: list[Any] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def run(self, url: str) -> None:
        """Replay once; keep the outputs (in order), the seconds and all its processes' CPU."""
        cpu_before, started = time.process_time() + children_cpu_seconds(), time.perf_counter()
        self.outputs = list(replay_outputs(url, who="bench", jobs=self.jobs))
        self.seconds.append(time.perf_counter() - started)
        self.cpu.append(time.process_time() + children_cpu_seconds() - cpu_before)

    def rate(self, events: int) -> float:
        """Events per second of the median run."""
        return events / statistics.median(self.seconds)

    def spread(self, events: int) -> str:
        return f"{events / max(self.seconds):.0f}-{events / min(self.seconds):.0f}"

    def cpu_ms(self, events: int) -> float:
        """CPU milliseconds per event over all runs."""
        return 1000 * sum(self.cpu) / (events * len(self.cpu))


def stored(url: str, patients: list[str]) -> tuple[int, dict[str, dict[str, Any]]]:
    with psycopg.connect(url) as conn:
        inputs = conn.execute(
            "SELECT count(*) FROM v_input_events WHERE patient_id = ANY(%s)", (patients,)
        ).fetchone()
        outputs: dict[str, dict[str, Any]] = {}
        for table in ("course_updates", "alerts", "risk_assessments"):
            rows = conn.execute(
                f"SELECT payload::text FROM {table} WHERE patient_id = ANY(%s)", (patients,)
            )
            for (payload,) in rows:
                event = _ANY.validate_json(payload)
                outputs[str(event.event_id)] = event.model_dump(mode="json")
    return (int(inputs[0]) if inputs else 0), outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=12)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--samples-per-hour", type=int, default=4)
    parser.add_argument("--partitions", type=int, default=2)
    parser.add_argument(
        "--jobs", type=int, default=default_jobs(), help="processes of the parallel replay"
    )
    options = parser.parse_args()
    began = time.monotonic()
    cohort = simulate_cohort(
        options.patients,
        options.days,
        seed=3,
        start=datetime(2026, 1, 5, tzinfo=UTC),
        samples_per_hour=options.samples_per_hour,
    )
    events = list(cohort.events())
    patients = sorted({e.patient_id for e in events})
    unique = len({e.event_id for e in events})

    with tempfile.TemporaryDirectory(prefix="psymon-bench-") as tmp, ExitStack() as cleanup:
        workdir = Path(tmp)
        # Not under tmp: run as root, the server runs as another user, which needs
        # search permission on every directory above its data (docs/store.md).
        pg_dir = Path(tempfile.mkdtemp(prefix="psymon-pg-bench-"))
        pg_dir.chmod(0o711)
        cleanup.callback(shutil.rmtree, pg_dir, True)
        with (
            EmbeddedPostgres(pg_dir / "data", server_settings={"fsync": "off"}) as pg,
            EmbeddedBroker(partitions=options.partitions) as broker,
        ):
            url = pg.url
            with psycopg.connect(url, autocommit=True) as conn:
                migrate(conn)
                if v0005_audit not in MIGRATIONS:
                    for statement in v0005_audit.statements("postgres"):
                        conn.execute(statement)
            stop = threading.Event()
            sink = threading.Thread(
                target=run_sink, args=(broker.bootstrap, url), kwargs={"stop_event": stop}
            )
            sink.start()
            worker, log, app_id = start_worker(broker.bootstrap, options.partitions, workdir)
            try:
                applied, busy, worker_cpu = produce_in_waves(
                    broker.bootstrap, changelog_topics(app_id)[0], events, worker.pid
                )
            finally:
                code = stop_child(worker, timeout=20)
                worker_log = log.read_text(errors="replace")[-2000:]
            deadline = time.monotonic() + WAIT
            while stored(url, patients)[0] < unique and time.monotonic() < deadline:
                time.sleep(0.25)

            expected = {str(o.event_id) for o in replay_outputs(url, who="bench", jobs=1)}
            deadline = time.monotonic() + WAIT
            while not expected <= stored(url, patients)[1].keys():
                if time.monotonic() > deadline:
                    break
                time.sleep(0.25)
            time.sleep(1.0)
            stop.set()
            sink.join(timeout=30)
            live = stored(url, patients)[1]

            threads = threading.active_count()
            single, parallel = Replays(1), Replays(options.jobs)
            for _ in range(RUNS):  # alternated, so that other work on the machine hits both
                single.run(url)
                parallel.run(url)
            processes = processes_for(unique, len(patients), options.jobs)

            first: dict[Any, Any] = {}
            for event in events:
                first.setdefault(event.event_id, event)
            in_memory = sorted(
                first.values(),
                key=lambda e: (e.patient_id, e.received_at, e.observed_at, e.event_id),
            )
            started = time.perf_counter()
            core_outputs = sum(len(outputs) for _, outputs in run_core(in_memory))
            core_seconds = time.perf_counter() - started

            with StateRebuilder(url) as rebuilder:
                started = time.perf_counter()
                for patient in patients:
                    rebuilder.rebuild(patient)
                rebuild_each = (time.perf_counter() - started) / len(patients)

    replayed = {str(o.event_id): o.model_dump(mode="json") for o in single.outputs}
    in_order = [o.model_dump_json() for o in single.outputs] == [
        o.model_dump_json() for o in parallel.outputs
    ]
    same = live == replayed and in_order
    live_rate = (applied - 1) / busy if busy > 0 else float("nan")
    replay_rate, parallel_rate = single.rate(unique), parallel.rate(unique)
    live_ms = 1000 * worker_cpu / applied
    print(
        f"replay throughput, {options.patients} patients x {options.days} days, "
        f"{options.samples_per_hour} wearable samples/h: {len(events)} input records "
        f"({unique} unique events), {len(live)} outputs; {options.partitions} partitions, "
        f"embedded Tansu + PostgreSQL 18, {os.cpu_count()} CPUs"
    )
    print(
        f"  live worker, 1 process (decode, state table, core, produce): {live_rate:7.0f} "
        f"events/s, {live_ms:.2f} ms CPU/event (exit {code})"
    )
    print(
        f"  replay, 1 process (read, decode, core):                      {replay_rate:7.0f} "
        f"events/s, {single.cpu_ms(unique):.2f} ms CPU/event (runs: {single.spread(unique)}/s)"
    )
    print(
        f"  replay, {processes} processes (jobs={options.jobs}; read, decode, core, merge):   "
        f"{parallel_rate:7.0f} events/s, {parallel.cpu_ms(unique):.2f} ms CPU/event, all "
        f"processes (runs: {parallel.spread(unique)}/s)"
    )
    print(
        f"  core only, events in memory:                                 "
        f"{unique / core_seconds:7.0f} events/s ({core_outputs} outputs)"
    )
    print(f"  rebuild one patient's state from the store: {1000 * rebuild_each:.0f} ms")
    print(f"  threads in this process while replaying: {threads} (1: processes are forked)")
    if same:
        print(
            f"  same outputs: yes (live = 1-process replay: {len(live)} outputs, ids and "
            f"content; {processes}-process replay = 1-process replay, in the same order)"
        )
        print(
            f"  ratio replay / live (events/s): 1 process {replay_rate / live_rate:.1f}; "
            f"{processes} processes {parallel_rate / live_rate:.1f}"
        )
        print(
            f"  ratio live / replay (CPU per event): 1 process "
            f"{live_ms / single.cpu_ms(unique):.1f}; {processes} processes "
            f"{live_ms / parallel.cpu_ms(unique):.1f}"
        )
        print(
            f"  note: the {processes}-process figure uses {processes} processes on this "
            f"{os.cpu_count()}-CPU machine; the live figure is one worker process"
        )
    else:
        only_live, only_replay = live.keys() - replayed.keys(), replayed.keys() - live.keys()
        differ = sum(live[i] != replayed[i] for i in live.keys() & replayed.keys())
        print(
            f"  same outputs: NO ({len(only_live)} only live, {len(only_replay)} only replayed, "
            f"{differ} differ; {processes}-process replay in the same order as 1 process: "
            f"{'yes' if in_order else 'NO'}); the ratios are not comparable\n{worker_log}"
        )
    print(f"  (benchmark took {time.monotonic() - began:.0f} s)")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
