"""0004: the outbox of alert webhooks (``services.api.delivery``).

One row per (alert event, webhook target): the primary key makes enqueueing
idempotent, so an alert event is never queued twice for the same receiver,
however often or by however many processes the outbox is filled. A row is
retried with backoff until the receiver answers 2xx (``delivered_at``).

``target`` is the SHA-256 of the webhook URL, not the URL: webhook URLs often
carry a secret in their path. ``target_host`` (scheme, host and port only)
says where it went, for people. Not partitioned: low volume, and the
primary key must be unique on its own.
"""

from __future__ import annotations

VERSION = "0004"
NAME = "alert delivery outbox"

_STATEMENTS = (
    """CREATE TABLE alert_deliveries (
    alert_event_id uuid NOT NULL,
    target text NOT NULL,
    target_host text NOT NULL,
    alert_id uuid NOT NULL,
    patient_id text NOT NULL,
    severity text NOT NULL,
    payload jsonb NOT NULL,
    enqueued_at timestamptz NOT NULL DEFAULT now(),
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_attempt_at timestamptz,
    last_status integer,
    last_error text,
    delivered_at timestamptz,
    PRIMARY KEY (alert_event_id, target)
)""",
    "CREATE INDEX alert_deliveries_due ON alert_deliveries (next_attempt_at) "
    "WHERE delivered_at IS NULL",
    "CREATE INDEX alert_deliveries_alert ON alert_deliveries (alert_id)",
)


def statements(flavour: str) -> list[str]:
    """The outbox table; the same for every flavour."""
    return list(_STATEMENTS)
