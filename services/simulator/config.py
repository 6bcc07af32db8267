"""The simulator's parameters: diagnoses, episode signatures, artefacts and delays.

Everything the generative model uses is a field of :class:`SimulationConfig`
(or of the :class:`DiagnosisProfile` and :class:`EpisodeProfile` it holds), so
a study can change one number and say so. Defaults and their sources are in
``docs/simulator.md``; the sources are also named beside each value here.

Where no published number exists (hospital coverage of a wearable, EHR
documentation lag) the default is a plain assumption and says so.

>>> config = SimulationConfig()
>>> [d.name for d in config.diagnoses]
['depression', 'bipolar', 'schizophrenia']
>>> config.profile("depression").inflammatory_fraction
0.27
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Diagnosis = Literal["depression", "bipolar", "schizophrenia"]
EpisodeKind = Literal["depressive", "manic", "hypomanic", "mixed", "psychotic"]

#: The simulator's fixed pseudonym key (a fixture, never a deployment's key):
#: simulated patients get the same pseudonyms in every run.
SIMULATOR_KEY = b"psymon-simulator-key-not-for-production-use"


@dataclass(frozen=True)
class Signature:
    """How an episode shows at full severity (``s = 1``); the prodrome shows part of it.

    Every effect is scaled by the day's latent severity ``s`` in ``[0, 1]``.

    Attributes
    ----------
    sleep_min
        Change of nightly sleep duration, minutes (negative: sleep loss).
        For depressive episodes a patient-level share flips the sign
        (hypersomnia, see :attr:`SimulationConfig.hypersomnia_fraction`).
    midpoint_min
        Shift of the sleep midpoint, minutes (positive: later).
    irregularity
        Relative increase of night-to-night SD of sleep timing and duration.
    steps_log
        Change of log daily steps (``+0.35`` is about 42 % more steps).
    step_variability
        Relative increase of the day-to-day SD of log steps.
    resting_hr
        Change of resting heart rate, beats per minute.
    hrv_log
        Change of log RMSSD (``-0.25`` is about 22 % lower HRV).
    depressive, manic, psychotic, anxiety
        Added to the latent symptom levels (fractions of each scale's range)
        that drive PHQ-9/MADRS, YMRS, PANSS and GAD-7.
    """

    sleep_min: float
    midpoint_min: float
    irregularity: float
    steps_log: float
    step_variability: float
    resting_hr: float
    hrv_log: float
    depressive: float = 0.0
    manic: float = 0.0
    psychotic: float = 0.0
    anxiety: float = 0.0


@dataclass(frozen=True)
class Medication:
    """The medication change that answers an episode (a dataclass, not the event model)."""

    name: str
    atc: str
    action: Literal["start", "stop", "dose_change"]
    dose: float
    dose_unit: str = "mg"


@dataclass(frozen=True)
class EpisodeProfile:
    """One kind of episode a diagnosis relapses into.

    ``weight`` is its share among the diagnosis's relapses;
    ``hospitalisation_probability`` the chance a relapse of this kind leads to
    an admission (an assumption: psychotic and manic relapses are admitted far
    more often than depressive ones).
    """

    kind: EpisodeKind
    weight: float
    signature: Signature
    hospitalisation_probability: float
    medication: Medication


@dataclass(frozen=True)
class DiagnosisProfile:
    """A diagnosis: its share of the cohort, relapse hazard, episodes and measurement plan.

    Latent symptom baselines are ``(low, high)`` ranges of a patient's stable
    level as a fraction of the scale's range; each patient draws one value.
    """

    name: Diagnosis
    share: float
    monthly_relapse_hazard: float
    episodes: tuple[EpisodeProfile, ...]
    episode_days: tuple[int, int]
    recovery_days: tuple[int, int]
    depressive: tuple[float, float]
    manic: tuple[float, float]
    psychotic: tuple[float, float]
    anxiety: tuple[float, float]
    self_reports: tuple[str, ...]
    clinician_instruments: tuple[str, ...]
    inflammatory_fraction: float = 0.0
    lithium_fraction: float = 0.0


_SERTRALINE_UP = Medication("sertraline", "N06AB06", "dose_change", 150.0)
_QUETIAPINE = Medication("quetiapine", "N05AH04", "start", 300.0)
_OLANZAPINE = Medication("olanzapine", "N05AH03", "start", 10.0)
_RISPERIDONE_UP = Medication("risperidone", "N05AX08", "dose_change", 6.0)

#: Depressive relapse: less activity (Burton 2013), lower HRV and higher heart
#: rate (Kemp 2010), disturbed and later sleep.
DEPRESSIVE = Signature(
    sleep_min=-50,
    midpoint_min=40,
    irregularity=0.6,
    steps_log=-0.35,
    step_variability=0.5,
    resting_hr=4,
    hrv_log=-0.2,
    depressive=0.45,
    anxiety=0.3,
)

#: Bipolar depression: as unipolar, with the larger step variability that
#: flagged episode onset a median 7 days early in Ortiz 2025.
BIPOLAR_DEPRESSIVE = Signature(
    sleep_min=-40,
    midpoint_min=45,
    irregularity=0.8,
    steps_log=-0.35,
    step_variability=0.8,
    resting_hr=4,
    hrv_log=-0.2,
    depressive=0.45,
    anxiety=0.25,
)

#: Mania: sleep loss is the commonest early sign (Jackson 2003), with more and
#: more erratic activity.
MANIC = Signature(
    sleep_min=-120,
    midpoint_min=-30,
    irregularity=1.0,
    steps_log=0.35,
    step_variability=1.0,
    resting_hr=8,
    hrv_log=-0.3,
    depressive=0.05,
    manic=0.5,
    psychotic=0.05,
    anxiety=0.1,
)

HYPOMANIC = Signature(
    sleep_min=-70,
    midpoint_min=-15,
    irregularity=0.7,
    steps_log=0.2,
    step_variability=0.7,
    resting_hr=5,
    hrv_log=-0.2,
    manic=0.3,
)

MIXED = Signature(
    sleep_min=-90,
    midpoint_min=30,
    irregularity=1.0,
    steps_log=0.0,
    step_variability=1.0,
    resting_hr=7,
    hrv_log=-0.3,
    depressive=0.35,
    manic=0.3,
    anxiety=0.35,
)

#: Psychotic relapse: sleep loss and a later, irregular sleep phase, less and
#: more erratic activity (Barnett 2018), lower vagal tone (Clamor 2016).
PSYCHOTIC = Signature(
    sleep_min=-80,
    midpoint_min=90,
    irregularity=1.2,
    steps_log=-0.2,
    step_variability=0.8,
    resting_hr=7,
    hrv_log=-0.3,
    depressive=0.15,
    psychotic=0.18,
    anxiety=0.2,
)

#: Monthly relapse hazards describe a recently remitted, high-risk cohort,
#: enriched over maintenance trials so that a 180-day demo sees relapses:
#: 1-year relapse is 18 % on antidepressants (Geddes 2003), 27 % on
#: antipsychotics (Leucht 2012); bipolar recurrence 49 % within 2 years
#: (Perlis 2006, STEP-BD).
DEFAULT_DIAGNOSES: tuple[DiagnosisProfile, ...] = (
    DiagnosisProfile(
        name="depression",
        share=0.5,
        monthly_relapse_hazard=0.06,
        episodes=(EpisodeProfile("depressive", 1.0, DEPRESSIVE, 0.1, _SERTRALINE_UP),),
        episode_days=(28, 70),
        recovery_days=(14, 42),
        depressive=(0.10, 0.25),
        manic=(0.0, 0.03),
        psychotic=(0.0, 0.02),
        anxiety=(0.15, 0.35),
        self_reports=("phq9", "gad7"),
        clinician_instruments=("madrs",),
        inflammatory_fraction=0.27,  # CRP > 3 mg/L in 27 % of depressed patients (Osimo 2019)
    ),
    DiagnosisProfile(
        name="bipolar",
        share=0.25,
        monthly_relapse_hazard=0.08,
        episodes=(
            EpisodeProfile("depressive", 0.45, BIPOLAR_DEPRESSIVE, 0.15, _QUETIAPINE),
            EpisodeProfile("manic", 0.35, MANIC, 0.45, _OLANZAPINE),
            EpisodeProfile("hypomanic", 0.1, HYPOMANIC, 0.05, _QUETIAPINE),
            EpisodeProfile("mixed", 0.1, MIXED, 0.3, _OLANZAPINE),
        ),
        episode_days=(21, 56),
        recovery_days=(14, 42),
        depressive=(0.08, 0.20),
        manic=(0.03, 0.08),
        psychotic=(0.0, 0.03),
        anxiety=(0.10, 0.30),
        self_reports=("phq9", "gad7"),
        clinician_instruments=("ymrs", "madrs"),
        lithium_fraction=0.5,  # an assumption: lithium is first-line maintenance (NICE CG185)
    ),
    DiagnosisProfile(
        name="schizophrenia",
        share=0.25,
        monthly_relapse_hazard=0.06,
        episodes=(EpisodeProfile("psychotic", 1.0, PSYCHOTIC, 0.4, _RISPERIDONE_UP),),
        episode_days=(21, 56),
        recovery_days=(14, 42),
        depressive=(0.10, 0.22),
        manic=(0.0, 0.03),
        psychotic=(0.12, 0.22),
        anxiety=(0.10, 0.30),
        self_reports=("phq9",),
        clinician_instruments=("panss",),
    ),
)

#: Home time zones and their shares; travellers go to a zone >= 4 h away.
DEFAULT_HOME_ZONES: tuple[tuple[str, float], ...] = (
    ("Europe/Berlin", 0.35),
    ("Europe/London", 0.2),
    ("Europe/Madrid", 0.1),
    ("America/New_York", 0.25),
    ("America/Chicago", 0.1),
)

DEFAULT_TRAVEL_ZONES: tuple[str, ...] = (
    "America/New_York",
    "America/Los_Angeles",
    "Europe/Berlin",
    "Europe/London",
    "Asia/Tokyo",
)


@dataclass(frozen=True)
class Arm:
    """A treatment arm patients are randomised to.

    ``hazard_ratio`` multiplies the relapse hazard of patients in ``subgroup``
    (``"inflammatory"``: only those with low-grade inflammation, as an
    anti-inflammatory add-on helped only patients with raised CRP in Raison
    2013).

    >>> Arm("infliximab", hazard_ratio=0.5, subgroup="inflammatory").subgroup
    'inflammatory'
    """

    name: str
    hazard_ratio: float = 1.0
    subgroup: Literal["all", "inflammatory"] = "all"

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("an arm needs a non-empty name")
        if not self.hazard_ratio > 0:
            raise ValueError(
                f"arm {self.name!r}: hazard_ratio must be > 0, got {self.hazard_ratio}"
            )


@dataclass(frozen=True)
class SimulationConfig:
    """Every parameter of the generative model (defaults documented in docs/simulator.md)."""

    diagnoses: tuple[DiagnosisProfile, ...] = DEFAULT_DIAGNOSES
    # -- course --------------------------------------------------------------------------------
    relapse_hazard_scale: float = 1.0  # multiplies every diagnosis's relapse hazard
    min_onset_day: int = 28  # four weeks of stable baseline before any relapse
    prodrome_days: tuple[int, int] = (7, 21)  # early signs 1-3 weeks before (Birchwood 1989)
    prodrome_peak: float = 0.5  # latent severity reached at the end of the prodrome
    hypersomnia_fraction: float = 0.25  # depressive relapses with longer, not shorter, sleep
    # -- wearables -----------------------------------------------------------------------------
    coverage: tuple[float, float] = (0.70, 0.95)  # share of hours worn, per patient
    prodrome_coverage_loss: float = 0.35  # worn share falls by this at s = 1 (Barnett 2018)
    missing_day_probability: float = 0.02
    missing_day_prodrome: float = 0.12  # extra whole-day gaps at s = 1
    hospital_coverage: float = 0.2  # worn share while admitted (an assumption)
    nonwear_mean_hours: float = 3.0
    upload_delay_minutes: tuple[float, float] = (1.0, 15.0)
    offline_probability: float = 0.04  # per day: the phone stops syncing for a while
    offline_median_hours: float = 10.0
    offline_hours: tuple[float, float] = (3.0, 96.0)
    duplicate_probability: float = 0.01  # an upload sent twice
    clock_skew_fraction: float = 0.08  # patients whose device clock goes wrong once
    clock_skew_minutes: tuple[int, int] = (3, 90)
    clock_skew_days: tuple[int, int] = (2, 14)
    travel_fraction: float = 0.15  # patients who travel across time zones once
    travel_days: tuple[int, int] = (5, 21)
    jet_lag_minutes_per_day: float = 90.0  # the body clock re-entrains ~1-1.5 h a day
    home_zones: tuple[tuple[str, float], ...] = DEFAULT_HOME_ZONES
    travel_zones: tuple[str, ...] = DEFAULT_TRAVEL_ZONES
    # -- self-reports --------------------------------------------------------------------------
    phq9_intervals: tuple[tuple[int, float], ...] = ((7, 0.6), (14, 0.4))
    gad7_interval_days: int = 14
    report_miss: tuple[float, float] = (0.05, 0.30)  # per patient
    report_miss_prodrome: float = 0.35  # extra miss probability at s = 1
    report_late_probability: float = 0.05  # app offline: hours to days late
    report_duplicate_probability: float = 0.02  # app retry: same event twice
    item9_probability: tuple[float, float, float] = (0.0, 0.05, 0.25)  # stable, prodrome, relapse
    # -- clinic and lab ------------------------------------------------------------------------
    visit_interval_days: tuple[int, int] = (28, 56)
    visit_miss_probability: float = 0.1
    note_late_probability: float = 0.2  # visit scores entered 1-7 days later
    crp_probability: float = 0.5  # CRP drawn at a visit (always at the first)
    acute_crp_probability: float = 0.03  # an intercurrent infection: CRP x 4-15
    lithium_interval_days: tuple[int, int] = (28, 91)  # every 3 months at most (NICE CG185)
    lithium_toxicity_probability: float = 0.04  # per draw: a level of 1.55-2.4 mmol/L
    # -- outcome delays ------------------------------------------------------------------------
    detection_days: tuple[int, int] = (2, 10)  # onset to the visit that recognises it
    relapse_report_median_days: float = 7.0  # after detection; lognormal, sigma 0.7
    relapse_report_days: tuple[float, float] = (1.0, 50.0)
    admission_days: tuple[int, int] = (2, 14)  # onset to admission
    stay_days: tuple[int, int] = (7, 35)
    discharge_letter_days: tuple[float, float] = (1.0, 7.0)
    medication_report_days: tuple[float, float] = (0.5, 14.0)

    def profile(self, name: str) -> DiagnosisProfile:
        """The profile of a diagnosis by name.

        >>> SimulationConfig().profile("bipolar").clinician_instruments
        ('ymrs', 'madrs')
        """
        for profile in self.diagnoses:
            if profile.name == name:
                return profile
        names = ", ".join(p.name for p in self.diagnoses)
        raise ValueError(f"unknown diagnosis {name!r}; accepted: {names}")
