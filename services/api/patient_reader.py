"""What the cohort list and the patient page show, read from the store's views.

Everything here is pseudonymised: the store holds pseudonyms only. The
queries read views (docs/store.md), never raw tables.

Data coverage: the share of the 14 UTC days ending on a patient's latest
observation on which any wearable data arrived (``v_daily_wearable``). It
says how complete the recent record is; how long ago that record ends is
shown next to it (``last_observed_at``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field

from services.api.alert_store import AlertView
from services.api.database import Database

#: Days over which data coverage is counted.
COVERAGE_DAYS = 14

#: The patient page shows this many days before the latest observation by default.
DEFAULT_WINDOW_DAYS = 365


class OpenAlerts(BaseModel):
    """Open alerts (open, acknowledged, escalated) by severity."""

    urgent: int = 0
    warning: int = 0
    info: int = 0


class CohortRow(BaseModel):
    """One patient in the cohort list."""

    patient_id: str
    first_observed_at: datetime
    last_observed_at: datetime
    risk_probability: float | None = None
    risk_model: str | None = None
    risk_horizon_days: int | None = None
    risk_observed_at: datetime | None = None
    course_status: str | None = Field(
        default=None, description="Episode status of the latest rated instrument"
    )
    course_signal: str | None = None
    last_score_instrument: str | None = None
    last_score_total: int | None = None
    last_score_at: datetime | None = None
    last_outcome: str | None = None
    last_outcome_at: datetime | None = None
    open_alerts: OpenAlerts
    coverage: float = Field(
        ge=0, le=1, description=f"Share of the last {COVERAGE_DAYS} days with wearable data"
    )


class ScorePoint(BaseModel):
    observed_at: datetime
    instrument: str
    total: int


class LabPoint(BaseModel):
    observed_at: datetime
    analyte: str
    value: float
    unit: str


class WearablePoint(BaseModel):
    day: date
    feature: str
    value: float
    unit: str | None = None


class RiskPoint(BaseModel):
    observed_at: datetime
    probability: float
    model_name: str
    horizon_days: int


class OutcomePoint(BaseModel):
    observed_at: datetime
    outcome: str
    episode: str | None = None
    medication_name: str | None = None
    medication_action: str | None = None


class SubgroupStanding(BaseModel):
    """Where the patient stands in one subgroup scheme now (``v_subgroups``)."""

    scheme: Literal["specifier", "cluster"] = Field(
        description="specifier: a published rule; cluster: the population subgroup model"
    )
    scheme_name: str = Field(description="The specifier or the cluster model, e.g. profile_mixture")
    subgroup: str | None = Field(
        default=None, description="The subgroup held now; null: the patient left `previous`"
    )
    previous: str | None = None
    description: str = Field(description="What sets the subgroup apart, in plain words")
    since: datetime = Field(description="Event time of the change that put the patient here")
    version: str = Field(description="Core configuration (specifier) or model version (cluster)")
    probability: float | None = Field(default=None, ge=0, le=1)
    citation: str | None = None


class PatientRecord(BaseModel):
    """A patient's summary and time series over a window."""

    summary: CohortRow
    window_start: datetime
    scores: list[ScorePoint]
    labs: list[LabPoint]
    wearable: list[WearablePoint]
    wearable_source: Literal["daily_features", "daily_rollup", "none"] = Field(
        description="daily_features: the workers' local-day features (v_course); "
        "daily_rollup: UTC daily means of raw samples (v_daily_wearable), when no features exist"
    )
    risk: list[RiskPoint]
    alerts: list[AlertView]
    outcomes: list[OutcomePoint]
    subgroups: list[SubgroupStanding] = Field(
        default_factory=list,
        description="Current subgroups and specifiers (whatever the window), members first",
    )


class PatientNotFound(LookupError):
    """The store has no patient with this pseudonym."""


_COHORT = f"""
SELECT c.patient_id, c.first_observed_at, c.last_observed_at,
       c.risk_probability, c.risk_model, c.risk_horizon_days, c.risk_observed_at,
       st.status AS course_status, st.signal AS course_signal,
       c.last_score_instrument, c.last_score_total, c.last_score_at,
       c.last_outcome, c.last_outcome_at,
       coalesce(a.urgent, 0) AS urgent, coalesce(a.warning, 0) AS warning,
       coalesce(a.info, 0) AS info,
       coalesce(cov.days, 0)::double precision / {COVERAGE_DAYS} AS coverage
FROM v_cohort_overview c
LEFT JOIN (
    SELECT patient_id,
           count(*) FILTER (WHERE severity = 'urgent') AS urgent,
           count(*) FILTER (WHERE severity = 'warning') AS warning,
           count(*) FILTER (WHERE severity NOT IN ('urgent', 'warning')) AS info
    FROM v_alerts_open GROUP BY patient_id
) a ON a.patient_id = c.patient_id
LEFT JOIN LATERAL (
    SELECT status, signal FROM v_course_latest
    WHERE patient_id = c.patient_id AND signal_kind = 'instrument' AND status IS NOT NULL
    ORDER BY observed_at DESC LIMIT 1
) st ON true
LEFT JOIN LATERAL (
    SELECT count(DISTINCT day) AS days FROM v_daily_wearable
    WHERE patient_id = c.patient_id
      AND day <= (c.last_observed_at AT TIME ZONE 'UTC')::date
      AND day > (c.last_observed_at AT TIME ZONE 'UTC')::date - {COVERAGE_DAYS}
) cov ON true
"""


