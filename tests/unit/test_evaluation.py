"""The evaluation: honest metrics, thresholds that keep the alert budget, a card that is written."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.evaluate import evaluate, table
from services.evaluation.metrics import average_precision, bootstrap, f_beta, roc_auc
from services.evaluation.protocol import choose_threshold, operating_point
from services.evaluation.report import METHODS, METRICS
from services.evaluation.runs import RISK_RULE, alert_days, run_cohort
from services.evaluation.series import DAYS_PER_MONTH, at_risk, patient_series
from services.simulator import SimulationConfig, simulate_cohort
from streams.config import CoreConfig, RiskConfig
from streams.models.features import INPUTS
from streams.models.snapshot import ModelSnapshot

START = datetime(2026, 1, 5, tzinfo=UTC)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.booleans()), min_size=2, max_size=40))
def test_roc_auc_is_the_share_of_correctly_ordered_pairs(pairs: list[tuple[int, bool]]) -> None:
    scores = [float(s) for s, _ in pairs]
    labels = [y for _, y in pairs]
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    if not pos or not neg:
        assert roc_auc(scores, labels) != roc_auc(scores, labels)  # NaN
        return
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    assert roc_auc(scores, labels) == pytest.approx(wins / (len(pos) * len(neg)))
    assert 0.0 <= average_precision(scores, labels) <= 1.0


def test_a_perfect_ranking_has_pr_auc_one_and_a_constant_score_its_prevalence() -> None:
    labels = [False] * 18 + [True] * 2
    assert average_precision(list(range(20)), labels) == 1.0
    assert average_precision([0.5] * 20, labels) == pytest.approx(0.1)
    assert f_beta(tp=0, fp=0, fn=0) == 0.0


def test_the_bootstrap_is_reproducible_by_seed() -> None:
    values = [0.1, 0.5, 0.9, 0.3, 0.7]

    def mean(idx: list[int]) -> dict[str, float]:
        return {"mean": sum(values[i] for i in idx) / len(idx)}

    first = bootstrap(mean, 5, resamples=50, seed=3)
    assert first == bootstrap(mean, 5, resamples=50, seed=3)
    assert first["mean"].low <= first["mean"].value <= first["mean"].high


def _model() -> ModelSnapshot:
    """A hand-made model (no training): risk rises with resting heart rate and falling HRV."""
    weights = [0.0] * len(INPUTS)
    weights[INPUTS.index("resting_hr_z")] = 1.0
    weights[INPUTS.index("hrv_rmssd_z")] = -1.0
    return ModelSnapshot(
        version=1,
        features=INPUTS,
        weights=tuple(weights),
        bias=-2.5,
        means=(0.0,) * len(INPUTS),
        scales=(1.0,) * len(INPUTS),
    )


def test_the_threshold_chosen_for_a_budget_keeps_the_cores_alerts_within_it() -> None:
    config = SimulationConfig(relapse_hazard_scale=2.0)
    cohort = simulate_cohort(5, 75, 21, START, samples_per_hour=2, config=config)
    risk, budget = RiskConfig(), 0.5
    first = run_cohort(cohort, CoreConfig(risk=risk, model=_model()))
    pids = [pid for pid in sorted(first.patients) if first.patients[pid].days]
    patients = [patient_series(pid, first.patients[pid], first.end) for pid in pids]
    scores = [[p or 0.0 for p in first.patients[pid].probabilities()] for pid in pids]
    known = [p for p in patients if p is not None]
    point = choose_threshold(known, scores, risk, budget)
    assert point.alerts_pm <= budget
    assert (
        max(operating_point(known, scores, risk, t).alerts_pm for t in (0.05, 0.08, 0.1, 0.15))
        > budget
    )  # not vacuous: some thresholds would break the budget
    chosen = risk.model_copy(
        update={"alert_threshold": point.threshold, "close_threshold": point.threshold * 0.8}
    )
    second = run_cohort(cohort, CoreConfig(risk=chosen, model=_model()))
    openings = days = 0
    for run in second.patients.values():
        risky = {d for d in run.days if at_risk(run.truth, d)}
        openings += sum(1 for d in alert_days(run.alerts, frozenset({RISK_RULE})) if d in risky)
        days += len(risky)
    assert openings / (days / DAYS_PER_MONTH) == pytest.approx(point.alerts_pm)


def test_a_tiny_evaluation_runs_through_the_core_and_writes_the_card(tmp_path: Path) -> None:
    report = evaluate(seeds=(4,), patients=3, days=60, out_dir=tmp_path, resamples=20, workers=1)
    assert report.patients == 3 and report.days > 50
    assert all(s.core_matches_rule for s in report.seeds)
    for method in METHODS:
        for metric in METRICS:
            report.interval(method, metric)  # every cell exists (NaN where undefined)
    card = (tmp_path / "model-card.md").read_text()
    assert "| relapse-risk model |" in card and "Limits and failure modes" in card
    for image in ("model-roc-pr.png", "model-burden.png", "model-lead-time.png"):
        assert (tmp_path / "img" / image).read_bytes()[:4] == b"\x89PNG"
    assert "method" in table(report)
