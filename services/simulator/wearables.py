"""Wearable traces: sleep, steps, heart rate and HRV, uploaded hour by hour.

Per patient the signals are drawn at once with numpy on the simulation grid
(minutes from ``t0``), then each worn hour becomes one
:class:`~schemas.events.WearableUpload` when it is iterated: a cohort of
millions of readings is held as a few arrays, not as objects.

Generative model (per patient; ``s`` is the day's latent severity, ``e.*``
the day's episode signature times ``s``; see docs/simulator.md):

* **sleep**: one main sleep a night, midpoint at 03:00 body-clock time plus the
  patient's chronotype plus ``e.midpoint_min`` plus noise whose SD grows by
  ``e.irregularity``; duration from the patient's baseline plus
  ``e.sleep_min``. Minutes asleep per interval, with wake bouts (5 % + 8 % x s
  of asleep minutes). Sleep readings cover the sleep session (30 min either
  side of the main sleep), as a device's sleep log does.
* **steps**: a daily total, log-normal around the patient's baseline times
  ``exp(e.steps_log)`` with SD ``cv x (1 + e.step_variability)``, spread over
  the day by a diurnal profile, only while awake, with gamma-Poisson bursts.
  Intervals without a step send no reading (as HealthKit does).
* **heart rate**: the day's resting HR (baseline + ``e.resting_hr``) minus 3
  asleep or plus 9 awake, plus 0.2 bpm per step/min, plus noise.
* **HRV (RMSSD)**: 3-5 five-minute readings a night, log-normal around the
  baseline times ``exp(e.hrv_log)``.
* **wear**: hours worn with the patient's coverage, lowered in the prodrome
  and in hospital, in non-wear blocks of ~3 h, plus whole missing days.
* **upload**: one upload per worn hour, received 1-15 min after the hour;
  during an offline spell (hours to days) every upload arrives at its end;
  1 % are sent twice. A wrong device clock shifts the upload's timestamps.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from schemas.envelope import Source
from schemas.events import WearableUpload
from services.simulator.config import SimulationConfig
from services.simulator.course import Course, DayEffects
from services.simulator.ids import IdFactory
from services.simulator.timeline import Timeline

#: Share of a day's steps taken in each local hour 0..23 (an assumption shaped
#: like population accelerometry: little at night, peaks morning and evening).
_ACTIVITY = np.array(
    [2, 1, 1, 1, 2, 5, 20, 50, 70, 65, 60, 60, 70, 65, 60, 60, 65, 75, 80, 70, 50, 30, 15, 6],
    dtype=float,
)
ACTIVITY_PROFILE = _ACTIVITY / _ACTIVITY.sum()

#: Samples per hour the grid supports (the interval must divide the hour).
ALLOWED_SAMPLES_PER_HOUR = (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60)

HRV_MINUTES = 5

#: Columns of a trace's per-interval signal array.
HEART_RATE, STEPS, SLEEP, SESSION = range(4)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class WearableBaseline:
    """A patient's stable wearable phenotype (the values relapses depart from)."""

    sleep_min: float
    chronotype_min: float
    sleep_sd_min: float
    steps: float
    step_cv: float
    resting_hr: float
    rmssd_ms: float
    coverage: float

    def to_json(self) -> dict[str, float]:
        """Rounded values for the ground-truth file."""
        return {k: round(v, 3) for k, v in asdict(self).items()}


def _draw_baseline(rng: np.random.Generator, config: SimulationConfig) -> WearableBaseline:
    # Adults sleep ~7-8 h; resting HR 60-80; RMSSD ~20-60 ms (Shaffer 2017).
    return WearableBaseline(
        sleep_min=float(np.clip(rng.normal(450, 30), 360, 540)),
        chronotype_min=float(rng.normal(0, 45)),
        sleep_sd_min=float(rng.uniform(20, 40)),
        steps=float(math.exp(rng.normal(math.log(6000), 0.35))),
        step_cv=float(rng.uniform(0.2, 0.35)),
        resting_hr=float(np.clip(rng.normal(66, 7), 50, 85)),
        rmssd_ms=float(np.clip(math.exp(rng.normal(math.log(38), 0.35)), 12, 120)),
        coverage=float(rng.uniform(*config.coverage)),
    )