class PatientReader:
    """Reads the cohort and one patient's record from the store's views."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def cohort(self, *, limit: int = 500, offset: int = 0) -> list[CohortRow]:
        """Every patient, highest latest relapse risk first (no risk yet: last)."""
        rows = self.db.fetch_all(
            _COHORT + " ORDER BY c.risk_probability DESC NULLS LAST, c.patient_id "
            "LIMIT %s OFFSET %s",
            [limit, offset],
        )
        return [_cohort_row(row) for row in rows]

    def patient(self, patient_id: str, *, days: int = DEFAULT_WINDOW_DAYS) -> PatientRecord:
        """The patient's summary and series over ``days`` before the latest observation."""
        found = self.db.fetch_all(_COHORT + " WHERE c.patient_id = %s", [patient_id])
        if not found:
            raise PatientNotFound(patient_id)
        summary = _cohort_row(found[0])
        start = summary.last_observed_at - timedelta(days=days)
        params = [patient_id, start]
        with self.db.connection() as conn:

            def rows(statement: str) -> list[dict[str, Any]]:
                return conn.execute(statement, params).fetchall()

            scores = rows(
                "SELECT observed_at, instrument, total FROM v_patient_scores "
                "WHERE patient_id = %s AND observed_at >= %s ORDER BY observed_at, event_id"
            )
            labs = rows(
                "SELECT observed_at, analyte, value, unit FROM v_patient_labs "
                "WHERE patient_id = %s AND observed_at >= %s ORDER BY observed_at, event_id"
            )
            wearable = rows(
                "SELECT day, signal AS feature, value, unit FROM v_course "
                "WHERE patient_id = %s AND observed_at >= %s AND signal_kind = 'wearable' "
                "AND NOT late AND day IS NOT NULL AND value IS NOT NULL "
                "ORDER BY day, signal, observed_at"
            )
            source: Literal["daily_features", "daily_rollup", "none"] = "daily_features"
            if not wearable:
                source = "daily_rollup"
                wearable = rows(
                    "SELECT day, metric AS feature, value_mean AS value, unit "
                    "FROM v_daily_wearable WHERE patient_id = %s AND day >= %s::date "
                    "ORDER BY day, metric"
                )
            if not wearable:
                source = "none"
            risk = rows(
                "SELECT observed_at, probability, model_name, horizon_days FROM v_risk "
                "WHERE patient_id = %s AND observed_at >= %s ORDER BY observed_at, event_id"
            )
            alerts = rows(
                "SELECT * FROM v_alerts WHERE patient_id = %s AND last_seen >= %s "
                "ORDER BY first_seen, alert_id"
            )
            outcomes = rows(
                "SELECT observed_at, outcome, episode, medication_name, medication_action "
                "FROM v_patient_outcomes WHERE patient_id = %s AND observed_at >= %s "
                "ORDER BY observed_at, event_id"
            )
            subgroups = conn.execute(
                "SELECT scheme, scheme_name, subgroup, previous, description, since, version, "
                "probability, citation FROM v_subgroups WHERE patient_id = %s "
                "ORDER BY subgroup IS NULL, scheme DESC, scheme_name",
                [patient_id],
            ).fetchall()
        return PatientRecord(
            summary=summary,
            window_start=start,
            scores=[ScorePoint.model_validate(r) for r in scores],
            labs=[LabPoint.model_validate(r) for r in labs],
            wearable=_latest_per_day(WearablePoint.model_validate(r) for r in wearable),
            wearable_source=source,
            risk=[RiskPoint.model_validate(r) for r in risk],
            alerts=[AlertView.model_validate(r) for r in alerts],
            outcomes=[OutcomePoint.model_validate(r) for r in outcomes],
            subgroups=[SubgroupStanding.model_validate(r) for r in subgroups],
        )

    def exists(self, patient_id: str) -> bool:
        """Whether the store has seen this pseudonym."""
        rows = self.db.fetch_all(
            "SELECT 1 FROM v_cohort_overview WHERE patient_id = %s", [patient_id]
        )
        return bool(rows)

    def alert_patient(self, alert_id: UUID) -> str | None:
        """The pseudonym an alert belongs to (for links back to the patient page)."""
        rows = self.db.fetch_all("SELECT patient_id FROM v_alerts WHERE alert_id = %s", [alert_id])
        return str(rows[0]["patient_id"]) if rows else None


def _cohort_row(row: dict[str, Any]) -> CohortRow:
    counts = OpenAlerts(
        urgent=row.pop("urgent") or 0, warning=row.pop("warning") or 0, info=row.pop("info") or 0
    )
    return CohortRow.model_validate({**row, "open_alerts": counts})


def _latest_per_day(points: Iterable[WearablePoint]) -> list[WearablePoint]:
    """One value per feature and day: a day's features recomputed later replace earlier ones."""
    latest: dict[tuple[str, date], WearablePoint] = {}
    for point in points:
        latest[(point.feature, point.day)] = point
    return sorted(latest.values(), key=lambda p: (p.feature, p.day))
