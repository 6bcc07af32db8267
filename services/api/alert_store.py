"""The alert workflow over the store: list alerts, read their history, act on them.

Alerts are written by the sink from the alerts topic (each change of an alert
is a row of ``alerts``); what the care team does is written here, to
``alert_history``, one row per action. The view ``v_alerts`` combines both:
an alert's status is the rule's latest word unless the team has acted since,
so the stream sending an update for an acknowledged alert does not undo the
acknowledgement (docs/store.md, ``v_alerts``).

Each action runs in one transaction that holds an advisory lock on the alert,
reads its current status, decides (:func:`services.api.alert_workflow.decide`)
and inserts the history row; the row *is* the status change, so the change
and its audit record cannot be separated. The history row's ``event_id`` is
deterministic, so a repeated action is stored once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field

from services.api.alert_workflow import HISTORY_ACTION, Action, decide, history_event_id
from services.api.auth import Principal, Role
from services.api.database import Database

Severity = Literal["info", "warning", "urgent"]
Status = Literal["open", "acknowledged", "escalated", "resolved", "closed"]

#: First key of the two-key advisory locks taken per alert ("alrt").
_LOCK_CLASS = int.from_bytes(b"alrt", "big")

_SEVERITY_RANK = "CASE severity WHEN 'urgent' THEN 3 WHEN 'warning' THEN 2 ELSE 1 END"

#: What a researcher sees instead of a free-text note (notes may name people).
WITHHELD = "(withheld)"


class AlertView(BaseModel):
    """An alert in its current state (one row of ``v_alerts``)."""

    alert_id: UUID
    patient_id: str
    rule: str
    severity: Severity
    status: Status = Field(description="The rule's latest word unless the care team has acted")
    rule_status: str = Field(description="What the rule last said (open, closed)")
    message: str
    evidence: dict[str, Any]
    first_seen: datetime
    last_seen: datetime
    updated_at: datetime = Field(description="When the rule last changed the alert")
    config_version: str
    last_action: str | None = None
    last_actor: str | None = Field(
        default=None, description="role:name of who acted last (role only for researchers)"
    )
    last_action_at: datetime | None = None
    event_id: UUID = Field(description="The alert event of the rule's latest change")

    def for_role(self, role: Role) -> AlertView:
        """What ``role`` may see: researchers get the actor's role, not their name."""
        if role != "researcher" or self.last_actor is None:
            return self
        return self.model_copy(update={"last_actor": _role_only(self.last_actor)})


class HistoryEntry(BaseModel):
    """One care-team action on an alert (a row of ``alert_history``)."""

    event_id: UUID
    alert_id: UUID
    action: Literal["acknowledged", "escalated", "resolved", "commented"]
    actor: str = Field(description="role:name of the token that acted (role only for researchers)")
    note: str | None = None
    at: datetime = Field(description="When the action was taken (database clock)")

    def for_role(self, role: Role) -> HistoryEntry:
        """Researchers see neither the actor's name nor the note's text."""
        if role != "researcher":
            return self
        note = None if self.note is None else WITHHELD
        return self.model_copy(update={"actor": _role_only(self.actor), "note": note})


class AlertDetail(AlertView):
    """An alert with its history, oldest action first."""

    history: list[HistoryEntry]

    def for_role(self, role: Role) -> AlertDetail:
        view = super().for_role(role)
        return AlertDetail(
            **view.model_dump(exclude={"history"}),
            history=[entry.for_role(role) for entry in self.history],
        )


class ActionResult(BaseModel):
    """What an action did: whether it changed anything, why, and the alert afterwards."""

    changed: bool = Field(description="False when the action had been taken already (no-op)")
    reason: str
    alert: AlertView
    entry: HistoryEntry | None = Field(
        default=None, description="The history row written (or found, for a repeated note)"
    )


@dataclass(frozen=True)
class AlertFilter:
    """Which alerts to list; every field narrows the list, ``None`` means any.

    ``since``/``until`` select alerts active in that window: last seen at or
    after ``since`` and first seen before ``until``.
    """

    statuses: tuple[str, ...] = ()
    severities: tuple[str, ...] = ()
    patient_id: str | None = None
    rule: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 100
    offset: int = 0


class AlertNotFound(LookupError):
    """No alert has this id."""


class ActionRefused(ValueError):
    """The alert's status does not allow this action; the message says why (HTTP 409)."""


