"""The audit log: every replay, export and study is written down before it starts.

:func:`audit_started` inserts a ``running`` row (who, what, when, the
parameters) in its own committed statement, so even a run that crashes is on
record; :func:`audit_finished` completes it with the outcome, the row counts
and the manifest's sha256. The table (migration 0005) refuses deletes and
changes to finished rows; migration 0007 lets it record ``study`` runs.

Never put a secret in ``parameters``: database URLs, keys and tokens stay out;
pseudonyms and file paths are fine.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

import psycopg

from services.replay.provenance import utc_now

Action = Literal["replay", "export", "study"]

AUDIT_TABLE = "audit_log"


class AuditUnavailable(RuntimeError):
    """The store has no audit log yet: replays and exports refuse to run unrecorded."""


def require_audit_log(conn: psycopg.Connection[Any]) -> None:
    """Raise :class:`AuditUnavailable` unless the ``audit_log`` table exists."""
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (AUDIT_TABLE,)).fetchone()
    if not (row and row[0]):
        raise AuditUnavailable(
            "the store has no audit_log table (migration 0005); run `psymon db migrate` first: "
            "every replay and export is recorded there"
        )


def audit_started(
    conn: psycopg.Connection[Any],
    action: Action,
    actor: str,
    parameters: Mapping[str, Any],
    *,
    code_version: str,
    config_version: str | None = None,
    started_at: datetime | None = None,
) -> uuid.UUID:
    """Record that ``actor`` starts ``action`` with ``parameters``; return the audit id."""
    if not actor or len(actor) > 256:
        raise ValueError(f"who must be 1-256 characters naming the person or tool, got {actor!r}")
    require_audit_log(conn)
    audit_id = uuid.uuid4()
    with conn.transaction():
        conn.execute(
            f"INSERT INTO {AUDIT_TABLE} (audit_id, action, actor, started_at, parameters, "
            "code_version, config_version) VALUES (%s, %s, %s, %s, %s::jsonb, %s, %s)",
            (
                audit_id,
                action,
                actor,
                started_at or utc_now(),
                json.dumps(parameters, default=str, sort_keys=True),
                code_version,
                config_version,
            ),
        )
    return audit_id


def audit_finished(
    conn: psycopg.Connection[Any],
    audit_id: uuid.UUID,
    *,
    row_counts: Mapping[str, int],
    manifest_sha256: str | None = None,
    error: str | None = None,
    finished_at: datetime | None = None,
) -> None:
    """Complete the audit row: ``completed`` without ``error``, else ``failed`` with it."""
    with conn.transaction():
        conn.execute(
            f"UPDATE {AUDIT_TABLE} SET status = %s, finished_at = %s, row_counts = %s::jsonb, "
            "manifest_sha256 = %s, error = %s WHERE audit_id = %s",
            (
                "failed" if error is not None else "completed",
                finished_at or utc_now(),
                json.dumps(dict(row_counts), sort_keys=True),
                manifest_sha256,
                None if error is None else error[:2000],
                audit_id,
            ),
        )


def describe_error(error: BaseException) -> str:
    """What went wrong, for the audit row: the type and the message (no traceback).

    >>> describe_error(ValueError("since is after until"))
    'ValueError: since is after until'
    """
    return f"{type(error).__name__}: {error}"


__all__ = [
    "AUDIT_TABLE",
    "Action",
    "AuditUnavailable",
    "audit_finished",
    "audit_started",
    "describe_error",
    "require_audit_log",
]
