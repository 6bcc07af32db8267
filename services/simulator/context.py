"""What the score, lab and outcome generators know about one simulated patient.

>>> from datetime import UTC, datetime
>>> grid_start = datetime(2026, 1, 5, tzinfo=UTC)
>>> local_instant(grid_start, 0, 9 * 60, 60).isoformat()
'2026-01-05T08:00:00+00:00'
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from schemas.events import ClinicalOutcome, ClinicalScore, LabResult
from services.simulator.config import DiagnosisProfile, SimulationConfig
from services.simulator.course import Course, DayEffects
from services.simulator.ids import IdFactory
from services.simulator.timeline import Timeline

#: The events generated eagerly (wearable uploads are built lazily).
EagerEvent = ClinicalScore | LabResult | ClinicalOutcome


def local_instant(t0: datetime, day: int, minute_of_day: float, offset_minutes: float) -> datetime:
    """The UTC instant of local ``minute_of_day`` on grid day ``day`` at a UTC offset.

    ``t0`` is the grid start; day ``d`` is the UTC date of ``t0 + d days``.
    """
    midnight = t0.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=day)
    return midnight + timedelta(minutes=minute_of_day - offset_minutes)


@dataclass(frozen=True)
class Symptoms:
    """A patient's stable latent symptom levels (fractions of each scale's range)."""

    depressive: float
    manic: float
    psychotic: float
    anxiety: float

    def on(self, effects: DayEffects, day: int) -> Symptoms:
        """The levels on ``day``: stable level plus the day's episode effect, in [0, 1]."""

        def level(base: float, extra: np.ndarray) -> float:
            return float(np.clip(base + extra[day], 0.0, 1.0))

        return Symptoms(
            level(self.depressive, effects.depressive),
            level(self.manic, effects.manic),
            level(self.psychotic, effects.psychotic),
            level(self.anxiety, effects.anxiety),
        )


@dataclass(frozen=True)
class PatientContext:
    """One patient, as the report generators see it."""

    t0: datetime
    days: int
    patient_id: str
    ids: IdFactory
    profile: DiagnosisProfile
    config: SimulationConfig
    course: Course
    effects: DayEffects
    timeline: Timeline
    symptoms: Symptoms
    inflammatory: bool
    on_lithium: bool

    def phone_time(self, day: int, minute_of_day: float) -> datetime:
        """A local time on ``day`` where the patient is (the phone's zone), in UTC."""
        return local_instant(self.t0, day, minute_of_day, self.timeline.legal_offset[day])

    def clinic_time(self, day: int, minute_of_day: float) -> datetime:
        """A local time on ``day`` at home, expressed in the home zone (as an EHR writes it)."""
        home = ZoneInfo(self.timeline.home_zone)
        noon = local_instant(self.t0, day, 12 * 60, 0)
        offset = noon.astimezone(home).utcoffset() or timedelta(0)
        when = local_instant(self.t0, day, minute_of_day, offset.total_seconds() / 60)
        return when.astimezone(home)

    def away(self, day: int) -> bool:
        """Whether the patient is travelling on ``day``."""
        return any(t.depart <= day < t.back for t in self.timeline.trips)

    def back_home_after(self, day: int) -> int:
        """The first day at or after ``day`` the patient is at home."""
        while day < self.days and self.away(day):
            day += 1
        return day
