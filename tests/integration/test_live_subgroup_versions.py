"""Live subgroup model versions: archived, published, followed, replayed and rebuilt as live.

A simulated cohort (wearables, ratings, labs, outcomes) is loaded into an
embedded PostgreSQL. ``psymon subgroups fit`` (:func:`fit_from_store`) fits
two versions of the population subgroup model from the store as it stood on
day 35 and day 70, archiving each; two trained relapse-risk versions are
archived as the trainer would. "Live" is the pure core over the events in
arrival order with the versions in force when each arrived (what a worker
following the models topic uses when versions are published as they are
fitted); its outputs are stored, as the sink would. Then:

* ``replay --models as-live`` gives every live ``SubgroupAssigned`` event
  (and every assessment and alert), bit for bit, where a replay with the
  base configuration does not;
* the worker's :class:`StateRebuilder` rebuilds every patient's state, whole
  or half way, equal to the live one (alert runs and clusters included),
  where a rebuild with the base configuration does not;
* a cluster change names the version it was assigned with, and that name
  wins over the archive's timeline;
* ``psymon subgroups fit`` publishes to a models topic of a real broker,
  where a worker's :class:`LiveModels` finds it next to a risk version.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from pydantic import BaseModel

from schemas.events import Alert, RiskAssessment, SubgroupAssigned
from services.cli import cli
from services.embedded import EmbeddedBroker
from services.embedded.postgres import EmbeddedPostgres
from services.embedded.topics import ensure_models_topic
from services.live_models import LiveModels, TopicModelStore
from services.model_versions import (
    AsLive,
    SubgroupTimeline,
    archive_version,
    archived_subgroup_versions,
    archived_versions,
)
from services.rebuild import StateRebuilder, rebuild_state
from services.replay import replay_outputs
from services.replay.engine import run_core
from services.simulator import simulate_cohort
from services.sink import Sink
from services.study.subgroup_models import fit_from_store
from services.training import initial_version
from streams import CoreConfig, PatientState
from streams.models.snapshot import ModelSnapshot, ModelTimeline
from tests.integration.pg_fixtures import arrival_order, loaded_store

pytest_plugins = ("tests.integration.pg_fixtures",)
pytestmark = pytest.mark.integration

START = datetime(2026, 1, 5, tzinfo=UTC)
DAYS = 100
WHO = "it-live-subgroups"


def risk_version(version: int, day: int, bias: float) -> ModelSnapshot:
    """A trained relapse-risk version (its bias sets how often the alert rule fires)."""
    return initial_version().model_copy(
        update={"version": version, "bias": bias, "trained_until": START + timedelta(days=day)}
    )


@dataclass
class Deployment:
    url: str
    models_dir: Path
    events: list[Any]
    live: list[tuple[Any, list[Any]]]
    states: dict[str, PatientState]
    config_for: Callable[[Any], CoreConfig]


@pytest.fixture(scope="module")
def deployment(
    embedded_pg: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    events = arrival_order(
        list(simulate_cohort(12, DAYS, seed=7, start=START, samples_per_hour=1).events())
    )
    with loaded_store(embedded_pg, events, "livesub") as url:
        yield from _deployment(url, events, tmp_path_factory)


def _deployment(
    url: str, events: list[Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    models_dir = tmp_path_factory.mktemp("models")
    for day in (35, 70):
        fit_from_store(url, models_dir, until=START + timedelta(days=day), k=2, seed=1, who=WHO)
    with psycopg.connect(url, autocommit=True) as conn:
        for snapshot in (risk_version(1, 30, 4.0), risk_version(2, 60, -2.0)):
            archive_version(conn, snapshot)
        risk = ModelTimeline.of([initial_version(), *archived_versions(conn, "relapse_risk")])
        clusters = SubgroupTimeline(archived_subgroup_versions(conn))
    base = CoreConfig()
    configs: dict[tuple[int, int | None], CoreConfig] = {}

    def config_for(event: Any) -> CoreConfig:
        """What a worker following the topic used: the versions published before it arrived.

        One configuration object per pair of versions, as :class:`LiveModels` swaps them.
        """
        model, subgroups = risk.at(event.received_at), clusters.at(event.received_at)
        key = (model.version, None if subgroups is None else subgroups.version)
        if key not in configs:
            configs[key] = base.with_model(model).with_subgroups(subgroups)
        return configs[key]

    states: dict[str, PatientState] = {}
    live = list(run_core(events, None, states, config_for))
    with Sink(url) as sink:
        sink.load_events([o for _, outputs in live for o in outputs])
    yield Deployment(url, models_dir, events, live, states, config_for)


def of_kind(outputs: Any, kind: type[BaseModel]) -> list[str]:
    return [o.model_dump_json() for o in outputs if isinstance(o, kind)]


def test_each_fit_is_archived_and_numbered_after_the_last(deployment: Deployment) -> None:
    with psycopg.connect(deployment.url, autocommit=True) as conn:
        fitted = archived_subgroup_versions(conn)
    assert [s.version for s in fitted] == list(range(len(fitted)))
    first, second = fitted[:2]  # (a third when the publishing test ran first)
    assert first.trained_until is not None and second.trained_until is not None
    assert first.trained_until < second.trained_until
    assert second.labels == first.labels  # matched to the previous version
    with (
        psycopg.connect(deployment.url, autocommit=True) as conn,
        pytest.raises(ValueError, match="archived as a risk model"),
    ):
        archive_version(conn, second.model_copy(update={"name": "relapse_risk"}))


def test_as_live_replay_gives_the_live_subgroup_changes(deployment: Deployment) -> None:
    live = [o for _, outputs in deployment.live for o in outputs]
    clusters = [o for o in live if isinstance(o, SubgroupAssigned) and o.scheme == "cluster"]
    assert {o.version for o in clusters} == {"0", "1"}, "both versions assigned clusters live"
    replayed = list(replay_outputs(deployment.url, models="as-live", who=WHO))
    for kind in (SubgroupAssigned, RiskAssessment, Alert):
        assert of_kind(replayed, kind) == of_kind(live, kind), kind.__name__
    assert any(isinstance(o, Alert) and o.rule == "relapse_risk" for o in live)
    with_base = list(replay_outputs(deployment.url, who=WHO))
    assert of_kind(with_base, SubgroupAssigned) != of_kind(live, SubgroupAssigned)


def test_a_rebuilt_state_is_the_live_state(deployment: Deployment) -> None:
    with StateRebuilder(deployment.url, CoreConfig()) as rebuilder:
        for patient, state in deployment.states.items():
            rebuilt = rebuilder.rebuild(patient)
            assert rebuilt is not None
            # Equal, field by field and as JSON. (Not compared pickled: a pickle also
            # records which equal values are one object, and the versions the two were
            # processed with were parsed apart, as a worker's and a rebuilder's are.)
            assert rebuilt == state, patient
            assert rebuilt.model_dump_json() == state.model_dump_json()
    with psycopg.connect(deployment.url, autocommit=True) as conn:
        as_before = [
            rebuild_state(conn, patient, CoreConfig()) == state
            for patient, state in deployment.states.items()
        ]
    assert not all(as_before), "the base configuration alone would have rebuilt the same"


def test_a_worker_that_lost_a_state_half_way_goes_on_as_live(deployment: Deployment) -> None:
    moved = {
        e.patient_id
        for e, outputs in deployment.live
        for o in outputs
        if isinstance(o, SubgroupAssigned) and o.scheme == "cluster"
    }
    with StateRebuilder(deployment.url, CoreConfig()) as rebuilder:
        for patient in sorted(moved)[:3]:
            mine = [(e, outs) for e, outs in deployment.live if e.patient_id == patient]
            half = len(mine) // 2
            rebuilt = rebuilder.rebuild(patient, before=mine[half][0])
            assert rebuilt is not None
            states = {patient: rebuilt}
            rest = [e for e, _ in mine[half:]]
            after = [outs for _, outs in run_core(rest, None, states, deployment.config_for)]
            assert after == [outs for _, outs in mine[half:]]
            assert states[patient] == deployment.states[patient]


def test_the_version_a_cluster_change_names_wins_over_the_archive(
    deployment: Deployment,
) -> None:
    change = next(
        o
        for _, outputs in deployment.live
        for o in outputs
        if isinstance(o, SubgroupAssigned) and o.scheme == "cluster" and o.version == "1"
    )
    cause = next(e for e, _ in deployment.live if e.event_id == change.caused_by)
    with psycopg.connect(deployment.url) as conn:  # one transaction, rolled back
        with AsLive(conn, CoreConfig()) as as_live:
            assert as_live(cause).subgroups == as_live.subgroup_versions[1]
        conn.execute(
            "UPDATE subgroup_assignments SET version = '0' WHERE event_id = %s", (change.event_id,)
        )
        with AsLive(conn, CoreConfig()) as as_live:
            chosen = as_live(cause).subgroups
            assert chosen is not None and chosen.version == 0
        conn.rollback()


def test_a_published_fit_reaches_a_worker_next_to_the_risk_model(
    deployment: Deployment,
    broker: EmbeddedBroker,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    topic = "it-live-subgroups.models"  # not psymon.models.v1: no other test's worker sees it
    ensure_models_topic(broker.bootstrap, topic)
    publisher = TopicModelStore(broker.bootstrap, topic)
    worker = LiveModels(TopicModelStore(broker.bootstrap, topic), CoreConfig(version="w-1"))
    for variable, value in {
        "DATABASE_URL": deployment.url,
        "KAFKA_BOOTSTRAP": broker.bootstrap,
        "DATA_DIR": str(tmp_path),
    }.items():
        monkeypatch.setenv(f"PSYMON_{variable}", value)
    monkeypatch.delenv("PSYMON_CORE_CONFIG_FILE", raising=False)
    try:
        publisher.publish(risk_version(2, 60, -2.0))
        args = ["subgroups", "fit", "--k", "2", "--seed", "1", "--models-dir", str(tmp_path)]
        result = CliRunner().invoke(cli, [*args, "--models-topic", topic])
        assert result.exit_code == 0, result.output
        assert f"published to {topic}" in result.output
        with psycopg.connect(deployment.url, autocommit=True) as conn:
            fitted = archived_subgroup_versions(conn)[-1]
        assert fitted.version >= 2  # numbered after the archive's, not the empty directory's
        assert f"profile_mixture v{fitted.version}:" in result.output
        for _ in range(50):  # a bounded wait: each look polls the topic for 0.2 s
            worker.refresh()
            if (worker.version, worker.subgroups_version) == (2, fitted.version):
                break
        assert worker() == CoreConfig(version="w-1").with_model(
            risk_version(2, 60, -2.0)
        ).with_subgroups(fitted)
        again = CliRunner().invoke(cli, [*args, "--no-publish"])
        assert again.exit_code == 0, again.output
        assert "archived, not published (--no-publish)" in again.output
        worker.refresh()
        assert worker.subgroups_version == fitted.version
    finally:
        worker.stop()
        publisher.close()
