"""Ground truth of a simulated cohort: what really happened to each patient.

Dates are UTC calendar dates of the simulation grid (day ``d`` is the date of
``start + d days``); the patient's local date can differ by one near midnight.

>>> from datetime import date
>>> r = RelapseTruth("depressive", date(2026, 2, 1), date(2026, 2, 15), date(2026, 3, 20),
...                  date(2026, 4, 10), None, None)
>>> r.prodrome_days
14
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from services.simulator.course import STATE_NAMES, Course, Episode
from services.simulator.timeline import Timeline
from services.simulator.wearables import WearableBaseline


@dataclass(frozen=True)
class RelapseTruth:
    """One relapse: its prodrome, onset, end of episode and of recovery, and any admission."""

    episode: str
    prodrome_start: date
    onset: date
    episode_end: date
    recovery_end: date
    hospital_admission: date | None
    hospital_discharge: date | None

    @property
    def prodrome_days(self) -> int:
        """Days from the start of the prodrome to the onset (7-21 by default)."""
        return (self.onset - self.prodrome_start).days

    def to_json(self) -> dict[str, Any]:
        """JSON-ready fields, dates as ISO strings."""
        return {
            "episode": self.episode,
            "prodrome_start": self.prodrome_start.isoformat(),
            "onset": self.onset.isoformat(),
            "episode_end": self.episode_end.isoformat(),
            "recovery_end": self.recovery_end.isoformat(),
            "prodrome_days": self.prodrome_days,
            "hospital_admission": _iso(self.hospital_admission),
            "hospital_discharge": _iso(self.hospital_discharge),
        }


def _iso(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


@dataclass(frozen=True)
class PatientTruth:
    """Everything the simulator decided about one patient."""

    patient_id: str
    source_id: str
    diagnosis: str
    inflammatory: bool
    on_lithium: bool
    arm: str | None
    home_time_zone: str
    device: str
    hypersomnia: bool
    phq9_interval_days: int | None
    first_day: date
    relapses: tuple[RelapseTruth, ...]
    travel: tuple[tuple[date, date, str], ...]
    clock_skews: tuple[tuple[date, date, int], ...]
    daily_states: tuple[str, ...]
    wearable_baseline: WearableBaseline
    symptoms: Mapping[str, float]

    def state_on(self, day: date) -> str:
        """The latent state on a grid date: stable, prodrome, relapse or recovery.

        Raises
        ------
        ValueError
            If ``day`` lies outside the simulated period.
        """
        index = (day - self.first_day).days
        if not 0 <= index < len(self.daily_states):
            last = self.first_day + timedelta(days=len(self.daily_states) - 1)
            raise ValueError(
                f"day {day.isoformat()} is outside the simulated period "
                f"{self.first_day.isoformat()}..{last.isoformat()}"
            )
        return self.daily_states[index]

    def to_json(self) -> dict[str, Any]:
        """JSON-ready ground truth of the patient."""
        return {
            "patient_id": self.patient_id,
            "source_id": self.source_id,
            "diagnosis": self.diagnosis,
            "inflammatory": self.inflammatory,
            "on_lithium": self.on_lithium,
            "arm": self.arm,
            "home_time_zone": self.home_time_zone,
            "device": self.device,
            "hypersomnia": self.hypersomnia,
            "phq9_interval_days": self.phq9_interval_days,
            "relapses": [r.to_json() for r in self.relapses],
            "travel": [
                {"depart": a.isoformat(), "back": b.isoformat(), "time_zone": z}
                for a, b, z in self.travel
            ],
            "clock_skews": [
                {"start": a.isoformat(), "end": b.isoformat(), "minutes": m}
                for a, b, m in self.clock_skews
            ],
            "daily_states": list(self.daily_states),
            "wearable_baseline": self.wearable_baseline.to_json(),
            "symptoms": {k: round(v, 4) for k, v in self.symptoms.items()},
        }


def relapse_truth(episode: Episode, first_day: date) -> RelapseTruth:
    """An :class:`~services.simulator.course.Episode` as dates."""

    def on(day: int | None) -> date | None:
        return None if day is None else first_day + timedelta(days=day)

    return RelapseTruth(
        episode=episode.kind,
        prodrome_start=first_day + timedelta(days=episode.prodrome_start),
        onset=first_day + timedelta(days=episode.onset),
        episode_end=first_day + timedelta(days=episode.episode_end),
        recovery_end=first_day + timedelta(days=episode.recovery_end),
        hospital_admission=on(episode.admission),
        hospital_discharge=on(episode.discharge),
    )


def daily_states(course: Course) -> tuple[str, ...]:
    """The state name of each simulated day."""
    return tuple(STATE_NAMES[code] for code in course.state.tolist())


def travel_truth(timeline: Timeline, first_day: date) -> tuple[tuple[date, date, str], ...]:
    """Trips as (depart, back, zone) dates."""
    return tuple(
        (first_day + timedelta(days=t.depart), first_day + timedelta(days=t.back), t.zone)
        for t in timeline.trips
    )


def skew_truth(timeline: Timeline, first_day: date) -> tuple[tuple[date, date, int], ...]:
    """Device clock errors as (start, end, minutes)."""
    return tuple(
        (first_day + timedelta(days=s.start), first_day + timedelta(days=s.end), s.minutes)
        for s in timeline.skews
    )
