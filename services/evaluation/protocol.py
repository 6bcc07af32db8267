"""The evaluation protocol: train on some simulated patients, judge on others, later.

For each seed ``s``:

1. **Training cohort** (seed ``1000 + s``, days ``0 .. D-1``): every event goes
   through the pure core with model version 0, which emits each day's model
   inputs. The trainer reads the assessments and outcomes in ``received_at``
   order, learns each day once its label is known and publishes a version
   every 7 days (prequential: every version scores days before it learns
   them). Labels received after day ``D`` are never read.
2. **Thresholds**, on the training cohort only: the model's by two-fold
   cross-fitting by patient (each half scored by a model trained on the
   other half), the anomaly rate's directly; each the threshold that alerts
   the most training relapses in time while staying within the budget of
   alerts per patient-month on at-risk days.
3. **Held-out cohort** (seed ``s``, other patients, days ``D .. 2D-1``: after
   the training period): every event goes through the core with the last
   version and the chosen threshold in ``CoreConfig``; the core emits the
   assessments and ``relapse_risk`` alerts that are scored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from schemas.events import ClinicalOutcome, RiskAssessment
from services.evaluation.metrics import average_precision, roc_auc
from services.evaluation.runs import (
    RISK_RULE,
    CohortRun,
    alert_days,
    local_day,
    open_severity,
    run_cohort,
)
from services.evaluation.series import (
    DAYS_PER_MONTH,
    MethodSeries,
    PatientSeries,
    add_threshold_method,
    counts,
    patient_series,
)
from services.simulator import simulate_cohort
from services.training import Trainer, train
from streams.config import CoreConfig, RiskConfig
from streams.models.features import INPUTS
from streams.models.logistic import OnlineLogistic
from streams.models.risk_rule import alert_spans
from streams.models.snapshot import ModelSnapshot

TRAINING_SEED_OFFSET = 1000
START = datetime(2026, 1, 5, tzinfo=UTC)


@dataclass(frozen=True)
class Settings:
    """Everything that decides an evaluation's result (named in the model card)."""

    seeds: tuple[int, ...] = (1, 2, 3)
    patients: int = 60
    days: int = 180
    samples_per_hour: int = 2
    start: datetime = START
    budget: float = 1.0  # alerts per patient-month
    tight_budget: float = 0.25  # a stricter second budget, for both threshold methods
    risk: RiskConfig = field(default_factory=RiskConfig)
    learning_rate: float = 0.02
    l2: float = 1e-3
    positive_weight: float = 1.0
    grace_days: int = 28
    refractory_days: int = 56
    publish_every_days: int = 7
    folds: int = 2
    resamples: int = 500
    workers: int = 1

    def learner(self) -> OnlineLogistic:
        """A fresh learner with these settings."""
        return OnlineLogistic(
            INPUTS,
            learning_rate=self.learning_rate,
            l2=self.l2,
            positive_weight=self.positive_weight,
        )

    def trainer(self) -> Trainer:
        """A fresh trainer with these settings."""
        return Trainer(
            horizon_days=self.risk.horizon_days,
            grace_days=self.grace_days,
            refractory_days=self.refractory_days,
            publish_every=timedelta(days=self.publish_every_days),
            learner=self.learner(),
        )

    @property
    def heldout_start(self) -> datetime:
        """The first moment of the held-out period (the end of training)."""
        return self.start + timedelta(days=self.days)


@dataclass
class SeedResult:
    """What one seed gave: the model, its thresholds, and the held-out series."""

    seed: int
    model: ModelSnapshot
    versions: int
    thresholds: dict[str, float]
    training_burden: dict[str, float]
    prequential: dict[str, float]
    series: list[PatientSeries]
    core_matches_rule: bool
    state_bytes: list[int]
    risk_bytes: list[int] = field(default_factory=list)


def _training_run(seed: int, settings: Settings) -> CohortRun:
    cohort = simulate_cohort(
        settings.patients,
        settings.days,
        TRAINING_SEED_OFFSET + seed,
        settings.start,
        samples_per_hour=settings.samples_per_hour,
    )
    return run_cohort(cohort, CoreConfig(risk=settings.risk, model=ModelSnapshot.initial(INPUTS)))


def _heldout_run(seed: int, settings: Settings, config: CoreConfig) -> CohortRun:
    cohort = simulate_cohort(
        settings.patients,
        settings.days,
        seed,
        settings.heldout_start,
        samples_per_hour=settings.samples_per_hour,
    )
    return run_cohort(cohort, config)


def _events(run: CohortRun, patients: Sequence[str]) -> list[RiskAssessment | ClinicalOutcome]:
    events: list[RiskAssessment | ClinicalOutcome] = []
    for pid in patients:
        events += run.patients[pid].assessments
        events += run.patients[pid].outcomes
    return events


