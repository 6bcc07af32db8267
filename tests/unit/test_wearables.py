"""The wearable metric catalogue: canonical units, per-sample ranges and lookup."""

from __future__ import annotations

import dataclasses
import math
import pickle
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.units import ImplausibleValue, UnitError
from schemas.wearables import METRICS, Metric, UnknownMetric, get_metric

EXPECTED = {
    # id: (canonical UCUM unit, low, high per sample)
    "sleep": ("min", 0.0, 1440.0),
    "steps": ("{steps}", 0.0, 100_000.0),
    "heart_rate": ("/min", 20.0, 250.0),
    "hrv_rmssd": ("ms", 1.0, 500.0),
    "active_minutes": ("min", 0.0, 1440.0),
}


def test_catalogue_holds_every_metric_with_its_unit_and_range() -> None:
    assert {m.id: (m.unit, m.low, m.high) for m in METRICS.values()} == EXPECTED
    for metric in METRICS.values():
        assert metric.description
        assert metric.accepted_units[0] == metric.unit


def test_the_catalogue_cannot_be_changed_at_run_time() -> None:
    with pytest.raises(TypeError):
        METRICS["steps"] = METRICS["sleep"]  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        METRICS["heart_rate"].high = 400.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("metric_id", "value", "unit", "expected"),
    [
        ("sleep", 420.0, "min", 420.0),
        ("sleep", 7.0, "h", 420.0),
        ("sleep", 4.1, "h", 246.0),  # 4.1 * 60 is 245.99999999999997 in binary
        ("sleep", 25_200.0, "s", 420.0),
        ("sleep", 90.0, "s", 1.5),
        ("steps", 1234.0, "{steps}", 1234.0),
        ("steps", 1234.0, "1", 1234.0),
        ("steps", 1234.0, "count", 1234.0),
        ("steps", 1234.0, "{count}", 1234.0),
        ("steps", 1234.0, "steps", 1234.0),
        ("steps", 1234.0, "Steps", 1234.0),
        ("heart_rate", 64.0, "/min", 64.0),
        ("heart_rate", 64.0, "bpm", 64.0),
        ("heart_rate", 64.0, "BPM", 64.0),
        ("heart_rate", 64.0, "{beats}/min", 64.0),
        ("heart_rate", 64.0, "1/min", 64.0),
        ("hrv_rmssd", 42.0, "ms", 42.0),
        ("hrv_rmssd", 0.042, "s", 42.0),
        ("active_minutes", 30.0, "min", 30.0),
        ("active_minutes", 0.5, "h", 30.0),
    ],
)
def test_supplied_units_convert_to_the_canonical_unit(
    metric_id: str, value: float, unit: str, expected: float
) -> None:
    result = get_metric(metric_id).to_canonical(value, unit)
    assert result == expected and type(result) is float


def test_a_unit_that_cannot_be_converted_names_the_metric_and_the_accepted_units() -> None:
    with pytest.raises(UnitError) as caught:
        get_metric("hrv_rmssd").to_canonical(40.0, "bpm")
    assert str(caught.value) == (
        "HRV (RMSSD): unit 'bpm' cannot be converted; accepted: ms, s (converted to ms)"
    )


@pytest.mark.parametrize(
    ("metric_id", "unit"),
    [("sleep", "{steps}"), ("steps", "min"), ("heart_rate", "ms"), ("hrv_rmssd", "min")],
)
def test_units_of_another_metric_are_rejected(metric_id: str, unit: str) -> None:
    metric = get_metric(metric_id)
    with pytest.raises(UnitError, match=f"accepted: {metric.accepted_units[0]}"):
        metric.to_canonical(1.0, unit)


