"""0003: the views dashboards and the API read (never the raw tables).

The same views on both flavours: the rollups they read are tables on plain
PostgreSQL and continuous aggregates on TimescaleDB, with the same columns.
Their columns are listed in docs/store.md and checked by the test suite.
"""

from __future__ import annotations

VERSION = "0003"
NAME = "views"

_SEVERITY_RANK = "CASE {col} WHEN 'urgent' THEN 3 WHEN 'warning' THEN 2 ELSE 1 END"

_VIEWS = (
    """CREATE VIEW v_patient_scores AS
SELECT patient_id, observed_at, instrument, version, rater, total, items,
       source_system, source_rater, received_at, event_id
FROM clinical_scores""",
    """CREATE VIEW v_patient_labs AS
SELECT patient_id, observed_at, analyte, loinc, value, unit, reported_value, reported_unit,
       hours_since_dose, source_system, received_at, event_id
FROM lab_results""",
    """CREATE VIEW v_patient_wearable AS
SELECT patient_id, observed_at, interval_end, metric, value, unit,
       source_system, source_device, received_at, event_id
FROM wearable_samples""",
    """CREATE VIEW v_patient_outcomes AS
SELECT patient_id, observed_at, outcome, episode,
       medication ->> 'name' AS medication_name,
       medication ->> 'action' AS medication_action,
       (medication ->> 'dose')::double precision AS medication_dose,
       medication ->> 'dose_unit' AS medication_dose_unit,
       source_system, received_at, event_id
FROM clinical_outcomes""",
    """CREATE VIEW v_daily_wearable AS
SELECT patient_id, (day AT TIME ZONE 'UTC')::date AS day, metric, n,
       value_sum / n AS value_mean, value_min, value_max, value_sum, unit
FROM daily_wearable""",
    """CREATE VIEW v_daily_scores AS
SELECT patient_id, (day AT TIME ZONE 'UTC')::date AS day, instrument, n,
       total_sum::double precision / n AS total_mean, total_min, total_max,
       last_total, last_observed_at
FROM daily_scores""",
    """CREATE VIEW v_daily_labs AS
SELECT patient_id, (day AT TIME ZONE 'UTC')::date AS day, analyte, n,
       value_sum / n AS value_mean, value_min, value_max, last_value, last_observed_at, unit
FROM daily_labs""",
    """CREATE VIEW v_course AS
SELECT patient_id, observed_at, signal, signal_kind, value, unit, day, band, baseline,
       change, rci, reliable_change, response, remission, status, level, level_sd,
       deviation, coverage, late, caused_by, received_at, event_id
FROM course_updates""",
    """CREATE VIEW v_course_latest AS
SELECT DISTINCT ON (patient_id, signal)
       patient_id, signal, signal_kind, observed_at, value, unit, band, baseline, change,
       rci, reliable_change, response, remission, status, level, level_sd, deviation,
       coverage, event_id
FROM course_updates
ORDER BY patient_id, signal, observed_at DESC, received_at DESC, event_id""",
    """CREATE VIEW v_risk AS
SELECT patient_id, observed_at, model_name, model_version, horizon_days, probability,
       contributions, caused_by, received_at, event_id
FROM risk_assessments""",
    """CREATE VIEW v_risk_latest AS
SELECT DISTINCT ON (patient_id, model_name, horizon_days)
       patient_id, model_name, horizon_days, observed_at, model_version, probability,
       contributions, event_id
FROM risk_assessments
ORDER BY patient_id, model_name, horizon_days, observed_at DESC, received_at DESC, event_id""",
    # An alert's state: the rule's latest word on it, unless the care team has
    # acted since (acknowledged, escalated, resolved); comments change nothing.
    # A rule closing the alert (recovery) or a team resolving it is final.
    """CREATE VIEW v_alerts AS
WITH latest_event AS (
    SELECT DISTINCT ON (alert_id) *
    FROM alerts
    ORDER BY alert_id, observed_at DESC, received_at DESC, event_id
), latest_action AS (
    SELECT DISTINCT ON (alert_id) alert_id, action, actor, observed_at AS action_at
    FROM alert_history
    WHERE action <> 'commented'
    ORDER BY alert_id, observed_at DESC, event_id
)
SELECT e.alert_id, e.patient_id, e.rule, e.severity,
       CASE
           WHEN e.status IN ('closed', 'resolved') THEN e.status
           WHEN a.action IS NOT NULL THEN a.action
           ELSE e.status
       END AS status,
       e.status AS rule_status, e.message, e.evidence, e.first_seen, e.last_seen,
       e.config_version, a.action AS last_action, a.actor AS last_actor,
       a.action_at AS last_action_at, e.observed_at AS updated_at, e.event_id
FROM latest_event e
LEFT JOIN latest_action a USING (alert_id)""",
    """CREATE VIEW v_alerts_open AS
SELECT * FROM v_alerts WHERE status IN ('open', 'acknowledged', 'escalated')""",
    """CREATE VIEW v_dead_letters AS
SELECT event_id, received_at, topic, reason, errors, raw_size, raw_sha256, raw, patient_id,
       source_system
FROM dead_letters""",
    f"""CREATE VIEW v_cohort_overview AS
SELECT p.patient_id, p.first_observed_at, p.last_observed_at, p.last_received_at,
       coalesce(a.open_alerts, 0) AS open_alerts, a.worst_open_severity,
       r.probability AS risk_probability, r.model_name AS risk_model,
       r.horizon_days AS risk_horizon_days, r.observed_at AS risk_observed_at,
       s.instrument AS last_score_instrument, s.total AS last_score_total,
       s.observed_at AS last_score_at,
       o.outcome AS last_outcome, o.observed_at AS last_outcome_at
FROM patients p
LEFT JOIN (
    SELECT patient_id, count(*) AS open_alerts,
           (array_agg(severity ORDER BY {_SEVERITY_RANK.format(col="severity")} DESC))[1]
               AS worst_open_severity
    FROM v_alerts_open
    GROUP BY patient_id
) a ON a.patient_id = p.patient_id
LEFT JOIN LATERAL (
    SELECT probability, model_name, horizon_days, observed_at
    FROM risk_assessments
    WHERE patient_id = p.patient_id
    ORDER BY observed_at DESC, received_at DESC
    LIMIT 1
) r ON true
LEFT JOIN LATERAL (
    SELECT instrument, total, observed_at
    FROM clinical_scores
    WHERE patient_id = p.patient_id
    ORDER BY observed_at DESC, received_at DESC
    LIMIT 1
) s ON true
LEFT JOIN LATERAL (
    SELECT outcome, observed_at
    FROM clinical_outcomes
    WHERE patient_id = p.patient_id
    ORDER BY observed_at DESC, received_at DESC
    LIMIT 1
) o ON true""",
    # The raw events as they arrived, for replay: wearable uploads whole, and
    # only the samples that arrived on their own.
    """CREATE VIEW v_input_events AS
SELECT 'clinical_score'::text AS kind, event_id, patient_id, observed_at, received_at, payload
FROM clinical_scores
UNION ALL
SELECT 'wearable_upload', event_id, patient_id, observed_at, received_at, payload
FROM wearable_uploads
UNION ALL
SELECT 'wearable_sample', event_id, patient_id, observed_at, received_at, payload
FROM wearable_samples
WHERE upload_id IS NULL
UNION ALL
SELECT 'lab_result', event_id, patient_id, observed_at, received_at, payload
FROM lab_results
UNION ALL
SELECT 'clinical_outcome', event_id, patient_id, observed_at, received_at, payload
FROM clinical_outcomes""",
)


def statements(flavour: str) -> list[str]:
    """The views; the same for every flavour."""
    return list(_VIEWS)
