"""A patient's biomarker profile, kept online: what sets this patient apart, and on how much data.

Precision psychiatry stratifies patients by what they are like over weeks
(a trait), not by today's state. :class:`BiomarkerProfile` keeps, for one
patient, slowly moving summaries of every kind of data psymon sees, each with
the count of observations behind it:

=====================  =====================================================================
feature                definition (exponentially weighted means fade old data)
=====================  =====================================================================
``phq_somatic``        PHQ-9/PHQ-8 somatic items 3-5 (sleep, energy, appetite), share of
                       their range
``phq_cognitive``      PHQ cognitive-affective items (1, 2, 6-8, and 9 on the PHQ-9), share
                       of their range; somatic and cognitive-affective symptoms differ in
                       their links to inflammation and treatment (Fried & Nesse 2015;
                       Majd 2020; Jokela 2016)
``phq_somatic_share``  symptom shape rather than severity: ``phq_somatic / (phq_somatic +
                       phq_cognitive)``, 0.5 when both dimensions are equally loaded
``panss_positive``     PANSS positive P1-P7, negative N1-N7, general G1-G16, each as a
``panss_negative``     share of its range (Kay 1987)
``panss_general``
``panss_negative_share`` ``panss_negative / (panss_positive + panss_negative)``: shape
``crp_log``            mean ln CRP (mg/L) of the last non-acute results (> 10 mg/L is an
                       acute-phase response and left out, Pearson 2003)
``il6_log``            mean ln IL-6 (pg/mL); IL-6 has no validated cut-off, so it is read
                       against the population in the subgroup model and against the
                       patient's own baseline in :mod:`streams.labs`
``sleep_duration``     minutes asleep per night
``sleep_midpoint``     sleep midpoint, hours after local midnight (chronotype)
``sleep_irregularity`` SD of the sleep midpoint from night to night, hours (circadian
                       regularity; Phillips 2017)
``steps_log``          ln daily steps (activity level)
``step_variability``   7-day coefficient of variation of steps (Ortiz 2025)
``resting_hr``         resting heart rate, /min (autonomic tone)
``hrv_log``            ln RMSSD (ms): lower in depression (Kemp 2010) and psychosis
                       (Clamor 2016)
=====================  =====================================================================

Symptom severities move with the episode (a relapse raises them all), so
they mark a patient's current state as much as a trait: the subgroup model
uses the *trait* features by default (:data:`TRAIT_FEATURES`: biomarkers,
wearable phenotype and symptom shape, not severity).

Beside the vector it keeps the treatment exposure (medications started and
not stopped), the depressive-syndrome evidence the inflammatory specifier
needs (:mod:`streams.stratification.specifiers`), and counts: ratings,
results, days and worn days. The whole profile is a few hundred bytes.

>>> from streams.stratification.config import StratificationConfig
>>> profile, config = BiomarkerProfile(), StratificationConfig()
>>> items = {str(i): 1 for i in range(1, 10)} | {"3": 3, "4": 3}
>>> profile.observe_score("phq9", 14, items, 0, clinician=False, episode_level=True,
...                       config=config)
>>> [profile.observe_lab("crp", v, n, config) for n, v in enumerate([4.0, 12.0, 5.0])]
[None, None, None]
>>> profile.crp, profile.crp_acute
([4.0, 5.0], 1)
>>> {k: round(v, 3) for k, v in profile.vector(config).items()}
{'phq_somatic': 0.778, 'phq_cognitive': 0.333, 'phq_somatic_share': 0.7, 'crp_log': 1.498}
>>> profile.support()["ratings"], profile.support()["crp_results"]
(1, 3)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache

from schemas.instruments import get_instrument
from streams.stratification.config import StratificationConfig

#: Every feature a profile vector can hold, in a stable order.
PROFILE_FEATURES: tuple[str, ...] = (
    "phq_somatic",
    "phq_cognitive",
    "phq_somatic_share",
    "panss_positive",
    "panss_negative",
    "panss_general",
    "panss_negative_share",
    "crp_log",
    "il6_log",
    "sleep_duration",
    "sleep_midpoint",
    "sleep_irregularity",
    "steps_log",
    "step_variability",
    "resting_hr",
    "hrv_log",
)

#: Symptom severities: they rise and fall with episodes (state more than trait).
SEVERITY_FEATURES: frozenset[str] = frozenset(
    {"phq_somatic", "phq_cognitive", "panss_positive", "panss_negative", "panss_general"}
)
#: What the subgroup model clusters on by default: everything but severity.
TRAIT_FEATURES: tuple[str, ...] = tuple(f for f in PROFILE_FEATURES if f not in SEVERITY_FEATURES)
#: Shape features: the first dimension's share of the pair's summed severity.
_SHARES: dict[str, tuple[str, str]] = {
    "phq_somatic_share": ("phq_somatic", "phq_cognitive"),
    "panss_negative_share": ("panss_negative", "panss_positive"),
}
#: Below this summed severity (shares of range) a shape is not defined.
_MIN_SHAPE_LOAD = 0.02

#: Subscales of the item-level instruments, as profile features.
SUBSCALE_FEATURES: dict[str, dict[str, str]] = {
    "phq9": {"somatic": "phq_somatic", "cognitive_affective": "phq_cognitive"},
    "phq8": {"somatic": "phq_somatic", "cognitive_affective": "phq_cognitive"},
    "panss": {
        "positive": "panss_positive",
        "negative": "panss_negative",
        "general": "panss_general",
    },
}

#: Depression rating scales (their ratings are the depressive-syndrome evidence).
DEPRESSION_INSTRUMENTS = frozenset({"phq9", "phq8", "madrs", "hamd17", "qids_sr16"})

#: Daily wearable features the profile tracks, with the transform applied.
_DAY_FEATURES: tuple[tuple[str, str, bool], ...] = (
    ("sleep_duration", "sleep_duration", False),
    ("sleep_midpoint", "sleep_midpoint", False),
    ("steps", "steps_log", True),
    ("step_variability", "step_variability", False),
    ("resting_hr", "resting_hr", False),
    ("hrv_rmssd", "hrv_log", True),
)
_WEARABLE = frozenset(name for _, name, _ in _DAY_FEATURES)


#: The features kept as exponentially weighted means, in storage order.
TRACKED: tuple[str, ...] = (
    "phq_somatic",
    "phq_cognitive",
    "panss_positive",
    "panss_negative",
    "panss_general",
    "il6_log",
    "sleep_duration",
    "sleep_midpoint",
    "steps_log",
    "step_variability",
    "resting_hr",
    "hrv_log",
    "coverage",
)
_INDEX = {name: i for i, name in enumerate(TRACKED)}
_MIDPOINT = _INDEX["sleep_midpoint"]


def ew_step(mean: float, var: float, n: int, x: float, span: int) -> tuple[float, float]:
    """One step of an exponentially weighted mean and variance; ``n`` counts ``x`` already.

    The weight of the new value is ``max(1/n, 1/span)``: a plain running mean
    until ``span`` values, then an exponential fade (West 1979 for the variance).

    >>> mean, var = ew_step(0.0, 0.0, 1, 1.0, span=10)
    >>> ew_step(mean, var, 2, 3.0, span=10)
    (2.0, 1.0)
    """
    alpha = max(1.0 / n, 1.0 / span)
    diff = x - mean
    step = alpha * diff
    return mean + step, (1.0 - alpha) * (var + diff * step)


@dataclass(slots=True)
class BiomarkerProfile:
    """One patient's biomarker profile (see the module docstring for its features).

    Stored compactly (the whole patient state must stay within 8 KB): one
    mean and one count per tracked feature, in :data:`TRACKED` order (empty
    until the first value).

    Attributes
    ----------
    first_at, last_at
        Event times (epoch microseconds) of the first and last observation folded in.
    means, counts
        Exponentially weighted mean of each :data:`TRACKED` feature and the
        number of values behind it (``coverage``: the share of each closed
        day's hours with wearable data).
    midpoint_var
        Exponentially weighted variance of the sleep midpoint (hours²).
    crp
        The last ``crp_window`` non-acute CRP results (mg/L), oldest first.
    crp_results, crp_acute
        CRP results seen, and how many of them were acute (left out of ``crp``).
    ratings, depression_ratings, episode_ratings, clinician_depression
        Ratings seen; on a depression scale; at or above its episode-onset
        total; clinician-rated depression scales (MADRS, HAM-D, ...).
    days, worn_days
        Wearable days closed, and those worn enough to count.
    medications, medication_changes
        Medications started (or changed) and not stopped, with when (epoch us);
        and how many medication changes were recorded.
    """

    first_at: int | None = None
    last_at: int | None = None
    means: list[float] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    midpoint_var: float = 0.0
    crp: list[float] = field(default_factory=list)
    crp_results: int = 0
    crp_acute: int = 0
    ratings: int = 0
    depression_ratings: int = 0
    episode_ratings: int = 0
    clinician_depression: int = 0
    days: int = 0
    worn_days: int = 0
    medications: dict[str, int] = field(default_factory=dict)
    medication_changes: int = 0

    # -- observing -----------------------------------------------------------------------------

    def _seen(self, at: int) -> None:
        if self.first_at is None or at < self.first_at:
            self.first_at = at
        if self.last_at is None or at > self.last_at:
            self.last_at = at

    def _learn(self, name: str, x: float, span: int) -> None:
        if not self.means:
            self.means = [0.0] * len(TRACKED)
            self.counts = [0] * len(TRACKED)
        i = _INDEX[name]
        self.counts[i] += 1
        var = self.midpoint_var if i == _MIDPOINT else 0.0
        self.means[i], var = ew_step(self.means[i], var, self.counts[i], x, span)
        if i == _MIDPOINT:
            self.midpoint_var = var

    def count(self, name: str) -> int:
        """Values behind the tracked feature ``name``."""
        return self.counts[_INDEX[name]] if self.counts else 0

    def observe_score(
        self,
        instrument: str,
        total: int,
        items: Mapping[str, int] | None,
        at: int,
        *,
        clinician: bool,
        episode_level: bool,
        config: StratificationConfig,
    ) -> None:
        """Fold in one rating: its subscales (when items came with it) and the depression evidence.

        ``episode_level``: the total is at or above the instrument's episode-onset total.
        """
        self._seen(at)
        self.ratings += 1
        if instrument in DEPRESSION_INSTRUMENTS:
            self.depression_ratings += 1
            self.episode_ratings += int(episode_level)
            self.clinician_depression += int(clinician)
        features = SUBSCALE_FEATURES.get(instrument)
        if features is None or items is None:
            return
        for name, share in subscale_shares(instrument, items).items():
            feature = features.get(name)
            if feature is not None:
                self._learn(feature, share, config.score_span)

    def observe_lab(
        self, analyte: str, value: float, at: int, config: StratificationConfig
    ) -> None:
        """Fold in one lab result (canonical unit); CRP and IL-6 enter the profile."""
        if analyte == "crp":
            self._seen(at)
            self.crp_results += 1
            if value > config.crp_acute_above:
                self.crp_acute += 1
                return
            self.crp.append(value)
            del self.crp[: -config.crp_window]
        elif analyte == "il6":
            self._seen(at)
            self._learn("il6_log", math.log(max(value, 0.01)), config.lab_span)

    def observe_day(
        self,
        values: Mapping[str, float | None],
        coverage: float,
        at: int,
        config: StratificationConfig,
    ) -> None:
        """Fold in one closed wearable day's features (:mod:`streams.wearable_features`)."""
        self._seen(at)
        self.days += 1
        span = config.wearable_span_days
        self._learn("coverage", coverage, span)
        if coverage < config.min_day_coverage:
            return
        self.worn_days += 1
        for source, feature, logged in _DAY_FEATURES:
            value = values.get(source)
            if value is None or (logged and value <= 0):
                continue
            self._learn(feature, math.log(value) if logged else value, span)

    def observe_medication(self, name: str, action: str, at: int) -> None:
        """Fold in a medication change: ``start`` and ``dose_change`` expose, ``stop`` ends."""
        self._seen(at)
        self.medication_changes += 1
        key = name.strip().lower()
        if action == "stop":
            self.medications.pop(key, None)
        elif action == "start" or key not in self.medications:
            self.medications[key] = at

    # -- reading -------------------------------------------------------------------------------

    def crp_log(self) -> float | None:
        """Mean ln CRP of the remembered non-acute results (None without any)."""
        if not self.crp:
            return None
        return sum(math.log(max(v, 0.01)) for v in self.crp) / len(self.crp)

    def vector(self, config: StratificationConfig) -> dict[str, float]:
        """The profile's features that have enough data, in :data:`PROFILE_FEATURES` order."""
        values: dict[str, float] = {}
        for feature in PROFILE_FEATURES:
            if feature == "crp_log":
                crp = self.crp_log()
                if crp is not None:
                    values[feature] = crp
                continue
            if feature in _SHARES:
                first, second = _SHARES[feature]
                if first in values and second in values:
                    load = values[first] + values[second]
                    if load >= _MIN_SHAPE_LOAD:
                        values[feature] = values[first] / load
                continue
            source = "sleep_midpoint" if feature == "sleep_irregularity" else feature
            n = self.count(source)
            if n == 0 or (source in _WEARABLE and n < config.min_wearable_days):
                continue
            if feature == "sleep_irregularity":
                values[feature] = math.sqrt(max(self.midpoint_var, 0.0))
            else:
                values[feature] = self.means[_INDEX[source]]
        return values

    def support(self) -> dict[str, int]:
        """How much data the profile rests on: counts per kind and the days it spans."""
        span = 0
        if self.first_at is not None and self.last_at is not None:
            span = (self.last_at - self.first_at) // 86_400_000_000
        return {
            "ratings": self.ratings,
            "crp_results": self.crp_results,
            "il6_results": self.count("il6_log"),
            "days": self.days,
            "worn_days": self.worn_days,
            "medication_changes": self.medication_changes,
            "span_days": int(span),
        }

    def clone(self) -> BiomarkerProfile:
        """An independent copy."""
        return BiomarkerProfile(
            self.first_at,
            self.last_at,
            list(self.means),
            list(self.counts),
            self.midpoint_var,
            list(self.crp),
            self.crp_results,
            self.crp_acute,
            self.ratings,
            self.depression_ratings,
            self.episode_ratings,
            self.clinician_depression,
            self.days,
            self.worn_days,
            dict(self.medications),
            self.medication_changes,
        )


def subscale_shares(instrument: str, items: Mapping[str, int]) -> dict[str, float]:
    """Each subscale of a rating as a share of its range (0: floor, 1: ceiling).

    ``{}`` when the instrument has no subscales or the items are incomplete.

    >>> items = {str(i): 0 for i in range(1, 10)} | {"3": 3, "4": 3, "5": 3}
    >>> subscale_shares("phq9", items)
    {'somatic': 1.0, 'cognitive_affective': 0.0}
    """
    needed, subscales = _subscale_ranges(instrument)
    if not needed <= items.keys():
        return {}
    shares: dict[str, float] = {}
    for name, keys, low, high in subscales:
        total = sum(map(items.__getitem__, keys))
        shares[name] = (total - low) / (high - low) if high > low else 0.0
    return shares


@lru_cache(maxsize=64)
def _subscale_ranges(
    instrument: str,
) -> tuple[frozenset[str], tuple[tuple[str, tuple[str, ...], int, int], ...]]:
    """The items ``instrument``'s subscales need, and each subscale with its lowest and highest sum.

    The catalogue is fixed, and every rating of the instrument needs the same sums.
    """
    inst = get_instrument(instrument)
    ranges = {item.key: (item.low, item.high) for item in inst.items}
    subscales = tuple(
        (
            name,
            tuple(keys),
            sum(ranges[k][0] for k in keys),
            sum(ranges[k][1] for k in keys),
        )
        for name, keys in inst.subscale_items
    )
    return frozenset(k for _, keys, _, _ in subscales for k in keys), subscales
