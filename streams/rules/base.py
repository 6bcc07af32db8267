"""What every alert rule shares: one alert per condition, hysteresis, cooldown.

A rule decides, for one signal (a *key*: an instrument, an analyte, the
patient's wearable), whether its condition is raised and whether it still
holds. :class:`AlertBook` turns those two answers into alert changes:

* raised and nothing open: an alert opens (``status="open"``), unless the
  same rule and key closed less than the cooldown ago;
* open and raised at a higher severity: the same alert is re-sent open with
  the higher severity;
* open and still holding: nothing is sent (``last_seen`` moves on);
* open and no longer holding: the alert closes (``status="closed"``, same
  ``alert_id``).

The hold condition is weaker than the raise condition (hysteresis), so a
value hovering at a threshold does not open and close an alert at every
rating. ``alert_id`` is ``event_id_for(patient, rule, first trigger)``: the
same history gives the same ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal
from uuid import UUID

from schemas.envelope import utc
from schemas.identity import event_id_for

Severity = Literal["info", "warning", "urgent"]
Scalar = float | int | str | bool | None

SEVERITY_RANK: dict[str, int] = {"info": 1, "warning": 2, "urgent": 3}


@dataclass(frozen=True, slots=True)
class Trigger:
    """What a rule is evaluated for: whose, when (event time), and which event or day."""

    patient_id: str
    at: datetime
    id: str


@dataclass(frozen=True, slots=True)
class AlertChange:
    """One change of one alert, before it becomes an :class:`~schemas.events.Alert` event.

    ``trigger`` names what caused this change: an input event id, or
    ``day:YYYY-MM-DD`` for rules evaluated when a wearable day closes.
    """

    rule: str
    key: str
    alert_id: UUID
    status: Literal["open", "closed"]
    severity: Severity
    message: str
    evidence: dict[str, Scalar]
    first_seen: datetime
    last_seen: datetime
    trigger: str


@dataclass(slots=True)
class OpenAlert:
    """An alert a rule has open for one key."""

    alert_id: UUID
    severity: Severity
    first_seen: datetime
    last_seen: datetime


@dataclass(slots=True)
class AlertBook:
    """Open alerts and last closings of one rule, by key; ``step`` moves one key on.

    >>> from datetime import UTC, datetime, timedelta
    >>> book, t = AlertBook(), datetime(2026, 3, 2, tzinfo=UTC)
    >>> def step(severity, holds, hours):
    ...     changes = book.step("demo", "phq9", raised=severity, holds=holds,
    ...                         at=t + timedelta(hours=hours), trigger=f"e{hours}",
    ...                         patient_id="p-1", message="m", evidence={},
    ...                         cooldown=timedelta(hours=24))
    ...     return [(c.status, c.severity) for c in changes]
    >>> step("info", True, 0), step("info", True, 1), step("warning", True, 2)
    ([('open', 'info')], [], [('open', 'warning')])
    >>> step(None, False, 3), step("info", True, 4), step("info", True, 30)
    ([('closed', 'warning')], [], [('open', 'info')])
    """

    open: dict[str, OpenAlert] = field(default_factory=dict)
    closed_at: dict[str, datetime] = field(default_factory=dict)

    def step(
        self,
        rule: str,
        key: str,
        *,
        raised: Severity | None,
        holds: bool,
        at: datetime,
        trigger: str,
        patient_id: str,
        message: str,
        evidence: dict[str, Scalar],
        cooldown: timedelta,
    ) -> list[AlertChange]:
        """Move ``key`` on by one evaluation; return the alert changes to send.

        Times are compared in UTC: two local day ends in one zone would
        otherwise be compared by wall clock, wrong across daylight saving.
        """
        at = utc(at)
        current = self.open.get(key)
        if current is not None:
            if not (holds or raised):
                del self.open[key]
                self.closed_at[key] = at
                return [
                    AlertChange(
                        rule,
                        key,
                        current.alert_id,
                        "closed",
                        current.severity,
                        message,
                        evidence,
                        current.first_seen,
                        at,
                        trigger,
                    )
                ]
            current.last_seen = max(utc(current.last_seen), at)
            if raised and SEVERITY_RANK[raised] > SEVERITY_RANK[current.severity]:
                current.severity = raised
                return [self._change(rule, key, current, "open", message, evidence, trigger)]
            return []
        if raised is None:
            return []
        closed = self.closed_at.get(key)
        if closed is not None and at - utc(closed) < cooldown:
            return []
        opened = OpenAlert(event_id_for(patient_id, rule, trigger), raised, at, at)
        self.open[key] = opened
        return [self._change(rule, key, opened, "open", message, evidence, trigger)]

    @staticmethod
    def _change(
        rule: str,
        key: str,
        alert: OpenAlert,
        status: Literal["open", "closed"],
        message: str,
        evidence: dict[str, Scalar],
        trigger: str,
    ) -> AlertChange:
        return AlertChange(
            rule,
            key,
            alert.alert_id,
            status,
            alert.severity,
            message,
            evidence,
            alert.first_seen,
            alert.last_seen,
            trigger,
        )

    def move(
        self,
        rule: str,
        key: str,
        trigger: Trigger,
        config_cooldown_hours: float,
        *,
        raised: Severity | None,
        holds: bool,
        message: str,
        evidence: dict[str, Scalar],
    ) -> list[AlertChange]:
        """:meth:`step` for a :class:`Trigger` and a cooldown in hours."""
        return self.step(
            rule,
            key,
            raised=raised,
            holds=holds,
            at=trigger.at,
            trigger=trigger.id,
            patient_id=trigger.patient_id,
            message=message,
            evidence=evidence,
            cooldown=timedelta(hours=config_cooldown_hours),
        )

    def clone(self) -> AlertBook:
        """An independent copy."""
        return AlertBook(
            {
                key: OpenAlert(a.alert_id, a.severity, a.first_seen, a.last_seen)
                for key, a in self.open.items()
            },
            dict(self.closed_at),
        )


def single_alert(
    rule: str,
    *,
    patient_id: str,
    trigger: str,
    at: datetime,
    message: str,
    evidence: dict[str, Scalar],
    severity: Severity = "urgent",
) -> AlertChange:
    """An alert raised once for one event, never held or closed by a rule.

    Safety alerts are this kind: each report is its own alert, and only the
    care team resolves it.
    """
    return AlertChange(
        rule,
        trigger,
        event_id_for(patient_id, rule, trigger),
        "open",
        severity,
        message,
        evidence,
        at,
        at,
        trigger,
    )
