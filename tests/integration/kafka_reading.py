"""Reading what psymon produced, straight from the broker (kafka-python)."""

from __future__ import annotations

import json
import time
from typing import Any


def read_topic(
    bootstrap: str, topic: str, *, expect: int, timeout: float = 20.0
) -> list[dict[str, Any]]:
    """Every message on ``topic`` from the beginning, waiting until ``expect`` arrived.

    Returns the JSON values with the message key under ``_key``.
    """
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        consumer_timeout_ms=500,
    )
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and len(messages) < expect:
            for record in consumer:
                value = json.loads(record.value)
                value["_key"] = record.key.decode() if record.key else None
                messages.append(value)
    finally:
        consumer.close()
    return messages
