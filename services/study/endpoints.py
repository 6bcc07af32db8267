"""Study endpoints from the patients' records: time to event, score change, digital change.

Each function takes the included patients (``PatientRecord`` with its arm)
and returns per-patient values plus the comparison of every arm with the
reference arm. Conventions (docs/stratification.md):

* **time to event**: days from the landmark to the first outcome of the
  endpoint's kinds (its ``observed_at``, the onset); censored at the
  patient's last event or the data cut; a patient whose event came before
  the landmark is left out (counted);
* **score change**: the last rating within ``follow_up_days`` after the
  landmark minus the last rating in the ``baseline_days`` before it;
* **digital change**: the mean of a daily wearable feature over follow-up
  minus its mean over the baseline days, each over >= ``min_days`` days;
  ``sleep_irregularity`` is the SD of the sleep midpoint instead of a mean;
* **subgroup transitions**: the label held at the end of each period
  (``none`` if none), and how often each label follows each other one.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from statistics import fmean, pstdev
from typing import Any

from services.study.collect import PatientRecord
from services.study.effects import mean_difference
from services.study.spec import Endpoint
from services.study.survival import SurvivalCurve, cox_hazard_ratio, kaplan_meier, logrank

_DAY = timedelta(days=1)


@dataclass(frozen=True)
class Subject:
    """An included patient: the record, the arm, and the subgroup labels at the landmark."""

    record: PatientRecord
    arm: str
    subgroups: tuple[str, ...]


def _days(delta: timedelta) -> float:
    return delta / _DAY


@dataclass
class TimeToEventResult:
    """Per-patient times, KM curves per arm, and each arm against the reference."""

    rows: list[dict[str, Any]]
    curves: dict[str, SurvivalCurve]
    comparisons: list[dict[str, Any]]
    left_out: dict[str, int]


def time_to_event(
    subjects: Sequence[Subject], endpoint: Endpoint, reference: str, cut: datetime | None
) -> TimeToEventResult:
    """Kaplan-Meier per arm, log-rank and Cox hazard ratio of each arm against ``reference``."""
    kinds = set(endpoint.outcomes)
    rows: list[dict[str, Any]] = []
    left_out: Counter[str] = Counter()
    for subject in subjects:
        record = subject.record
        end = record.last_observed if cut is None else min(record.last_observed, cut)
        onsets = [o.observed_at for o in record.outcomes if o.outcome in kinds]
        if any(t < record.landmark for t in onsets):
            left_out["event before the landmark"] += 1
            continue
        after = [t for t in onsets if t >= record.landmark]
        if after and (cut is None or after[0] < cut):
            time, event = _days(after[0] - record.landmark), 1
        else:
            time, event = _days(end - record.landmark), 0
        if time <= 0 and not event:
            left_out["no follow-up after the landmark"] += 1
            continue
        rows.append(
            {
                "patient_id": record.patient_id,
                "arm": subject.arm,
                "subgroups": ";".join(subject.subgroups) or "none",
                "time_days": round(max(time, 0.0), 4),
                "event": event,
            }
        )
    curves = {
        arm: kaplan_meier(
            [r["time_days"] for r in rows if r["arm"] == arm],
            [r["event"] for r in rows if r["arm"] == arm],
        )
        for arm in sorted({r["arm"] for r in rows})
    }
    comparisons = [
        _compare_survival(rows, arm, reference, "all")
        for arm in curves
        if arm != reference and reference in curves
    ]
    if endpoint.by_subgroup:
        # A patient can hold several labels (a specifier and a cluster): compare within each.
        held = {r["patient_id"]: set(r["subgroups"].split(";")) for r in rows}
        for label in sorted(set().union(*held.values()) if held else ()):
            within = [r for r in rows if label in held[r["patient_id"]]]
            arms = {r["arm"] for r in within}
            for arm in sorted(arms - {reference}):
                if reference in arms:
                    comparisons.append(_compare_survival(within, arm, reference, label))
    return TimeToEventResult(rows, curves, comparisons, dict(left_out))


def _compare_survival(
    rows: Sequence[Mapping[str, Any]], arm: str, reference: str, subgroup: str
) -> dict[str, Any]:
    pair = [r for r in rows if r["arm"] in (arm, reference)]
    times = [r["time_days"] for r in pair]
    events = [r["event"] for r in pair]
    group = [int(r["arm"] == arm) for r in pair]
    test = logrank(times, events, group)
    hr = cox_hazard_ratio(times, events, group)
    finite = hr.estimable and math.isfinite(hr.upper)
    return {
        "arm": arm,
        "reference": reference,
        "subgroup": subgroup,
        "n": sum(group),
        "n_reference": len(group) - sum(group),
        "events": sum(e for e, g in zip(events, group, strict=True) if g),
        "events_reference": sum(e for e, g in zip(events, group, strict=True) if not g),
        "hazard_ratio": round(hr.hazard_ratio, 6) if hr.estimable else None,
        "hr_lower_95": round(hr.lower, 6) if finite else None,
        "hr_upper_95": round(hr.upper, 6) if finite else None,
        "hr_p_value": hr.p_value if hr.estimable else None,
        "hr_estimable": hr.estimable,
        "logrank_chi2": round(test.chi2, 6),
        "logrank_p_value": test.p_value,
        "method": "Cox partial likelihood (Breslow ties), Wald 95 % CI; log-rank test",
    }


@dataclass
class ChangeResult:
    """Per-patient changes, and each arm's mean difference from the reference."""

    rows: list[dict[str, Any]]
    comparisons: list[dict[str, Any]]
    left_out: dict[str, int]