@pytest.mark.parametrize(
    ("metric_id", "value", "unit", "message"),
    [
        (
            "heart_rate",
            19.0,
            "/min",
            "heart rate: 19 /min is outside the plausible range 20-250 /min per sample; "
            "check the value and its unit",
        ),
        (
            "heart_rate",
            251.0,
            "bpm",
            "heart rate: 251 bpm (= 251 /min) is outside the plausible range 20-250 /min "
            "per sample; check the value and its unit",
        ),
        (
            "sleep",
            1441.0,
            "min",
            "sleep: 1441 min is outside the plausible range 0-1440 min per sample; "
            "check the value and its unit",
        ),
        (
            "sleep",
            420.0,
            "h",  # minutes sent as hours
            "sleep: 420 h (= 25200 min) is outside the plausible range 0-1440 min per sample; "
            "check the value and its unit",
        ),
        (
            "steps",
            -5.0,
            "count",
            "steps: -5 count (= -5 {steps}) is outside the plausible range 0-100000 {steps} "
            "per sample; check the value and its unit",
        ),
        (
            "hrv_rmssd",
            42.0,
            "s",  # milliseconds sent as seconds
            "HRV (RMSSD): 42 s (= 42000 ms) is outside the plausible range 1-500 ms per sample; "
            "check the value and its unit",
        ),
    ],
)
def test_impossible_samples_are_rejected_naming_metric_value_and_range(
    metric_id: str, value: float, unit: str, message: str
) -> None:
    with pytest.raises(ImplausibleValue) as caught:
        get_metric(metric_id).to_canonical(value, unit)
    assert str(caught.value) == message
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_samples_are_rejected(value: float) -> None:
    with pytest.raises(ImplausibleValue, match=r"^steps: value .* is not a finite number$"):
        get_metric("steps").to_canonical(value, "{steps}")


@pytest.mark.parametrize("metric", list(METRICS.values()), ids=list(METRICS))
def test_range_limits_are_inclusive(metric: Metric) -> None:
    assert metric.to_canonical(metric.low, metric.unit) == metric.low
    assert metric.to_canonical(metric.high, metric.unit) == metric.high


@pytest.mark.parametrize(
    ("name", "metric_id"),
    [
        ("sleep", "sleep"),
        ("Sleep Duration", "sleep"),
        ("steps", "steps"),
        ("step_count", "steps"),
        ("heart_rate", "heart_rate"),
        ("Heart Rate", "heart_rate"),
        ("HR", "heart_rate"),
        ("hrv", "hrv_rmssd"),
        ("RMSSD", "hrv_rmssd"),
        ("active-minutes", "active_minutes"),
    ],
)
def test_lookup_by_id_name_or_alias_is_case_insensitive(name: str, metric_id: str) -> None:
    assert get_metric(name).id == metric_id


def test_an_unknown_metric_lists_the_accepted_ids() -> None:
    with pytest.raises(UnknownMetric) as caught:
        get_metric("skin_temperature")
    message = str(caught.value)
    assert message.startswith("unknown wearable metric 'skin_temperature'; accepted: ")
    for metric_id in METRICS:
        assert metric_id in message
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("metric", list(METRICS.values()), ids=list(METRICS))
def test_metrics_pickle_and_still_work(metric: Metric) -> None:
    copy = pickle.loads(pickle.dumps(metric))
    assert copy == metric and hash(copy) == hash(metric)
    unit, factor = metric.conversions[-1]
    value = (metric.low + metric.high) / 2 / factor
    assert copy.to_canonical(value, unit) == metric.to_canonical(value, unit)
    error = pickle.loads(pickle.dumps(UnknownMetric("unknown")))
    assert type(error) is UnknownMetric


def _unit_cases() -> list[tuple[Metric, str, float]]:
    return [(m, unit, factor) for m in METRICS.values() for unit, factor in m.conversions]


@given(case=st.sampled_from(_unit_cases()), fraction=st.floats(0.0, 1.0))
def test_conversion_round_trips_over_the_plausible_range(
    case: tuple[Metric, str, float], fraction: float
) -> None:
    metric, unit, factor = case
    canonical = metric.low + fraction * (metric.high - metric.low)
    back = metric.to_canonical(canonical / factor, unit)
    assert math.isclose(back, canonical, rel_tol=1e-9, abs_tol=1e-8)


@given(metric=st.sampled_from(list(METRICS.values())), data=st.data())
def test_any_finite_plausible_sample_converts_unchanged(
    metric: Metric, data: st.DataObject
) -> None:
    value = data.draw(st.floats(metric.low, metric.high))
    assert metric.to_canonical(value, metric.unit) == value


@given(metric=st.sampled_from(list(METRICS.values())), data=st.data())
def test_any_sample_outside_the_range_is_rejected(metric: Metric, data: st.DataObject) -> None:
    value = data.draw(
        st.floats(max_value=metric.low, exclude_max=True)
        | st.floats(min_value=metric.high, exclude_min=True)
    )
    with pytest.raises(ImplausibleValue, match=f"^{re.escape(metric.name)}: "):
        metric.to_canonical(value, metric.unit)
