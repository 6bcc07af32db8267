"""The core's thresholds: one typed, versioned, frozen configuration.

Every number a rule or feature of the core uses lives here, so that a study
can say exactly which settings produced an alert (each
:class:`~schemas.events.Alert` names ``config.version``) and a replay with the
same configuration gives the same outputs. Load it from JSON or TOML text; a
value that is missing or malformed is rejected with the field and what is
accepted.

>>> config = CoreConfig()
>>> config.version, config.alerts.lithium_toxic_above
('core-2026.1', 1.5)
>>> custom = CoreConfig.from_toml('version = "study-7"\\n[alerts]\\ncrp_above = 5.0\\n')
>>> custom.version, custom.alerts.crp_above, custom.alerts.lithium_toxic_above
('study-7', 5.0, 1.5)
"""

from __future__ import annotations

import tomllib
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from streams.models.snapshot import ModelSnapshot
from streams.stratification.config import StratificationConfig
from streams.stratification.snapshot import SubgroupSnapshot

Hours = Annotated[float, Field(ge=0, le=24 * 28)]
Version = Annotated[str, StringConstraints(min_length=1, max_length=64, strip_whitespace=True)]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class OrderingConfig(_Section):
    """How long the core waits for out-of-order events, per event family.

    An event whose event time lies within the lateness of the newest event of
    its family is applied in event-time order; an older one is late: it is
    still processed, flagged ``late=True``, and never rewrites the course.
    A lateness of 0 applies each event at once (scores, labs and outcomes
    arrive sparsely: waiting for a later event would delay their course
    update until the patient's next event).
    """

    score_lateness_hours: Hours = 0.0
    lab_lateness_hours: Hours = 0.0
    outcome_lateness_hours: Hours = 0.0
    #: Wearable days close this long after local midnight: phones upload in
    #: batches, and a night's sleep is often synced only after waking up.
    wearable_lateness_hours: Hours = 12.0
    #: Scores, labs and outcomes close wearable days only this long after their own
    #: newest time. The broker's topics are read at different paces (after a backlog
    #: the small score topic drains long before the wearable one), so a score read
    #: ahead of the wearable stream must not declare the patient's wearable data lost.
    other_families_close_after_hours: Hours = 72.0
    #: Events held back at most; beyond it the oldest is applied at once.
    max_pending_events: int = Field(default=64, ge=1, le=4096)


class DedupConfig(_Section):
    """How much each patient remembers to recognise an event that arrives twice.

    A record the broker delivers again after a crash or a rebalance never
    reaches the core: the worker drops it by the input offset kept with the
    state (:mod:`streams.stored_state`), however many there are. These bounds
    are for events sent twice, which the core recognises only among the newest.
    """

    #: Ids of scores, labs and outcomes remembered (the newest by event time).
    remembered_events: int = Field(default=64, ge=1, le=4096)
    #: Ids of wearable uploads remembered (the newest by event time).
    remembered_uploads: int = Field(default=32, ge=1, le=4096)
    #: Covered intervals kept per device and metric (oldest forgotten first).
    intervals_per_stream: int = Field(default=2048, ge=16, le=100_000)


class CourseConfig(_Section):
    """Course of illness: the level filter and the episode rules."""

    #: Drift of the smoothed level, SD per sqrt(day), as a fraction of the instrument's SD.
    level_drift_fraction: float = Field(default=0.15, gt=0, le=10)
    #: Reliability assumed for an instrument without reliable-change parameters.
    default_reliability: float = Field(default=0.8, ge=0, lt=1)
    #: A new episode this soon after remission began is a relapse, later a
    #: recurrence (6 months; Frank 1991, Moeller 2011).
    relapse_window_days: float = Field(default=182.0, gt=0)
    #: Onset of a new depressive episode after remission: this many consecutive
    #: scores at or above the onset total ...
    episode_onset_scores: int = Field(default=2, ge=1, le=10)
    #: ... spanning at least this many days (DSM-5: two weeks).
    episode_onset_days: float = Field(default=14.0, ge=0)
    #: Onset totals per instrument (PHQ-9/8 >= 10, Kroenke 2001/2009; MADRS >= 20 and
    #: QIDS-SR16 >= 11, their moderate bands; HAM-D 17 >= 16, the trial convention
    #: in Zimmerman 2013).
    episode_onset_totals: dict[str, int] = Field(
        default_factory=lambda: {"phq9": 10, "phq8": 10, "madrs": 20, "hamd17": 16, "qids_sr16": 11}
    )
    #: PANSS relapse (Csernansky 2002): total up >= 25 % ...
    panss_relapse_fraction: float = Field(default=0.25, gt=0, le=1)
    #: ... or >= 10 points when the baseline is <= 40.
    panss_relapse_points: int = Field(default=10, ge=1)
    panss_low_baseline: int = Field(default=40, ge=30, le=210)
    #: CGI-C at or above this ("much worse") is a relapse (Csernansky 2002).
    cgi_c_relapse_min: int = Field(default=6, ge=1, le=7)
    #: PANSS item remission must hold this long (Andreasen 2005: six months).
    panss_remission_days: float = Field(default=182.0, ge=0)