def fit(run: CohortRun, settings: Settings, patients: Sequence[str] | None = None) -> Trainer:
    """Train on the assessments and outcomes of ``patients`` received before the held-out start."""
    chosen = sorted(run.patients) if patients is None else patients
    trainer = train(_events(run, chosen), until=settings.heldout_start, trainer=settings.trainer())
    trainer.final()
    return trainer


def _day_inputs(run: CohortRun, pid: str) -> list[dict[str, float]]:
    patient = run.patients[pid]
    by_day = {
        local_day(a.observed_at): {c.feature: c.value for c in a.contributions}
        for a in patient.assessments
    }
    return [by_day[d] for d in patient.days]


def crossfit(run: CohortRun, settings: Settings) -> dict[str, list[float]]:
    """Out-of-fold probabilities for every training patient-day (folds by patient)."""
    pids = sorted(run.patients)
    scores: dict[str, list[float]] = {}
    for fold in range(settings.folds):
        held = [p for i, p in enumerate(pids) if i % settings.folds == fold]
        rest = [p for i, p in enumerate(pids) if i % settings.folds != fold]
        model = fit(run, settings, rest).latest
        for pid in held:
            scores[pid] = [round(model.predict_proba_one(x), 6) for x in _day_inputs(run, pid)]
    return scores


@dataclass(frozen=True)
class OperatingPoint:
    """What the ``relapse_risk`` rule at one threshold does to a set of patients."""

    threshold: float
    alerts_pm: float
    sensitivity: float


def operating_point(
    patients: Sequence[PatientSeries],
    scores: Sequence[list[float]],
    risk: RiskConfig,
    threshold: float,
    cooldown: float = 24.0,
) -> OperatingPoint:
    """Alerts per patient-month on at-risk days, and the share of relapses alerted in time."""
    openings = days = relapses = detected = 0
    for series, values in zip(patients, scores, strict=True):
        add_threshold_method(series, "_point", values, risk, threshold, cooldown_hours=cooldown)
        c = counts(series, "_point")
        del series.methods["_point"]
        openings, days = openings + c.openings, days + c.at_risk_days
        relapses, detected = relapses + c.relapses, detected + len(c.lead_times)
    return OperatingPoint(
        threshold,
        openings / (days / DAYS_PER_MONTH) if days else 0.0,
        detected / relapses if relapses else 0.0,
    )


def choose_threshold(
    patients: Sequence[PatientSeries],
    scores: Sequence[list[float]],
    risk: RiskConfig,
    budget: float,
    cooldown: float = 24.0,
) -> OperatingPoint:
    """The threshold that alerts the most relapses in time within ``budget`` (training data).

    Not simply the lowest threshold within budget: with hysteresis, a low
    threshold keeps alerts open for weeks, which *lowers* the count of alerts
    opened but alerts nothing in time. Ties go to the higher threshold.
    """
    values = np.concatenate([np.asarray(v, dtype=np.float64) for v in scores])
    grid = np.unique(np.quantile(values, np.linspace(0.3, 0.9995, 120)))[::-1]
    best: OperatingPoint | None = None
    for candidate in grid:
        point = operating_point(patients, scores, risk, float(candidate), cooldown)
        if point.alerts_pm <= budget and (best is None or point.sensitivity > best.sensitivity):
            best = point
    if best is None:  # nothing within budget: alert (almost) never
        best = operating_point(patients, scores, risk, float(grid[0]) + 1e-6, cooldown)
    return replace(best, threshold=min(best.threshold, 0.999999))


def _prequential(run: CohortRun, trainer: Trainer, cutoff: datetime) -> dict[str, float]:
    """Training days scored by the version in force when each arrived, before learning them."""
    timeline = trainer.timeline()
    scores, labels = [], []
    for pid in sorted(run.patients):
        series = patient_series(pid, run.patients[pid], run.end)
        if series is None:
            continue
        by_day = {local_day(a.observed_at): a for a in run.patients[pid].assessments}
        for day, label, scored in zip(series.days, series.labels, series.scored, strict=True):
            assessment = by_day[day]
            if not scored or assessment.received_at >= cutoff:
                continue
            x = {c.feature: c.value for c in assessment.contributions}
            scores.append(timeline.at(assessment.received_at).predict_proba_one(x))
            labels.append(label)
    return {
        "roc_auc": roc_auc(scores, labels),
        "pr_auc": average_precision(scores, labels),
        "days": float(len(labels)),
        "prevalence": float(np.mean(labels)) if labels else float("nan"),
    }


