"""Wearable metrics: canonical UCUM units and per-sample plausible ranges.

A :class:`~schemas.events.WearableSample` carries one metric over one interval.
Its value is converted here to the metric's canonical unit and rejected when it
lies outside the range a body and a device can produce in one sample: such a
value is a unit mix-up or a sensor fault, never a measurement. Daily features
(sleep duration and midpoint, step variability, resting heart rate...) are
derived later from these samples, in the patient's local time.

========== ======== ============ ===================================================
id         unit     range/sample accepted units
========== ======== ============ ===================================================
sleep      min      0-1440       min, h (x 60), s (/ 60): minutes asleep in the interval
steps      {steps}  0-100000     {steps}, 1, count, {count}, steps
heart_rate /min     20-250       /min, bpm, {beats}/min, 1/min, beats/min
hrv_rmssd  ms       1-500        ms, s (x 1000)
active_min min      0-1440       min, h (x 60), s (/ 60)
========== ======== ============ ===================================================

Examples
--------
>>> get_metric("HR").to_canonical(72, "bpm")
72.0
>>> get_metric("sleep").to_canonical(7.5, "h")
450.0
>>> get_metric("heart_rate").to_canonical(300, "bpm")
Traceback (most recent call last):
...
schemas.units.ImplausibleValue: heart rate: 300 bpm (= 300 /min) is outside the plausible range 20-250 /min per sample; check the value and its unit
"""  # noqa: E501

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from schemas.units import (
    ImplausibleValue,
    UnitError,
    factor_table,
    implausible,
    lookup_factor,
    scale,
)

_TIME_IN_MINUTES: tuple[tuple[str, float], ...] = (
    ("min", 1.0),
    ("h", 60.0),
    ("s", 1.0 / 60.0),
    ("minutes", 1.0),
    ("hours", 60.0),
    ("seconds", 1.0 / 60.0),
)


class UnknownMetric(ValueError):
    """A wearable metric name or alias that is not in the catalogue.

    The message lists the accepted metric ids.
    """


@dataclass(frozen=True, kw_only=True)
class Metric:
    """A wearable metric: its canonical unit and the plausible range of one sample.

    Attributes
    ----------
    id
        Stable identifier used in events and tables (``"heart_rate"``).
    name
        Display name used in messages.
    unit
        Canonical UCUM unit; values are stored in it.
    low, high
        Plausible range of one sample in the canonical unit (inclusive).
    description
        What one sample means.
    aliases
        Other names accepted by :func:`get_metric`.
    conversions
        Accepted units with the factor that converts each to ``unit``;
        case and spelling variants are folded automatically.
    """

    id: str
    name: str
    unit: str
    low: float
    high: float
    description: str
    aliases: tuple[str, ...] = ()
    conversions: tuple[tuple[str, float], ...] = ()
    _factors: dict[str, float] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        conversions = self.conversions or ((self.unit, 1.0),)
        object.__setattr__(self, "conversions", conversions)
        object.__setattr__(self, "_factors", factor_table(self.name, self.unit, conversions))
        if not self.low < self.high:
            raise ValueError(f"{self.id}: low must be below high")

    @property
    def accepted_units(self) -> tuple[str, ...]:
        """The units accepted, as the catalogue writes them (canonical first).

        >>> get_metric("hrv_rmssd").accepted_units
        ('ms', 's')
        """
        return tuple(unit for unit, _ in self.conversions)

    def to_canonical(self, value: float, unit: str) -> float:
        """``value`` in ``unit`` converted to the canonical unit, range-checked.

        Called for every sample: a dict lookup, a multiplication and a
        comparison unless the unit is spelt unusually or the value is wrong.

        Raises
        ------
        UnitError
            If ``unit`` cannot be converted; the message lists what is accepted.
        ImplausibleValue
            (a ``ValueError``) if the value is not finite or lies outside
            ``[low, high]``.

        Examples
        --------
        >>> get_metric("hrv_rmssd").to_canonical(0.042, "s")
        42.0
        >>> get_metric("steps").to_canonical(10, "km")
        Traceback (most recent call last):
        ...
        schemas.units.UnitError: steps: unit 'km' cannot be converted; accepted: {steps}, 1, count, {count}, steps (converted to {steps})
        """  # noqa: E501
        factor = self._factors.get(unit)
        if factor is None:
            factor = lookup_factor(
                self._factors,
                unit,
                subject=self.name,
                accepted=self.accepted_units,
                canonical=self.unit,
            )
        canonical = scale(value, factor)
        if self.low <= canonical <= self.high:
            return canonical
        raise implausible(
            self.name, value, unit, canonical, self.unit, self.low, self.high, scope="per sample"
        )


