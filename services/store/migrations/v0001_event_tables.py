"""0001: one table per event kind and per derived stream, plus the patient registry.

Every event table carries the envelope as columns (``event_id``,
``patient_id``, ``observed_at``, ``received_at``, ``source_*``,
``time_zone``), the event's own fields as columns, and the whole event as
``payload`` (jsonb) so that replay reads back exactly what was stored.
``UNIQUE (event_id, observed_at)`` is the idempotency key: a unique
constraint on a partitioned table or hypertable must contain the time
column, and an event's ``observed_at`` is fixed by its ``event_id``
(docs/store.md, "Idempotency").

On plain PostgreSQL the time-series tables are range-partitioned by
``observed_at``; on TimescaleDB they are created plain and turned into
hypertables by migration 0002.
"""

from __future__ import annotations

VERSION = "0001"
NAME = "event tables"

_ENVELOPE = """
    event_id uuid NOT NULL,
    patient_id text NOT NULL,
    observed_at timestamptz NOT NULL,
    received_at timestamptz NOT NULL,
    source_system text NOT NULL,
    source_device text,
    source_rater text,
    time_zone text,"""

_TAIL = """
    payload jsonb NOT NULL,
    stored_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT {table}_event_key UNIQUE (event_id, observed_at)
){partition_by}"""

_TABLES: dict[str, str] = {
    "clinical_scores": """
    instrument text NOT NULL,
    version text,
    rater text NOT NULL,
    items jsonb,
    total integer NOT NULL,""",
    "wearable_samples": """
    metric text NOT NULL,
    value double precision NOT NULL,
    unit text NOT NULL,
    interval_end timestamptz NOT NULL,
    upload_id uuid,""",
    # The uploads themselves, as the workers received them (original units,
    # reading order): replay feeds these, not their samples, to the workers.
    "wearable_uploads": """
    window_end timestamptz NOT NULL,
    readings integer NOT NULL,""",
    "lab_results": """
    analyte text NOT NULL,
    loinc text,
    value double precision NOT NULL,
    unit text NOT NULL,
    reported_value double precision,
    reported_unit text,
    hours_since_dose double precision,""",
    "clinical_outcomes": """
    outcome text NOT NULL,
    episode text,
    medication jsonb,""",
    "course_updates": """
    caused_by uuid NOT NULL,
    signal text NOT NULL,
    signal_kind text NOT NULL,
    value double precision,
    unit text,
    day date,
    band text,
    baseline double precision,
    change double precision,
    rci double precision,
    reliable_change text,
    response boolean,
    remission boolean,
    status text,
    level double precision,
    level_sd double precision,
    deviation double precision,
    coverage double precision,
    late boolean NOT NULL DEFAULT false,""",
    "risk_assessments": """
    caused_by uuid NOT NULL,
    probability double precision NOT NULL,
    horizon_days integer NOT NULL,
    model_name text NOT NULL,
    model_version integer NOT NULL,
    contributions jsonb NOT NULL,""",
    "alerts": """
    caused_by uuid NOT NULL,
    alert_id uuid NOT NULL,
    rule text NOT NULL,
    severity text NOT NULL,
    status text NOT NULL,
    message text NOT NULL,
    evidence jsonb NOT NULL,
    first_seen timestamptz NOT NULL,
    last_seen timestamptz NOT NULL,
    config_version text NOT NULL,""",
}

#: The tables partitioned by ``observed_at`` (hypertables on TimescaleDB).
TIME_SERIES_TABLES: tuple[str, ...] = tuple(_TABLES)

_OTHER = (
    # Dead letters: not partitioned, so that event_id alone is unique. A bad
    # record's id is derived from its topic and content, while its observed_at
    # is when it arrived, which differs when the same bad record is sent twice.
    """CREATE TABLE dead_letters (
    event_id uuid PRIMARY KEY,
    patient_id text,
    observed_at timestamptz NOT NULL,
    received_at timestamptz NOT NULL,
    source_system text NOT NULL,
    source_device text,
    source_rater text,
    topic text NOT NULL,
    reason text NOT NULL,
    errors jsonb NOT NULL,
    raw text NOT NULL,
    raw_size bigint NOT NULL,
    raw_sha256 text NOT NULL,
    payload jsonb NOT NULL,
    stored_at timestamptz NOT NULL DEFAULT now()
)""",
    "CREATE INDEX dead_letters_received ON dead_letters (received_at)",
    "CREATE INDEX dead_letters_patient ON dead_letters (patient_id, observed_at)",
    # What the care team did with an alert (acknowledged, escalated, resolved,
    # commented), written by the alert workflow API; kept for good: no
    # partitioning, no retention.
    """CREATE TABLE alert_history (
    event_id uuid PRIMARY KEY,
    alert_id uuid NOT NULL,
    patient_id text NOT NULL,
    observed_at timestamptz NOT NULL,
    received_at timestamptz NOT NULL,
    source_system text NOT NULL,
    source_device text,
    source_rater text,
    action text NOT NULL
        CHECK (action IN ('acknowledged', 'escalated', 'resolved', 'commented')),
    actor text NOT NULL,
    note text,
    payload jsonb NOT NULL,
    stored_at timestamptz NOT NULL DEFAULT now()
)""",
    "CREATE INDEX alert_history_alert ON alert_history (alert_id, observed_at)",
    "CREATE INDEX alert_history_patient ON alert_history (patient_id, observed_at)",
    # One row per patient pseudonym the store has seen, kept by the sink.
    """CREATE TABLE patients (
    patient_id text PRIMARY KEY,
    first_observed_at timestamptz NOT NULL,
    last_observed_at timestamptz NOT NULL,
    last_received_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
)""",
)


def statements(flavour: str) -> list[str]:
    """The DDL of this migration for ``flavour`` (``postgres`` or ``timescale``)."""
    partition_by = " PARTITION BY RANGE (observed_at)" if flavour == "postgres" else ""
    result = []
    for table, columns in _TABLES.items():
        tail = _TAIL.format(table=table, partition_by=partition_by)
        result.append(f"CREATE TABLE {table} ({_ENVELOPE}{columns}{tail}")
        result.append(
            f"CREATE INDEX {table}_patient_time ON {table} (patient_id, observed_at DESC)"
        )
    result += [
        "CREATE INDEX course_updates_signal ON course_updates (patient_id, signal, observed_at)",
        "CREATE INDEX alerts_alert ON alerts (alert_id, observed_at)",
        *_OTHER,
    ]
    return result
