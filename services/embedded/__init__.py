"""The embedded runtime: services psymon runs itself when no real ones are configured.

:mod:`services.embedded.broker` runs Tansu, a Kafka-compatible broker, and
:mod:`services.embedded.topics` prepares psymon's topics on it (or on any
Kafka); :mod:`services.embedded.postgres` runs PostgreSQL; :mod:`services.embedded.children`
starts and stops their processes so that none outlives psymon. Used by
``make demo``, ``psymon broker``, ``psymon up`` and the integration tests;
production points the settings at real services instead.
"""

from __future__ import annotations

from services.embedded.broker import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    EmbeddedBroker,
    free_port,
    run_broker_foreground,
)
from services.embedded.children import spawn_child, stop_child
from services.embedded.topics import (
    BrokerError,
    TopicPartitionMismatch,
    ensure_topics,
    topic_partitions,
)

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "BrokerError",
    "EmbeddedBroker",
    "TopicPartitionMismatch",
    "ensure_topics",
    "free_port",
    "run_broker_foreground",
    "spawn_child",
    "stop_child",
    "topic_partitions",
]