SLEEP = Metric(
    id="sleep",
    name="sleep",
    unit="min",
    low=0.0,
    high=1440.0,
    description="minutes asleep within the sample interval (at most a day per sample)",
    aliases=("sleep_minutes", "sleep_duration", "minutes_asleep", "asleep"),
    conversions=_TIME_IN_MINUTES,
)

STEPS = Metric(
    id="steps",
    name="steps",
    unit="{steps}",
    low=0.0,
    # More than 8 h of running at 200 steps/min: no single sample reaches it.
    high=100_000.0,
    description="steps counted within the sample interval",
    aliases=("step_count", "stepcount"),
    conversions=(("{steps}", 1.0), ("1", 1.0), ("count", 1.0), ("{count}", 1.0), ("steps", 1.0)),
)

HEART_RATE = Metric(
    id="heart_rate",
    name="heart rate",
    unit="/min",
    low=20.0,
    high=250.0,
    description="mean heart rate over the sample interval, beats per minute",
    aliases=("hr", "pulse", "pulse_rate", "bpm"),
    conversions=(
        ("/min", 1.0),
        ("bpm", 1.0),
        ("{beats}/min", 1.0),
        ("1/min", 1.0),
        ("beats/min", 1.0),
    ),
)

HRV_RMSSD = Metric(
    id="hrv_rmssd",
    name="HRV (RMSSD)",
    unit="ms",
    low=1.0,
    high=500.0,
    description=(
        "heart-rate variability over the sample interval: root mean square of "
        "successive RR-interval differences"
    ),
    aliases=("hrv", "rmssd"),
    conversions=(("ms", 1.0), ("s", 1000.0)),
)

ACTIVE_MINUTES = Metric(
    id="active_minutes",
    name="active minutes",
    unit="min",
    low=0.0,
    high=1440.0,
    description="minutes of moderate or vigorous activity within the sample interval",
    aliases=("active_min", "activity_minutes", "minutes_active"),
    conversions=_TIME_IN_MINUTES,
)

#: Every metric by id, in catalogue order.
METRICS: Mapping[str, Metric] = MappingProxyType(
    {m.id: m for m in (SLEEP, STEPS, HEART_RATE, HRV_RMSSD, ACTIVE_MINUTES)}
)


def _key(name: str) -> str:
    """Case, spaces, hyphens and underscores folded: ``Heart-Rate`` == ``heart_rate``."""
    return name.strip().lower().replace(" ", "").replace("-", "").replace("_", "")


def _index(metrics: Mapping[str, Metric]) -> Mapping[str, Metric]:
    index: dict[str, Metric] = {}
    for metric in metrics.values():
        for name in (metric.id, metric.name, *metric.aliases):
            key = _key(name)
            if index.setdefault(key, metric) is not metric:
                raise ValueError(f"{name!r} names both {index[key].id} and {metric.id}")
    return MappingProxyType(index)


_BY_NAME = _index(METRICS)

#: Every name in the catalogue, and its folded key, as written: what events
#: carry. Looked up before folding, which costs more than the lookup itself.
_EXACT: Mapping[str, Metric] = MappingProxyType(
    {
        spelling: _BY_NAME[_key(name)]
        for metric in METRICS.values()
        for name in (metric.id, metric.name, *metric.aliases)
        for spelling in (name, _key(name))
    }
)


def get_metric(name: str) -> Metric:
    """The metric for an id, name or alias (case-insensitive).

    Raises
    ------
    UnknownMetric
        If nothing in the catalogue has that name; the message lists the ids.

    Examples
    --------
    >>> get_metric("Heart Rate").id, get_metric("RMSSD").id
    ('heart_rate', 'hrv_rmssd')
    >>> get_metric("temperature")
    Traceback (most recent call last):
    ...
    schemas.wearables.UnknownMetric: unknown wearable metric 'temperature'; accepted: sleep, steps, heart_rate, hrv_rmssd, active_minutes (or their names or aliases)
    """  # noqa: E501
    if type(name) is str:
        exact = _EXACT.get(name)
        if exact is not None:
            return exact
    metric = _BY_NAME.get(_key(name)) if isinstance(name, str) else None
    if metric is None:
        shown = name[:64] if isinstance(name, str) else name
        raise UnknownMetric(
            f"unknown wearable metric {shown!r}; accepted: {', '.join(METRICS)} "
            "(or their names or aliases)"
        )
    return metric


__all__ = [
    "METRICS",
    "ImplausibleValue",
    "Metric",
    "UnitError",
    "UnknownMetric",
    "get_metric",
]