def calibrate(seed: int, run: CohortRun, settings: Settings) -> tuple[Trainer, dict[str, float]]:
    """Train on the training cohort and choose every threshold on it."""
    trainer = fit(run, settings)
    cooldown = CoreConfig().alerts.cooldown_hours
    risk = settings.risk
    oof = crossfit(run, settings)
    pids = [pid for pid in sorted(run.patients) if run.patients[pid].days]
    patients = [patient_series(pid, run.patients[pid], run.end) for pid in pids]
    known = [p for p in patients if p is not None]
    model_scores = [oof[pid] for pid in pids]
    anomaly_scores = [list(run.patients[pid].anomaly) for pid in pids]
    openings = sum(counts(p, "rules").openings for p in known)
    days = sum(p.at_risk_days for p in known)
    rules = openings / (days / DAYS_PER_MONTH) if days else 0.0
    model = choose_threshold(known, model_scores, risk, settings.budget, cooldown)
    anomaly = choose_threshold(known, anomaly_scores, risk, settings.budget, cooldown)
    model_tight = choose_threshold(known, model_scores, risk, settings.tight_budget, cooldown)
    anomaly_tight = choose_threshold(known, anomaly_scores, risk, settings.tight_budget, cooldown)
    low = choose_threshold(known, model_scores, risk, max(rules, 1e-9), cooldown)
    return trainer, {
        "model": model.threshold,
        "anomaly": anomaly.threshold,
        "model_at_rules_burden": low.threshold,
        "model_tight": model_tight.threshold,
        "anomaly_tight": anomaly_tight.threshold,
        "rules_burden": rules,
        "model_training_alerts_pm": model.alerts_pm,
        "model_training_sensitivity": model.sensitivity,
        "anomaly_training_alerts_pm": anomaly.alerts_pm,
        "anomaly_training_sensitivity": anomaly.sensitivity,
    }


def heldout_series(
    seed: int, run: CohortRun, thresholds: dict[str, float], risk: RiskConfig
) -> tuple[list[PatientSeries], bool]:
    """The held-out series of every method; and whether the core's alerts match the rule."""
    cooldown = run.config.alerts.cooldown_hours
    matches = True
    out: list[PatientSeries] = []
    for pid in sorted(run.patients):
        patient = run.patients[pid]
        series = patient_series(f"{seed}:{pid}", patient, run.end)
        if series is None:
            continue
        probabilities = [p if p is not None else 0.0 for p in patient.probabilities()]
        ranks = open_severity(patient.alerts, frozenset({RISK_RULE}), patient.ends)
        opened = alert_days(patient.alerts, frozenset({RISK_RULE}))
        series.methods["model"] = MethodSeries(probabilities, opened, [r > 0 for r in ranks])
        offline = alert_spans(probabilities, patient.ends, run.config.risk, cooldown_hours=cooldown)
        matches &= [series.days[i] for i, _ in offline] == opened
        anomaly = list(patient.anomaly)
        for method, scores in (
            ("anomaly", anomaly),
            ("model_at_rules_burden", probabilities),
            ("model_tight", probabilities),
            ("anomaly_tight", anomaly),
        ):
            add_threshold_method(series, method, scores, risk, thresholds[method])
        out.append(series)
    return out, matches


def _map(
    function: Callable[..., CohortRun], tasks: list[tuple[Any, ...]], workers: int
) -> list[CohortRun]:
    """``function`` over ``tasks``, in worker processes when ``workers`` > 1 (same results)."""
    if workers <= 1 or len(tasks) <= 1:
        return [function(*task) for task in tasks]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures: list[Future[CohortRun]] = [pool.submit(function, *task) for task in tasks]
        return [f.result() for f in futures]


def run_protocol(settings: Settings) -> list[SeedResult]:
    """Every seed of the protocol, the cohort runs spread over ``settings.workers`` processes."""
    training = _map(_training_run, [(s, settings) for s in settings.seeds], settings.workers)
    calibrated = [
        calibrate(s, run, settings) for s, run in zip(settings.seeds, training, strict=True)
    ]
    configs = []
    ratio = settings.risk.close_threshold / settings.risk.alert_threshold
    for trainer, thresholds in calibrated:
        risk = settings.risk.model_copy(
            update={
                "alert_threshold": thresholds["model"],
                "close_threshold": thresholds["model"] * ratio,
            }
        )
        configs.append(CoreConfig(risk=risk, model=trainer.latest))
    heldout = _map(
        _heldout_run,
        [(s, settings, c) for s, c in zip(settings.seeds, configs, strict=True)],
        settings.workers,
    )
    results = []
    for seed, run, train_run, (trainer, thresholds) in zip(
        settings.seeds, heldout, training, calibrated, strict=True
    ):
        series, matches = heldout_series(seed, run, thresholds, settings.risk)
        results.append(
            SeedResult(
                seed=seed,
                model=trainer.latest,
                versions=len(trainer.published),
                thresholds=thresholds,
                training_burden={"rules": thresholds["rules_burden"]},
                prequential=_prequential(train_run, trainer, settings.heldout_start),
                series=series,
                core_matches_rule=matches,
                state_bytes=[p.state_bytes for p in run.patients.values()],
                risk_bytes=[p.risk_bytes for p in run.patients.values()],
            )
        )
    return results
