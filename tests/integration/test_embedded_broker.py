"""The embedded broker: starts, serves metadata, holds psymon's topics, leaves nothing behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from schemas.topics import ALL_TOPICS, CLINICAL_SCORES
from services.embedded import (
    BrokerError,
    EmbeddedBroker,
    TopicPartitionMismatch,
    ensure_topics,
    free_port,
    topic_partitions,
)
from tests.integration.workers import PARTITIONS, pids_with_argument, process_alive

pytestmark = pytest.mark.integration


def test_broker_serves_metadata_with_every_topic_at_the_configured_partitions(
    broker: EmbeddedBroker,
) -> None:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        described = {t["name"]: len(t["partitions"]) for t in admin.describe_topics()}
    finally:
        admin.close()
    assert {topic: described.get(topic) for topic in ALL_TOPICS} == dict.fromkeys(
        ALL_TOPICS, PARTITIONS
    )
    assert broker.bootstrap.startswith("127.0.0.1:")


def test_ensure_topics_is_idempotent_and_refuses_a_partition_mismatch(
    broker: EmbeddedBroker,
) -> None:
    assert ensure_topics(broker.bootstrap, PARTITIONS) == dict.fromkeys(ALL_TOPICS, PARTITIONS)
    newcomer = f"test-newcomer-{uuid.uuid4().hex[:8]}"
    with pytest.raises(TopicPartitionMismatch, match=r"PSYMON_PARTITIONS") as error:
        ensure_topics(broker.bootstrap, PARTITIONS + 1, [CLINICAL_SCORES, newcomer])
    assert f"{CLINICAL_SCORES} has {PARTITIONS}" in str(error.value)
    # Nothing was created with the refused count.
    assert topic_partitions(broker.bootstrap, [newcomer]) == {}


def test_a_stopped_broker_leaves_no_process_and_frees_its_port() -> None:
    with EmbeddedBroker(partitions=3) as embedded:
        pid = embedded.pid
        port = embedded.port
        assert pid is not None and process_alive(pid)
        assert topic_partitions(embedded.bootstrap, [CLINICAL_SCORES]) == {CLINICAL_SCORES: 3}
    assert not process_alive(pid)
    assert not embedded.running
    # The port is free again: a new broker can take it.
    with EmbeddedBroker(port=port) as again:
        assert again.bootstrap == f"127.0.0.1:{port}"


def test_a_busy_port_is_reported_with_the_address(broker: EmbeddedBroker) -> None:
    assert broker.port is not None
    with pytest.raises(BrokerError, match=rf"127\.0\.0\.1:{broker.port} is already in use"):
        EmbeddedBroker(port=broker.port).start()


def test_ensure_topics_names_the_address_when_no_broker_answers() -> None:
    address = f"127.0.0.1:{free_port()}"
    with pytest.raises(BrokerError, match=rf"no Kafka broker answers at {address}"):
        ensure_topics(address, 1, timeout=1.0)


def test_broker_dies_with_a_parent_that_is_killed() -> None:
    port = free_port()
    code = (
        "from services.embedded import EmbeddedBroker; import time; "
        f"EmbeddedBroker(port={port}).start(); print('up', flush=True); time.sleep(60)"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert parent.stdout is not None and parent.stdout.readline().strip() == b"up"
        (tansu,) = pids_with_argument(f"tcp://127.0.0.1:{port}")
        parent.kill()  # SIGKILL: no atexit, no finally; only PR_SET_PDEATHSIG is left
        parent.wait(timeout=10)
        _wait_until(lambda: not process_alive(tansu), timeout=5)
    finally:
        parent.kill()
        parent.wait(timeout=10)
    assert pids_with_argument(f"tcp://127.0.0.1:{port}") == []


def test_psymon_broker_foreground_stops_cleanly_on_ctrl_c() -> None:
    port = free_port()
    code = (
        "import sys; from services.embedded import run_broker_foreground; "
        f"sys.exit(run_broker_foreground('127.0.0.1', {port}, 2))"
    )
    foreground = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        assert foreground.stdout is not None
        first = foreground.stdout.readline().decode()
        assert f"listening on 127.0.0.1:{port}" in first
        assert topic_partitions(f"127.0.0.1:{port}", ALL_TOPICS) == dict.fromkeys(ALL_TOPICS, 2)
        os.kill(foreground.pid, signal.SIGINT)
        assert foreground.wait(timeout=15) == 0
    finally:
        foreground.kill()
        foreground.wait(timeout=10)
    assert pids_with_argument(f"tcp://127.0.0.1:{port}") == []


def _wait_until(condition: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)
