"""Where and when a patient is: home time zone, travel, jet lag and device clock errors.

Time on the simulator's grid is counted in minutes from ``t0`` (the start, in
UTC, on a whole hour); day ``d`` is the 24 hours from ``t0 + d days``.

* The phone's zone (the events' ``time_zone``) follows the patient at once;
  its UTC offset follows daylight saving time.
* Behaviour (sleep, activity) follows a body clock that moves towards the
  local offset by at most ``jet_lag_minutes_per_day`` a day: a daylight-saving
  hour is taken at once, a six-hour flight takes four days.
* A wrong device clock shifts every wearable timestamp by a few minutes to
  an hour and a half for a few days (``observed_at`` may then lie after
  ``received_at``: the envelope accepts up to 24 h of skew).

>>> import numpy as np
>>> from datetime import UTC, datetime
>>> from services.simulator.config import SimulationConfig
>>> t = simulate_timeline(np.random.default_rng(1), datetime(2026, 3, 1, tzinfo=UTC), 60,
...                       SimulationConfig())
>>> len(t.zone_of_day), t.zone_of_day[0] == t.home_zone
(60, True)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np

from services.simulator.config import SimulationConfig


@dataclass(frozen=True)
class Trip:
    """Away in ``zone`` from day ``depart`` up to (not including) day ``back``."""

    depart: int
    back: int
    zone: str


@dataclass(frozen=True)
class ClockSkew:
    """The device clock is ``minutes`` off (positive: ahead) on days ``start``..``end - 1``."""

    start: int
    end: int
    minutes: int


@dataclass(frozen=True)
class Timeline:
    """Per-day zone, legal and behavioural UTC offsets (minutes), and clock skew."""

    home_zone: str
    zone_of_day: tuple[str, ...]
    legal_offset: np.ndarray
    body_offset: np.ndarray
    skew_of_day: np.ndarray
    trips: tuple[Trip, ...]
    skews: tuple[ClockSkew, ...]


@lru_cache(maxsize=4096)
def utc_offset_minutes(zone: str, when: datetime) -> int:
    """The UTC offset of ``zone`` at the aware instant ``when``, in minutes.

    >>> from datetime import UTC
    >>> utc_offset_minutes("Europe/Berlin", datetime(2026, 7, 1, 12, tzinfo=UTC))
    120
    """
    offset = when.astimezone(ZoneInfo(zone)).utcoffset()
    return 0 if offset is None else int(offset.total_seconds() // 60)


def _weighted(rng: np.random.Generator, options: tuple[tuple[str, float], ...]) -> str:
    weights = np.array([w for _, w in options], dtype=float)
    return options[int(rng.choice(len(options), p=weights / weights.sum()))][0]


def simulate_timeline(
    rng: np.random.Generator, t0: datetime, days: int, config: SimulationConfig
) -> Timeline:
    """Draw a patient's home zone, at most one trip and at most one clock error."""
    home = _weighted(rng, config.home_zones)
    travels = rng.random() < config.travel_fraction
    depart = int(rng.integers(0, max(days, 1)))
    length = int(rng.integers(config.travel_days[0], config.travel_days[1] + 1))
    skewed = rng.random() < config.clock_skew_fraction
    skew_start = int(rng.integers(0, max(days, 1)))
    skew_length = int(rng.integers(config.clock_skew_days[0], config.clock_skew_days[1] + 1))
    skew_minutes = int(rng.integers(config.clock_skew_minutes[0], config.clock_skew_minutes[1] + 1))
    skew_sign = 1 if rng.random() < 0.5 else -1

    noon = [t0 + timedelta(days=d, hours=12) for d in range(days)]
    home_offset = utc_offset_minutes(home, noon[0]) if days else 0
    far = [z for z in config.travel_zones if abs(utc_offset_minutes(z, t0) - home_offset) >= 240]
    trips: tuple[Trip, ...] = ()
    if travels and far:
        zone = far[int(rng.integers(0, len(far)))]
        trips = (Trip(depart, min(depart + length, days), zone),)
    zones = [home] * days
    for trip in trips:
        zones[trip.depart : trip.back] = [trip.zone] * (trip.back - trip.depart)
    legal = np.array([utc_offset_minutes(z, n) for z, n in zip(zones, noon, strict=True)], float)
    body = legal.copy()
    step = config.jet_lag_minutes_per_day
    for d in range(1, days):
        body[d] = body[d - 1] + np.clip(legal[d] - body[d - 1], -step, step)

    skews: tuple[ClockSkew, ...] = ()
    skew_of_day = np.zeros(days, dtype=np.int32)
    if skewed:
        skew = ClockSkew(skew_start, min(skew_start + skew_length, days), skew_sign * skew_minutes)
        skews = (skew,)
        skew_of_day[skew.start : skew.end] = skew.minutes
    return Timeline(home, tuple(zones), legal, body, skew_of_day, trips, skews)
