"""Live model versions: one trainer learns, every worker scores with the newest, replay agrees.

The real pipeline on a broker of its own (so that no other test's worker or
trainer sees these versions): a stream worker subprocess that follows the
models topic, the trainer subprocess (``python -m services.trainer``) and the
sink (in a thread) into embedded PostgreSQL. A simulated cohort is produced in
two halves (its wearable uploads: one input topic, so live order is replay's
order); the trainer publishes trained versions during the first half
(labels need 28 days, so the cohort is 44 days long and the trainer's
minimums are lowered); the second half is scored with them. The trainer is
restarted once in between and must not publish a version number twice with
different content. Finally ``models="as-live"`` replays the stored history
and must give every live output, assessments and alerts included, bit for bit.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from schemas.topics import ALL_TOPICS
from services.embedded import EmbeddedBroker, spawn_child, stop_child
from services.live_models import TopicModelStore
from services.model_versions import archived_versions
from services.replay import replay_outputs
from services.simulator import simulate_cohort
from services.sink import run_sink
from tests.integration.test_replay_equals_live import (
    content,
    isolated,
    produce_as_live,
    stored_inputs,
    stored_outputs,
    wait_until,
)
from tests.integration.workers import PARTITIONS, WorkerProcess, process_alive, uncommitted

pytest_plugins = ("tests.integration.pg_fixtures",)
pytestmark = pytest.mark.integration

MODELS_TOPIC = "psymon.models.v1"
SINK_GROUP = "it-live-models-sink"
START = datetime(2026, 1, 5, tzinfo=UTC)
DAYS = 44
#: The first half ends here: the first labels (negatives) are due 28 days after
#: the first assessments (after the 7-day baseline), so versions exist by then.
SPLIT = START + timedelta(days=38)


class ModelWorker(WorkerProcess):
    """``python -m services.worker --models-topic ...``: a worker that follows the versions."""

    def environment(self) -> dict[str, str]:
        """Without the caller's ``PSYMON_`` settings (no rebuild from another store)."""
        return {**_env(), "PYTHONUNBUFFERED": "1"}

    def start(self) -> ModelWorker:
        self.extra_args = ("--models-topic", MODELS_TOPIC)
        super().start()
        return self


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("PSYMON_")}


class TrainerProcess:
    """``python -m services.trainer`` with minimums low enough for a 4-patient cohort."""

    def __init__(self, bootstrap: str, data_dir: Path, url: str, log_path: Path) -> None:
        self.bootstrap, self.data_dir, self.url, self.log_path = bootstrap, data_dir, url, log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.pids: list[int] = []

    def start(self) -> TrainerProcess:
        with self.log_path.open("ab") as log:
            self.process = spawn_child(
                [
                    sys.executable,
                    "-m",
                    "services.trainer",
                    "--bootstrap",
                    self.bootstrap,
                    "--partitions",
                    str(PARTITIONS),
                    "--data-dir",
                    str(self.data_dir),
                    "--publish-every-days",
                    "1",
                    "--label-grace-days",
                    "0",
                    "--grace-minutes",
                    "0",
                    "--idle-seconds",
                    "3",
                    "--min-positives",
                    "0",
                    "--min-negatives",
                    "5",
                ],
                env={**_env(), "PSYMON_DATABASE_URL": self.url, "PYTHONUNBUFFERED": "1"},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.pids.append(self.process.pid)
        return self

    def stop(self) -> int | None:
        if self.process is None:
            return None
        code = stop_child(self.process, timeout=20)
        self.process = None
        return code

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]


@pytest.fixture
def own_broker() -> Iterator[EmbeddedBroker]:
    broker = EmbeddedBroker(partitions=PARTITIONS).start()
    pid = broker.pid
    yield broker
    broker.stop()
    assert pid is None or not process_alive(pid)


def published(bootstrap: str) -> list[Any]:
    """Every version on the models topic, in order."""
    reader = TopicModelStore(bootstrap, MODELS_TOPIC)
    try:
        return reader.read_to_end()
    finally:
        reader.close()


def sink_caught_up(bootstrap: str, group: str) -> bool:
    """Whether the sink has committed every record of psymon's topics (so stored them all)."""
    return not uncommitted(bootstrap, group, ALL_TOPICS)