class AlertStore:
    """Alerts and the care team's actions on them, over a :class:`Database`."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def find(self, query: AlertFilter) -> list[AlertView]:
        """Alerts matching ``query``, most severe first, then most recently seen."""
        where, params = _where(query)
        rows = self.db.fetch_all(
            f"""SELECT * FROM v_alerts {where}
                ORDER BY {_SEVERITY_RANK} DESC, last_seen DESC, alert_id
                LIMIT %s OFFSET %s""",
            [*params, query.limit, query.offset],
        )
        return [AlertView.model_validate(row) for row in rows]

    def get(self, alert_id: UUID) -> AlertDetail:
        """The alert and its history; raises :class:`AlertNotFound`."""
        with self.db.connection() as conn:
            row = conn.execute("SELECT * FROM v_alerts WHERE alert_id = %s", [alert_id]).fetchone()
            if row is None:
                raise AlertNotFound(str(alert_id))
            history = conn.execute(
                f"SELECT {_HISTORY_COLUMNS} FROM alert_history WHERE alert_id = %s "
                "ORDER BY observed_at, event_id",
                [alert_id],
            ).fetchall()
        return AlertDetail(
            **AlertView.model_validate(row).model_dump(),
            history=[HistoryEntry.model_validate(h) for h in history],
        )

    def act(
        self,
        alert_id: UUID,
        action: Action,
        who: Principal,
        *,
        note: str | None = None,
        key: str | None = None,
    ) -> ActionResult:
        """Take ``action`` on the alert as ``who``; write its history row in the same transaction.

        Raises :class:`AlertNotFound` or :class:`ActionRefused`. A repeated
        action returns ``changed=False`` and writes nothing.
        """
        event_id = history_event_id(alert_id, action, actor=who.actor, note=note, key=key)
        with self.db.connection() as conn, conn.transaction():
            conn.execute(
                "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [_LOCK_CLASS, str(alert_id)]
            )
            row = conn.execute("SELECT * FROM v_alerts WHERE alert_id = %s", [alert_id]).fetchone()
            if row is None:
                raise AlertNotFound(str(alert_id))
            before = AlertView.model_validate(row)
            decision = decide(before.status, action)
            if decision.outcome == "refuse":
                raise ActionRefused(decision.reason)
            if decision.outcome == "noop":
                return ActionResult(changed=False, reason=decision.reason, alert=before)
            moment = conn.execute("SELECT clock_timestamp() AS now").fetchone()
            assert moment is not None
            at: datetime = moment["now"]
            history_action = HISTORY_ACTION[action]
            payload = {
                "kind": "alert_action",
                "event_id": str(event_id),
                "alert_id": str(alert_id),
                "patient_id": before.patient_id,
                "action": history_action,
                "actor": who.actor,
                "actor_role": who.role,
                "note": note,
                "status_before": before.status,
                "observed_at": at.isoformat(),
                "source": {"system": "psymon-api", "rater": who.actor},
            }
            written = conn.execute(
                f"""INSERT INTO alert_history
                    (event_id, alert_id, patient_id, observed_at, received_at, source_system,
                     source_rater, action, actor, note, payload)
                VALUES (%s, %s, %s, %s, %s, 'psymon-api', %s, %s, %s, %s, %s)
                ON CONFLICT (event_id) DO NOTHING
                RETURNING {_HISTORY_COLUMNS}""",
                [
                    event_id,
                    alert_id,
                    before.patient_id,
                    at,
                    at,
                    who.actor,
                    history_action,
                    who.actor,
                    note,
                    json.dumps(payload),
                ],
            ).fetchone()
            if written is None:  # the same note (same key) was stored before
                found = conn.execute(
                    f"SELECT {_HISTORY_COLUMNS} FROM alert_history WHERE event_id = %s",
                    [event_id],
                ).fetchone()
                entry = None if found is None else HistoryEntry.model_validate(found)
                return ActionResult(
                    changed=False, reason="this note was stored already", alert=before, entry=entry
                )
            after = conn.execute(
                "SELECT * FROM v_alerts WHERE alert_id = %s", [alert_id]
            ).fetchone()
        return ActionResult(
            changed=True,
            reason=decision.reason,
            alert=AlertView.model_validate(after),
            entry=HistoryEntry.model_validate(written),
        )

    def rules(self) -> list[str]:
        """Every rule that has raised an alert (for filter menus)."""
        rows = self.db.fetch_all("SELECT DISTINCT rule FROM v_alerts ORDER BY rule")
        return [str(row["rule"]) for row in rows]


_HISTORY_COLUMNS = "event_id, alert_id, action, actor, note, observed_at AS at"


def _where(query: AlertFilter) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if query.statuses:
        clauses.append("status = ANY(%s)")
        params.append(list(query.statuses))
    if query.severities:
        clauses.append("severity = ANY(%s)")
        params.append(list(query.severities))
    if query.patient_id is not None:
        clauses.append("patient_id = %s")
        params.append(query.patient_id)
    if query.rule is not None:
        clauses.append("rule = %s")
        params.append(query.rule)
    if query.since is not None:
        clauses.append("last_seen >= %s")
        params.append(query.since)
    if query.until is not None:
        clauses.append("first_seen < %s")
        params.append(query.until)
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", params


def _role_only(actor: str) -> str:
    """``clinician:dr-ana`` -> ``clinician``.

    >>> _role_only("admin:ops")
    'admin'
    """
    return actor.split(":", 1)[0]
