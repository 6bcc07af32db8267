"""The evaluation's numbers: every method's metrics with bootstrap intervals by patient.

Held-out patients of every seed are pooled; each bootstrap resample draws
patients with replacement and recomputes every metric of every method on the
same draw, so the differences between methods are paired.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import median

import numpy as np
from numpy.typing import NDArray

from services.evaluation.metrics import Interval, average_precision, bootstrap, f_beta, roc_auc
from services.evaluation.protocol import SeedResult, Settings
from services.evaluation.series import DAYS_PER_MONTH, PatientCounts, PatientSeries, counts

METHODS: tuple[str, ...] = (
    "model",
    "anomaly",
    "model_tight",
    "anomaly_tight",
    "rules",
    "model_at_rules_burden",
)
LABELS: dict[str, str] = {
    "model": "relapse-risk model",
    "anomaly": "anomaly-rate rule (Barnett 2018 style)",
    "rules": "rating-scale rules (band entry, reliable deterioration, YMRS)",
    "model_at_rules_burden": "relapse-risk model at the rating-scale rules' alert burden",
    "model_tight": "relapse-risk model, stricter budget",
    "anomaly_tight": "anomaly-rate rule, stricter budget",
}
METRICS: tuple[str, ...] = (
    "roc_auc",
    "pr_auc",
    "f2",
    "sensitivity",
    "lead_time",
    "alerts_pm",
    "open_share",
)
#: (method, baseline) pairs whose differences are reported.
COMPARISONS: tuple[tuple[str, str], ...] = (
    ("model", "anomaly"),
    ("model", "rules"),
    ("model_tight", "anomaly_tight"),
    ("model_at_rules_burden", "rules"),
)


@dataclass
class _Patient:
    """One patient's arrays and counts, per method (what a resample concatenates)."""

    labels: NDArray[np.bool_]
    scores: dict[str, NDArray[np.float64]]
    open: dict[str, NDArray[np.bool_]]
    counts: dict[str, PatientCounts]


def _prepare(series: PatientSeries) -> _Patient:
    mask = np.asarray(series.scored, dtype=bool)
    return _Patient(
        labels=np.asarray(series.labels, dtype=bool)[mask],
        scores={m: np.asarray(series.methods[m].scores, dtype=np.float64)[mask] for m in METHODS},
        open={m: np.asarray(series.methods[m].open_at_end, dtype=bool)[mask] for m in METHODS},
        counts={m: counts(series, m) for m in METHODS},
    )


def _metrics(patients: Sequence[_Patient], method: str) -> dict[str, float]:
    labels = np.concatenate([p.labels for p in patients])
    scores = np.concatenate([p.scores[method] for p in patients])
    flags = np.concatenate([p.open[method] for p in patients])
    tp = int(np.sum(flags & labels))
    fp = int(np.sum(flags & ~labels))
    fn = int(np.sum(~flags & labels))
    openings = sum(p.counts[method].openings for p in patients)
    days = sum(p.counts[method].at_risk_days for p in patients)
    relapses = sum(p.counts[method].relapses for p in patients)
    leads = [lead for p in patients for lead in p.counts[method].lead_times]
    return {
        "roc_auc": roc_auc(scores, labels),
        "pr_auc": average_precision(scores, labels),
        "f2": f_beta(tp=tp, fp=fp, fn=fn, beta=2.0),
        "sensitivity": len(leads) / relapses if relapses else float("nan"),
        "lead_time": float(median(leads)) if leads else float("nan"),
        "alerts_pm": openings / (days / DAYS_PER_MONTH) if days else float("nan"),
        "open_share": float(flags.mean()) if len(flags) else float("nan"),
    }


def _statistic(patients: Sequence[_Patient]) -> dict[str, float]:
    out: dict[str, float] = {}
    for method in METHODS:
        for name, value in _metrics(patients, method).items():
            out[f"{method}.{name}"] = value
    for method, baseline in COMPARISONS:
        for name in ("roc_auc", "pr_auc", "sensitivity", "lead_time"):
            out[f"{method}-{baseline}.{name}"] = out[f"{method}.{name}"] - out[f"{baseline}.{name}"]
    return out


@dataclass
class EvaluationReport:
    """Everything the model card shows."""

    settings: Settings
    seeds: list[SeedResult]
    intervals: dict[str, Interval]
    per_seed: dict[int, dict[str, float]]
    patients: int
    days: int
    positive_days: int
    relapses: int
    lead_times: dict[str, list[int]] = field(default_factory=dict)
    seconds: float = 0.0

    def interval(self, method: str, metric: str) -> Interval:
        """The interval of ``metric`` for ``method`` (or ``"a-b"`` for a difference)."""
        return self.intervals[f"{method}.{metric}"]

    def beats(self, method: str, baseline: str, metric: str) -> tuple[bool, bool]:
        """(point estimate better, whole 95 % interval of the difference above 0)."""
        difference = self.intervals[f"{method}-{baseline}.{metric}"]
        return difference.value > 0, difference.low > 0

    def as_dict(self) -> dict[str, object]:
        """The numbers as plain JSON-ready data."""
        return {
            "settings": {
                "seeds": list(self.settings.seeds),
                "patients": self.settings.patients,
                "days": self.settings.days,
                "samples_per_hour": self.settings.samples_per_hour,
                "budget": self.settings.budget,
            },
            "held_out": {
                "patients": self.patients,
                "days": self.days,
                "positive_days": self.positive_days,
                "relapses": self.relapses,
            },
            "metrics": {
                name: {"value": i.value, "low": i.low, "high": i.high}
                for name, i in sorted(self.intervals.items())
            },
            "per_seed": {str(k): v for k, v in self.per_seed.items()},
            "thresholds": {str(s.seed): s.thresholds for s in self.seeds},
            "models": {str(s.seed): s.model.model_dump(mode="json") for s in self.seeds},
            "prequential_training": {str(s.seed): s.prequential for s in self.seeds},
            "core_alerts_match_rule": all(s.core_matches_rule for s in self.seeds),
            "seconds": self.seconds,
        }


def summarise(
    settings: Settings, seeds: list[SeedResult], seconds: float = 0.0
) -> EvaluationReport:
    """Pool the held-out patients of every seed and bootstrap every metric by patient."""
    everyone = [series for result in seeds for series in result.series]
    prepared = [_prepare(s) for s in everyone]
    intervals = bootstrap(
        lambda idx: _statistic([prepared[i] for i in idx]),
        len(prepared),
        resamples=settings.resamples,
        seed=0,
    )
    per_seed: dict[int, dict[str, float]] = {}
    offset = 0
    for result in seeds:
        mine = prepared[offset : offset + len(result.series)]
        offset += len(result.series)
        per_seed[result.seed] = _statistic(mine)
    labels = np.concatenate([p.labels for p in prepared]) if prepared else np.zeros(0, bool)
    return EvaluationReport(
        settings=settings,
        seeds=seeds,
        intervals=intervals,
        per_seed=per_seed,
        patients=len(prepared),
        days=len(labels),
        positive_days=int(labels.sum()),
        relapses=sum(p.counts["model"].relapses for p in prepared),
        lead_times={m: [x for p in prepared for x in p.counts[m].lead_times] for m in METHODS},
        seconds=seconds,
    )
