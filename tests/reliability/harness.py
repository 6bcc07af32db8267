"""The pieces the reliability tests build their pipelines from.

Real components only: an embedded Tansu broker per test (so that a test may
restart it), the session's embedded PostgreSQL (a fresh migrated database per
test), stream workers as ``python -m services.worker`` subprocesses
(:class:`tests.integration.workers.WorkerProcess`, with a database URL in
their environment) and the sink as a ``psymon sink`` subprocess, so that both
can be killed with SIGKILL like a crashed machine kills them.

What was sent is known exactly (a seeded simulated cohort); what should have
been derived comes from the pure core run offline over the same history
(:func:`services.replay.engine.run_core`); what was stored is read back per
table. :class:`Census` compares them.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg

from schemas.events import Alert
from schemas.topics import ALL_TOPICS, INPUT_TOPICS
from services.embedded import spawn_child, stop_child
from services.embedded.offsets import end_offsets
from services.producer import KafkaEventSink, topic_of
from services.replay.engine import run_core
from services.simulator import simulate_cohort
from services.store.tables import Storable
from streams.app import changelog_topics
from tests.integration.pg_fixtures import stored_rows
from tests.integration.workers import READY, WorkerProcess, process_alive

ROOT = Path(__file__).resolve().parents[2]
#: Where the tests leave their figures (one JSON file per test) for the summary table;
#: PSYMON_RELIABILITY_ARTIFACTS moves them (two runs at once must not share it).
ARTIFACTS = Path(
    os.environ.get("PSYMON_RELIABILITY_ARTIFACTS") or ROOT / "test-artifacts" / "reliability"
)
#: Every random choice of the suite (cohorts, fault points) derives from this seed.
SEED = int(os.environ.get("PSYMON_RELIABILITY_SEED", "20260311"))
#: The simulated cohorts start here.
START = datetime(2026, 1, 5, tzinfo=UTC)
#: The tables the sink fills from topics.
EVENT_TABLES = (
    "clinical_scores",
    "wearable_uploads",
    "wearable_samples",
    "lab_results",
    "clinical_outcomes",
    "course_updates",
    "risk_assessments",
    "alerts",
    "dead_letters",
)
#: How long a test waits for the pipeline to settle before it gives up and reports.
SETTLE_TIMEOUT = 120.0


def psymon_script() -> str:
    """The ``psymon`` console script of this virtual environment."""
    script = Path(sys.executable).with_name("psymon")
    return str(script) if script.exists() else "psymon"


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for a child: no PSYMON_ setting of the developer's, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PSYMON_")}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def wait_until(condition: Callable[[], bool], what: str, timeout: float = SETTLE_TIMEOUT) -> float:
    """Poll ``condition`` until it holds; return how long it took, fail after ``timeout`` s."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.25)
    return time.monotonic() - started


# --------------------------------------------------------------------------- histories


def cohort(patients: int, days: int, seed: int, *, samples_per_hour: int = 2) -> list[Any]:
    """A simulated cohort's events in arrival order (re-sent duplicates included)."""
    simulated = simulate_cohort(patients, days, seed, START, samples_per_hour=samples_per_hour)
    return list(simulated.events())


def offline_outputs(events: Iterable[Any]) -> list[Any]:
    """What the pure core derives from ``events`` applied in the order given."""
    return [output for _, outputs in run_core(events) for output in outputs]


def waves(events: Sequence[Any]) -> list[list[Any]]:
    """The history cut so that a worker applies each patient's events in arrival order.

    The broker keeps order within a partition only, and a worker reads the
    input topics interleaved as fetches fall: one patient's score may overtake
    their earlier wearable upload. Each wave holds, for every patient, their
    next run of events on one topic; a wave is sent only once the worker has
    applied the previous one (the method of tests/integration/test_replay_equals_live.py).
    """
    runs: dict[str, list[list[Any]]] = {}
    for event in events:
        mine = runs.setdefault(event.patient_id, [])
        if mine and topic_of(mine[-1][-1]) == topic_of(event):
            mine[-1].append(event)
        else:
            mine.append([event])
    result = []
    while any(runs.values()):
        result.append([e for mine in runs.values() if mine for e in mine.pop(0)])
    return result


