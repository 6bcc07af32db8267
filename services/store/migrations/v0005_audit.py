"""0005: the audit log: who replayed or exported what, when, with which filters, how much.

Every replay (:mod:`services.replay`) and every export (:mod:`services.export`)
writes one row when it starts (``status = 'running'``) and completes it when
it ends (``completed`` or ``failed``, with the row counts and the sha256 of its
manifest), so an attempt that crashed half way is still on record.

The log is append-only: a trigger refuses ``DELETE``, and ``UPDATE`` of a row
that is no longer ``running`` (the one allowed update is finishing a run).
It is never partitioned and has no retention, like ``alert_history``.

The version number leaves room for 0004 (another migration may take it): the
migrations apply in the order of :data:`services.store.migrations.MIGRATIONS`
and each is recorded by version, so a gap changes nothing.
"""

from __future__ import annotations

VERSION = "0005"
NAME = "audit log"

_STATEMENTS = (
    """CREATE TABLE audit_log (
    audit_id uuid PRIMARY KEY,
    action text NOT NULL CHECK (action IN ('replay', 'export')),
    actor text NOT NULL CHECK (length(actor) BETWEEN 1 AND 256),
    status text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'completed', 'failed')),
    started_at timestamptz NOT NULL,
    finished_at timestamptz,
    parameters jsonb NOT NULL,
    row_counts jsonb NOT NULL DEFAULT '{}'::jsonb,
    code_version text NOT NULL,
    config_version text,
    manifest_sha256 text,
    error text,
    recorded_at timestamptz NOT NULL DEFAULT now()
)""",
    "CREATE INDEX audit_log_started ON audit_log (started_at)",
    "CREATE INDEX audit_log_actor ON audit_log (actor, started_at)",
    """CREATE FUNCTION psymon_audit_log_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'audit_log is append-only: rows cannot be deleted';
    END IF;
    IF OLD.status <> 'running' THEN
        RAISE EXCEPTION 'audit_log is append-only: % % (%) has finished and cannot change',
            OLD.action, OLD.audit_id, OLD.status;
    END IF;
    IF NEW.audit_id <> OLD.audit_id OR NEW.action <> OLD.action OR NEW.actor <> OLD.actor
       OR NEW.started_at <> OLD.started_at OR NEW.parameters <> OLD.parameters THEN
        RAISE EXCEPTION 'audit_log: only the outcome of a running % can be recorded', OLD.action;
    END IF;
    RETURN NEW;
END
$$""",
    """CREATE TRIGGER audit_log_append_only
BEFORE UPDATE OR DELETE ON audit_log
FOR EACH ROW EXECUTE FUNCTION psymon_audit_log_append_only()""",
)


def statements(flavour: str) -> list[str]:
    """The audit log; the same for every flavour (it is small and never partitioned)."""
    return list(_STATEMENTS)
