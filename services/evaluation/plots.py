"""The model card's figures (matplotlib, Agg backend: no display needed).

Each function writes one PNG and returns its path. Colours are fixed per
method so the figures read together.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from services.evaluation.metrics import pr_curve, roc_curve
from services.evaluation.protocol import OperatingPoint, operating_point
from services.evaluation.report import EvaluationReport
from services.evaluation.series import (
    DAYS_PER_MONTH,
    HORIZON_DAYS,
    PatientSeries,
    counts,
)

#: The operating point the example patient is drawn with (the configured default).
EXAMPLE_METHOD = "model_tight"
COLOURS = {
    "model": "#1f5fa8",
    "anomaly": "#d9822b",
    "rules": "#6b6b6b",
    "model_at_rules_burden": "#7fa8d8",
    "model_tight": "#14407a",
    "anomaly_tight": "#a35a12",
}
SHORT = {
    "model": "risk model",
    "anomaly": "anomaly rate",
    "rules": "rating-scale rules",
    "model_at_rules_burden": "risk model at rules' burden",
    "model_tight": "risk model, stricter budget",
    "anomaly_tight": "anomaly rate, stricter budget",
}


def chance_sensitivity(alerts_per_month: np.ndarray | float) -> np.ndarray:
    """Relapses a detector would catch by luck: P(at least one alert in 28 days).

    Alerts at random times, ``alerts_per_month`` per patient-month (Poisson).

    >>> round(float(chance_sensitivity(1.0)), 2)
    0.6
    """
    rate = np.asarray(alerts_per_month, dtype=float)
    return 1.0 - np.exp(-rate * HORIZON_DAYS / DAYS_PER_MONTH)


def _pooled(report: EvaluationReport, method: str) -> tuple[np.ndarray, np.ndarray]:
    scores, labels = [], []
    for result in report.seeds:
        for series in result.series:
            mask = np.asarray(series.scored, dtype=bool)
            scores.append(np.asarray(series.methods[method].scores, dtype=float)[mask])
            labels.append(np.asarray(series.labels, dtype=bool)[mask])
    return np.concatenate(scores), np.concatenate(labels)


def _save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(figure)
    return path


def roc_pr(report: EvaluationReport, directory: Path) -> Path:
    """ROC and precision-recall curves of the three methods, held-out days pooled."""
    figure, (roc_axis, pr_axis) = plt.subplots(1, 2, figsize=(10, 4.4))
    prevalence = report.positive_days / max(report.days, 1)
    for method in ("model", "anomaly", "rules"):
        scores, labels = _pooled(report, method)
        fpr, tpr = roc_curve(scores, labels)
        recall, precision = pr_curve(scores, labels)
        auc = report.interval(method, "roc_auc").value
        ap = report.interval(method, "pr_auc").value
        style = {"color": COLOURS[method], "lw": 2 if method == "model" else 1.5}
        roc_axis.plot(fpr, tpr, label=f"{SHORT[method]} (AUC {auc:.2f})", **style)
        pr_axis.step(
            recall, precision, where="post", label=f"{SHORT[method]} (AP {ap:.2f})", **style
        )
    roc_axis.plot([0, 1], [0, 1], ls=":", color="black", lw=1, label="chance")
    pr_axis.axhline(prevalence, ls=":", color="black", lw=1, label=f"chance ({prevalence:.2f})")
    roc_axis.set(xlabel="false positive rate (days)", ylabel="true positive rate (days)")
    roc_axis.set_title("ROC: is a relapse coming within 28 days?")
    pr_axis.set(xlabel="recall (days)", ylabel="precision (days)", ylim=(0, 1))
    pr_axis.set_title("Precision-recall (positive days are rare)")
    for axis in (roc_axis, pr_axis):
        axis.legend(loc="best", fontsize=8)
        axis.grid(alpha=0.3)
    return _save(figure, directory / "model-roc-pr.png")


def lead_times(report: EvaluationReport, directory: Path) -> Path:
    """How many days before onset each method first alerted, per detected relapse."""
    figure, axis = plt.subplots(figsize=(8, 5))
    methods = ["model", "anomaly", "model_tight", "anomaly_tight", "rules", "model_at_rules_burden"]
    for row, method in enumerate(methods):
        leads = report.lead_times.get(method, [])
        jitter = (np.arange(len(leads)) % 7 - 3) * 0.04
        axis.scatter(leads, np.full(len(leads), row) + jitter, s=18, color=COLOURS[method])
        if leads:
            axis.plot([np.median(leads)] * 2, [row - 0.3, row + 0.3], color="black", lw=2)
        sensitivity = report.interval(method, "sensitivity").value
        axis.text(29, row, f"{len(leads)} of {report.relapses} ({sensitivity:.0%})", va="center")
    axis.set_yticks(range(len(methods)), [SHORT[m] for m in methods])
    axis.set(xlim=(0, 36), xlabel="days from first alert to relapse onset (black: median)")
    axis.set_title("Lead time of the relapses each method caught (held-out patients)")
    axis.invert_yaxis()
    axis.grid(axis="x", alpha=0.3)
    return _save(figure, directory / "model-lead-time.png")


def _frontier(report: EvaluationReport, method: str, points: int = 60) -> tuple[list[float], ...]:
    """The most relapses alerted in time at each alert burden, thresholds chosen in hindsight.

    Each seed's threshold is the same quantile of its own scores (the seeds'
    models differ in scale); counts are pooled over seeds for each quantile.
    """
    risk = report.settings.risk
    results: list[OperatingPoint] = []
    for level in np.linspace(0.3, 0.999, points):
        openings = days = 0.0
        relapses = detected = 0.0
        for seed in report.seeds:
            scores = [s.methods[method].scores for s in seed.series]
            threshold = float(np.quantile(np.concatenate(scores), level))
            point = operating_point(seed.series, scores, risk, threshold)
            seed_days = sum(s.at_risk_days for s in seed.series)
            seed_relapses = sum(len(s.onsets) for s in seed.series)
            openings += point.alerts_pm * seed_days / DAYS_PER_MONTH
            days += seed_days
            detected += point.sensitivity * seed_relapses
            relapses += seed_relapses
        results.append(
            OperatingPoint(level, openings / (days / DAYS_PER_MONTH), detected / max(relapses, 1))
        )
    results.sort(key=lambda p: p.alerts_pm)
    burdens, best, frontier = [], 0.0, []
    for point in results:
        best = max(best, point.sensitivity)
        burdens.append(point.alerts_pm)
        frontier.append(best)
    return burdens, frontier


def burden(report: EvaluationReport, directory: Path) -> Path:
    """Relapses caught against alerts per patient-month, over every threshold."""
    figure, axis = plt.subplots(figsize=(7, 4.6))
    for method in ("model", "anomaly"):
        burdens, sensitivities = _frontier(report, method)
        axis.step(
            burdens,
            sensitivities,
            where="post",
            color=COLOURS[method],
            lw=1.8,
            label=f"{SHORT[method]}: best threshold in hindsight",
        )
    for method, marker in (
        ("model", "o"),
        ("anomaly", "s"),
        ("model_tight", "o"),
        ("anomaly_tight", "s"),
        ("rules", "D"),
    ):
        axis.scatter(
            report.interval(method, "alerts_pm").value,
            report.interval(method, "sensitivity").value,
            color=COLOURS[method],
            marker=marker,
            s=60,
            zorder=3,
            edgecolor="black",
            label=f"{SHORT[method]}: threshold chosen on training",
        )
    limit = max(1.0, report.settings.budget * 1.5)
    grid = np.linspace(0, limit, 100)
    axis.plot(
        grid,
        chance_sensitivity(grid),
        ls=":",
        color="black",
        lw=1,
        label="alerts at random times",
    )
    axis.axvline(report.settings.budget, ls="--", color="black", lw=1, label="alert budgets")
    axis.axvline(report.settings.tight_budget, ls="--", color="black", lw=1)
    axis.set(
        xlabel="alerts per patient-month (at-risk days)",
        ylabel="relapses alerted within 28 days before onset",
        xlim=(0, limit),
        ylim=(0, 1),
    )
    axis.set_title("What an alert budget buys (held-out patients)")
    axis.legend(fontsize=8, loc="lower right")
    axis.grid(alpha=0.3)
    return _save(figure, directory / "model-burden.png")


def _example(report: EvaluationReport) -> tuple[PatientSeries, float] | None:
    """The first held-out patient whose relapse the stricter-budget alert caught."""
    for result in report.seeds:
        for series in result.series:
            c = counts(series, EXAMPLE_METHOD)
            if c.lead_times and series.truth.relapses:
                return series, result.thresholds[EXAMPLE_METHOD]
    return None


def example(report: EvaluationReport, directory: Path) -> Path | None:
    """One held-out patient: risk, anomaly rate, alerts and the true prodrome and episode."""
    found = _example(report)
    if found is None:
        return None
    series, threshold = found
    figure, axis = plt.subplots(figsize=(10, 3.8))
    first = series.days[0]

    def x(day: date) -> float:
        return float((day - first).days)

    days = [x(d) for d in series.days]
    model = series.methods[EXAMPLE_METHOD]
    axis.plot(days, model.scores, color=COLOURS["model"], lw=1.8, label="relapse risk")
    axis.axhline(
        threshold, color=COLOURS["model"], ls="--", lw=1, label="alert threshold (stricter budget)"
    )
    for start, flag in zip(days, model.open_at_end, strict=True):
        if flag:
            axis.axvspan(start, start + 1, color=COLOURS["model"], alpha=0.12)
    for relapse in series.truth.relapses:
        axis.axvspan(x(relapse.prodrome_start), x(relapse.onset), color="#e8b04b", alpha=0.3)
        axis.axvspan(x(relapse.onset), x(relapse.recovery_end), color="#c44e52", alpha=0.12)
        axis.axvline(x(relapse.onset), color="#c44e52", lw=1.5)
    other = axis.twinx()
    other.plot(days, series.methods["anomaly"].scores, color=COLOURS["anomaly"], lw=1, alpha=0.8)
    other.set_ylabel("anomaly rate", color=COLOURS["anomaly"])
    other.set_ylim(0, 1)
    axis.set(
        xlabel=f"days since {first.isoformat()} (first assessed day)",
        ylabel="P(onset within 28 days)",
        ylim=(0, max(0.5, max(model.scores) * 1.1)),
        xlim=(0, days[-1] + 1),
    )
    axis.set_title(
        f"A held-out {series.truth.diagnosis} patient: prodrome (yellow), episode and "
        "recovery (red), risk alert open (blue)",
        fontsize=10,
    )
    axis.legend(loc="upper left", fontsize=8)
    return _save(figure, directory / "model-example.png")