def alert_transitions(alerts: Iterable[Alert]) -> dict[str, list[tuple[str, str, str, str]]]:
    """Each alert's changes: ``alert_id -> [(observed_at, status, severity, event_id)]``."""
    found: dict[str, set[tuple[str, str, str, str]]] = {}
    for alert in alerts:
        found.setdefault(str(alert.alert_id), set()).add(
            (
                alert.observed_at.astimezone(UTC).isoformat(),
                alert.status,
                alert.severity,
                str(alert.event_id),
            )
        )
    return {alert_id: sorted(changes) for alert_id, changes in found.items()}


# --------------------------------------------------------------------------- the store


def stored_ids(url: str, table: str) -> list[UUID]:
    """Every ``event_id`` in ``table``, repeats included; [] when the database is away."""
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            return [row[0] for row in conn.execute(f"SELECT event_id FROM {table}")]
    except psycopg.OperationalError:
        return []


def stored_alerts(url: str) -> list[Alert]:
    """Every alert change the store holds, parsed from its payload."""
    with psycopg.connect(url, connect_timeout=5) as conn:
        rows = conn.execute("SELECT payload::text FROM alerts").fetchall()
    return [Alert.model_validate_json(payload) for (payload,) in rows]


def stored_payloads(url: str, tables: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``event_id -> content`` (JSON data) of every row of ``tables``."""
    found: dict[str, dict[str, Any]] = {}
    with psycopg.connect(url, connect_timeout=5) as conn:
        for table in tables:
            for event_id, payload in conn.execute(f"SELECT event_id, payload FROM {table}"):
                found[str(event_id)] = payload
    return found


def expected_rows(events: Iterable[Storable]) -> dict[str, set[UUID]]:
    """The ids each table must hold for ``events`` (uploads also become samples)."""
    return stored_rows(list(events))


@dataclass
class Census:
    """Sent against stored, per table: every event once, nothing lost, nothing extra."""

    sent: dict[str, int]
    stored: dict[str, int]
    lost: dict[str, int]
    extra: dict[str, int]
    duplicated: dict[str, int]

    @classmethod
    def take(cls, url: str, expected: dict[str, set[UUID]]) -> Census:
        census = cls({}, {}, {}, {}, {})
        for table in sorted(set(expected) | set(EVENT_TABLES)):
            ids = stored_ids(url, table)
            want = expected.get(table, set())
            have = set(ids)
            census.sent[table] = len(want)
            census.stored[table] = len(have & want)
            census.lost[table] = len(want - have)
            census.extra[table] = len(have - want)
            census.duplicated[table] = len(ids) - len(have)
        return census

    @property
    def complete(self) -> bool:
        return not any(self.lost.values())

    def totals(self) -> dict[str, int]:
        return {
            "sent": sum(self.sent.values()),
            "stored": sum(self.stored.values()),
            "lost": sum(self.lost.values()),
            "extra": sum(self.extra.values()),
            "duplicated": sum(self.duplicated.values()),
        }

    def differences(self, url: str, expected: dict[str, set[UUID]]) -> dict[str, Any]:
        """What the lost and the unexpected rows are (table, kind, course signal, late)."""
        found: dict[str, Any] = {}
        with psycopg.connect(url, connect_timeout=5) as conn:
            for table in sorted(self.sent):
                if not (self.lost[table] or self.extra[table]):
                    continue
                want = {str(i) for i in expected.get(table, ())}
                have = {str(r[0]) for r in conn.execute(f"SELECT event_id FROM {table}")}
                found[table] = {"lost": sorted(want - have)[:10], "extra": sorted(have - want)[:10]}
                if table == "course_updates":
                    rows = conn.execute(
                        "SELECT event_id::text, signal, late FROM course_updates"
                    ).fetchall()
                    found[table]["extra_kinds"] = dict(
                        Counter(f"{s} late={late}" for i, s, late in rows if i not in want)
                    )
        return found

    def problems(self) -> str:
        lines = [
            f"{table}: {self.lost[table]} lost, {self.extra[table]} not sent, "
            f"{self.duplicated[table]} stored twice (of {self.sent[table]})"
            for table in sorted(self.sent)
            if self.lost[table] or self.extra[table] or self.duplicated[table]
        ]
        return "; ".join(lines) or "none"


def store_holds(url: str, expected: dict[str, set[UUID]]) -> bool:
    """Whether every expected id is stored (used to wait for the sink)."""
    return all(ids <= set(stored_ids(url, table)) for table, ids in expected.items())


def compare_with_uninterrupted(
    url: str, expected: dict[str, set[UUID]], derived: Sequence[Any], census: Census
) -> list[str]:
    """How the store differs from an uninterrupted run of the history (empty: it does not).

    Every event once, nothing lost, nothing the uninterrupted run does not
    derive; each alert with the same changes; each output with the same content.
    """
    from pydantic import TypeAdapter

    from schemas.events import AnyEvent

    problems = []
    totals = census.totals()
    if totals["lost"] or totals["duplicated"] or totals["extra"]:
        problems.append(
            f"the store differs from an uninterrupted run: {census.problems()}; "
            f"{census.differences(url, expected)}"
        )
    live = alert_transitions(stored_alerts(url))
    uninterrupted = alert_transitions(o for o in derived if o.kind == "alert")
    if live != uninterrupted:
        differing = sorted(
            k for k in live.keys() | uninterrupted.keys() if live.get(k) != uninterrupted.get(k)
        )
        problems.append(f"alerts differ from an uninterrupted run: {differing}")
    adapter: TypeAdapter[Any] = TypeAdapter(AnyEvent)
    outputs = stored_payloads(url, ("course_updates", "risk_assessments", "alerts"))
    stored = {i: adapter.validate_python(p).model_dump(mode="json") for i, p in outputs.items()}
    offline = {str(o.event_id): o.model_dump(mode="json") for o in derived}
    differing = [i for i in offline if i in stored and stored[i] != offline[i]]
    if differing:
        first = differing[0]
        fields = sorted(
            k
            for k in offline[first].keys() | stored[first].keys()
            if offline[first].get(k) != stored[first].get(k)
        )
        problems.append(
            f"{len(differing)} outputs differ in content from an uninterrupted run, e.g. "
            f"{offline[first]['kind']} {first}: "
            + ", ".join(
                f"{k} {offline[first].get(k)!r} -> {stored[first].get(k)!r}" for k in fields
            )
        )
    return problems


# --------------------------------------------------------------------------- broker


class BrokerProbe:
    """Topic ends and consumer-group positions, through one kafka-python client each."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap

    def lag(self, group: str, topics: Sequence[str]) -> int | None:
        """Records of ``topics`` that ``group`` has not committed; ``None`` if unknown."""
        from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
        from kafka.errors import KafkaError

        try:
            consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, request_timeout_ms=5000)
            admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5000)
        except KafkaError:
            return None
        try:
            partitions = [
                TopicPartition(topic, p)
                for topic in topics
                for p in consumer.partitions_for_topic(topic) or ()
            ]
            ends = end_offsets(consumer, partitions)  # not ListOffsets: short on Tansu
            committed = admin.list_group_offsets(group).get(group, {})
        except KafkaError:
            return None
        finally:
            consumer.close()
            admin.close()
        lag: int = sum(
            max(0, end - (committed[tp].offset if tp in committed else 0))
            for tp, end in ends.items()
        )
        return lag

    def records(self, topics: Sequence[str] = ALL_TOPICS) -> list[tuple[str, bytes | None, bytes]]:
        """Every record now on ``topics``: ``(topic, key, value)``."""
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        try:
            partitions = [
                TopicPartition(topic, p)
                for topic in topics
                for p in consumer.partitions_for_topic(topic) or ()
            ]
            ends = end_offsets(consumer, partitions)  # not ListOffsets: short on Tansu
            consumer.assign(partitions)
            consumer.seek_to_beginning(*partitions)
            found: list[tuple[str, bytes | None, bytes]] = []
            deadline = time.monotonic() + 60
            while any(consumer.position(tp) < end for tp, end in ends.items()):
                assert time.monotonic() < deadline, "could not read the topics back in 60 s"
                for batch in consumer.poll(timeout_ms=200).values():
                    found.extend((m.topic, m.key, m.value or b"") for m in batch)
            return found
        finally:
            consumer.close()


