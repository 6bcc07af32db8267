"""Alert webhooks: retried until the receiver answers 2xx, never queued twice.

A real HTTP receiver on 127.0.0.1 (http.server in a thread) refuses the first
delivery with a 503; the outbox in the real embedded PostgreSQL retries it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg
import pytest

from schemas.envelope import Source
from schemas.events import Alert
from schemas.examples import EXAMPLE_PATIENT
from schemas.identity import event_id_for
from services.api.database import Database
from services.api.delivery import AlertDelivery, WebhookConfig, WebhookConfigError
from services.store.migrate import applied_versions, recorded_flavour
from services.store.migrations import v0004_alert_delivery
from services.store.writer import StoreWriter

pytest_plugins = ("tests.integration.pg_fixtures",)
pytestmark = pytest.mark.integration


class Receiver:
    """A webhook receiver that answers 503 to its first ``fail_first`` requests."""

    def __init__(self, fail_first: int = 1) -> None:
        self.requests: list[tuple[str, dict[str, str], dict[str, Any]]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.requests.append((self.path, dict(self.headers), body))
                failing = len(receiver.requests) <= fail_first
                self.send_response(503 if failing else 204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def alert(n: int, severity: str, *, status: str = "open", hours_ago: float = 1) -> Alert:
    at = datetime.now(UTC) - timedelta(hours=hours_ago)
    return Alert(
        event_id=event_id_for("delivery-test", str(n), status),
        patient_id=EXAMPLE_PATIENT,
        observed_at=at,
        received_at=at,
        source=Source(system="psymon"),
        caused_by=event_id_for("delivery-test-cause", str(n)),
        alert_id=event_id_for("delivery-test-alert", str(n)),
        rule="phq9_item9",
        severity=severity,
        status=status,
        message="PHQ-9 item 9 answered 2",
        evidence={"item9": 2},
        first_seen=at,
        last_seen=at,
        config_version="test",
    )


@pytest.fixture
def database(store_url: str) -> Iterator[Database]:
    with psycopg.connect(store_url, autocommit=True) as conn:
        # Until migration 0004 is listed in services.store.migrations.MIGRATIONS,
        # apply it here, exactly as migrate() would.
        if "0004" not in applied_versions(conn):
            flavour = recorded_flavour(conn) or "postgres"
            for statement in v0004_alert_delivery.statements(flavour):
                conn.execute(statement)
    db = Database(store_url)
    yield db
    db.close()


def deliveries(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT alert_event_id, target_host, attempts, last_status, delivered_at IS NOT NULL "
            "FROM alert_deliveries ORDER BY enqueued_at"
        ).fetchall()


def test_a_refused_delivery_is_retried_until_accepted_and_sent_once(
    database: Database, store_url: str
) -> None:
    urgent, warning, stale = (
        alert(1, "urgent"),
        alert(2, "warning"),
        alert(3, "urgent", hours_ago=72),
    )
    with psycopg.connect(store_url) as conn:
        StoreWriter(conn).write([urgent, warning, stale])

    with Receiver(fail_first=1) as receiver:
        config = WebhookConfig.from_mapping({"urgent": receiver.url + "/hooks/s3cr3t"})
        delivery = AlertDelivery(database, config, base_backoff=0.2)
        assert delivery.enqueue() == 1, "only the recent urgent alert is queued"
        assert delivery.enqueue() == 0, "queueing again adds nothing"
        assert AlertDelivery(database, config).enqueue() == 0, "nor does a second deliverer"

        first = delivery.deliver_due()
        assert (first.delivered, first.failed) == (0, 1)
        assert delivery.deliver_due().failed == 0, "not retried before its backoff"
        time.sleep(0.3)
        second = delivery.deliver_due()
        assert (second.delivered, second.failed) == (1, 0)
        delivery.enqueue()
        assert delivery.deliver_due().delivered == 0, "a delivered alert is not sent again"

    assert len(receiver.requests) == 2
    for attempt, (path, headers, body) in enumerate(receiver.requests, start=1):
        assert path == "/hooks/s3cr3t"
        assert headers["X-Psymon-Event-Id"] == str(urgent.event_id)
        assert headers["X-Psymon-Delivery-Attempt"] == str(attempt)
        assert Alert.model_validate(body) == urgent
    rows = deliveries(store_url)
    assert rows == [(urgent.event_id, receiver.url, 2, 204, True)]
    assert "s3cr3t" not in json.dumps([str(r) for r in rows]), "the URL's secret is not stored"


def test_an_unreachable_receiver_is_retried_with_growing_backoff(
    database: Database, store_url: str
) -> None:
    with psycopg.connect(store_url) as conn:
        StoreWriter(conn).write([alert(4, "warning")])
    with Receiver() as receiver:
        url = receiver.url  # the port is closed once the receiver is gone
    delivery = AlertDelivery(
        database, WebhookConfig.from_mapping({"warning": [url]}), base_backoff=60
    )
    delivery.enqueue()
    assert delivery.deliver_due().failed == 1
    with psycopg.connect(store_url) as conn:
        attempts, error, wait = conn.execute(
            "SELECT attempts, last_error, next_attempt_at - last_attempt_at FROM alert_deliveries"
        ).fetchone()  # type: ignore[misc]
    assert attempts == 1 and "refused" in error.lower()
    assert timedelta(seconds=59) <= wait <= timedelta(seconds=61)


def test_a_malformed_configuration_names_the_problem_not_the_url() -> None:
    with pytest.raises(WebhookConfigError, match="severity 'critical' is not one of"):
        WebhookConfig.from_mapping({"critical": "https://x.example/h"})
    with pytest.raises(WebhookConfigError, match=r"urgent\[0\]: expected an http") as caught:
        WebhookConfig.from_mapping({"urgent": ["ftp://x.example/token-123"]})
    assert "token-123" not in str(caught.value)
