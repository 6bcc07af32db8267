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
   other half), the anomaly rate's directly; each the lowest threshold whose
   alerts stay within the budget per patient-month on at-risk days.
3. **Held-out cohort** (seed ``s``, other patients, days ``D .. 2D-1``: after
   the training period): every event goes through the core with the last
   version and the chosen threshold in ``CoreConfig``; the core emits the
   assessments and ``relapse_risk`` alerts that are scored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
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
    at_risk,
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
    risk: RiskConfig = field(default_factory=RiskConfig)
    learning_rate: float = 0.05
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


Item = tuple[list[float], list[float], list[bool]]  # scores, day ends, at-risk flags


def burden(items: Sequence[Item], risk: RiskConfig, threshold: float, cooldown: float) -> float:
    """Alerts per patient-month on at-risk days, were the rule applied at ``threshold``."""
    openings = days = 0
    for scores, ends, risky in items:
        spans = alert_spans(scores, ends, risk, threshold=threshold, cooldown_hours=cooldown)
        openings += sum(1 for start, _ in spans if risky[start])
        days += sum(risky)
    return openings / (days / DAYS_PER_MONTH) if days else 0.0


def choose_threshold(
    items: Sequence[Item], risk: RiskConfig, budget: float, cooldown: float = 24.0
) -> tuple[float, float]:
    """The lowest threshold (of a grid of score quantiles) within ``budget``; and its burden.

    Thresholds are tried from high to low and the search stops at the first
    one over budget, so a threshold is never chosen below one that failed.
    """
    values = np.concatenate([np.asarray(s, dtype=np.float64) for s, _, _ in items])
    grid = np.unique(np.quantile(values, np.linspace(0.5, 0.9995, 240)))[::-1]
    chosen, chosen_burden = float(grid[0]) + 1e-6, 0.0
    for candidate in grid:
        achieved = burden(items, risk, float(candidate), cooldown)
        if achieved > budget:
            break
        chosen, chosen_burden = float(candidate), achieved
    return min(chosen, 0.999999), chosen_burden


def _items(run: CohortRun, scores: dict[str, list[float]]) -> list[Item]:
    return [
        (scores[pid], run.patients[pid].ends, [at_risk(run.patients[pid].truth, d) for d in days])
        for pid in sorted(run.patients)
        if (days := run.patients[pid].days)
    ]


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


def _rules_burden(run: CohortRun) -> float:
    openings = days = 0
    for pid in sorted(run.patients):
        series = patient_series(pid, run.patients[pid], run.end)
        if series is not None:
            c = counts(series, "rules")
            openings, days = openings + c.openings, days + c.at_risk_days
    return openings / (days / DAYS_PER_MONTH) if days else 0.0


def calibrate(seed: int, run: CohortRun, settings: Settings) -> tuple[Trainer, dict[str, float]]:
    """Train on the training cohort and choose every threshold on it."""
    trainer = fit(run, settings)
    cooldown = CoreConfig().alerts.cooldown_hours
    risk = settings.risk
    oof = _items(run, crossfit(run, settings))
    anomaly = _items(run, {pid: list(run.patients[pid].anomaly) for pid in run.patients})
    rules = _rules_burden(run)
    thresholds = {
        "model": choose_threshold(oof, risk, settings.budget, cooldown)[0],
        "anomaly": choose_threshold(anomaly, risk, settings.budget, cooldown)[0],
        "model_at_rules_burden": choose_threshold(oof, risk, max(rules, 1e-9), cooldown)[0],
        "rules_burden": rules,
    }
    return trainer, thresholds


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
        add_threshold_method(series, "anomaly", list(patient.anomaly), risk, thresholds["anomaly"])
        add_threshold_method(
            series,
            "model_at_rules_burden",
            probabilities,
            risk,
            thresholds["model_at_rules_burden"],
        )
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
            )
        )
    return results