class StateWrites:
    """Counts a worker group's state writes for some patients (one per event applied).

    Every event a worker applies, a re-delivered duplicate included, writes
    the patient's state to the table's changelog topic; so once ``n`` events
    of these patients were sent, ``n`` writes mean the worker has applied them.
    """

    def __init__(self, bootstrap: str, app_id: str, patients: Iterable[str]) -> None:
        from kafka import KafkaConsumer, TopicPartition

        topic = changelog_topics(app_id)[0]
        self.keys = {p.encode() for p in patients}
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        partitions = [TopicPartition(topic, p) for p in self.consumer.partitions_for_topic(topic)]
        self.consumer.assign(partitions)
        # From the true ends: seeking to Tansu's listed ends would count the rest of
        # the last batch of writes as new (services.embedded.offsets).
        for tp, end in end_offsets(self.consumer, partitions).items():
            self.consumer.seek(tp, end)
        self.count = 0

    def wait_for(self, expected: int, timeout: float = SETTLE_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while self.count < expected:
            assert time.monotonic() < deadline, (
                f"the worker applied {self.count} of {expected} events in {timeout:.0f} s"
            )
            for batch in self.consumer.poll(timeout_ms=100).values():
                self.count += sum(1 for m in batch if m.key in self.keys)

    def close(self) -> None:
        self.consumer.close()


def stale_states(bootstrap: str, app_id: str, events: Sequence[Any]) -> dict[str, int]:
    """Patients whose latest state (on the changelog) has applied fewer events than were sent.

    Every event applied, duplicates included, adds one to ``counters.events`` or
    ``counters.duplicates``; a final state below the number of events sent
    means the worker went on from an older state and those events are missing
    from it. Returns ``pseudonym prefix -> events missing``.
    """
    latest: dict[str, int] = {}
    for _, key, value in BrokerProbe(bootstrap).records(changelog_topics(app_id)):
        if key is not None and value:
            counters = json.loads(value)["counters"]
            latest[key.decode()] = counters["events"] + counters["duplicates"]
    sent = Counter(e.patient_id for e in events)
    return {
        patient[:10]: n - latest.get(patient, 0)
        for patient, n in sent.items()
        if latest.get(patient, 0) < n
    }


def send(bootstrap: str, events: Sequence[Any], *, client_id: str = "psymon-reliability") -> None:
    """Produce ``events`` as the ingest edge does (keyed by patient) and wait for the acks."""
    with KafkaEventSink(bootstrap, client_id=client_id) as producer:
        producer.send_all(events)


# --------------------------------------------------------------------------- processes


@dataclass
class Worker(WorkerProcess):
    """A stream worker subprocess that also knows the store (for rebuilding lost state)."""

    database_url: str = ""
    kills: int = 0

    def start(self) -> Worker:
        self.readies_before_start = self.log().count(READY)
        args = [
            sys.executable,
            "-m",
            "services.worker",
            "--bootstrap",
            self.bootstrap,
            "--partitions",
            str(self.partitions),
            "--app-id",
            self.app_id,
            "--data-dir",
            str(self.data_dir),
            "--loglevel",
            "info",
        ]
        env = clean_env(
            PSYMON_KAFKA_BOOTSTRAP=self.bootstrap, PSYMON_PARTITIONS=str(self.partitions)
        )
        if self.database_url:  # from the environment, never the command line (ps shows it)
            env["PSYMON_DATABASE_URL"] = self.database_url
        with self.log_path.open("ab") as log:
            self.process = spawn_child(args, env=env, cwd=self.data_dir.parent, stdout=log)
        self.pids.append(self.process.pid)
        return self

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM killer does: no flush, no commit, no LeaveGroup."""
        assert self.process is not None and self.running, f"worker not running:\n{self.log_tail()}"
        kill_hard(self.process)
        self.process = None
        self.kills += 1


@dataclass
class SinkProcess:
    """``psymon sink`` as a subprocess (consumer group ``psymon-sink``)."""

    bootstrap: str
    database_url: str
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    pids: list[int] = field(default_factory=list)
    kills: int = 0

    def start(self) -> SinkProcess:
        env = clean_env(
            PSYMON_KAFKA_BOOTSTRAP=self.bootstrap, PSYMON_DATABASE_URL=self.database_url
        )
        with self.log_path.open("ab") as log:
            self.process = spawn_child(
                [psymon_script(), "sink"], env=env, cwd=self.log_path.parent, stdout=log
            )
        self.pids.append(self.process.pid)
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        assert self.process is not None and self.running, f"sink not running:\n{self.log_tail()}"
        kill_hard(self.process)
        self.process = None
        self.kills += 1

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.process is None:
            return None
        code = stop_child(self.process, timeout=timeout)
        self.process = None
        return code

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, limit: int = 3000) -> str:
        return self.log()[-limit:]


def kill_hard(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL a child's whole process group and reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


@dataclass
class Pipeline:
    """A broker, a store, stream worker(s) and a sink, wired as ``psymon up`` wires them."""

    bootstrap: str
    database_url: str
    base: Path
    partitions: int = 2
    app_id: str = "psymon-worker"
    workers: list[Worker] = field(default_factory=list)
    sink: SinkProcess | None = None

    def add_worker(self) -> Worker:
        n = len(self.workers) + 1
        worker = Worker(
            bootstrap=self.bootstrap,
            app_id=self.app_id,
            data_dir=self.base / f"worker-{n}",
            log_path=self.base / f"worker-{n}.log",
            partitions=self.partitions,
            database_url=self.database_url,
        )
        worker.data_dir.mkdir(parents=True, exist_ok=True)
        self.workers.append(worker.start())
        return worker

    def start_sink(self) -> SinkProcess:
        self.sink = SinkProcess(self.bootstrap, self.database_url, self.base / "sink.log").start()
        return self.sink

    @property
    def worker(self) -> Worker:
        return self.workers[0]

    def settle(self, expected: dict[str, set[UUID]], timeout: float = SETTLE_TIMEOUT) -> float:
        """Wait until the store holds ``expected``, or nothing moves any more; return the wait.

        "Nothing moves": both consumer groups have committed everything and the
        stored rows did not change for 5 s; the census then shows what is missing.
        """
        started = time.monotonic()
        last: tuple[int, ...] = ()
        still_since = started
        while not store_holds(self.database_url, expected):
            counts = tuple(len(stored_ids(self.database_url, t)) for t in EVENT_TABLES)
            now = time.monotonic()
            if counts != last:
                last, still_since = counts, now
            elif now - still_since > 5.0 and self.worker_lag() == 0 and self.sink_lag() == 0:
                break
            if now - started > timeout:
                break
            time.sleep(0.5)
        return round(time.monotonic() - started, 1)

    def processes_alive(self) -> dict[str, bool]:
        alive = {f"worker-{n}": w.running for n, w in enumerate(self.workers, 1)}
        if self.sink is not None:
            alive["sink"] = self.sink.running
        return alive

    def worker_lag(self) -> int | None:
        return BrokerProbe(self.bootstrap).lag(self.app_id, INPUT_TOPICS)

    def sink_lag(self) -> int | None:
        return BrokerProbe(self.bootstrap).lag("psymon-sink", ALL_TOPICS)

    def logs(self) -> str:
        parts = [f"--- {w.log_path.name}\n{w.log_tail()}" for w in self.workers]
        if self.sink is not None:
            parts.append(f"--- sink.log\n{self.sink.log_tail()}")
        return "\n".join(parts)

    def stop(self) -> dict[str, int | None]:
        codes: dict[str, int | None] = {}
        for n, worker in enumerate(self.workers, 1):
            codes[f"worker-{n}"] = worker.stop()
        if self.sink is not None:
            codes["sink"] = self.sink.stop()
        pids = [p for w in self.workers for p in w.pids]
        pids += self.sink.pids if self.sink else []
        left = [pid for pid in pids if process_alive(pid)]
        assert not left, f"processes outlived the pipeline: {left}"
        return codes


# --------------------------------------------------------------------------- faults


@dataclass(frozen=True)
class Fault:
    """Kill ``target`` ``delay`` seconds after wave ``wave`` was sent."""

    round: int
    wave: int
    target: str
    delay: float


def fault_plan(seed: int, rounds: int, n_waves: int, targets: Sequence[str]) -> list[Fault]:
    """``rounds`` faults per target at distinct seeded waves (never the first or last)."""
    rng = random.Random(seed)
    slots = list(range(1, n_waves - 1))
    rng.shuffle(slots)
    faults = []
    for r in range(rounds):
        for target in targets:
            faults.append(Fault(r + 1, slots.pop(), target, round(rng.uniform(0.0, 1.5), 2)))
    return sorted(faults, key=lambda f: f.wave)


# --------------------------------------------------------------------------- figures


def record_figures(name: str, figures: dict[str, Any]) -> Path:
    """Write one test's figures to ``test-artifacts/reliability/<name>.json``."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.json"
    document = {"test": name, "seed": SEED, "at": datetime.now(UTC).isoformat(), **figures}
    path.write_text(json.dumps(document, indent=2, sort_keys=True, default=str) + "\n")
    return path


def kinds(events: Iterable[Any]) -> dict[str, int]:
    return dict(Counter(e.kind for e in events))


@contextlib.contextmanager
def timer() -> Iterator[Callable[[], float]]:
    started = time.monotonic()
    yield lambda: round(time.monotonic() - started, 1)
