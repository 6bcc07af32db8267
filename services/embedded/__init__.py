"""The embedded runtime: a Kafka-compatible broker (and later PostgreSQL) run by psymon itself.

Used by ``make demo``, ``psymon broker``, ``psymon up`` and the integration
tests; production points the settings at real services instead.
"""

from __future__ import annotations

from services.embedded.broker import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    BrokerError,
    EmbeddedBroker,
    TopicPartitionMismatch,
    ensure_topics,
    free_port,
    run_broker_foreground,
    topic_partitions,
)
from services.embedded.children import spawn_child, stop_child

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
