"""Given these wearable days and this model version, then these risk assessments and alerts."""

from __future__ import annotations

import pickle
from datetime import date, timedelta

import pytest

from schemas.events import Alert, CourseUpdate, RiskAssessment
from streams import CoreConfig, PatientState, process, state_size
from streams.config import RiskConfig
from streams.models.features import INPUTS
from streams.models.snapshot import ModelSnapshot
from tests.unit.streams.core_history import alerts, local, phq9, replay, updates, wearable_day

D0 = date(2026, 2, 1)
BERLIN = "Europe/Berlin"


def sleep_model(version: int = 1) -> ModelSnapshot:
    """A model whose risk rises as sleep falls below the patient's baseline."""
    weights = [0.0] * len(INPUTS)
    weights[INPUTS.index("sleep_duration_z")] = -1.5
    weights[INPUTS.index("self_report_level")] = 3.0
    return ModelSnapshot(
        name="relapse_risk",
        version=version,
        features=INPUTS,
        weights=tuple(weights),
        bias=-3.0,
        means=(0.0,) * len(INPUTS),
        scales=(1.0,) * len(INPUTS),
    )


CONFIG = CoreConfig(
    model=sleep_model(),
    risk=RiskConfig(alert_threshold=0.3, close_threshold=0.2, alert_days=2, close_days=2),
)


def history(short_from: int = 12, short_to: int = 18, days: int = 26) -> list:
    plan = [
        {"sleep": 270.0} if short_from <= n < short_to else {"sleep": 450.0} for n in range(days)
    ]
    return [wearable_day(D0 + timedelta(days=n), **values) for n, values in enumerate(plan)]


def risks(outputs: list) -> list[RiskAssessment]:
    return [o for o in outputs if isinstance(o, RiskAssessment)]


def test_without_a_model_the_core_tracks_anomalies_but_assesses_no_risk() -> None:
    _, outputs = replay(history())
    assert risks(outputs) == [] and alerts(outputs, "relapse_risk") == []
    rates = updates(outputs, "anomaly_rate")
    assert rates and all(0.0 <= u.value <= 1.0 for u in rates)  # type: ignore[operator]
    assert rates[0].day == D0 + timedelta(days=7)  # the first day with a 7-day baseline
    assert any(u.status and "sleep_duration down" in u.status for u in rates)


def test_every_assessed_day_has_a_risk_assessment_naming_its_model() -> None:
    _, outputs = replay(history(), CONFIG)
    assessed = risks(outputs)
    days = [u.day for u in updates(outputs, "anomaly_rate")]
    assert len(assessed) == len(days) > 10
    for assessment in assessed:
        assert 0.0 <= assessment.probability <= 1.0
        assert (assessment.model_name, assessment.model_version) == ("relapse_risk", 1)
        assert assessment.horizon_days == 28
        assert {c.feature for c in assessment.contributions} == set(INPUTS)
        sizes = [abs(c.contribution) for c in assessment.contributions]
        assert sizes == sorted(sizes, reverse=True)
        assert RiskAssessment.model_validate_json(assessment.model_dump_json()) == assessment
    worst = max(assessed, key=lambda a: a.probability)
    assert worst.contributions[0].feature == "sleep_duration_z"
    assert worst.contributions[0].contribution > 0


def test_sustained_risk_opens_the_relapse_risk_alert_and_recovery_closes_it() -> None:
    _, outputs = replay(history(), CONFIG)
    changes = alerts(outputs, "relapse_risk")
    assert [(a.status, a.severity) for a in changes] == [("open", "warning"), ("closed", "warning")]
    opened, closed = changes
    assert opened.alert_id == closed.alert_id
    assert opened.evidence["model_version"] == 1 and opened.config_version == CONFIG.version
    above = [a for a in risks(outputs) if a.probability >= 0.3]
    assert opened.observed_at == above[1].observed_at  # the second day in a row above
    assert closed.observed_at > above[-1].observed_at


def test_the_top_contributions_can_be_limited() -> None:
    config = CONFIG.model_copy(update={"risk": CONFIG.risk.model_copy(update={"contributions": 3})})
    _, outputs = replay(history(days=12), config)
    assert {len(a.contributions) for a in risks(outputs)} == {3}


def test_the_state_checkpoints_mid_history_and_scores_identically_after() -> None:
    events = history()
    state, _ = replay(events[:15], CONFIG)
    for copy in (
        pickle.loads(pickle.dumps(state)),
        PatientState.model_validate_json(state.model_dump_json()),
    ):
        assert copy == state
        rest_a = [o.model_dump_json() for o in replay(events[15:], CONFIG, copy)[1]]
        rest_b = [o.model_dump_json() for o in replay(events[15:], CONFIG, state)[1]]
        assert rest_a == rest_b and any('"risk_assessment"' in o for o in rest_a)


def test_the_same_events_and_versions_give_the_same_outputs_bit_for_bit() -> None:
    first = [o.model_dump_json() for o in replay(history(), CONFIG)[1]]
    second = [o.model_dump_json() for o in replay(history(), CONFIG)[1]]
    assert first == second


def test_a_replay_with_the_same_version_sequence_reproduces_the_assessments() -> None:
    events = history()
    v1, v2 = CONFIG, CONFIG.with_model(sleep_model(version=2).model_copy(update={"bias": -2.0}))

    def run() -> list[str]:
        state, outputs = PatientState(), []
        for n, event in enumerate(events):
            state, emitted = process(state, event, v1 if n < 14 else v2)
            outputs += emitted
        return [o.model_dump_json() for o in outputs if isinstance(o, RiskAssessment)]

    live, replayed = run(), run()
    assert live == replayed
    versions = [RiskAssessment.model_validate_json(o).model_version for o in live]
    assert versions == sorted(versions) and set(versions) == {1, 2}


def test_ratings_feed_the_model_through_the_course() -> None:
    events = history(short_from=99)  # sleep never short
    events += [phq9(local(D0 + timedelta(days=n), 20, BERLIN), 22) for n in (10, 17)]
    events.sort(key=lambda e: e.observed_at)
    _, outputs = replay(events, CONFIG)
    levels = [
        next(c.value for c in a.contributions if c.feature == "self_report_level")
        for a in risks(outputs)
    ]
    assert max(levels) == pytest.approx(22 / 27, abs=1e-4)
    assert alerts(outputs, "relapse_risk")  # a PHQ-9 of 22 is enough for this model


def test_three_months_with_a_model_keep_the_state_under_8_kb() -> None:
    events = [wearable_day(D0 + timedelta(days=n)) for n in range(90)]
    events += [phq9(local(D0 + timedelta(days=n), 10, BERLIN), 9) for n in range(0, 90, 7)]
    state, outputs = replay(sorted(events, key=lambda e: e.observed_at), CONFIG)
    assert state_size(state) <= 8 * 1024
    assert len(risks(outputs)) > 70
    assert all(isinstance(o, (CourseUpdate, RiskAssessment, Alert)) for o in outputs)
