"""The study's own statistics against hand calculations and planted effects."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.study.effects import (
    adjusted_rand_index,
    mean_difference,
    proportion,
    random_ari,
    sensitivity_specificity,
    t_quantile,
)
from services.study.survival import cox_hazard_ratio, kaplan_meier, logrank


def _exponential(
    n: int, hazard_ratio: float, seed: int
) -> tuple[list[float], list[int], list[int]]:
    rng = np.random.default_rng(seed)
    group = rng.integers(0, 2, n)
    onset = rng.exponential(1 / np.where(group == 1, 0.02 * hazard_ratio, 0.02))
    censor = rng.uniform(20, 150, n)
    time = np.round(np.minimum(onset, censor))  # whole days: ties, as in real data
    return time.tolist(), (onset <= censor).astype(int).tolist(), group.tolist()


def test_kaplan_meier_matches_the_product_limit_by_hand() -> None:
    curve = kaplan_meier([6, 6, 6, 7, 10, 13, 16], [1, 1, 0, 1, 0, 1, 1])
    # 7 at risk at day 6, 2 events: 5/7; day 7: 4 at risk, 1 event; day 13: 2 at risk; day 16: 1.
    expected = [1.0, 5 / 7, 5 / 7 * 3 / 4, 5 / 7 * 3 / 4 * 1 / 2, 0.0]
    assert list(curve.times) == [0.0, 6.0, 7.0, 13.0, 16.0]  # the last time is an event
    assert curve.survival == pytest.approx(expected)
    assert curve.at_risk == (7, 7, 4, 2, 1)
    assert curve.median == 13.0
    assert all(
        lo <= s <= hi for s, lo, hi in zip(curve.survival, curve.lower, curve.upper, strict=True)
    )


def test_kaplan_meier_refuses_what_is_not_a_time_or_an_event() -> None:
    censored_last = kaplan_meier([2, 5], [1, 0])
    assert censored_last.times == (0.0, 2.0, 5.0) and censored_last.events == (0, 1, 0)
    assert censored_last.survival[-1] == censored_last.survival[-2] == 0.5
    with pytest.raises(ValueError, match="accepted: 1 \\(event\\) or 0"):
        kaplan_meier([1.0], [2])
    with pytest.raises(ValueError, match="finite times >= 0"):
        kaplan_meier([-1.0], [1])


@pytest.mark.parametrize("planted", [0.5, 1.0, 2.0])
def test_cox_recovers_a_planted_hazard_ratio_within_its_interval(planted: float) -> None:
    times, events, group = _exponential(3000, planted, seed=7)
    hr = cox_hazard_ratio(times, events, group)
    assert hr.lower < planted < hr.upper
    assert hr.upper / hr.lower < 1.5  # a tight interval with ~2,000 events


def test_log_rank_finds_a_difference_only_where_one_was_planted() -> None:
    assert logrank(*_exponential(800, 0.5, seed=3)).p_value < 0.001
    nulls = [logrank(*_exponential(300, 1.0, seed=s)).p_value for s in range(40)]
    assert sum(p < 0.05 for p in nulls) <= 5  # about 5 % by chance


def test_cox_and_log_rank_agree_on_direction() -> None:
    times, events, group = _exponential(500, 0.6, seed=11)
    test, hr = logrank(times, events, group), cox_hazard_ratio(times, events, group)
    assert (test.observed < test.expected) == (hr.hazard_ratio < 1)


def test_welch_interval_covers_the_planted_difference() -> None:
    rng = np.random.default_rng(5)
    covered = 0
    for _ in range(200):
        a, b = rng.normal(2.0, 3.0, 40), rng.normal(0.0, 5.0, 25)
        diff = mean_difference(a.tolist(), b.tolist(), resamples=0)
        covered += diff.lower < 2.0 < diff.upper
    assert 180 <= covered <= 200  # nominal 95 %


def test_bootstrap_interval_is_seeded_and_close_to_welch() -> None:
    rng = np.random.default_rng(9)
    a, b = rng.normal(1.0, 1.0, 80).tolist(), rng.normal(0.0, 1.0, 80).tolist()
    one, two = mean_difference(a, b, seed=3), mean_difference(a, b, seed=3)
    assert one == two
    assert one.boot_lower == pytest.approx(one.lower, abs=0.1)
    assert one.boot_upper == pytest.approx(one.upper, abs=0.1)
    assert one.hedges_g is not None and 0.5 < one.hedges_g < 1.6


def test_t_quantiles() -> None:
    assert t_quantile(5) == pytest.approx(2.571, abs=0.01)
    assert t_quantile(30) == pytest.approx(2.042, abs=0.001)


def test_wilson_interval() -> None:
    p = proportion(0, 20)
    assert p.estimate == 0.0 and p.lower == 0.0 and p.upper == pytest.approx(0.161, abs=0.001)
    assert proportion(0, 0).estimate is None
    with pytest.raises(ValueError):
        proportion(3, 2)


@given(st.lists(st.integers(0, 3), min_size=2, max_size=30), st.permutations(range(4)))
def test_ari_ignores_label_names_and_is_one_for_identical(
    labels: list[int], renaming: list[int]
) -> None:
    renamed = [renaming[x] for x in labels]
    assert adjusted_rand_index(labels, renamed) == pytest.approx(1.0)


def test_ari_is_near_zero_for_random_labels_and_known_otherwise() -> None:
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 2, 400).tolist()
    guess = rng.integers(0, 2, 400).tolist()
    assert abs(adjusted_rand_index(guess, truth)) < 0.05
    mean, sd = random_ari(guess, truth, repeats=100)
    assert abs(mean) < 0.01 and sd < 0.02
    assert math.isclose(adjusted_rand_index([0, 0, 1, 1], [0, 1, 0, 1]), -0.5)


def test_sensitivity_and_specificity() -> None:
    result = sensitivity_specificity([True, True, False, True], [True, False, False, True])
    assert result["sensitivity"]["estimate"] == 1.0
    assert result["specificity"]["estimate"] == 0.5
    assert result["counts"] == {"tp": 2, "fn": 0, "tn": 1, "fp": 1}