def score_change(
    subjects: Sequence[Subject],
    endpoint: Endpoint,
    reference: str,
    *,
    resamples: int,
    seed: int,
) -> ChangeResult:
    """Change of the endpoint's instrument from the landmark to the end of follow-up."""
    rows: list[dict[str, Any]] = []
    left_out: Counter[str] = Counter()
    for subject in subjects:
        record = subject.record
        start = record.landmark - timedelta(days=endpoint.baseline_days)
        stop = record.landmark + timedelta(days=endpoint.follow_up_days)
        ratings = [(t, v) for t, i, v in record.scores if i == endpoint.instrument]
        before = [r for r in ratings if start <= r[0] <= record.landmark]
        after = [r for r in ratings if record.landmark < r[0] <= stop]
        if not before or not after:
            left_out["no baseline rating" if not before else "no follow-up rating"] += 1
            continue
        rows.append(
            {
                "patient_id": record.patient_id,
                "arm": subject.arm,
                "subgroups": ";".join(subject.subgroups) or "none",
                "baseline": before[-1][1],
                "follow_up": after[-1][1],
                "follow_up_days": round(_days(after[-1][0] - record.landmark), 3),
                "change": after[-1][1] - before[-1][1],
            }
        )
    return ChangeResult(rows, _compare_means(rows, reference, resamples, seed), dict(left_out))


def _period_value(series: Sequence[tuple[datetime, float]], feature: str) -> float:
    values = [v for _, v in series]
    return pstdev(values) if feature == "sleep_irregularity" else fmean(values)


def digital_change(
    subjects: Sequence[Subject],
    endpoint: Endpoint,
    reference: str,
    *,
    resamples: int,
    seed: int,
) -> ChangeResult:
    """Change of a daily wearable feature from the baseline days to follow-up."""
    assert endpoint.feature is not None
    feature = endpoint.feature
    source = "sleep_midpoint" if feature == "sleep_irregularity" else feature
    rows: list[dict[str, Any]] = []
    left_out: Counter[str] = Counter()
    for subject in subjects:
        record = subject.record
        series = record.days.get(source, [])
        start = record.landmark - timedelta(days=endpoint.baseline_days)
        stop = record.landmark + timedelta(days=endpoint.follow_up_days)
        before = [s for s in series if start < s[0] <= record.landmark]
        after = [s for s in series if record.landmark < s[0] <= stop]
        if len(before) < endpoint.min_days or len(after) < endpoint.min_days:
            left_out[f"fewer than {endpoint.min_days} days with {source}"] += 1
            continue
        base, follow = _period_value(before, feature), _period_value(after, feature)
        rows.append(
            {
                "patient_id": record.patient_id,
                "arm": subject.arm,
                "subgroups": ";".join(subject.subgroups) or "none",
                "baseline": round(base, 6),
                "follow_up": round(follow, 6),
                "baseline_days": len(before),
                "follow_up_days": len(after),
                "change": round(follow - base, 6),
            }
        )
    return ChangeResult(rows, _compare_means(rows, reference, resamples, seed), dict(left_out))