class WearableConfig(_Section):
    """Daily wearable features and the patient's own baseline."""

    #: Days in the rolling robust baseline (median/MAD).
    baseline_days: int = Field(default=28, ge=3, le=90)
    #: Days with a value needed before a baseline (and a deviation) is reported.
    min_baseline_days: int = Field(default=7, ge=2, le=90)
    #: Sleep is counted in the window that starts at this local hour the day before.
    sleep_window_start_hour: int = Field(default=12, ge=0, le=23)
    #: Resting heart rate: this low percentile of the day's heart-rate samples.
    resting_hr_percentile: float = Field(default=10.0, gt=0, lt=100)
    min_hr_samples: int = Field(default=30, ge=1)
    #: Step variability: coefficient of variation of daily steps over these days ...
    step_variability_days: int = Field(default=7, ge=2, le=28)
    #: ... needing at least this many days with steps.
    min_step_variability_days: int = Field(default=4, ge=2, le=28)
    #: Days without any data that are still reported one by one (coverage 0).
    max_gap_days: int = Field(default=14, ge=1, le=90)
    #: Smallest robust SD per feature, so a very regular patient does not turn
    #: every small change into a large deviation.
    min_scale: dict[str, float] = Field(
        default_factory=lambda: {
            "sleep_duration": 15.0,
            "sleep_midpoint": 0.25,
            "steps": 250.0,
            "step_variability": 0.05,
            "resting_hr": 1.0,
            "hrv_rmssd": 2.0,
            "active_minutes": 5.0,
            "coverage": 0.05,
        }
    )


class LabConfig(_Section):
    """Lab values against the patient's own earlier values."""

    #: Earlier values of each analyte kept for the patient's own baseline.
    baseline_values: int = Field(default=8, ge=2, le=64)
    min_baseline_values: int = Field(default=3, ge=2, le=64)
    #: Smallest robust SD as a fraction of the baseline median.
    min_scale_fraction: float = Field(default=0.1, gt=0, le=10)
    #: |robust z| at or above which a value without cut-offs (IL-6) is flagged.
    deviation_z: float = Field(default=3.0, gt=0)


class AlertConfig(_Section):
    """Thresholds, severities and hysteresis of the alert rules."""

    #: After an alert closes, the same rule and signal stay quiet this long.
    cooldown_hours: Hours = 24.0
    #: PHQ-9 item that asks about self-harm (item 9).
    phq9_item9_key: str = "9"
    #: Instruments whose entry into a moderate or worse band raises an alert.
    band_instruments: tuple[str, ...] = ("phq9", "phq8", "gad7", "madrs", "hamd17", "qids_sr16")
    #: A reliable deterioration closes when the change index falls below this.
    deterioration_close_z: float = Field(default=1.0, ge=0)
    ymrs_hypomania_min: int = Field(default=12, ge=0, le=60)
    ymrs_mania_min: int = Field(default=21, ge=0, le=60)
    lithium_low_below: float = Field(default=0.6, ge=0)
    lithium_high_above: float = Field(default=1.2, ge=0)
    lithium_toxic_above: float = Field(default=1.5, ge=0)
    crp_above: float = Field(default=3.0, ge=0)
    #: Sleep loss: a day below baseline by more than this robust z ...
    sleep_loss_z: float = Field(default=-1.5, lt=0)
    #: ... on at least this many of the last ``sleep_loss_window`` days opens the alert,
    sleep_loss_days: int = Field(default=3, ge=1, le=28)
    sleep_loss_window: int = Field(default=4, ge=1, le=28)
    #: and at most this many closes it.
    sleep_loss_close_days: int = Field(default=1, ge=0, le=28)
    #: Hours without any wearable data that raise a data-loss alert.
    data_loss_hours: float = Field(default=48.0, gt=0)


