"""Per-patient daily series of every method, with labels from the simulator's ground truth.

A day is *positive* when a relapse begins within the next 28 days (onset on
day ``d + 1`` .. ``d + 28``). Days from an onset to the end of recovery are
*not at risk* (the patient is ill or recovering; a new onset is not what is
being predicted) and are left out of every metric and of the alert burden.
Day-level metrics also leave out the last 28 days of the period, whose labels
the end of the simulation censors. Ground-truth dates are UTC dates of the
simulation grid; a patient's local day can differ near midnight.

Methods compared on the same days:

* ``model``: the relapse-risk probability and the core's ``relapse_risk`` alerts;
* ``anomaly``: the personal anomaly rate (Barnett 2018) with the same
  open/close rule, its threshold chosen for the same alert budget;
* ``rules``: the core's rating-scale alerts (moderate/severe band entry,
  reliable deterioration, YMRS mania); the day's score is the highest
  severity open (0 none, 1 info, 2 warning, 3 urgent).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

from services.evaluation.runs import SCORE_RULES, PatientRun, alert_days, open_severity
from services.simulator import PatientTruth
from streams.config import RiskConfig
from streams.models.risk_rule import alert_spans

HORIZON_DAYS = 28
DAYS_PER_MONTH = 30.44


def at_risk(truth: PatientTruth, day: date) -> bool:
    """Whether ``day`` lies outside every episode and its recovery."""
    return not any(r.onset <= day <= r.recovery_end for r in truth.relapses)


def positive(truth: PatientTruth, day: date, horizon: int = HORIZON_DAYS) -> bool:
    """Whether a relapse begins within ``horizon`` days after ``day``."""
    return any(day < r.onset <= day + timedelta(days=horizon) for r in truth.relapses)


@dataclass
class MethodSeries:
    """One method on one patient: a score per day, and the days its alerts opened."""

    scores: list[float]
    opened: list[date]
    open_at_end: list[bool]


@dataclass
class PatientSeries:
    """One evaluated patient: days, labels, and every method's series."""

    key: str
    truth: PatientTruth
    days: list[date]
    ends: list[float]
    labels: list[bool]
    scored: list[bool]  # at risk and with a complete horizon: counted in day-level metrics
    risk_days: list[bool]  # at risk: counted in the alert burden
    onsets: list[date]
    methods: dict[str, MethodSeries] = field(default_factory=dict)

    @property
    def at_risk_days(self) -> int:
        """Days counted in the alert burden."""
        return sum(self.risk_days)


def spans_to_series(
    days: list[date], spans: list[tuple[int, int | None]]
) -> tuple[list[date], list[bool]]:
    """Alert spans over day indices as opening days and an open-at-day-end flag per day."""
    flags = [False] * len(days)
    for start, stop in spans:
        for i in range(start, len(days) if stop is None else stop):
            flags[i] = True
    return [days[start] for start, _ in spans], flags


def patient_series(key: str, run: PatientRun, last_day: date) -> PatientSeries | None:
    """The evaluated series of one patient (None if never assessed)."""
    if not run.days:
        return None
    truth = run.truth
    risk_days = [at_risk(truth, d) for d in run.days]
    complete = [d + timedelta(days=HORIZON_DAYS) <= last_day for d in run.days]
    first = run.days[0]
    series = PatientSeries(
        key=key,
        truth=truth,
        days=list(run.days),
        ends=list(run.ends),
        labels=[positive(truth, d) for d in run.days],
        scored=[r and c for r, c in zip(risk_days, complete, strict=True)],
        risk_days=risk_days,
        onsets=[r.onset for r in truth.relapses if first < r.onset <= last_day],
    )
    ranks = open_severity(run.alerts, SCORE_RULES, run.ends)
    series.methods["rules"] = MethodSeries(
        [float(r) for r in ranks], alert_days(run.alerts, SCORE_RULES), [r > 0 for r in ranks]
    )
    return series


def add_threshold_method(
    series: PatientSeries,
    name: str,
    scores: list[float],
    risk: RiskConfig,
    threshold: float,
    *,
    cooldown_hours: float = 24.0,
) -> None:
    """Add a method whose alerts follow the ``relapse_risk`` rule at ``threshold``."""
    spans = alert_spans(
        scores, series.ends, risk, threshold=threshold, cooldown_hours=cooldown_hours
    )
    opened, flags = spans_to_series(series.days, spans)
    series.methods[name] = MethodSeries(list(scores), opened, flags)


@dataclass(frozen=True)
class PatientCounts:
    """What one patient contributes to the event-level metrics of one method."""

    openings: int
    at_risk_days: int
    relapses: int
    lead_times: tuple[int, ...]  # one per detected relapse


def counts(series: PatientSeries, method: str) -> PatientCounts:
    """Alerts opened on at-risk days, and the lead time of each relapse detected.

    A relapse is detected when an alert opened on an at-risk day in the 28
    days before its onset; the lead time is the onset minus the first such
    opening, in days.
    """
    opened = [
        d for d in series.methods[method].opened if at_risk(series.truth, d) and series.days[0] <= d
    ]
    openings = len(opened)
    leads = []
    for onset in series.onsets:
        window = [d for d in opened if onset - timedelta(days=HORIZON_DAYS) <= d < onset]
        if window:
            leads.append((onset - min(window)).days)
    return PatientCounts(openings, series.at_risk_days, len(series.onsets), tuple(leads))
