"""Both kinds of model version on one store: a worker follows each, forward only, per name.

The relapse-risk model (``psymon trainer``) and the population subgroup model
(``psymon subgroups fit``) share the models topic, keyed by name; a worker's
configuration is ``base.with_model(risk).with_subgroups(subgroups)``. The
archive's choice of the subgroup version in force (:class:`SubgroupTimeline`)
is checked here too; its store side is in tests/integration/test_live_subgroup_versions.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.live_models import (
    SUBGROUP_MODEL,
    LiveModels,
    MemoryVersions,
    kind_of,
    parse_snapshot,
)
from services.model_versions import SubgroupTimeline
from services.training import MemoryModelStore, initial_version
from streams.config import CoreConfig
from streams.models.snapshot import ModelSnapshot
from streams.stratification.snapshot import SubgroupSnapshot

DAY0 = datetime(2026, 3, 1, tzinfo=UTC)


def risk(version: int) -> ModelSnapshot:
    return initial_version().model_copy(
        update={"version": version, "trained_until": DAY0 + timedelta(days=version)}
    )


def subgroups(
    version: int, name: str = SUBGROUP_MODEL, *, days: float | None = None
) -> SubgroupSnapshot:
    return SubgroupSnapshot(
        name=name,
        version=version,
        features=("crp_log", "sleep_duration"),
        centre=(0.5, 420.0),
        scale=(0.8, 40.0),
        labels=("c1", "c2"),
        weights=(0.6, 0.4),
        means=((-0.5, 0.1 * version), (1.5, 0.0)),
        variances=((0.4, 1.0), (0.3, 1.0)),
        descriptions=("lower CRP", "higher CRP"),
        examples=40 + version,
        trained_until=None if days is None else DAY0 + timedelta(days=days),
    )


def test_a_published_version_is_read_back_as_its_own_kind() -> None:
    for snapshot in (risk(2), subgroups(3)):
        back = parse_snapshot(snapshot.model_dump_json())
        assert back == snapshot and type(back) is type(snapshot)
    assert (kind_of(risk(0)), kind_of(subgroups(0))) == ("risk", "subgroups")
    with pytest.raises(ValueError, match=r"not a model version.*accepted: the JSON of either"):
        parse_snapshot(b'{"name": "relapse_risk", "version": 1}')


def test_until_a_subgroup_version_arrives_clusters_are_the_base_configurations() -> None:
    live = LiveModels(MemoryVersions(), CoreConfig())
    assert live().subgroups is None and live.subgroups_version is None
    assert live.refresh() is False
    started = LiveModels(MemoryVersions(), CoreConfig().with_subgroups(subgroups(4)))
    assert started.subgroups_version == 4


def test_each_kind_moves_forward_on_its_own_and_every_other_setting_is_kept() -> None:
    store = MemoryVersions()
    base = CoreConfig(version="study-7")
    live = LiveModels(store, base)
    store.publish(subgroups(1))
    assert live.refresh() is True
    assert live().subgroups == subgroups(1) and live.version == 0
    store.publish(risk(2))
    assert live.refresh() is True
    assert live() == base.with_model(risk(2)).with_subgroups(subgroups(1))
    first = live()
    assert live.refresh() is False and live() is first  # no change, the same object
    store.publish(subgroups(2))
    assert live.refresh() is True
    assert (live.version, live.subgroups_version) == (2, 2)


def test_subgroup_versions_only_move_forward() -> None:
    store = MemoryVersions()
    live = LiveModels(store, CoreConfig())
    store.publish(subgroups(3))
    live.refresh()
    store.published = [subgroups(1)]  # fitted again from scratch, into another directory
    assert live.refresh() is False and live.subgroups_version == 3


def test_a_worker_follows_its_own_subgroup_model_only() -> None:
    store = MemoryVersions()
    store.publish(subgroups(5, name="other_mixture"))
    live = LiveModels(store, CoreConfig())
    assert live.refresh() is False and live().subgroups is None
    pinned = LiveModels(store, CoreConfig(), subgroups_name=None)
    store.publish(subgroups(1))
    assert live.refresh() is True and live.subgroups_version == 1
    assert pinned.refresh() is False and pinned().subgroups is None


def test_a_store_of_risk_versions_only_still_works() -> None:
    store = MemoryModelStore()
    live = LiveModels(store, CoreConfig())
    store.publish(risk(1))
    assert live.refresh() is True and live.version == 1 and live().subgroups is None


def test_the_subgroup_version_in_force_is_the_newest_fitted_strictly_before() -> None:
    timeline = SubgroupTimeline([subgroups(1, days=10), subgroups(0, days=3)])
    assert timeline.at(DAY0) is None  # before the first version: the base configuration's
    assert timeline.at(DAY0 + timedelta(days=3)) is None  # fitted on this very arrival
    at = timeline.at(DAY0 + timedelta(days=3, microseconds=1))
    assert at is not None and at.version == 0
    at = timeline.at(DAY0 + timedelta(days=11))
    assert at is not None and at.version == 1
    untimed = SubgroupTimeline([subgroups(0)])
    assert untimed.at(DAY0) == subgroups(0)
    with pytest.raises(ValueError, match="trained until earlier"):
        SubgroupTimeline([subgroups(0, days=5), subgroups(1, days=2)])
