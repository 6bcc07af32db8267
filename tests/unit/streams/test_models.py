"""The risk models' pure parts: drift, anomaly rate, inputs, learner, snapshot, labels, alert."""

from __future__ import annotations

import json
import math
import pickle
import random
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from streams.config import CoreConfig, RiskConfig
from streams.course import InstrumentCourse
from streams.models.anomaly import AnomalyRate
from streams.models.drift import Cusum
from streams.models.features import INPUTS, RiskFeatures, rating_inputs
from streams.models.labels import DelayedLabeller
from streams.models.logistic import OnlineLogistic
from streams.models.risk_rule import RiskAlert, alert_spans
from streams.models.snapshot import ModelSnapshot, ModelTimeline, sigmoid
from streams.wearable_days import ClosedDay

DAY_US = 86_400_000_000
D0 = date(2026, 3, 1)


def closed(n: int, deviations: dict[str, float | None]) -> ClosedDay:
    day = D0 + timedelta(days=n)
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    return ClosedDay(day, end, True, 1.0, 0.0, {}, {}, deviations)


# --------------------------------------------------------------------------- drift


def test_cusum_finds_a_one_sd_shift_within_about_a_week_and_rarely_cries_wolf() -> None:
    rng = random.Random(7)
    stable = Cusum()
    false_alarms = sum(stable.learn_one(rng.gauss(0, 1), k=0.5, h=4.0) != 0 for _ in range(1000))
    assert false_alarms <= 1000 / 168 * 2 + 2  # about one a half-year each way (Montgomery 2009)
    shifted = Cusum()
    days = next(
        n for n in range(1, 60) if shifted.learn_one(1.0 + rng.gauss(0, 1), k=0.5, h=4.0) == 1
    )
    assert days <= 20


def test_cusum_is_bounded_and_comes_back_after_the_change() -> None:
    cusum = Cusum()
    for _ in range(100):
        cusum.learn_one(5.0, k=0.5, h=4.0)
    assert cusum.up == 8.0 and cusum.statistic(4.0) == 2.0
    days_back = next(
        n for n in range(1, 50) if cusum.learn_one(0.0, k=0.5, h=4.0) == 0 and cusum.up <= 4.0
    )
    assert days_back <= 9


# --------------------------------------------------------------------------- anomaly rate


def test_anomaly_rate_counts_feature_days_beyond_two_sd_over_the_window() -> None:
    rate = AnomalyRate()
    for _ in range(14):
        rate.learn_one([0.1, -0.3, 0.5, None], z=2.0, days=14)
    assert rate.value() == 0.0
    for _ in range(7):
        rate.learn_one([2.5, -3.0, 0.5, None], z=2.0, days=14)
    assert rate.value() == pytest.approx(14 / 42)
    rate.skip(20, days=14)
    assert rate.value() == 0.0 and len(rate.recent) == 14


# --------------------------------------------------------------------------- inputs


def test_inputs_wait_for_a_baseline_then_come_every_day_in_calendar_order() -> None:
    tracker, config = RiskFeatures(), RiskConfig()
    assert tracker.learn_one(closed(0, {"steps": None}), {}, config) is None
    first = tracker.learn_one(closed(1, {"steps": -1.0}), {}, config)
    assert first is not None and set(first.values) == set(INPUTS)
    assert tracker.learn_one(closed(1, {"steps": -1.0}), {}, config) is None  # same day again
    later = tracker.learn_one(closed(30, {"steps": -1.0}), {}, config)
    assert later is not None
    # a 28-day gap fades the smoothed deviation towards the baseline before the new day
    assert abs(later.values["steps_z"]) < abs(first.values["steps_z"]) * 1.5


def test_inputs_are_bounded_whatever_the_deviations() -> None:
    tracker, config = RiskFeatures(), RiskConfig()
    for n in range(60):
        inputs = tracker.learn_one(closed(n, {"resting_hr": 1e6, "steps": -1e6}), {}, config)
        assert inputs is not None
    assert inputs.values["resting_hr_z"] <= config.z_clip
    assert inputs.values["steps_z"] >= -config.z_clip
    assert abs(inputs.values["resting_hr_drift"]) <= 2.0
    assert 0.0 <= inputs.values["anomaly_rate"] <= 1.0


def test_ratings_count_only_when_observed_before_the_days_end() -> None:
    course = InstrumentCourse("phq9")
    course.update(4, None, 0, CoreConfig())
    course.update(16, None, 10 * DAY_US, CoreConfig())  # after the day scored below
    inputs = rating_inputs({"phq9": course}, 5 * DAY_US, RiskConfig())
    assert inputs == dict.fromkeys(inputs, 0.0)
    inputs = rating_inputs({"phq9": course}, 11 * DAY_US, RiskConfig())
    assert inputs["self_report_level"] == pytest.approx(16 / 27)
    assert inputs["self_report_change"] == pytest.approx(12 / 5.5)
    stale = rating_inputs({"phq9": course}, 40 * DAY_US, RiskConfig())
    assert stale["self_report_level"] == 0.0 and stale["report_gap_weeks"] == pytest.approx(
        30 / 7, abs=1e-4
    )