def test_workers_score_with_the_trainers_versions_and_replay_reproduces_them(
    own_broker: EmbeddedBroker, store_url: str, tmp_path: Path
) -> None:
    bootstrap, url = own_broker.bootstrap, store_url
    stop_sink = threading.Event()
    sink_errors: list[BaseException] = []

    def sink() -> None:
        try:
            run_sink(bootstrap, url, stop_event=stop_sink, group_id=SINK_GROUP)
        except BaseException as error:
            sink_errors.append(error)

    worker = ModelWorker(
        bootstrap=bootstrap,
        app_id=f"psymon-it-{uuid.uuid4().hex[:8]}",
        data_dir=tmp_path / "worker",
        log_path=tmp_path / "worker.log",
    )
    trainer = TrainerProcess(bootstrap, tmp_path / "trainer", url, tmp_path / "trainer.log")
    sink_thread = threading.Thread(target=sink, name="sink", daemon=True)
    try:
        worker.start()
        worker.wait_ready()
        trainer.start()
        sink_thread.start()

        cohort = simulate_cohort(4, DAYS, seed=5, start=START, samples_per_hour=2)
        # Wearable uploads only: one input topic, so the worker applies each patient's
        # events in exactly the order replay reads them. (Across topics live order is
        # what test_replay_equals_live.py arranges; a score applied after the upload that
        # closed a day changes that day's self-report inputs.) The assessments are the
        # wearable days'; this cohort has no outcome, so the versions learn negatives.
        uploads = [e for e in cohort.events() if e.kind == "wearable_upload"]
        events = isolated(uploads, f"live-models-{uuid.uuid4().hex[:8]}")
        patients = sorted({e.patient_id for e in events})
        first = [e for e in events if e.received_at < SPLIT]
        second = [e for e in events if e.received_at >= SPLIT]
        assert first and second

        produce_as_live(bootstrap, worker, first)
        wait_until(
            lambda: any(s.version > 0 for s in published(bootstrap)),
            f"the trainer to publish a trained version:\n{trainer.log_tail()}",
            timeout=90,
        )
        # A restart resumes from the checkpoint: no number is used again.
        assert trainer.stop() == 0, trainer.log_tail()
        trainer.start()
        wait_until(
            lambda: "resumed from the checkpoint" in trainer.log_tail(),
            "the trainer to resume from its checkpoint",
        )
        wait_until(
            lambda: "scoring with relapse_risk version" in worker.log(),
            "the worker to pick up a trained version",
        )
        produce_as_live(bootstrap, worker, second)

        unique = len({e.event_id for e in events})
        wait_until(lambda: stored_inputs(url, patients) == unique, "the sink to store the inputs")
        # As-live replays read the versions live used from the stored assessments: all of them.
        wait_until(lambda: sink_caught_up(bootstrap, SINK_GROUP), "the sink to store every output")
        with psycopg.connect(url) as conn:
            versions = dict(
                conn.execute(
                    "SELECT model_version, count(*) FROM risk_assessments "
                    "WHERE patient_id = ANY(%s) GROUP BY 1",
                    (patients,),
                ).fetchall()
            )
        assert 0 in versions, versions  # scored with version 0 before any was trained
        assert max(versions) > 0, versions  # and with a trained version afterwards

        # One content per version number, on the topic and in the archive alike.
        by_version: dict[int, set[str]] = defaultdict(set)
        for snapshot in published(bootstrap):
            by_version[snapshot.version].add(snapshot.model_dump_json())
        assert all(len(texts) == 1 for texts in by_version.values()), "a version forked"
        assert sorted(by_version) == list(range(len(by_version)))
        with psycopg.connect(url) as conn:
            archived = {
                s.version: s.model_dump_json() for s in archived_versions(conn, "relapse_risk")
            }
        assert archived == {v: texts.pop() for v, texts in by_version.items()}
        replayed = {
            str(o.event_id): content(o)
            for o in replay_outputs(url, patients=patients, models="as-live")
        }
        wait_until(
            lambda: replayed.keys() <= stored_outputs(url, patients).keys(),
            "the sink to store every live output",
        )
        live = stored_outputs(url, patients)
        assert live.keys() == replayed.keys(), (
            f"{len(live.keys() - replayed.keys())} live outputs not replayed, "
            f"{len(replayed.keys() - live.keys())} replayed outputs not live"
        )
        differing = [i for i in live if live[i] != replayed[i]]
        assert not differing, f"{len(differing)} outputs differ, e.g. " + "; ".join(
            f"{k}: live {live[differing[0]][k]!r}, replayed {replayed[differing[0]][k]!r}"
            for k in live[differing[0]]
            if live[differing[0]][k] != replayed[differing[0]][k]
        )
        risk = [o for o in replayed.values() if o["kind"] == "risk_assessment"]
        assert {o["model_version"] for o in risk} == set(versions)

        # Without the versions, the replay has no assessments: they came from the models.
        plain = [o.kind for o in replay_outputs(url, patients=patients)]
        assert "risk_assessment" not in plain

    finally:
        stop_sink.set()
        if sink_thread.is_alive():
            sink_thread.join(timeout=30)
        trainer_code = trainer.stop()
        worker_code = worker.stop()
    assert not sink_errors, f"the sink failed: {sink_errors[0]!r}"
    assert trainer_code == 0, trainer.log_tail()
    assert worker_code == 0, worker.log_tail()
    leftovers = [p for p in worker.pids + trainer.pids if process_alive(p)]
    assert not leftovers