@dataclass(frozen=True)
class Grid:
    """The shared time grid: start, length, interval and the interval boundaries."""

    t0: datetime
    days: int
    samples_per_hour: int
    bounds: tuple[datetime, ...]

    @classmethod
    def build(cls, t0: datetime, days: int, samples_per_hour: int) -> Grid:
        """The grid from ``t0`` (UTC, whole hour) over ``days`` at ``samples_per_hour``."""
        if samples_per_hour not in ALLOWED_SAMPLES_PER_HOUR:
            raise ValueError(
                f"samples_per_hour {samples_per_hour!r} does not divide the hour; accepted: "
                f"{', '.join(map(str, ALLOWED_SAMPLES_PER_HOUR))}"
            )
        step = timedelta(minutes=60 // samples_per_hour)
        n = days * 24 * samples_per_hour
        return cls(t0, days, samples_per_hour, tuple(t0 + i * step for i in range(n + 1)))

    @property
    def slot_minutes(self) -> int:
        """Minutes per interval."""
        return 60 // self.samples_per_hour

    @property
    def midnight_offset(self) -> int:
        """Minutes from ``t0`` back to the UTC midnight of its day (zero or negative)."""
        return -(self.t0.hour * 60 + self.t0.minute)

    def us(self, minutes: np.ndarray) -> np.ndarray:
        """Grid minutes as integer microseconds since the Unix epoch."""
        t0_us = (self.t0 - EPOCH) // timedelta(microseconds=1)
        return t0_us + np.round(minutes * 60_000_000).astype(np.int64)


class WearableTrace:
    """One patient's wearable signals and uploads; :meth:`upload` builds an event."""

    def __init__(
        self,
        *,
        grid: Grid,
        patient_id: str,
        source: Source,
        ids: tuple[IdFactory, ...],
        timeline: Timeline,
        baseline: WearableBaseline,
        signals: np.ndarray,
        hrv: dict[int, list[tuple[int, float]]],
        hours: np.ndarray,
        upload_ids: list[str],
        received_us: np.ndarray,
        duplicates: np.ndarray,
        duplicate_received_us: np.ndarray,
    ) -> None:
        self.grid = grid
        self.patient_id = patient_id
        self.source = source
        self._upload_id, self._hr_id, self._steps_id, self._sleep_id, self._hrv_id = ids
        self.timeline = timeline
        self.baseline = baseline
        self._signals = signals
        self._hrv = hrv
        self.hours = hours
        self.upload_ids = upload_ids
        self.received_us = received_us
        self.duplicates = duplicates
        self.duplicate_received_us = duplicate_received_us

    def upload(self, index: int, received_at: datetime) -> WearableUpload:
        """Upload ``index`` (in hour order) as a validated event received at ``received_at``."""
        grid = self.grid
        hour = int(self.hours[index])
        day = hour // 24
        skew = int(self.timeline.skew_of_day[day])
        sph = grid.samples_per_hour
        a, b = hour * sph, (hour + 1) * sph
        bounds: list[datetime] | tuple[datetime, ...] = grid.bounds[a : b + 1]
        if skew:
            shift = timedelta(minutes=skew)
            bounds = [t + shift for t in bounds]
        readings: list[dict[str, Any]] = []
        add = readings.append
        rows = self._signals[a:b].tolist()
        ids = self._hr_id.numbered(range(a, b))
        walked: list[int] = []
        logged: list[int] = []
        for j, (hr, steps, _, in_session) in enumerate(rows):
            add({"event_id": ids[j], "metric": "heart_rate", "value": float(hr),
                 "unit": "/min", "start": bounds[j], "end": bounds[j + 1]})  # fmt: skip
            if steps:
                walked.append(j)
            if in_session:
                logged.append(j)
        ids = self._steps_id.numbered([a + j for j in walked])
        for j, event_id in zip(walked, ids, strict=True):
            add({"event_id": event_id, "metric": "steps", "value": float(rows[j][STEPS]),
                 "unit": "{steps}", "start": bounds[j], "end": bounds[j + 1]})  # fmt: skip
        ids = self._sleep_id.numbered([a + j for j in logged])
        for j, event_id in zip(logged, ids, strict=True):
            add({"event_id": event_id, "metric": "sleep", "value": float(rows[j][SLEEP]),
                 "unit": "min", "start": bounds[j], "end": bounds[j + 1]})  # fmt: skip
        for minute, value in self._hrv.get(hour, ()):
            start = grid.t0 + timedelta(minutes=hour * 60 + minute + skew)
            add(
                {
                    "event_id": self._hrv_id(str(hour * 60 + minute)),
                    "metric": "hrv_rmssd",
                    "value": value,
                    "unit": "ms",
                    "start": start,
                    "end": start + timedelta(minutes=HRV_MINUTES),
                }
            )
        return WearableUpload(
            event_id=self.upload_ids[index],
            patient_id=self.patient_id,
            observed_at=bounds[0],
            received_at=received_at,
            source=self.source,
            time_zone=self.timeline.zone_of_day[day],
            window_end=bounds[-1],
            readings=readings,
        )


def simulate_wearables(
    rng: np.random.Generator,
    *,
    grid: Grid,
    course: Course,
    effects: DayEffects,
    timeline: Timeline,
    config: SimulationConfig,
    patient_id: str,
    source: Source,
    id_prefix: tuple[str, ...],
) -> WearableTrace:
    """Draw one patient's wearable signals, wear pattern and upload arrivals."""
    days, sph, slot = grid.days, grid.samples_per_hour, grid.slot_minutes
    n_minutes, n_slots, n_hours = days * 1440, days * 24 * sph, days * 24
    severity = course.severity
    hospital = course.hospital_days()
    base = _draw_baseline(rng, config)

    # -- sleep: one main sleep per night, night -1 included (the first morning) --------------
    nights = np.arange(-1, days)
    day_of_night = np.clip(nights, 0, days - 1)
    irregular = 1.0 + effects.irregularity[day_of_night]
    midnight = nights * 1440 + grid.midnight_offset - timeline.body_offset[day_of_night]
    midpoint = (
        midnight
        + 1440
        + 180
        + base.chronotype_min
        + effects.midpoint_min[day_of_night]
        + rng.normal(0, base.sleep_sd_min * irregular)
    )
    duration = np.clip(
        base.sleep_min + effects.sleep_min[day_of_night] + rng.normal(0, 35 * irregular),
        150,
        780,
    )
    onset = np.round(midpoint - duration / 2).astype(np.int64)
    wake = onset + np.round(duration).astype(np.int64)
    asleep = _spans(onset, wake, n_minutes)
    session = _spans(onset - 30, wake + 30, n_minutes)
    asleep_slot = asleep.reshape(n_slots, slot).sum(axis=1)
    session_slot = session.reshape(n_slots, slot).any(axis=1)
    slot_day = np.arange(n_slots) // (24 * sph)
    wake_bouts = rng.binomial(asleep_slot, 0.05 + 0.08 * severity[slot_day])
    sleep_slot = asleep_slot - wake_bouts

    # -- steps -------------------------------------------------------------------------------
    log_sd = base.step_cv * (1.0 + effects.step_variability)
    steps_day = base.steps * np.exp(effects.steps_log + rng.normal(0, 1, days) * log_sd)
    steps_day = np.where(hospital, steps_day * 0.4, steps_day)
    local = (
        np.arange(n_slots) * slot - grid.midnight_offset + timeline.body_offset[slot_day]
    ) % 1440
    awake = 1.0 - asleep_slot / slot
    mean = steps_day[slot_day] * ACTIVITY_PROFILE[(local // 60).astype(int)] / sph * awake
    steps = np.minimum(rng.poisson(mean * rng.gamma(0.8, 1 / 0.8, n_slots)), 30_000)

    # -- heart rate --------------------------------------------------------------------------
    resting = base.resting_hr + effects.resting_hr + rng.normal(0, 1.2, days)
    asleep_share = asleep_slot / slot
    hr = (
        resting[slot_day]
        - 3 * asleep_share
        + 9 * (1 - asleep_share)
        + 0.2 * steps / slot
        + rng.normal(0, 2.5, n_slots)
    )
    hr_slot = np.round(np.clip(hr, 35, 200))

    # -- HRV: a few five-minute readings inside each night's sleep --------------------------
    hrv: dict[int, list[tuple[int, float]]] = {}
    night_level = base.rmssd_ms * np.exp(
        effects.hrv_log[day_of_night] + rng.normal(0, 0.1, len(nights))
    )
    for n in range(len(nights)):
        count = int(rng.integers(3, 6))
        lo, hi = int(onset[n]) + 30, int(wake[n]) - 35
        picks = rng.integers(lo, max(hi, lo + 1), count) // HRV_MINUTES * HRV_MINUTES
        values = night_level[n] * np.exp(rng.normal(0, 0.12, count))
        chosen = dict(zip(picks.tolist(), values.tolist(), strict=True))
        for minute, value in sorted(chosen.items()):
            if hi > lo and 0 <= minute <= n_minutes - HRV_MINUTES:
                rmssd = round(min(max(value, 5.0), 300.0), 1)
                hrv.setdefault(minute // 60, []).append((minute % 60, rmssd))

    # -- wear: non-wear blocks and missing days ----------------------------------------------
    hour_day = np.arange(n_hours) // 24
    worn_share = base.coverage * (1 - config.prodrome_coverage_loss * severity)
    worn_share = np.where(hospital, config.hospital_coverage, worn_share)
    mean_len = config.nonwear_mean_hours
    starts = rng.random(n_hours) < (1 - worn_share[hour_day]) / mean_len
    lengths = rng.geometric(1 / mean_len, n_hours)
    off = _spans(np.flatnonzero(starts), np.flatnonzero(starts) + lengths[starts], n_hours)
    missing_day = rng.random(days) < (
        config.missing_day_probability + config.missing_day_prodrome * severity
    )
    off |= missing_day[hour_day]
    hours = np.flatnonzero(~off).astype(np.int32)

    # -- arrival: upload delay, offline spells, duplicates ------------------------------------
    received = (hours + 1) * 60.0 + rng.uniform(*config.upload_delay_minutes, len(hours))
    spell_days = np.flatnonzero(rng.random(days) < config.offline_probability)
    spell_start = spell_days * 1440.0 + rng.uniform(0, 1440, len(spell_days))
    spell_hours = np.clip(
        rng.lognormal(math.log(config.offline_median_hours), 0.8, len(spell_days)),
        *config.offline_hours,
    )
    for begin, end in zip(spell_start, spell_start + spell_hours * 60, strict=True):
        caught = (received >= begin) & (received < end)
        # A sync sends the backlog in order, a fraction of a second apart.
        received[caught] = end + rng.uniform(1, 10) + np.arange(caught.sum()) * 0.01
    duplicated = np.flatnonzero(rng.random(len(hours)) < config.duplicate_probability)
    duplicate_received = received[duplicated] + rng.uniform(1 / 3, 15, len(duplicated))

    upload_id = IdFactory(*id_prefix, "upload")
    return WearableTrace(
        grid=grid,
        patient_id=patient_id,
        source=source,
        ids=(
            upload_id,
            IdFactory(*id_prefix, "heart_rate"),
            IdFactory(*id_prefix, "steps"),
            IdFactory(*id_prefix, "sleep"),
            IdFactory(*id_prefix, "hrv_rmssd"),
        ),
        timeline=timeline,
        baseline=base,
        signals=np.stack([hr_slot, steps, sleep_slot, session_slot], axis=1).astype(np.int16),
        hrv=hrv,
        hours=hours,
        upload_ids=upload_id.numbered(hours.tolist()),
        received_us=grid.us(received),
        duplicates=duplicated,
        duplicate_received_us=grid.us(duplicate_received),
    )


def _spans(starts: np.ndarray, ends: np.ndarray, length: int) -> np.ndarray:
    """A boolean array of ``length`` that is True inside any ``[start, end)``."""
    diff = np.zeros(length + 1, dtype=np.int32)
    np.add.at(diff, np.clip(starts, 0, length), 1)
    np.add.at(diff, np.clip(ends, 0, length), -1)
    return np.cumsum(diff[:length]) > 0
