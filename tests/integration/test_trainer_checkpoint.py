"""A trainer never goes on from a checkpoint older than a version already published.

Two trainers for one deployment (a second data directory, a restored backup)
could each number a version 11; workers and the archive would then disagree on
what "version 11" is, and a replay could not reproduce live. A trainer whose
checkpoint is behind what the models topic holds refuses to start and says why.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from services.embedded import BrokerError, EmbeddedBroker
from services.live_models import TopicModelStore
from services.trainer import TrainerService
from streams.models.features import INPUTS
from streams.models.snapshot import ModelSnapshot
from tests.integration.workers import PARTITIONS

pytestmark = pytest.mark.integration


def test_a_checkpoint_behind_the_published_versions_is_refused(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    topic = f"psymon.models.test-{uuid.uuid4().hex[:8]}"
    first = TrainerService(
        broker.bootstrap, PARTITIONS, data_dir=tmp_path, models_topic=topic
    ).start()
    first.save()  # a checkpoint at version 0
    first.close()

    # Meanwhile another trainer published version 3 of the same model.
    elsewhere = TopicModelStore(broker.bootstrap, topic)
    try:
        newer = ModelSnapshot.initial(INPUTS).model_copy(update={"version": 3})
        elsewhere.publish(newer)
    finally:
        elsewhere.close()

    again = TrainerService(broker.bootstrap, PARTITIONS, data_dir=tmp_path, models_topic=topic)
    with pytest.raises(BrokerError, match="published after this trainer's checkpoint"):
        again.start()
    again.close()
