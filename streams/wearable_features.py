"""Daily wearable features: what one local day of samples says, against the patient's own days.

:class:`DayTotals` sums one local day's samples in integers (seconds, steps,
centi-milliseconds, a heart-rate histogram), so the sums are exact and do not
depend on the order samples arrive in. When the day closes,
:func:`day_features` turns them into the features of CLINICAL.md:

=================  ====  ==============================================================
feature            unit  definition
=================  ====  ==============================================================
sleep_duration     min   minutes asleep from noon the day before to noon (local time)
sleep_midpoint     h     sleep-weighted mean clock time of that sleep, hours after local
                         midnight (negative: before midnight)
steps              -     steps in the local calendar day
step_variability   -     coefficient of variation of daily steps over the last 7 days;
                         day-to-day step variability flagged bipolar episode onset a
                         median 7 days early in Ortiz 2025
resting_hr         /min  10th percentile of the day's heart-rate samples
hrv_rmssd          ms    mean RMSSD of the day's samples
active_minutes     min   minutes of moderate or vigorous activity
coverage           -     share of the day's hours with any sample (23 or 25 hours on
                         daylight-saving days); missing data is itself a signal
                         (Barnett 2018, Cohen 2023)
=================  ====  ==============================================================

:class:`FeatureHistory` keeps the last ``baseline_days`` values of each
feature, so every feature is judged against the patient's own robust
baseline (:class:`~streams.robust.RobustBaseline`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date
from statistics import fmean, pstdev

from streams.config import WearableConfig
from streams.robust import RobustBaseline

FEATURES: tuple[str, ...] = (
    "sleep_duration",
    "sleep_midpoint",
    "steps",
    "step_variability",
    "resting_hr",
    "hrv_rmssd",
    "active_minutes",
    "coverage",
)

UNITS: dict[str, str] = {
    "sleep_duration": "min",
    "sleep_midpoint": "h",
    "steps": "{steps}",
    "step_variability": "1",
    "resting_hr": "/min",
    "hrv_rmssd": "ms",
    "active_minutes": "min",
    "coverage": "1",
}


@dataclass(slots=True)
class DayTotals:
    """Exact integer sums of one local day's samples; ``add`` folds in one sample.

    >>> day = DayTotals()
    >>> day.add("sleep", 420.0, at=0, zone="+00:00", minute_of_night=180)
    >>> day.add("heart_rate", 61.4, at=60, zone="+00:00")
    >>> day.sleep_s, day.sleep_mid // day.sleep_s, day.hr
    (25200, 180, {61: 1})
    """

    steps: int = 0
    steps_n: int = 0
    sleep_s: int = 0
    sleep_n: int = 0
    sleep_mid: int = 0
    active_s: int = 0
    active_n: int = 0
    hr: dict[int, int] = field(default_factory=dict)
    hrv_cms: int = 0
    hrv_n: int = 0
    first: tuple[int, str] | None = None
    last: tuple[int, str] | None = None

    def add(self, metric: str, value: float, at: int, zone: str, minute_of_night: int = 0) -> None:
        """Fold in one sample of ``metric`` (canonical unit) starting at ``at`` (epoch s)."""
        if metric == "steps":
            self.steps += round(value)
            self.steps_n += 1
        elif metric == "sleep":
            seconds = round(value * 60)
            self.sleep_s += seconds
            self.sleep_n += 1
            self.sleep_mid += seconds * minute_of_night
        elif metric == "heart_rate":
            bpm = round(value)
            self.hr[bpm] = self.hr.get(bpm, 0) + 1
        elif metric == "hrv_rmssd":
            self.hrv_cms += round(value * 100)
            self.hrv_n += 1
        elif metric == "active_minutes":
            self.active_s += round(value * 60)
            self.active_n += 1
        stamp = (at, zone)
        if self.first is None or stamp < self.first:
            self.first = stamp
        if self.last is None or stamp > self.last:
            self.last = stamp

    def clone(self) -> DayTotals:
        """An independent copy."""
        return DayTotals(
            self.steps,
            self.steps_n,
            self.sleep_s,
            self.sleep_n,
            self.sleep_mid,
            self.active_s,
            self.active_n,
            dict(self.hr),
            self.hrv_cms,
            self.hrv_n,
            self.first,
            self.last,
        )


def spread_of_counts(values: list[float]) -> float:
    """The population standard deviation of ``values``: ``statistics.pstdev``'s float.

    Daily steps are whole numbers: their variance is then an exact ratio of
    integers, and its square root, correctly rounded, is what ``pstdev``
    returns since Python 3.11 (it computes in fractions: ~15 us for a week
    of days; this, ~3). Other values are left to ``pstdev``.

    >>> spread_of_counts([6000.0, 7000.0, 9000.0]) == pstdev([6000.0, 7000.0, 9000.0])
    True
    """
    if not values or not all(type(v) is float and v.is_integer() for v in values):
        return pstdev(values)
    counts = [int(v) for v in values]
    n = len(counts)
    total = sum(counts)
    # n * variance * n, an integer; the variance itself is squares / n**2.
    squares = n * sum(c * c for c in counts) - total * total
    return _sqrt_of_ratio(squares, n * n)


def _sqrt_of_ratio(numerator: int, denominator: int) -> float:
    """The square root of ``numerator / denominator`` (>= 0) rounded to the nearest float.

    The integer root of the ratio scaled by ``4**shift`` keeps at least 55
    bits; a remainder sets its last bit (rounding to odd), so the one rounding
    to 53 bits in the final division is the correct rounding of the real root.

    >>> _sqrt_of_ratio(2, 1) == 2 ** 0.5, _sqrt_of_ratio(9, 4), _sqrt_of_ratio(0, 7)
    (True, 1.5, 0.0)
    """
    shift = max(0, (110 - numerator.bit_length() + denominator.bit_length()) // 2 + 1)
    scaled = numerator << (2 * shift)
    root = math.isqrt(scaled // denominator)
    if root * root * denominator != scaled:
        root |= 1
    return root / (1 << shift)


def percentile_of_counts(counts: dict[int, int], percentile: float) -> int | None:
    """The ``percentile`` (nearest rank) of values given as a histogram.

    >>> percentile_of_counts({50: 1, 60: 8, 90: 1}, 10)
    50
    >>> percentile_of_counts({50: 1, 60: 8, 90: 1}, 50)
    60
    """
    total = sum(counts.values())
    if not total:
        return None
    rank = max(1, math.ceil(percentile / 100 * total))
    seen = 0
    for value in sorted(counts):
        seen += counts[value]
        if seen >= rank:
            return value
    return max(counts)


def day_features(
    totals: DayTotals | None,
    coverage: float,
    earlier_steps: list[float | None],
    config: WearableConfig,
) -> dict[str, float | None]:
    """The features of one closed day (None where the day has no data for one).

    ``earlier_steps`` are the daily steps of the preceding days, oldest first.

    >>> from streams.config import WearableConfig
    >>> totals = DayTotals(steps=8000, steps_n=10, sleep_s=7 * 3600, sleep_n=1,
    ...                    sleep_mid=7 * 3600 * 210)
    >>> features = day_features(totals, 0.5, [6000.0, 7000.0, None, 9000.0], WearableConfig())
    >>> features["sleep_duration"], features["sleep_midpoint"]
    (420.0, 3.5)
    >>> round(features["step_variability"], 3)
    0.149
    >>> features["resting_hr"] is None, features["coverage"]
    (True, 0.5)
    """
    values: dict[str, float | None] = dict.fromkeys(FEATURES)
    values["coverage"] = coverage
    if totals is None:
        return values
    if totals.sleep_n:
        values["sleep_duration"] = totals.sleep_s / 60
        if totals.sleep_s:
            values["sleep_midpoint"] = totals.sleep_mid / totals.sleep_s / 60
    if totals.steps_n:
        values["steps"] = float(totals.steps)
        window = [*earlier_steps[-(config.step_variability_days - 1) :], float(totals.steps)]
        present = [v for v in window if v is not None]
        mean = fmean(present) if present else 0.0
        if len(present) >= config.min_step_variability_days and mean > 0:
            values["step_variability"] = spread_of_counts(present) / mean
    if sum(totals.hr.values()) >= config.min_hr_samples:
        resting = percentile_of_counts(totals.hr, config.resting_hr_percentile)
        values["resting_hr"] = float(resting) if resting is not None else None
    if totals.hrv_n:
        values["hrv_rmssd"] = totals.hrv_cms / totals.hrv_n / 100
    if totals.active_n:
        values["active_minutes"] = totals.active_s / 60
    return values


@dataclass(slots=True)
class FeatureHistory:
    """The last ``baseline_days`` daily values of each feature, one slot per day.

    >>> from streams.config import WearableConfig
    >>> config = WearableConfig(min_baseline_days=2)
    >>> history = FeatureHistory()
    >>> history.push(date(2026, 3, 1), {"steps": 5000.0}, config)
    >>> history.push(date(2026, 3, 3), {"steps": 7000.0}, config)  # 2 March had no data
    >>> history.values["steps"]
    [5000.0, None, 7000.0]
    >>> history.baseline("steps", config).median
    6000.0
    """

    last_day: date | None = None
    values: dict[str, list[float | None]] = field(default_factory=dict)

    def baseline(self, feature: str, config: WearableConfig) -> RobustBaseline | None:
        """The robust baseline of ``feature`` over the remembered days."""
        return RobustBaseline.of(
            self.values.get(feature, ()),
            config.min_baseline_days,
            config.min_scale.get(feature, 1e-9),
        )

    def push(self, day: date, values: dict[str, float | None], config: WearableConfig) -> None:
        """Remember the values of ``day`` (days in calendar order; gaps become None)."""
        gap = 1 if self.last_day is None else (day - self.last_day).days
        if gap <= 0:
            return
        for feature in FEATURES:
            series = self.values.setdefault(feature, [])
            series.extend([None] * min(gap - 1, config.baseline_days))
            value = values.get(feature)
            series.append(None if value is None else round(value, 4))
            del series[: -config.baseline_days]
        self.last_day = day

    def recent(self, feature: str) -> list[float | None]:
        """The remembered values of ``feature``, oldest first (a copy)."""
        return list(self.values.get(feature, ()))

    def clone(self) -> FeatureHistory:
        """An independent copy."""
        return FeatureHistory(self.last_day, {k: list(v) for k, v in self.values.items()})
