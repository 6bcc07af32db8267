"""A worker's config source: version 0 first, newer versions found off the event loop."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

from services.live_models import LiveModels
from services.training import MemoryModelStore, Trainer, initial_version
from streams.config import CoreConfig, RiskConfig
from streams.models.features import INPUTS
from streams.models.snapshot import ModelSnapshot

WAIT = 10.0


def trained(version: int) -> ModelSnapshot:
    return initial_version().model_copy(
        update={"version": version, "trained_until": datetime(2026, 3, version, tzinfo=UTC)}
    )


class FlakyStore(MemoryModelStore):
    """A store that fails until told otherwise (a broker that is away)."""

    def __init__(self) -> None:
        super().__init__()
        self.away = True
        self.asked = threading.Event()

    def latest(self, name: str) -> ModelSnapshot | None:
        self.asked.set()
        if self.away:
            raise ConnectionError("broker away")
        return super().latest(name)


def wait_for(condition: object, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"no {what} within {WAIT} s"
        time.sleep(0.01)


def test_before_any_version_a_worker_scores_with_the_trainers_version_0() -> None:
    live = LiveModels(MemoryModelStore(), CoreConfig())
    assert live().model is not None
    assert live().model.model_dump_json() == Trainer().latest.model_dump_json()
    # ... which can raise no relapse_risk alert: its constant risk is below the threshold.
    assert live().model.predict_proba_one(dict.fromkeys(INPUTS, 9.0)) < RiskConfig().alert_threshold


def test_the_configuration_keeps_every_other_setting_and_is_the_same_object_until_a_change() -> (
    None
):
    base = CoreConfig(version="study-7")
    store = MemoryModelStore()
    live = LiveModels(store, base)
    first = live()
    assert live() is first and first.version == "study-7"
    assert live.refresh() is False
    store.publish(trained(2))
    assert live.refresh() is True
    assert live().model == trained(2) and live().version == "study-7"


def test_versions_only_move_forward() -> None:
    store = MemoryModelStore()
    live = LiveModels(store, CoreConfig())
    store.publish(trained(3))
    live.refresh()
    store.published = [trained(1)]  # a trainer restarted from scratch
    assert live.refresh() is False and live.version == 3


def test_the_thread_finds_new_versions_and_outlives_a_store_that_is_away() -> None:
    store = FlakyStore()
    live = LiveModels(store, CoreConfig(), poll_seconds=0.01).start()
    try:
        wait_for(store.asked.is_set, "look at the store")
        wait_for(lambda: live.failures >= 2, "second attempt")
        assert live.version == 0  # still scoring, with what it had
        store.publish(trained(1))
        store.away = False
        wait_for(lambda: live.version == 1, "version 1")
    finally:
        live.stop()
    assert live._thread is None


def test_a_model_in_the_base_configuration_is_the_starting_version() -> None:
    live = LiveModels(MemoryModelStore(), CoreConfig().with_model(trained(4)))
    assert live.version == 4