def test_clinician_ratings_are_separate_from_self_reports() -> None:
    madrs = InstrumentCourse("madrs")
    madrs.update(10, None, 0, CoreConfig())
    madrs.update(31, None, DAY_US, CoreConfig())
    inputs = rating_inputs({"madrs": madrs}, 2 * DAY_US, RiskConfig())
    assert inputs["clinician_level"] == pytest.approx(31 / 60)
    assert inputs["clinician_change"] == pytest.approx(3.0)  # capped at 3 SD
    assert inputs["self_report_level"] == 0.0 and inputs["report_gap_weeks"] == 0.0


# --------------------------------------------------------------------------- snapshot


def test_a_snapshot_rejects_inconsistent_or_non_finite_numbers_by_name() -> None:
    with pytest.raises(ValidationError, match="weights has 1 entries but features has 2"):
        ModelSnapshot(features=("a", "b"), weights=(1.0,), means=(0, 0), scales=(1, 1))
    with pytest.raises(ValidationError, match="scale of 'a'"):
        ModelSnapshot(features=("a",), weights=(1.0,), means=(0.0,), scales=(0.0,))
    with pytest.raises(ValidationError, match="weights of 'a' is nan"):
        ModelSnapshot(features=("a",), weights=(math.nan,), means=(0.0,), scales=(1.0,))


@given(st.lists(st.floats(-50, 50), min_size=3, max_size=3), st.floats(-5, 5))
def test_contributions_add_up_to_the_log_odds(values: list[float], bias: float) -> None:
    model = ModelSnapshot(
        features=("a", "b", "c"),
        weights=(0.5, -2.0, 1.0),
        bias=bias,
        means=(0.1, 0.0, -1.0),
        scales=(1.0, 2.0, 0.5),
    )
    x = dict(zip(("a", "b", "c"), values, strict=True))
    probability = model.predict_proba_one(x)
    assert 0.0 <= probability <= 1.0
    terms = model.contributions(x)
    assert probability == pytest.approx(sigmoid(bias + sum(c for _, _, c in terms)))


def test_a_snapshot_round_trips_through_json_and_a_timeline_switches_at_publication() -> None:
    v0 = ModelSnapshot.initial(INPUTS)
    v1 = v0.model_copy(update={"version": 1, "trained_until": datetime(2026, 3, 9, tzinfo=UTC)})
    assert ModelSnapshot.model_validate_json(v1.model_dump_json()) == v1
    assert CoreConfig.from_json(CoreConfig(model=v1).model_dump_json()).model == v1
    timeline = ModelTimeline.of([v0, v1])
    assert timeline.at(datetime(2026, 3, 8, 23, tzinfo=UTC)) is v0
    assert timeline.at(datetime(2026, 3, 10, tzinfo=UTC)) is v1
    with pytest.raises(ValueError, match="one model's versions"):
        ModelTimeline.of([v0, v1.model_copy(update={"name": "other"})])


# --------------------------------------------------------------------------- learner


