"""One patient's relapse-risk inputs, updated as each wearable day closes.

Every input is normalised against the patient's own baseline or bounded, so
one population model can read every patient whatever their usual sleep,
activity or heart rate (the personal baselines of Barnett 2018):

=========================  =============================================================
input                      definition
=========================  =============================================================
``<feature>_z``            exponentially weighted mean (span 7 days) of the feature's
                           robust z-score, clipped to +/- 4: where the last week lies
``<feature>_abs``          the same mean of ``|z|``: departures in either direction
                           (sleep falls in mania and in most depressions, but rises in
                           hypersomnia; steps fall in depression and rise in mania)
``<feature>_drift``        the signed CUSUM statistic (:mod:`streams.models.drift`)
``anomaly_rate``           anomalous feature-days over the last 14 days (Barnett 2018)
``self_report_level``      the highest self-report total of the last 21 days, as a
                           fraction of its range (PHQ-9, GAD-7 ...)
``self_report_change``     its change from the instrument's baseline, in instrument SD
                           (Kroenke 2001 SD 5.5 for PHQ-9)
``clinician_level``        the same for clinician ratings of the last 42 days
``clinician_change``       (MADRS, YMRS, PANSS ...)
``report_gap_weeks``       weeks since the last self-report (missed reports rose before
                           relapse in Cohen 2023), capped at 6
=========================  =============================================================

Optional subgroup inputs (``RiskConfig.subgroup_inputs``, off by default; see
:func:`subgroup_inputs`): ``specifier_<name>`` is 1 while the patient meets a
specifier (``specifier_inflammatory_depression``: depression with low-grade
inflammation, which marks a subgroup with its own course and treatment
response, Miller & Raison 2016), and ``cluster_<label>`` is 1 for the
patient's current cluster of the population subgroup model (one-hot; all 0
before the first assignment). They are the subgroups the core held when the
day closed, before that day's own profile update: no look-ahead.

``<feature>`` runs over the daily wearable features of
:mod:`streams.wearable_features`. Ratings count only when observed before the
day's end: a day's inputs use what had arrived when the day closed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime

from schemas.instruments import get_instrument
from streams.config import CoreConfig, RiskConfig
from streams.course import InstrumentCourse
from streams.models.anomaly import AnomalyRate
from streams.models.drift import Cusum
from streams.ordering import micros
from streams.stratification.snapshot import SubgroupSnapshot
from streams.stratification.specifiers import SPECIFIERS
from streams.stratification.state import StratificationState
from streams.wearable_days import ClosedDay
from streams.wearable_features import FEATURES

_DAY_US = 86_400_000_000
RATING_INPUTS: tuple[str, ...] = (
    "self_report_level",
    "self_report_change",
    "clinician_level",
    "clinician_change",
    "report_gap_weeks",
)
#: Every input of the relapse-risk model, in model order.
INPUTS: tuple[str, ...] = (
    *(f"{f}_z" for f in FEATURES),
    *(f"{f}_abs" for f in FEATURES),
    *(f"{f}_drift" for f in FEATURES),
    "anomaly_rate",
    *RATING_INPUTS,
)
#: The specifier flags among the optional subgroup inputs, in specifier order.
SPECIFIER_INPUTS: tuple[str, ...] = tuple(f"specifier_{s.name}" for s in SPECIFIERS)


def subgroup_input_names(subgroups: SubgroupSnapshot | None) -> tuple[str, ...]:
    """The optional subgroup inputs: specifier flags, then one flag per cluster label.

    >>> subgroup_input_names(None)
    ('specifier_inflammatory_depression',)
    """
    clusters = () if subgroups is None else tuple(f"cluster_{label}" for label in subgroups.labels)
    return SPECIFIER_INPUTS + clusters


def inputs_for(config: CoreConfig) -> tuple[str, ...]:
    """Every input the core computes under ``config``, in model order (for trainers).

    :data:`INPUTS`, plus the subgroup inputs when ``config.risk.subgroup_inputs`` is on.

    >>> from streams.config import RiskConfig
    >>> inputs_for(CoreConfig()) == INPUTS
    True
    >>> inputs_for(CoreConfig(risk=RiskConfig(subgroup_inputs=True)))[-1]
    'specifier_inflammatory_depression'
    """
    if not config.risk.subgroup_inputs:
        return INPUTS
    return INPUTS + subgroup_input_names(config.subgroups)


def subgroup_inputs(
    strata: StratificationState | None, subgroups: SubgroupSnapshot | None
) -> dict[str, float]:
    """The patient's subgroups as 0/1 inputs (see the module docstring).

    >>> strata = StratificationState(specifiers=["inflammatory_depression"])
    >>> strata.cluster.label = "c2"
    >>> model = SubgroupSnapshot(features=("crp_log",), centre=(0.0,), scale=(1.0,),
    ...     labels=("c1", "c2"), weights=(0.5, 0.5), means=((-1.0,), (1.0,)),
    ...     variances=((0.5,), (0.5,)), descriptions=("a", "b"))
    >>> subgroup_inputs(strata, model)
    {'specifier_inflammatory_depression': 1.0, 'cluster_c1': 0.0, 'cluster_c2': 1.0}
    >>> subgroup_inputs(None, None)
    {'specifier_inflammatory_depression': 0.0}
    """
    held = () if strata is None else strata.specifiers
    values = {f"specifier_{s.name}": float(s.name in held) for s in SPECIFIERS}
    if subgroups is not None:
        label = None if strata is None else strata.cluster.label
        values |= {f"cluster_{c}": float(c == label) for c in subgroups.labels}
    return values


@dataclass(frozen=True, slots=True)
class DayInputs:
    """The model inputs of one closed day, with the drift signals raised on it."""

    day: date
    end: datetime
    values: dict[str, float]
    anomaly_rate: float
    drift: tuple[tuple[str, int], ...]


#: Per feature, the state keeps four numbers: the smoothed z, the smoothed |z|
#: and the CUSUM's upward and downward sums ...
_SLOTS = 4
#: ... in thousandths: an int pickles in 2-5 bytes, a float in 9, and 8 features
#: x 4 numbers are most of what the risk model adds to a patient's state.
_MILLI = 1000
#: Each feature's three inputs by name, in :data:`FEATURES` order (named once, not per day).
_NAMES = tuple((f"{f}_z", f"{f}_abs", f"{f}_drift") for f in FEATURES)


def _zeros() -> list[int]:
    return [0] * (_SLOTS * len(FEATURES))


def _milli(value: float) -> int:
    return round(value * _MILLI)


@dataclass(slots=True)
class RiskFeatures:
    """The per-patient part of the risk model; ``learn_one`` folds in one closed day.

    Returns None until the patient has a baseline (a day with at least one
    robust z-score): there is nothing personal to judge before. ``last_day``
    is the proleptic ordinal of the last day folded in (0: none yet);
    ``memory`` holds, per feature, the smoothed z, the smoothed ``|z|`` and the
    :class:`~streams.models.drift.Cusum` sums, in thousandths.

    >>> from datetime import UTC, date, datetime
    >>> from streams.config import RiskConfig
    >>> def day(n, z):
    ...     return ClosedDay(date(2026, 3, n), datetime(2026, 3, n + 1, tzinfo=UTC), True, 1.0,
    ...                      0.0, {"resting_hr": 70.0}, {"resting_hr": 64.0}, {"resting_hr": z})
    >>> tracker, config = RiskFeatures(), RiskConfig()
    >>> tracker.learn_one(day(1, None), {}, config) is None
    True
    >>> inputs = [tracker.learn_one(day(n, 3.0), {}, config) for n in range(2, 6)]
    >>> inputs[-1].values["resting_hr_z"], inputs[-1].values["anomaly_rate"]
    (2.05, 1.0)
    >>> [i.drift for i in inputs]
    [(), (('resting_hr', 1),), (), ()]
    """

    last_day: int = 0
    memory: list[int] = field(default_factory=_zeros)
    anomaly: AnomalyRate = field(default_factory=AnomalyRate)

    def learn_one(
        self,
        day: ClosedDay,
        courses: Mapping[str, InstrumentCourse],
        config: RiskConfig,
        strata: StratificationState | None = None,
        subgroups: SubgroupSnapshot | None = None,
    ) -> DayInputs | None:
        """Fold in one closed day (days arrive in calendar order); its inputs, once scored.

        ``strata`` and ``subgroups`` (the patient's stratification and the population
        subgroup model) are read only when ``config.subgroup_inputs`` is on.
        """
        deviations = [day.deviations.get(f) for f in FEATURES]
        if not self.last_day and all(z is None for z in deviations):
            return None
        ordinal = day.day.toordinal()
        gap = ordinal - self.last_day if self.last_day else 1
        if gap <= 0:
            return None
        alpha = 2.0 / (config.smoothing_days + 1.0)
        memory = self.memory
        if gap > 1:  # days never closed (a long gap in the data): decay towards baseline
            self.anomaly.skip(gap - 1, days=config.anomaly_days)
            fade = (1.0 - alpha) ** (gap - 1)
            for i in range(len(FEATURES)):
                memory[_SLOTS * i] = round(memory[_SLOTS * i] * fade)
                memory[_SLOTS * i + 1] = round(memory[_SLOTS * i + 1] * fade)
        self.last_day = ordinal
        rate = self.anomaly.learn_one(deviations, z=config.anomaly_z, days=config.anomaly_days)
        signals: list[tuple[str, int]] = []
        values: dict[str, float] = {}
        clip, h = config.z_clip, config.cusum_h
        for i, (feature, z) in enumerate(zip(FEATURES, deviations, strict=True)):
            at = _SLOTS * i
            smooth, spread = memory[at] / _MILLI, memory[at + 1] / _MILLI
            cusum = Cusum(memory[at + 2] / _MILLI, memory[at + 3] / _MILLI)
            if z is None:
                smooth, spread = smooth * (1.0 - alpha), spread * (1.0 - alpha)
            else:
                z = max(-clip, min(clip, z))
                smooth += alpha * (z - smooth)
                spread += alpha * (abs(z) - spread)
                signal = cusum.learn_one(z, k=config.cusum_k, h=h)
                if signal:
                    signals.append((feature, signal))
            memory[at : at + _SLOTS] = [
                _milli(smooth),
                _milli(spread),
                _milli(cusum.up),
                _milli(cusum.down),
            ]
            z_name, abs_name, drift_name = _NAMES[i]
            values[z_name] = memory[at] / _MILLI
            values[abs_name] = memory[at + 1] / _MILLI
            values[drift_name] = (memory[at + 2] - memory[at + 3]) / _MILLI / h
        values["anomaly_rate"] = rate
        values.update(rating_inputs(courses, micros(day.end), config))
        names = INPUTS
        if config.subgroup_inputs:
            extra = subgroup_inputs(strata, subgroups)
            values.update(extra)
            names = INPUTS + tuple(extra)
        rounded = {name: round(values[name], 4) for name in names}
        return DayInputs(day.day, day.end, rounded, round(rate, 4), tuple(signals))

    def clone(self) -> RiskFeatures:
        """An independent copy."""
        return RiskFeatures(self.last_day, list(self.memory), self.anomaly.clone())


def rating_inputs(
    courses: Mapping[str, InstrumentCourse], end_us: int, config: RiskConfig
) -> dict[str, float]:
    """The rating-scale inputs from each instrument's latest rating before ``end_us``.

    >>> from streams.config import CoreConfig
    >>> course = InstrumentCourse("phq9")
    >>> for n, total in enumerate([4, 5, 12]):
    ...     _ = course.update(total, None, n * 7 * _DAY_US, CoreConfig())
    >>> inputs = rating_inputs({"phq9": course}, 15 * _DAY_US, RiskConfig())
    >>> round(inputs["self_report_level"], 3), round(inputs["self_report_change"], 3)
    (0.444, 1.455)
    >>> inputs["report_gap_weeks"], inputs["clinician_level"]
    (0.1429, 0.0)
    """
    best = dict.fromkeys(RATING_INPUTS, 0.0)
    newest_self: int | None = None
    for instrument in sorted(courses):
        course = courses[instrument]
        if course.latest is None or course.latest_at > end_us:
            continue
        inst = get_instrument(instrument)
        self_rated = "self" in inst.raters
        recent = config.self_report_days if self_rated else config.clinician_days
        if self_rated:
            newest_self = max(newest_self or course.latest_at, course.latest_at)
        if end_us - course.latest_at > recent * _DAY_US:
            continue
        span = inst.total_high - inst.total_low
        sd = inst.rci.sd if inst.rci is not None else span / 6
        level = (course.latest - inst.total_low) / span
        change = 0.0 if course.baseline is None else (course.latest - course.baseline) / sd
        prefix = "self_report" if self_rated else "clinician"
        best[f"{prefix}_level"] = max(best[f"{prefix}_level"], level)
        best[f"{prefix}_change"] = max(best[f"{prefix}_change"], max(-3.0, min(3.0, change)))
    if newest_self is not None:
        best["report_gap_weeks"] = round(min((end_us - newest_self) / _DAY_US / 7, 6.0), 4)
    return best