class RiskConfig(_Section):
    """The per-patient model inputs, the risk assessments and the ``relapse_risk`` alert.

    Inputs are computed as each wearable day closes, from the day's robust
    z-scores against the patient's own baseline (:mod:`streams.models.features`).
    The default alert threshold (0.11) is the median of those ``psymon evaluate``
    chose on its three simulated training cohorts for
    ``alert_budget_per_patient_month`` (0.25) while positive days were learnt
    as soon as their outcome was known. With every day's label waiting the
    same time (:mod:`streams.models.labels`) the evaluation chooses lower
    thresholds (``docs/model-card.md``), so the default alerts less than that
    budget there. It belongs to models trained as there; choose it again for
    another model or cohort.
    """

    #: A relapse or hospitalisation onset within this many days after a day makes it positive.
    horizon_days: int = Field(default=28, gt=0, le=365)
    #: |robust z| above which a feature-day counts as an anomaly (Barnett 2018) ...
    anomaly_z: float = Field(default=2.0, gt=0)
    #: ... and the days the anomaly rate is taken over (the 2 weeks before relapse
    #: in which Barnett 2018 saw 71 % more anomalies).
    anomaly_days: int = Field(default=14, ge=1, le=28)
    #: Span (days) of the exponentially weighted mean of each feature's z-score.
    smoothing_days: float = Field(default=7.0, ge=1, le=90)
    #: z-scores are clipped to +/- this before smoothing, so one wild day cannot dominate.
    z_clip: float = Field(default=4.0, gt=0)
    #: CUSUM reference value k and decision interval h, in robust SD (Page 1954).
    #: With k = 0.5 and h = 4 a stable series raises a false signal about once in
    #: 168 days and a one-SD shift is found after about 8 (Montgomery 2009, ch. 9).
    cusum_k: float = Field(default=0.5, ge=0)
    cusum_h: float = Field(default=4.0, gt=0)
    #: Ratings older than this many days no longer inform the self-report inputs ...
    self_report_days: int = Field(default=21, ge=1, le=365)
    #: ... and the clinician-rated inputs.
    clinician_days: int = Field(default=42, ge=1, le=365)
    #: The alert opens after ``alert_days`` consecutive assessments at or above
    #: ``alert_threshold`` ...
    alert_threshold: float = Field(default=0.11, gt=0, lt=1)
    alert_days: int = Field(default=2, ge=1, le=28)
    #: ... and closes after ``close_days`` consecutive assessments below ``close_threshold``.
    close_threshold: float = Field(default=0.088, gt=0, lt=1)
    close_days: int = Field(default=3, ge=1, le=28)
    #: The alert burden the threshold was chosen for (alerts per patient-month).
    alert_budget_per_patient_month: float = Field(default=0.25, gt=0)
    #: Features named in each assessment, largest |contribution| first (0: every
    #: input, which the trainer needs to learn from the assessments).
    contributions: int = Field(default=0, ge=0, le=64)
    #: Add the patient's subgroups as 0/1 inputs (``specifier_<name>``, and
    #: ``cluster_<label>`` of ``CoreConfig.subgroups``; :mod:`streams.models.features`).
    #: Off by default: not evaluated as helping (docs/model-card.md, "Subgroup inputs").
    subgroup_inputs: bool = False

    @model_validator(mode="after")
    def _hysteresis(self) -> RiskConfig:
        if self.close_threshold > self.alert_threshold:
            raise ValueError(
                f"close_threshold {self.close_threshold} is above alert_threshold "
                f"{self.alert_threshold}; accepted: close_threshold <= alert_threshold "
                "(hysteresis: an alert closes below a lower threshold than it opens at)"
            )
        return self


class CoreConfig(_Section):
    """Everything the pure core needs to know besides the events.

    ``version`` names the configuration in every alert; change it whenever a
    threshold changes.
    """

    version: Version = "core-2026.1"
    ordering: OrderingConfig = OrderingConfig()
    dedup: DedupConfig = DedupConfig()
    course: CourseConfig = CourseConfig()
    wearable: WearableConfig = WearableConfig()
    labs: LabConfig = LabConfig()
    alerts: AlertConfig = AlertConfig()
    risk: RiskConfig = RiskConfig()
    #: The population relapse-risk model version to score with (None: no
    #: assessments and no ``relapse_risk`` alerts; drift and anomaly rates are
    #: still tracked). Workers swap it with :meth:`with_model`.
    model: ModelSnapshot | None = None
    #: Biomarker profiles, specifiers and subgroup hysteresis (:mod:`streams.stratification`).
    stratification: StratificationConfig = StratificationConfig()
    #: The population subgroup model version to assign clusters with (None: specifiers
    #: only). Swapped like ``model``, with :meth:`with_subgroups`.
    subgroups: SubgroupSnapshot | None = None

    def with_model(self, model: ModelSnapshot | None) -> CoreConfig:
        """The same configuration scoring with ``model`` (a new, frozen config).

        >>> from streams.models.snapshot import ModelSnapshot
        >>> config = CoreConfig().with_model(ModelSnapshot.initial(["anomaly_rate"]))
        >>> config.model.version, CoreConfig().model is None
        (0, True)
        """
        return self.model_copy(update={"model": model})

    def with_subgroups(self, subgroups: SubgroupSnapshot | None) -> CoreConfig:
        """The same configuration assigning clusters with ``subgroups`` (a new, frozen config)."""
        return self.model_copy(update={"subgroups": subgroups})

    @classmethod
    def from_json(cls, text: str | bytes) -> CoreConfig:
        """A configuration from JSON text; absent fields take their defaults.

        >>> CoreConfig.from_json('{"version": "v2", "ordering": {"wearable_lateness_hours": 2}}'
        ...                     ).ordering.wearable_lateness_hours
        2.0
        """
        return cls.model_validate_json(text)

    @classmethod
    def from_toml(cls, text: str) -> CoreConfig:
        """A configuration from TOML text; absent fields take their defaults."""
        return cls.model_validate(tomllib.loads(text))
