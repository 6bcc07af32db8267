"""The stratification settings: profile windows, specifier cut-offs, subgroup hysteresis.

One frozen, typed section of :class:`~streams.config.CoreConfig`
(``config.stratification``), so a study can say exactly which cut-offs put a
patient in a subgroup. Every clinical number is cited beside it.

>>> config = StratificationConfig()
>>> config.crp_above, config.crp_window, config.crp_min_above, config.crp_acute_above
(3.0, 3, 2, 10.0)
>>> try:
...     StratificationConfig(crp_min_above=4, crp_window=3)
... except ValueError as error:
...     print(error.errors()[0]["msg"])
Value error, crp_min_above 4 is more than crp_window 3; accepted: crp_min_above <= crp_window
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class StratificationConfig(BaseModel):
    """Settings of the biomarker profile, the specifiers and the subgroup assignment."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Emit :class:`~schemas.events.SubgroupAssigned` events (on change only). The
    #: profile and the labels are kept in the state either way, so turning it off
    #: changes no state, only which outputs appear.
    emit_events: bool = True

    # -- the profile ---------------------------------------------------------------------------
    #: Ratings in the exponentially weighted symptom-dimension means (older ones fade).
    score_span: int = Field(default=6, ge=1, le=100)
    #: Days in the exponentially weighted wearable means (a trait, not this week's state).
    wearable_span_days: int = Field(default=28, ge=2, le=365)
    #: A day's sleep, activity and heart features count only when the device was worn
    #: for at least this share of the day's hours (coverage is tracked on every day).
    min_day_coverage: float = Field(default=0.5, ge=0, le=1)
    #: Days with a value before a wearable feature enters the profile vector.
    min_wearable_days: int = Field(default=7, ge=1, le=365)
    #: IL-6 results in its exponentially weighted log mean.
    lab_span: int = Field(default=4, ge=1, le=64)

    # -- the inflammatory specifier (streams.stratification.specifiers) -------------------------
    #: Low-grade inflammation: CRP above 3 mg/L (Pearson 2003 "high" band; 27 % of
    #: depressed patients, Osimo 2019).
    crp_above: float = Field(default=3.0, ge=0)
    #: Results above this are an acute-phase response (infection, injury), not
    #: low-grade inflammation, and are left out (Pearson 2003: > 10 mg/L, repeat).
    crp_acute_above: float = Field(default=10.0, gt=0)
    #: "Raised on repeated measures": at least ``crp_min_above`` of the last
    #: ``crp_window`` non-acute results above ``crp_above`` (psymon's
    #: operationalisation; Pearson 2003 asks for two measurements).
    crp_window: int = Field(default=3, ge=1, le=8)
    crp_min_above: int = Field(default=2, ge=1, le=8)
    #: Only ratings at or above a depression instrument's episode-onset total
    #: (``course.episode_onset_totals``) count as a depressive syndrome; when False
    #: a clinician-rated depression scale in use counts as well (the care team
    #: treats depression).
    require_depressive_episode: bool = False

    # -- data-driven subgroups (a SubgroupSnapshot passed in CoreConfig.subgroups) -------------
    #: Profile features (of the model's) present before a patient is assigned to a cluster
    #: (all of the model's features when it has fewer).
    min_features: int = Field(default=3, ge=1, le=64)
    #: A new cluster must be the most probable with at least this posterior ...
    switch_probability: float = Field(default=0.7, gt=0.5, le=1)
    #: ... on this many distinct days in a row before the patient moves (hysteresis:
    #: one noisy day does not move anyone).
    confirm_days: int = Field(default=3, ge=1, le=60)

    @model_validator(mode="after")
    def _window(self) -> StratificationConfig:
        if self.crp_min_above > self.crp_window:
            raise ValueError(
                f"crp_min_above {self.crp_min_above} is more than crp_window {self.crp_window}; "
                "accepted: crp_min_above <= crp_window"
            )
        if self.crp_acute_above <= self.crp_above:
            raise ValueError(
                f"crp_acute_above {self.crp_acute_above} is not above crp_above "
                f"{self.crp_above}; accepted: crp_acute_above > crp_above"
            )
        return self
