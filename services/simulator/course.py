"""The latent course of illness: stable, prodrome, relapse, recovery.

A semi-Markov chain over days. In ``stable`` a relapse onset arrives with a
constant daily hazard (from the diagnosis's monthly hazard, times an arm's
hazard ratio); the ``prodrome`` takes the 7-21 days before the onset, the
``relapse`` lasts the diagnosis's episode length and ``recovery`` its recovery
length, after which the patient is stable again. No onset falls before
``min_onset_day``, so every patient has a stable baseline first.

The latent severity ``s`` drives every observable signal:

* stable: 0;
* prodrome day ``i`` of ``L``: ``peak * ((i + 1) / L) ** 1.5`` (slow, then fast);
* relapse: 1;
* recovery day ``j`` of ``R``: ``1 - (j + 1) / (R + 1)``.

>>> import numpy as np
>>> from services.simulator.config import SimulationConfig
>>> config = SimulationConfig()
>>> course = simulate_course(np.random.default_rng(3), config.profile("bipolar"), 365, config)
>>> all(7 <= e.onset - e.prodrome_start <= 21 for e in course.episodes)
True
>>> float(course.severity.max()) <= 1.0
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from services.simulator.config import (
    DiagnosisProfile,
    EpisodeProfile,
    Signature,
    SimulationConfig,
)

STABLE, PRODROME, RELAPSE, RECOVERY = 0, 1, 2, 3
STATE_NAMES: tuple[str, ...] = ("stable", "prodrome", "relapse", "recovery")

#: Days in an average month, to turn a monthly hazard into a daily one.
DAYS_PER_MONTH = 30.4375


@dataclass(frozen=True)
class Episode:
    """One relapse, as day indices from the start of the simulation.

    ``episode_end`` is the first recovery day and ``recovery_end`` the first
    stable day after it (both may lie beyond the simulated period).
    """

    prodrome_start: int
    onset: int
    episode_end: int
    recovery_end: int
    profile: EpisodeProfile
    admission: int | None
    discharge: int | None

    @property
    def kind(self) -> str:
        """The episode kind: depressive, manic, hypomanic, mixed or psychotic."""
        return self.profile.kind


@dataclass(frozen=True)
class Course:
    """Per-day latent state, severity and episode of one patient."""

    state: np.ndarray
    severity: np.ndarray
    episode_of_day: np.ndarray
    episodes: tuple[Episode, ...]

    def hospital_days(self) -> np.ndarray:
        """A boolean per day: admitted to hospital."""
        admitted = np.zeros(len(self.state), dtype=bool)
        for episode in self.episodes:
            if episode.admission is not None and episode.discharge is not None:
                admitted[episode.admission : episode.discharge] = True
        return admitted


def daily_relapse_probability(monthly: float, hazard_ratio: float = 1.0) -> float:
    """The daily onset probability for a monthly probability, scaled as a hazard.

    >>> round(daily_relapse_probability(0.06), 5)
    0.00203
    """
    if not 0 <= monthly < 1:
        raise ValueError(f"monthly_relapse_hazard must lie in [0, 1), got {monthly}")
    rate = -math.log1p(-monthly) / DAYS_PER_MONTH * hazard_ratio
    return -math.expm1(-rate)


def _pick_episode(rng: np.random.Generator, profile: DiagnosisProfile) -> EpisodeProfile:
    weights = np.array([e.weight for e in profile.episodes], dtype=float)
    return profile.episodes[int(rng.choice(len(weights), p=weights / weights.sum()))]


def simulate_course(
    rng: np.random.Generator,
    profile: DiagnosisProfile,
    days: int,
    config: SimulationConfig,
    hazard_ratio: float = 1.0,
) -> Course:
    """Draw one patient's course over ``days`` days.

    Parameters
    ----------
    rng
        The patient's course generator (consumed in a fixed order).
    profile
        The patient's diagnosis.
    days
        Length of the simulated period.
    config
        Prodrome length, minimum onset day, prodrome peak.
    hazard_ratio
        Multiplies the relapse hazard (a treatment arm), as does
        ``config.relapse_hazard_scale``.
    """
    p_day = daily_relapse_probability(
        profile.monthly_relapse_hazard, hazard_ratio * config.relapse_hazard_scale
    )
    lo, hi = config.prodrome_days
    episodes: list[Episode] = []
    free = 0  # first day a new prodrome may start
    while p_day > 0:
        prodrome = int(rng.integers(lo, hi + 1))
        onset = max(free + prodrome, config.min_onset_day) + int(rng.geometric(p_day)) - 1
        chosen = _pick_episode(rng, profile)
        length = int(rng.integers(profile.episode_days[0], profile.episode_days[1] + 1))
        recovery = int(rng.integers(profile.recovery_days[0], profile.recovery_days[1] + 1))
        admitted = rng.random() < chosen.hospitalisation_probability
        admission_delay = int(rng.integers(config.admission_days[0], config.admission_days[1] + 1))
        stay = int(rng.integers(config.stay_days[0], config.stay_days[1] + 1))
        if onset >= days:
            break
        admission = onset + admission_delay if admitted else None
        episodes.append(
            Episode(
                prodrome_start=onset - prodrome,
                onset=onset,
                episode_end=onset + length,
                recovery_end=onset + length + recovery,
                profile=chosen,
                admission=admission,
                discharge=None if admission is None else admission + stay,
            )
        )
        free = onset + length + recovery
    return _lay_out(days, episodes, config.prodrome_peak)


def _lay_out(days: int, episodes: list[Episode], peak: float) -> Course:
    state = np.zeros(days, dtype=np.int8)
    severity = np.zeros(days, dtype=float)
    episode_of_day = np.full(days, -1, dtype=np.int16)
    for index, e in enumerate(episodes):
        prodrome = e.onset - e.prodrome_start
        ramp = peak * (np.arange(1, prodrome + 1) / prodrome) ** 1.5
        recovery = e.recovery_end - e.episode_end
        fall = 1.0 - np.arange(1, recovery + 1) / (recovery + 1)
        spans = (
            (e.prodrome_start, e.onset, PRODROME, ramp),
            (e.onset, e.episode_end, RELAPSE, np.ones(e.episode_end - e.onset)),
            (e.episode_end, e.recovery_end, RECOVERY, fall),
        )
        for start, end, code, values in spans:
            stop = min(end, days)
            if start >= stop:
                continue
            state[start:stop] = code
            severity[start:stop] = values[: stop - start]
            episode_of_day[start:stop] = index
    return Course(state, severity, episode_of_day, tuple(episodes))


@dataclass(frozen=True)
class DayEffects:
    """Each signature field as a per-day array, already scaled by the day's severity."""

    sleep_min: np.ndarray
    midpoint_min: np.ndarray
    irregularity: np.ndarray
    steps_log: np.ndarray
    step_variability: np.ndarray
    resting_hr: np.ndarray
    hrv_log: np.ndarray
    depressive: np.ndarray
    manic: np.ndarray
    psychotic: np.ndarray
    anxiety: np.ndarray


_FIELDS = tuple(DayEffects.__dataclass_fields__)


def day_effects(course: Course, hypersomnia: bool) -> DayEffects:
    """The signature of each day's episode times its severity (zeros when stable).

    ``hypersomnia`` flips the sleep change of depressive episodes for this
    patient (longer sleep instead of shorter).
    """
    days = len(course.state)
    arrays = {name: np.zeros(days, dtype=float) for name in _FIELDS}
    for index, episode in enumerate(course.episodes):
        mask = course.episode_of_day == index
        if not mask.any():
            continue
        signature: Signature = episode.profile.signature
        s = course.severity[mask]
        for name in _FIELDS:
            value = float(getattr(signature, name))
            if name == "sleep_min" and hypersomnia and episode.kind == "depressive":
                value = -value
            arrays[name][mask] = value * s
    return DayEffects(**arrays)
