"""Outbound alert webhooks: each alert event POSTed to the URLs configured for its severity.

Configuration is a JSON file mapping a severity to one URL or a list of URLs::

    {"urgent": ["https://pager.example.org/hooks/psymon"],
     "warning": "https://chat.example.org/hooks/T0/B0/secret"}

Delivery goes through an outbox table (``alert_deliveries``, migration 0004):

1. :meth:`AlertDelivery.enqueue` queues every alert event stored within
   ``lookback`` whose severity has URLs, one row per (alert event, URL);
   the primary key makes this idempotent, so nothing is queued twice.
2. :meth:`AlertDelivery.deliver_due` takes due rows one at a time
   (``FOR UPDATE SKIP LOCKED``: two deliverers never send the same row at
   once), POSTs the alert event as JSON, and marks the row delivered on a 2xx
   answer; otherwise it retries later with exponential backoff, for ever.

The receiver gets ``X-Psymon-Event-Id`` (the alert event's id) and
``X-Psymon-Delivery-Attempt``. A process killed between the receiver's 2xx
and the commit sends that event again on restart, so receivers should treat
``X-Psymon-Event-Id`` as an idempotency key. URLs are secrets (many carry a
token in their path): the table keeps their SHA-256 and host only, and logs
name the host.

>>> config = WebhookConfig.from_mapping({"urgent": "https://pager.example.org/h/s3cr3t"})
>>> config.urls("urgent"), config.urls("info")
(('https://pager.example.org/h/s3cr3t',), ())
>>> host_of("https://pager.example.org/h/s3cr3t")
'https://pager.example.org'
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg

from services.api.database import Database, StoreUnavailable

log = logging.getLogger("psymon.api.delivery")

SEVERITIES = ("info", "warning", "urgent")


class WebhookConfigError(ValueError):
    """The webhook configuration is malformed; the message says where and what is accepted."""


@dataclass(frozen=True)
class WebhookConfig:
    """Severity -> webhook URLs."""

    targets: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, raw: object, *, where: str = "webhook configuration") -> WebhookConfig:
        if not isinstance(raw, dict):
            raise WebhookConfigError(
                f"{where}: expected an object mapping a severity to a URL or a list of URLs"
            )
        targets: dict[str, tuple[str, ...]] = {}
        for severity, value in raw.items():
            if severity not in SEVERITIES:
                raise WebhookConfigError(
                    f"{where}: severity {severity!r} is not one of {', '.join(SEVERITIES)}"
                )
            urls = [value] if isinstance(value, str) else value
            if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
                raise WebhookConfigError(f"{where}: {severity}: expected a URL or a list of URLs")
            for index, url in enumerate(urls):
                parts = urlsplit(url)
                if parts.scheme not in ("http", "https") or not parts.hostname:
                    # The URL itself is not shown: it may hold a secret.
                    raise WebhookConfigError(
                        f"{where}: {severity}[{index}]: expected an http:// or https:// URL "
                        "with a host"
                    )
            targets[severity] = tuple(urls)
        return cls(targets)

    @classmethod
    def load(cls, path: Path) -> WebhookConfig:
        """Read the JSON file at ``path``."""
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise WebhookConfigError(
                f"{path}: cannot read webhook configuration: {error}"
            ) from None
        return cls.from_mapping(raw, where=str(path))

    def urls(self, severity: str) -> tuple[str, ...]:
        return self.targets.get(severity, ())


def target_key(url: str) -> str:
    """How the outbox names a URL: its SHA-256."""
    return hashlib.sha256(url.encode()).hexdigest()


def host_of(url: str) -> str:
    """Scheme, host and port of ``url``: what may be shown of it."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}"


@dataclass
class DeliveryReport:
    """What one :meth:`AlertDelivery.deliver_due` call did."""

    delivered: int = 0
    failed: int = 0


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # A redirected POST becomes a GET in urllib; a webhook that redirects is
    # misconfigured, and following it could send patient data elsewhere.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirects)


