"""What a care-team action does to an alert: the workflow's rules, pure.

An alert's status is the rule's latest word (``open``, or ``closed`` when the
rule saw recovery) unless the care team has acted since (view ``v_alerts``).
The team moves an alert one way only::

    open --acknowledge--> acknowledged --escalate--> escalated --resolve--> resolved
      \\________________escalate______________________/                    ^
       \\_______________________________resolve___________________________/

* An action that the alert has already passed is a no-op: acknowledging an
  acknowledged (or escalated) alert, escalating an escalated one, resolving a
  resolved one change nothing and write nothing. Each action therefore
  happens at most once per alert, which is what makes its history row's id
  deterministic: ``event_id_for("alert-action", alert_id, action)``; two
  clinicians pressing "acknowledge" at once store one acknowledgement.
* ``resolved`` and ``closed`` are final: acknowledging or escalating them, or
  resolving a ``closed`` alert, is refused (HTTP 409).
* A note can be added in any status and never changes it. Its id is
  ``event_id_for("alert-note", alert_id, actor, key)`` where ``key`` is the
  caller's ``Idempotency-Key`` (the web form sends one per rendered form), or
  the SHA-256 of the note's text: a note sent twice is stored once.

>>> decide("open", "acknowledge").outcome
'apply'
>>> decide("escalated", "acknowledge").outcome
'noop'
>>> decide("closed", "resolve").outcome
'refuse'
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal
from uuid import UUID

from schemas.identity import event_id_for

Action = Literal["acknowledge", "escalate", "resolve", "note"]
ACTIONS: tuple[Action, ...] = ("acknowledge", "escalate", "resolve", "note")

#: The ``alert_history.action`` each API action writes.
HISTORY_ACTION: dict[Action, str] = {
    "acknowledge": "acknowledged",
    "escalate": "escalated",
    "resolve": "resolved",
    "note": "commented",
}

#: Statuses after which no action but a note is accepted.
FINAL_STATUSES = frozenset({"resolved", "closed"})

#: How far along the workflow each status is; an action never moves an alert back.
_STAGE = {"open": 0, "acknowledged": 1, "escalated": 2, "resolved": 3}

Outcome = Literal["apply", "noop", "refuse"]


@dataclass(frozen=True)
class Decision:
    """What to do with an action: ``apply`` it, do nothing (``noop``), or ``refuse`` it."""

    outcome: Outcome
    reason: str


def decide(status: str, action: Action) -> Decision:
    """Decide what ``action`` does to an alert whose status is ``status``.

    >>> decide("acknowledged", "escalate")
    Decision(outcome='apply', reason='acknowledged -> escalated')
    >>> decide("resolved", "acknowledge").reason
    'the alert is resolved; a resolved or closed alert takes notes only'
    """
    if action == "note":
        return Decision("apply", "a note never changes the status")
    target = HISTORY_ACTION[action]
    if status == target:
        return Decision("noop", f"the alert is {status} already")
    if status == "closed" or (status == "resolved" and action != "resolve"):
        return Decision(
            "refuse", f"the alert is {status}; a resolved or closed alert takes notes only"
        )
    current = _STAGE.get(status)
    if current is None:
        return Decision("refuse", f"the alert's status {status!r} is not one the workflow knows")
    if current >= _STAGE[target]:
        return Decision("noop", f"the alert is {status}, which is past {target}")
    return Decision("apply", f"{status} -> {target}")


def history_event_id(
    alert_id: UUID, action: Action, *, actor: str, note: str | None, key: str | None
) -> UUID:
    """The id of the history row an action writes (see the module docstring).

    >>> from uuid import UUID
    >>> a = UUID(int=1)
    >>> history_event_id(a, "resolve", actor="clinician:x", note=None, key=None) == (
    ...     history_event_id(a, "resolve", actor="admin:y", note="done", key="k"))
    True
    >>> history_event_id(a, "note", actor="clinician:x", note="called", key=None) == (
    ...     history_event_id(a, "note", actor="clinician:x", note="called again", key=None))
    False
    """
    if action != "note":
        return event_id_for("alert-action", str(alert_id), action)
    if key is None:
        key = "text:" + hashlib.sha256((note or "").encode()).hexdigest()
    return event_id_for("alert-note", str(alert_id), actor, key)
