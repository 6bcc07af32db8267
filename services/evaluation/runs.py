"""A simulated cohort through the pure core, and what the evaluation keeps of it.

No broker and no database: each patient's events go through
:func:`streams.process` in arrival order, exactly as a worker or the replay
engine would apply them. What is kept per patient is small: the daily
assessments and anomaly rates, the alerts of the rules being compared, the
clinical outcomes (the trainer's labels) and the simulator's ground truth.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from schemas.events import Alert, ClinicalOutcome, CourseUpdate, RiskAssessment
from services.simulator import Cohort, PatientTruth
from streams import CoreConfig, PatientState, process

#: The core's rating-scale rules: baseline (a) of the evaluation.
SCORE_RULES = frozenset({"severity_band", "reliable_deterioration", "ymrs_mania"})
RISK_RULE = "relapse_risk"
_SEVERITY = {"info": 1, "warning": 2, "urgent": 3}


def local_day(moment: datetime) -> date:
    """The local date of the day that ends at ``moment`` (a day end is local midnight).

    >>> from datetime import UTC
    >>> local_day(datetime(2026, 3, 2, tzinfo=UTC))
    datetime.date(2026, 3, 1)
    """
    return (moment - timedelta(hours=12)).date()


@dataclass
class PatientRun:
    """What one patient's history produced, in day order."""

    truth: PatientTruth
    days: list[date] = field(default_factory=list)
    ends: list[float] = field(default_factory=list)
    anomaly: list[float] = field(default_factory=list)
    assessments: list[RiskAssessment] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    outcomes: list[ClinicalOutcome] = field(default_factory=list)
    events: int = 0
    state_bytes: int = 0
    risk_bytes: int = 0  # the risk models' part of the state (features, drift, alert rule)

    def probabilities(self) -> list[float | None]:
        """The model's probability for each day of :attr:`days` (None: not assessed)."""
        by_day = {local_day(a.observed_at): a.probability for a in self.assessments}
        return [by_day.get(d) for d in self.days]

    def inputs(self) -> list[dict[str, float]]:
        """The model inputs of each assessment (the features listed in its contributions)."""
        return [{c.feature: c.value for c in a.contributions} for a in self.assessments]


@dataclass
class CohortRun:
    """Every patient's run, with the cohort's period."""

    patients: dict[str, PatientRun]
    start: date
    end: date  # the last simulated day
    config: CoreConfig


def run_cohort(cohort: Cohort, config: CoreConfig) -> CohortRun:
    """Process every event of ``cohort`` through the core with ``config``; keep what is scored."""
    from streams import state_size

    states: dict[str, PatientState] = {}
    runs = {pid: PatientRun(truth) for pid, truth in cohort.ground_truth.items()}
    for event in cohort.events():
        pid = event.patient_id
        run = runs[pid]
        run.events += 1
        if isinstance(event, ClinicalOutcome):
            run.outcomes.append(event)
        state, outputs = process(states.get(pid) or PatientState(), event, config)
        states[pid] = state
        for output in outputs:
            if isinstance(output, CourseUpdate):
                if output.signal == "anomaly_rate" and output.day is not None:
                    run.days.append(output.day)
                    run.ends.append(output.observed_at.timestamp())
                    run.anomaly.append(float(output.value or 0.0))
            elif isinstance(output, RiskAssessment):
                run.assessments.append(output)
            elif isinstance(output, Alert) and (
                output.rule in SCORE_RULES or output.rule == RISK_RULE
            ):
                run.alerts.append(output)
    for pid, state in states.items():
        runs[pid].state_bytes = state_size(state)
        parts = (state.risk, state.rules.relapse_risk)
        runs[pid].risk_bytes = len(pickle.dumps(parts, protocol=pickle.HIGHEST_PROTOCOL))
    first = cohort.start.date()
    return CohortRun(runs, first, first + timedelta(days=cohort.days - 1), config)


def alert_days(alerts: list[Alert], rules: frozenset[str]) -> list[date]:
    """The local day each alert of ``rules`` first opened (escalations are not new alerts)."""
    seen: set[str] = set()
    opened: list[date] = []
    for alert in sorted(alerts, key=lambda a: (a.observed_at, str(a.event_id))):
        if alert.rule not in rules or alert.status != "open" or str(alert.alert_id) in seen:
            continue
        seen.add(str(alert.alert_id))
        day = alert.evidence.get("day")
        opened.append(date.fromisoformat(day) if isinstance(day, str) else alert.observed_at.date())
    return opened


def open_severity(alerts: list[Alert], rules: frozenset[str], ends: list[float]) -> list[int]:
    """For each day end, the highest severity of the alerts of ``rules`` open then (0: none)."""
    changes = sorted(
        (a for a in alerts if a.rule in rules),
        key=lambda a: (a.observed_at.timestamp(), str(a.event_id)),
    )
    current: dict[str, int] = {}
    ranks: list[int] = []
    i = 0
    for end in ends:
        while i < len(changes) and changes[i].observed_at.timestamp() <= end:
            change = changes[i]
            if change.status == "open":
                current[str(change.alert_id)] = _SEVERITY[change.severity]
            else:
                current.pop(str(change.alert_id), None)
            i += 1
        ranks.append(max(current.values(), default=0))
    return ranks