class AlertDelivery:
    """Fills the outbox from stored alerts and delivers it.

    Parameters
    ----------
    database
        The store (migrated to 0004 or later).
    config
        Which URLs get which severities.
    lookback
        Only alert events stored within this long ago are queued, so turning
        webhooks on does not send the whole history.
    base_backoff, max_backoff
        Seconds before the first retry, doubled per failed attempt up to the maximum.
    timeout
        Seconds to wait for a receiver's answer.
    """

    def __init__(
        self,
        database: Database,
        config: WebhookConfig,
        *,
        lookback: timedelta = timedelta(days=1),
        base_backoff: float = 2.0,
        max_backoff: float = 900.0,
        timeout: float = 5.0,
    ) -> None:
        self.database = database
        self.config = config
        self.lookback = lookback
        self.base_backoff = base_backoff
        self.max_backoff = max_backoff
        self.timeout = timeout
        self._urls = {target_key(u): u for urls in config.targets.values() for u in urls}

    def enqueue(self) -> int:
        """Queue the recent alert events not yet queued; return how many rows were added."""
        added = 0
        with self.database.connection() as conn:
            for severity, urls in self.config.targets.items():
                for url in urls:
                    cursor = conn.execute(
                        """INSERT INTO alert_deliveries
                               (alert_event_id, target, target_host, alert_id, patient_id,
                                severity, payload)
                           SELECT event_id, %s, %s, alert_id, patient_id, severity, payload
                           FROM alerts
                           WHERE severity = %s
                             AND observed_at >= now() - %s AND stored_at >= now() - %s
                           ORDER BY observed_at
                           ON CONFLICT (alert_event_id, target) DO NOTHING""",
                        [
                            target_key(url),
                            host_of(url),
                            severity,
                            self.lookback,
                            self.lookback,
                        ],
                    )
                    added += max(cursor.rowcount, 0)
        return added

    def deliver_due(self, limit: int = 100) -> DeliveryReport:
        """Try every due row once (up to ``limit``); return what was delivered and what failed."""
        report = DeliveryReport()
        for _ in range(limit):
            outcome = self._deliver_one()
            if outcome is None:
                break
            if outcome:
                report.delivered += 1
            else:
                report.failed += 1
        return report

    def _deliver_one(self) -> bool | None:
        """Deliver the next due row; ``None`` when nothing is due."""
        with self.database.connection() as conn, conn.transaction():
            row = conn.execute(
                """SELECT alert_event_id, target, target_host, payload, attempts
                   FROM alert_deliveries
                   WHERE delivered_at IS NULL AND next_attempt_at <= now()
                     AND target = ANY(%s)
                   ORDER BY next_attempt_at
                   LIMIT 1
                   FOR UPDATE SKIP LOCKED""",
                [list(self._urls)],
            ).fetchone()
            if row is None:
                return None
            attempt = int(row["attempts"]) + 1
            code, error = self._post(self._urls[row["target"]], row, attempt)
            ok = code is not None and 200 <= code < 300
            backoff = min(self.max_backoff, self.base_backoff * 2 ** (attempt - 1))
            conn.execute(
                """UPDATE alert_deliveries SET
                       attempts = %s, last_attempt_at = now(), last_status = %s,
                       last_error = %s,
                       delivered_at = CASE WHEN %s THEN now() END,
                       next_attempt_at = now() + make_interval(secs => %s)
                   WHERE alert_event_id = %s AND target = %s""",
                [attempt, code, error, ok, backoff, row["alert_event_id"], row["target"]],
            )
        if not ok:
            log.warning(
                "alert event %s to %s: attempt %d failed (%s); next try in %.0f s",
                row["alert_event_id"],
                row["target_host"],
                attempt,
                error,
                backoff,
            )
        return ok

    def _post(self, url: str, row: dict[str, Any], attempt: int) -> tuple[int | None, str | None]:
        body = json.dumps(row["payload"], separators=(",", ":")).encode()
        request = urllib.request.Request(
            url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": "psymon-alert-delivery",
                "X-Psymon-Event-Id": str(row["alert_event_id"]),
                "X-Psymon-Delivery-Attempt": str(attempt),
            },
        )
        try:
            with _opener.open(request, timeout=self.timeout) as response:
                return int(response.status), None
        except urllib.error.HTTPError as error:
            return int(error.code), f"HTTP {error.code}"
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            return None, f"{type(error).__name__}: {reason}"[:500]

    def run(self, stop: threading.Event, interval: float = 2.0) -> None:
        """Enqueue and deliver every ``interval`` seconds until ``stop`` is set."""
        while not stop.is_set():
            try:
                self.enqueue()
                self.deliver_due()
            except (StoreUnavailable, psycopg.OperationalError) as error:
                # The database went away; the outbox keeps every row, so retrying later
                # loses nothing.
                log.warning("alert delivery paused, retrying in %.0f s: %s", interval, error)
            stop.wait(interval)