def _examples(n: int, seed: int) -> list[tuple[dict[str, float], bool]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        y = rng.random() < 0.1
        out.append(({"a": rng.gauss(1.5 if y else 0.0, 1), "b": rng.gauss(0, 1)}, y))
    return out


def test_the_learner_finds_the_informative_input() -> None:
    model = OnlineLogistic(("a", "b"))
    for x, y in _examples(3000, 1):
        model.learn_one(x, y)
    snapshot = model.snapshot(version=1)
    weights = dict(zip(snapshot.features, snapshot.weights, strict=True))
    assert weights["a"] > 0.2 and abs(weights["b"]) < weights["a"] / 4
    assert snapshot.examples == 3000 and 200 < snapshot.positives < 400


def test_the_learner_pickles_mid_stream_and_goes_on_identically() -> None:
    examples = _examples(600, 2)
    model = OnlineLogistic(("a", "b"))
    for x, y in examples[:300]:
        model.learn_one(x, y)
    copy = pickle.loads(pickle.dumps(model))
    clone = model.clone()
    for learner in (model, copy, clone):
        for x, y in examples[300:]:
            learner.learn_one(x, y)
    probe = {"a": 1.0, "b": -0.5}
    assert model.predict_proba_one(probe) == copy.predict_proba_one(probe)
    assert model.predict_proba_one(probe) == clone.predict_proba_one(probe)
    assert model.snapshot(version=2) == copy.snapshot(version=2)


def test_the_learner_is_deterministic() -> None:
    first, second = OnlineLogistic(("a", "b")), OnlineLogistic(("a", "b"))
    for learner in (first, second):
        for x, y in _examples(500, 3):
            learner.learn_one(x, y)
    assert pickle.dumps(first) == pickle.dumps(second)


# --------------------------------------------------------------------------- labels


def test_positives_and_negatives_of_the_same_days_reach_the_learner_together() -> None:
    """No moment when the released days hold more than their true share of positives."""
    labeller = DelayedLabeller(horizon=28 * DAY_US, grace=14 * DAY_US, refractory=56 * DAY_US)
    for patient, onset in (("a", 60), ("b", None), ("c", None), ("d", 90)):
        for d in range(0, 120):
            labeller.add_snapshot(patient, d * DAY_US, (float(d),))
        if onset is not None:
            labeller.add_outcome(patient, onset=onset * DAY_US, received=(onset + 7) * DAY_US)
    for now in range(0, 200):
        for day in labeller.release(now * DAY_US):
            assert day.at + 42 * DAY_US <= now * DAY_US  # never before it is due


def test_an_outcome_handed_over_early_is_not_used_before_it_arrives() -> None:
    """The leak attempt: the outcome is known to the caller, but not yet to psymon."""
    labeller = DelayedLabeller(horizon=28 * DAY_US, grace=0, refractory=56 * DAY_US)
    labeller.add_snapshot("p", 10 * DAY_US, (1.0,))
    labeller.add_outcome("p", onset=20 * DAY_US, received=60 * DAY_US)
    leaked = labeller.release(38 * DAY_US)  # horizon passed, outcome not yet received
    assert [(x.at, x.label) for x in leaked] == [(10 * DAY_US, False)]


def test_a_known_outcome_labels_the_days_before_it_when_due_and_drops_the_episode() -> None:
    labeller = DelayedLabeller(horizon=28 * DAY_US, grace=14 * DAY_US, refractory=56 * DAY_US)
    for d in range(0, 80):
        labeller.add_snapshot("p", d * DAY_US, (float(d),))
    labeller.add_outcome("p", onset=50 * DAY_US, received=55 * DAY_US)
    released = labeller.release(55 * DAY_US)
    # Only the days that are due (42 days passed), positive or not: a positive
    # known early waits like a negative (streams.models.labels, the sampling bias).
    assert [(int(x.x[0]), x.label) for x in released] == [(d, False) for d in range(0, 14)]
    later = labeller.release(200 * DAY_US)
    positive = sorted(int(x.x[0]) for x in later if x.label)
    negative = sorted(int(x.x[0]) for x in later if not x.label)
    assert positive == list(range(22, 50))
    assert negative == list(range(14, 22))  # 50-79: refractory
    assert labeller.pending_count() == 0
    labeller.add_snapshot("p", 60 * DAY_US, (0.0,))  # inside the known episode: not kept
    assert labeller.pending_count() == 0


def test_the_labellers_clock_never_runs_backwards() -> None:
    labeller = DelayedLabeller(horizon=DAY_US, grace=0, refractory=0)
    labeller.release(10)
    with pytest.raises(ValueError, match="cannot run backwards"):
        labeller.release(5)


# --------------------------------------------------------------------------- alert rule


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(0, 1), min_size=1, max_size=60),
    st.integers(1, 4),
    st.integers(1, 4),
)
def test_the_alert_rule_and_its_series_form_agree(
    probabilities: list[float], open_days: int, close_days: int
) -> None:
    risk = RiskConfig(
        alert_threshold=0.5, close_threshold=0.4, alert_days=open_days, close_days=close_days
    )
    config = CoreConfig(risk=risk)
    rule, model = RiskAlert(), ModelSnapshot.initial(INPUTS)
    ends = [datetime(2026, 3, 2, tzinfo=UTC) + timedelta(days=n) for n in range(len(probabilities))]
    changes = []
    for n, (p, end) in enumerate(zip(probabilities, ends, strict=True)):
        for change in rule.observe(p, end.date(), end, "p-1", model, [], config):
            changes.append((change.status, n))
    spans = alert_spans(probabilities, [e.timestamp() for e in ends], risk)
    expected = [("open", a) for a, _ in spans] + [("closed", b) for _, b in spans if b is not None]
    assert sorted(changes, key=lambda c: c[1]) == sorted(expected, key=lambda c: c[1])


def test_the_alert_names_the_model_version_and_its_largest_contributions() -> None:
    config = CoreConfig(risk=RiskConfig(alert_threshold=0.3, close_threshold=0.2, alert_days=1))
    model = ModelSnapshot.initial(INPUTS).model_copy(update={"version": 7})
    end = datetime(2026, 3, 2, tzinfo=UTC)
    terms = [("resting_hr_z", 2.1, 0.9), ("steps_z", -1.0, 0.4), ("coverage_z", 0.0, 0.0)]
    (change,) = RiskAlert().observe(0.42, end.date(), end, "p-1", model, terms, config)
    assert change.severity == "warning" and change.rule == "relapse_risk"
    assert "relapse_risk v7" in change.message and "resting_hr_z (+0.90)" in change.message
    assert change.evidence["model_version"] == 7 and change.evidence["feature_2"] == "steps_z"
    assert "feature_3" not in change.evidence  # no contribution, not named
    json.dumps(change.evidence)


def test_risk_config_requires_hysteresis() -> None:
    with pytest.raises(ValidationError, match="close_threshold"):
        RiskConfig(alert_threshold=0.2, close_threshold=0.3)
