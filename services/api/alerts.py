"""``/v1/alerts``: list and read alerts; acknowledge, escalate, resolve, add notes.

Readers (clinician, researcher, admin) list and read; clinicians and admins
act. Every action writes an ``alert_history`` row (who, when, what, note) in
the same transaction as the status change, and a repeated action changes
nothing (``changed: false``); the rules are in
:mod:`services.api.alert_workflow`. Researchers see who acted by role only,
and notes as ``(withheld)``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, status
from pydantic import BaseModel, Field

from services.api.alert_store import (
    ActionRefused,
    ActionResult,
    AlertDetail,
    AlertFilter,
    AlertNotFound,
    AlertStore,
    AlertView,
    Severity,
    Status,
)
from services.api.alert_workflow import Action
from services.api.auth import Principal
from services.api.guards import CanAct, CanRead

router = APIRouter(prefix="/v1/alerts", tags=["alerts"])

#: A pseudonym, as the ingest edge makes them.
PATIENT_PATTERN = r"^p-[0-9a-f]{24}$"
#: Longest note accepted.
MAX_NOTE = 2000


def alert_store(request: Request) -> AlertStore:
    """The app's :class:`AlertStore`; 503 when the API runs without a database."""
    store: AlertStore | None = request.app.state.alert_store
    if store is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "this API runs without a database (PSYMON_DATABASE_URL); alerts are unavailable",
        )
    return store


Store = Annotated[AlertStore, Depends(alert_store)]


class ActionRequest(BaseModel):
    """An optional note to keep with the action."""

    note: str | None = Field(default=None, max_length=MAX_NOTE)


class NoteRequest(BaseModel):
    """A note on the alert; it does not change the alert's status."""

    note: str = Field(min_length=1, max_length=MAX_NOTE)


@router.get("", response_model=list[AlertView])
def list_alerts(
    who: CanRead,
    store: Store,
    status_: Annotated[
        list[Status] | None,
        Query(alias="status", description="Any of these statuses (repeatable)"),
    ] = None,
    severity: Annotated[
        list[Severity] | None, Query(description="Any of these severities (repeatable)")
    ] = None,
    patient_id: Annotated[str | None, Query(pattern=PATIENT_PATTERN)] = None,
    rule: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
    since: Annotated[
        datetime | None, Query(description="Alerts last seen at or after this time")
    ] = None,
    until: Annotated[
        datetime | None, Query(description="Alerts first seen before this time")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[AlertView]:
    """Alerts in their current state, most severe first, then most recently seen.

    ``since`` and ``until`` need a time zone (``2026-03-02T00:00:00Z``).
    """
    for name, moment in (("since", since), ("until", until)):
        if moment is not None and moment.tzinfo is None:
            raise HTTPException(
                422,
                f"{name} {moment.isoformat()} has no time zone; "
                "give one, e.g. 2026-03-02T00:00:00Z",
            )
    query = AlertFilter(
        statuses=tuple(status_ or ()),
        severities=tuple(severity or ()),
        patient_id=patient_id,
        rule=rule,
        since=since,
        until=until,
        limit=limit,
        offset=offset,
    )
    return [alert.for_role(who.role) for alert in store.find(query)]


@router.get(
    "/{alert_id}", response_model=AlertDetail, responses={404: {"description": "No such alert"}}
)
def get_alert(alert_id: UUID, who: CanRead, store: Store) -> AlertDetail:
    """One alert with its history of care-team actions, oldest first."""
    try:
        return store.get(alert_id).for_role(who.role)
    except AlertNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no alert {alert_id}") from None


_ACTION_RESPONSES: dict[int | str, dict[str, str]] = {
    404: {"description": "No such alert"},
    409: {"description": "The alert is resolved or closed and takes notes only"},
}


def run_action(
    store: AlertStore,
    alert_id: UUID,
    action: Action,
    who: Principal,
    note: str | None,
    key: str | None = None,
) -> ActionResult:
    """Take the action and turn the store's refusals into HTTP answers."""
    try:
        return store.act(alert_id, action, who, note=note, key=key)
    except AlertNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no alert {alert_id}") from None
    except ActionRefused as refused:
        raise HTTPException(status.HTTP_409_CONFLICT, str(refused)) from None


@router.post("/{alert_id}/acknowledge", response_model=ActionResult, responses=_ACTION_RESPONSES)
def acknowledge(
    alert_id: UUID, who: CanAct, store: Store, body: ActionRequest | None = None
) -> ActionResult:
    """Acknowledge the alert: someone has seen it. A no-op if acknowledged or escalated."""
    return run_action(store, alert_id, "acknowledge", who, body.note if body else None)


@router.post("/{alert_id}/escalate", response_model=ActionResult, responses=_ACTION_RESPONSES)
def escalate(
    alert_id: UUID, who: CanAct, store: Store, body: ActionRequest | None = None
) -> ActionResult:
    """Escalate the alert (it needs senior attention). A no-op if escalated already."""
    return run_action(store, alert_id, "escalate", who, body.note if body else None)


@router.post("/{alert_id}/resolve", response_model=ActionResult, responses=_ACTION_RESPONSES)
def resolve(
    alert_id: UUID, who: CanAct, store: Store, body: ActionRequest | None = None
) -> ActionResult:
    """Resolve the alert (final). A no-op if resolved already; 409 if its rule closed it."""
    return run_action(store, alert_id, "resolve", who, body.note if body else None)


@router.post(
    "/{alert_id}/notes",
    response_model=ActionResult,
    status_code=status.HTTP_201_CREATED,
    responses={404: {"description": "No such alert"}},
)
def add_note(
    alert_id: UUID,
    body: NoteRequest,
    who: CanAct,
    store: Store,
    idempotency_key: Annotated[
        str | None,
        Header(
            min_length=1,
            max_length=128,
            description="Repeat a request with the same key and the note is stored once; "
            "without one, the same text from the same caller is stored once",
        ),
    ] = None,
) -> ActionResult:
    """Add a note to the alert's history; the alert's status does not change."""
    return run_action(store, alert_id, "note", who, body.note, idempotency_key)