def _compare_means(
    rows: Sequence[Mapping[str, Any]], reference: str, resamples: int, seed: int
) -> list[dict[str, Any]]:
    ref = [float(r["change"]) for r in rows if r["arm"] == reference]
    comparisons = []
    for arm in sorted({r["arm"] for r in rows} - {reference}):
        values = [float(r["change"]) for r in rows if r["arm"] == arm]
        if len(values) < 2 or len(ref) < 2:
            comparisons.append(
                {
                    "arm": arm,
                    "reference": reference,
                    "n": len(values),
                    "n_reference": len(ref),
                    "estimate": None,
                    "note": "fewer than 2 patients in a group",
                }
            )
            continue
        diff = mean_difference(values, ref, resamples=resamples, seed=seed)
        comparisons.append(
            {
                "arm": arm,
                "reference": reference,
                "n": diff.n,
                "n_reference": diff.n_reference,
                "mean_change": round(diff.mean, 6),
                "mean_change_reference": round(diff.mean_reference, 6),
                "difference": round(diff.estimate, 6),
                "welch_lower_95": round(diff.lower, 6),
                "welch_upper_95": round(diff.upper, 6),
                "bootstrap_lower_95": None
                if diff.boot_lower is None
                else round(diff.boot_lower, 6),
                "bootstrap_upper_95": None
                if diff.boot_upper is None
                else round(diff.boot_upper, 6),
                "hedges_g": None if diff.hedges_g is None else round(diff.hedges_g, 6),
                "method": "difference of mean changes (arm - reference); Welch and percentile "
                f"bootstrap ({resamples} resamples) 95 % CIs; Hedges' g",
            }
        )
    return comparisons


@dataclass
class TransitionResult:
    """Labels per period and the transition counts between consecutive periods."""

    labels: list[str]
    counts: dict[tuple[str, str], int]
    periods: int
    rows: list[dict[str, Any]]

    def matrix(self) -> list[list[int]]:
        """Counts as a matrix: row = label in one period, column = label in the next."""
        return [[self.counts.get((a, b), 0) for b in self.labels] for a in self.labels]

    def stability(self) -> float | None:
        """The share of transitions that keep the label."""
        total = sum(self.counts.values())
        same = sum(c for (a, b), c in self.counts.items() if a == b)
        return None if total == 0 else same / total


def subgroup_transitions(subjects: Sequence[Subject], endpoint: Endpoint) -> TransitionResult:
    """Each patient's label in the scheme at the end of every period, and the transitions."""
    assert endpoint.scheme is not None
    rows: list[dict[str, Any]] = []
    counts: Counter[tuple[str, str]] = Counter()
    periods = 0
    for subject in subjects:
        record = subject.record
        span = _days(record.last_observed - record.index)
        n = int(span // endpoint.period_days)
        periods = max(periods, n)
        previous = None
        for p in range(1, n + 1):
            moment = record.index + timedelta(days=p * endpoint.period_days)
            label = record.labels_at(moment, endpoint.scheme).get(endpoint.scheme, "none")
            rows.append(
                {
                    "patient_id": record.patient_id,
                    "arm": subject.arm,
                    "period": p,
                    "period_end": moment.isoformat(),
                    "label": label,
                }
            )
            if previous is not None:
                counts[(previous, label)] += 1
            previous = label
    labels = sorted({r["label"] for r in rows}, key=lambda x: (x == "none", x))
    return TransitionResult(labels, dict(counts), periods, rows)
