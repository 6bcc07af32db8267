"""What a study asks: the cohort, the arms or exposure groups, the endpoints.

A study specification is a JSON or TOML file (:meth:`StudySpec.load`);
relative paths in it are read from the file's directory. Example (TOML)::

    name = "crp-trial"
    title = "Anti-inflammatory add-on, simulated"
    landmark_days = 28                  # run-in: who is who is decided here
    attributes_file = "cohort.truth.json"   # patient_id -> arm, diagnosis, ...

    [window]
    since = "2026-01-05T00:00:00+00:00"
    until = "2026-07-04T00:00:00+00:00"

    [cohort]
    diagnoses = ["depression"]
    subgroups = ["inflammatory_depression"]       # held at the landmark
    biomarkers = [{feature = "crp_log", op = ">", value = 1.0}]

    [arms]
    attribute = "arm"                   # or: exposure = {quetiapine = "quetiapine"}
    reference = "placebo"

    [[endpoints]]
    name = "relapse"
    kind = "time_to_event"              # Kaplan-Meier, log-rank, Cox hazard ratio

    [[endpoints]]
    name = "phq9_change"
    kind = "score_change"
    instrument = "phq9"
    follow_up_days = 84

Every patient's **index** is the window start or, if later, the patient's
first event; the **landmark** is ``landmark_days`` after it. Subgroups,
biomarker profiles and medication exposure are read as the core knew them at
the landmark (events that had *arrived* by then: no look-ahead); endpoints
are measured after it (a landmark analysis; Anderson, Cain & Gelber 1983).

>>> spec = StudySpec.model_validate({"name": "demo", "arms": {"attribute": "arm",
...     "reference": "control"}, "endpoints": [{"name": "relapse", "kind": "time_to_event"}]})
>>> spec.landmark_days, spec.endpoints[0].outcomes
(28.0, ('relapse', 'recurrence', 'hospitalisation'))
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from schemas.events import OutcomeKind
from schemas.instruments import get_instrument
from streams.stratification.profile import PROFILE_FEATURES
from streams.wearable_features import FEATURES

Slug = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9_.-]+$")]

#: Daily features a digital endpoint can use: the wearable day features, and
#: the night-to-night SD of the sleep midpoint.
DIGITAL_FEATURES: tuple[str, ...] = (*FEATURES, "sleep_irregularity")


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Window(_Model):
    """Event time the study covers: ``[since, until)``; ``None``: unbounded."""

    since: AwareDatetime | None = None
    until: AwareDatetime | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Window:
        if self.since is not None and self.until is not None and self.until <= self.since:
            raise ValueError(f"window.until {self.until} is not after window.since {self.since}")
        return self


class BiomarkerFilter(_Model):
    """A threshold on a profile feature at the landmark (a patient without it is left out)."""

    feature: str
    op: Literal[">", ">=", "<", "<="]
    value: float

    @field_validator("feature")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in PROFILE_FEATURES:
            raise ValueError(
                f"unknown profile feature {value!r}; accepted: {', '.join(PROFILE_FEATURES)}"
            )
        return value

    def holds(self, x: float) -> bool:
        """Whether ``x`` passes the threshold."""
        return {
            ">": x > self.value,
            ">=": x >= self.value,
            "<": x < self.value,
            "<=": x <= self.value,
        }[self.op]


class Cohort(_Model):
    """Who is in the study (all conditions must hold)."""

    #: Subgroup labels (specifier names such as ``inflammatory_depression``, or cluster
    #: labels such as ``c2``) the patient must hold at the landmark (any of them).
    subgroups: tuple[str, ...] = ()
    #: Subgroup labels that exclude a patient.
    exclude_subgroups: tuple[str, ...] = ()
    #: Diagnoses (from the attributes, else inferred from the instruments rated).
    diagnoses: tuple[str, ...] = ()
    biomarkers: tuple[BiomarkerFilter, ...] = ()
    #: Instruments the patient was rated on before the landmark (all of them).
    instruments: tuple[str, ...] = ()
    #: Pseudonyms to consider; ``None``: everyone.
    patients: tuple[str, ...] | None = None

    @field_validator("instruments")
    @classmethod
    def _instruments(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(get_instrument(v).id for v in value)


class Arms(_Model):
    """How patients are grouped: by an attribute (randomised arm) or by exposure.

    ``attribute`` names a column of the attributes (e.g. ``arm``). ``exposure``
    maps a group name to a medication: a patient exposed to it at the landmark
    (started and not stopped) is in that group, anyone else in ``reference``.
    """

    attribute: str | None = None
    exposure: dict[Slug, str] = Field(default_factory=dict)
    reference: str

    @model_validator(mode="after")
    def _one_way(self) -> Arms:
        if (self.attribute is None) == (not self.exposure):
            raise ValueError(
                "arms needs exactly one of attribute (a column of the attributes file) or "
                "exposure (group name -> medication)"
            )
        return self


class Endpoint(_Model):
    """One endpoint.

    ``time_to_event``: days from the landmark to the first of ``outcomes``,
    censored at the patient's last event or the window end; Kaplan-Meier per
    arm, log-rank test and Cox hazard ratio against the reference
    (``by_subgroup``: also within each subgroup held at the landmark).
    ``score_change``: ``instrument`` total at the end of follow-up (the last
    rating within ``follow_up_days``) minus the last rating in the
    ``baseline_days`` before the landmark.
    ``digital_change``: the mean of a daily wearable ``feature`` over
    follow-up minus its mean over the baseline days (``sleep_irregularity``:
    the SD of the sleep midpoint), each over >= ``min_days`` days.
    ``subgroup_transitions``: the patient's label in ``scheme`` (a specifier
    name or the cluster model's name) at the end of each ``period_days``,
    and the transitions between consecutive periods.
    """

    name: Slug
    kind: Literal["time_to_event", "score_change", "digital_change", "subgroup_transitions"]
    outcomes: tuple[OutcomeKind, ...] = ("relapse", "recurrence", "hospitalisation")
    by_subgroup: bool = False
    instrument: str | None = None
    feature: str | None = None
    baseline_days: float = Field(default=28.0, gt=0)
    follow_up_days: float = Field(default=84.0, gt=0)
    min_days: int = Field(default=7, ge=1)
    scheme: str | None = None
    period_days: int = Field(default=30, ge=1)

    @model_validator(mode="after")
    def _fields_for_kind(self) -> Endpoint:
        if self.kind == "score_change":
            if self.instrument is None:
                raise ValueError(f"endpoint {self.name}: score_change needs instrument")
            object.__setattr__(self, "instrument", get_instrument(self.instrument).id)
        if self.kind == "digital_change" and self.feature not in DIGITAL_FEATURES:
            raise ValueError(
                f"endpoint {self.name}: feature {self.feature!r} not accepted; accepted: "
                f"{', '.join(DIGITAL_FEATURES)}"
            )
        if self.kind == "subgroup_transitions" and not self.scheme:
            raise ValueError(
                f"endpoint {self.name}: subgroup_transitions needs scheme (a specifier name "
                "such as inflammatory_depression, or the cluster model's name)"
            )
        return self


class TreatmentResponse(_Model):
    """Treatment episodes and their observed response (observational, not causal)."""

    opening_actions: tuple[Literal["start", "dose_change"], ...] = ("start",)
    baseline_days: float = Field(default=28.0, gt=0)
    follow_up_days: float = Field(default=84.0, gt=0)


class StudySpec(_Model):
    """A study: cohort, arms, endpoints and the files that define its inputs."""

    name: Slug
    title: str = ""
    window: Window = Window()
    landmark_days: float = Field(default=28.0, ge=0)
    #: CSV or JSON with ``patient_id`` and attribute columns (arm, diagnosis, ...);
    #: the simulator's ground truth (``Cohort.write_ground_truth``) is read as well.
    attributes_file: Path | None = None
    #: The core configuration (JSON or TOML); default: the built-in one.
    core_config_file: Path | None = None
    #: A population subgroup model (``SubgroupSnapshot`` as JSON) for cluster labels.
    subgroups_file: Path | None = None
    cohort: Cohort = Cohort()
    arms: Arms
    endpoints: tuple[Endpoint, ...] = Field(min_length=1)
    treatment_response: TreatmentResponse | None = TreatmentResponse()
    bootstrap_resamples: int = Field(default=2000, ge=0, le=100_000)
    seed: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _unique_endpoints(self) -> StudySpec:
        names = [e.name for e in self.endpoints]
        if len(set(names)) != len(names):
            raise ValueError(f"endpoint names must be unique, got {names}")
        return self

    @classmethod
    def load(cls, path: Path) -> StudySpec:
        """A spec from a JSON (``.json``) or TOML (``.toml``) file; paths relative to it.

        Raises ``ValueError`` naming the file and the field that is wrong.
        """
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise ValueError(f"study spec {path}: cannot read it ({error.strerror})") from None
        try:
            data = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
        except ValueError as error:
            raise ValueError(f"study spec {path}: not valid {path.suffix[1:]}: {error}") from None
        try:
            spec = cls.model_validate(data)
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(file)'}: {e['msg']}"
                for e in error.errors(include_url=False)
            )
            raise ValueError(f"study spec {path}: {problems}") from None
        base = path.parent
        updates = {
            key: base / value
            for key in ("attributes_file", "core_config_file", "subgroups_file")
            if (value := getattr(spec, key)) is not None and not value.is_absolute()
        }
        return spec.model_copy(update=updates) if updates else spec
