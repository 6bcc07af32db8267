"""psymon's events: what arrives from the edge and what the core derives.

Raw events (one topic each, keyed by the patient pseudonym):

* :class:`ClinicalScore` — a rating-scale result (PHQ-9, MADRS, PANSS ...);
* :class:`WearableUpload` — one device's samples over a contiguous window;
  each :class:`WearableSample` in it keeps its own ``event_id``;
* :class:`LabResult` — a biomarker (CRP, lithium ...) in its canonical unit;
* :class:`ClinicalOutcome` — a clinical label (relapse, hospitalisation ...).

Derived events: :class:`CourseUpdate`, :class:`RiskAssessment`,
:class:`Alert`, :class:`DeadLetter`, :class:`SubgroupAssigned`.

All are frozen pydantic models that forbid unknown fields. Validation is the
contract: an event that constructs is scored, unit-converted and in range.
"""

from __future__ import annotations

import math
from datetime import date
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    ValidationInfo,
    field_validator,
    model_validator,
)

from schemas.analytes import get_analyte
from schemas.envelope import (
    Envelope,
    LongText,
    Moment,
    PatientId,
    ShortText,
    Source,
    utc_before,
)
from schemas.instruments import get_instrument
from schemas.wearables import get_metric

StrictInt = Annotated[int, Strict()]
ItemKey = Annotated[str, Field(min_length=1, max_length=8)]

#: Upper bound on samples in one upload: a week of one-minute samples of one
#: metric, far above what a phone sends at once, far below what hurts a worker.
MAX_SAMPLES_PER_UPLOAD = 10_080


def _finite(field: str, value: float) -> float:
    if not math.isfinite(value):
        raise ValueError(f"{field} must be a finite number, got {value!r}")
    return value


def _finite_or_none(value: float | None, info: ValidationInfo) -> float | None:
    """Refuse infinity and NaN in an optional number field, naming the field.

    JSON has no infinity, but ``1e400`` parses as one (in pydantic's parser
    and in :func:`json.loads` alike), and a float field takes it.
    """
    if value is not None and not math.isfinite(value):
        raise ValueError(
            f"{info.field_name} must be a finite number, got {value!r}; accepted: a finite "
            "number or null"
        )
    return value


class ClinicalScore(Envelope):
    """A rating-scale result, self-reported or clinician-rated.

    With ``items`` the total is computed by the instrument's rule
    (:mod:`schemas.instruments`) and a supplied total that disagrees is
    rejected; without items the total alone is range-checked.

    >>> from schemas.examples import envelope_fields
    >>> s = ClinicalScore(**envelope_fields(), instrument="phq9", rater="self",
    ...                   items={str(i): 1 for i in range(1, 10)})
    >>> s.total
    9
    """

    kind: Literal["clinical_score"] = "clinical_score"
    instrument: ShortText
    version: ShortText | None = None
    rater: Literal["self", "clinician"]
    items: dict[ItemKey, StrictInt] | None = Field(default=None, max_length=64)
    total: StrictInt | None = Field(default=None, validate_default=True)

    @field_validator("instrument")
    @classmethod
    def _known_instrument(cls, value: str) -> str:
        return get_instrument(value).id

    @field_validator("total")
    @classmethod
    def _scored(cls, total: int | None, info: ValidationInfo) -> int:
        data = info.data
        instrument_id = data.get("instrument")
        if instrument_id is None:  # the instrument itself was invalid: reported there
            return total if total is not None else 0
        if "items" not in data:  # items were invalid: reported there
            return total if total is not None else 0
        items = data["items"]
        if items is None and total is None:
            raise ValueError(f"a {instrument_id} score needs items, a total, or both")
        return get_instrument(instrument_id).score(items, total)


class WearableSample(Envelope):
    """One wearable measurement over an interval ``[observed_at, interval_end]``.

    ``value`` is held in the metric's canonical UCUM unit
    (:mod:`schemas.wearables`); a convertible unit is converted on arrival.
    """

    kind: Literal["wearable_sample"] = "wearable_sample"
    metric: ShortText
    value: float
    unit: ShortText
    interval_end: Moment

    @model_validator(mode="after")
    def _canonical(self) -> WearableSample:
        metric = get_metric(self.metric)
        value = metric.to_canonical(_finite("value", self.value), self.unit)
        if utc_before(self.interval_end, self.observed_at):
            raise ValueError(
                f"interval_end {self.interval_end.isoformat()} is before observed_at "
                f"{self.observed_at.isoformat()}; a sample's interval must not run backwards"
            )
        object.__setattr__(self, "metric", metric.id)
        object.__setattr__(self, "value", value)
        object.__setattr__(self, "unit", metric.unit)
        return self


class WearableReading(BaseModel):
    """One sample inside a :class:`WearableUpload`, with its own identity.

    Validated like a :class:`WearableSample`: the metric is known, the value
    finite and plausible, and held in the metric's canonical unit.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: UUID
    metric: ShortText
    value: float
    unit: ShortText
    start: Moment
    end: Moment

    @model_validator(mode="after")
    def _canonical(self) -> WearableReading:
        metric = get_metric(self.metric)
        value = metric.to_canonical(_finite("value", self.value), self.unit)
        if utc_before(self.end, self.start):
            raise ValueError(
                f"end {self.end.isoformat()} is before start {self.start.isoformat()}; "
                "a reading's interval must not run backwards"
            )
        object.__setattr__(self, "metric", metric.id)
        object.__setattr__(self, "value", value)
        object.__setattr__(self, "unit", metric.unit)
        return self


class WearableUpload(Envelope):
    """The samples of one patient and device over a contiguous window.

    Phones and watches upload in batches; the wearable topic carries uploads so
    the per-message cost of broker and stream framework is shared by every
    sample. ``observed_at`` is the window start, ``window_end`` its end, and
    every reading lies inside the window. :meth:`samples` expands the upload
    into one :class:`WearableSample` per reading, each with its own id.
    """

    kind: Literal["wearable_upload"] = "wearable_upload"
    window_end: Moment
    readings: tuple[WearableReading, ...] = Field(min_length=1, max_length=MAX_SAMPLES_PER_UPLOAD)

    @model_validator(mode="after")
    def _readings_in_window(self) -> WearableUpload:
        window_start, window_end = self.observed_at, self.window_end
        if utc_before(window_end, window_start):
            raise ValueError("window_end is before observed_at (the window start)")
        for index, reading in enumerate(self.readings):
            if utc_before(reading.start, window_start) or utc_before(window_end, reading.end):
                raise ValueError(
                    f"readings.{index}: interval {reading.start.isoformat()}.."
                    f"{reading.end.isoformat()} lies outside the upload window "
                    f"{self.observed_at.isoformat()}..{self.window_end.isoformat()}"
                )
        return self

    def samples(self) -> tuple[WearableSample, ...]:
        """Each reading as a :class:`WearableSample`, in upload order.

        The readings were validated with the upload, so the samples are built
        without validating again (the wearable stream's hot path).
        """
        return tuple(
            WearableSample.model_construct(
                event_id=r.event_id,
                patient_id=self.patient_id,
                observed_at=r.start,
                received_at=self.received_at,
                source=self.source,
                time_zone=self.time_zone,
                schema_version=self.schema_version,
                kind="wearable_sample",
                metric=r.metric,
                value=r.value,
                unit=r.unit,
                interval_end=r.end,
            )
            for r in self.readings
        )


class LabResult(Envelope):
    """A laboratory biomarker; ``observed_at`` is the specimen collection time.

    ``value``/``unit`` are canonical (:mod:`schemas.analytes`); what the lab
    reported is kept in ``reported_value``/``reported_unit``.
    """

    kind: Literal["lab_result"] = "lab_result"
    analyte: ShortText
    loinc: ShortText | None = None
    value: float
    unit: ShortText
    reported_value: float | None = None
    reported_unit: ShortText | None = None
    hours_since_dose: float | None = Field(default=None, ge=0, le=168)

    _reported_finite = field_validator("reported_value")(_finite_or_none)

    @model_validator(mode="after")
    def _canonical(self) -> LabResult:
        analyte = get_analyte(self.analyte)
        if self.loinc is not None and self.loinc not in analyte.loinc_codes:
            raise ValueError(
                f"loinc {self.loinc!r} does not code analyte {analyte.id!r}; "
                f"accepted: {', '.join(analyte.loinc_codes)}"
            )
        value = analyte.to_canonical(_finite("value", self.value), self.unit)
        if self.reported_unit is None and self.unit != analyte.unit:
            object.__setattr__(self, "reported_value", self.value)
            object.__setattr__(self, "reported_unit", self.unit)
        object.__setattr__(self, "analyte", analyte.id)
        object.__setattr__(self, "loinc", self.loinc or analyte.loinc)
        object.__setattr__(self, "value", value)
        object.__setattr__(self, "unit", analyte.unit)
        return self


class Medication(BaseModel):
    """A medication change: what, and what happened to it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: ShortText
    atc: ShortText | None = None
    action: Literal["start", "stop", "dose_change"]
    dose: float | None = Field(default=None, ge=0)
    dose_unit: ShortText | None = None

    _dose_finite = field_validator("dose")(_finite_or_none)


OutcomeKind = Literal[
    "relapse",
    "recurrence",
    "hospitalisation",
    "remission",
    "episode_onset",
    "self_harm",
    "suicidal_ideation",
    "medication_change",
]

#: Outcomes that are a safety matter: an urgent alert on arrival, every time.
SAFETY_OUTCOMES: frozenset[str] = frozenset({"self_harm", "suicidal_ideation"})


class ClinicalOutcome(Envelope):
    """A clinical label: what happened to the patient, as the care team recorded it.

    ``observed_at`` is when it happened (relapse onset, admission date);
    ``received_at`` when psymon learnt of it, often weeks later. Models learn
    from outcomes only after ``received_at`` (no look-ahead).
    """

    kind: Literal["clinical_outcome"] = "clinical_outcome"
    outcome: OutcomeKind
    episode: Literal["depressive", "manic", "hypomanic", "mixed", "psychotic"] | None = None
    medication: Medication | None = None

    @model_validator(mode="after")
    def _medication_when_changed(self) -> ClinicalOutcome:
        if (self.outcome == "medication_change") != (self.medication is not None):
            raise ValueError(
                "medication is required for outcome 'medication_change' and accepted only there"
            )
        return self


# --------------------------------------------------------------------------- derived


class Derived(Envelope):
    """Fields of every event the core derives: which input caused it.

    A derived event's ``observed_at`` is the time it speaks of (a day's end for
    daily features), which may lie after the ``received_at`` of the input that
    closed that day: the future-observation check of raw events does not apply.
    """

    caused_by: UUID

    @model_validator(mode="after")
    def _observed_not_in_future(self) -> Derived:
        return self


class CourseUpdate(Derived):
    """The course of one signal (instrument, wearable feature or analyte) after an event.

    Fields that do not apply to the signal are ``None``: a wearable feature has
    no band, a lab value no reliable-change index.
    """

    kind: Literal["course_update"] = "course_update"
    signal: ShortText
    signal_kind: Literal["instrument", "wearable", "lab"]
    value: float | None = None
    unit: ShortText | None = None
    day: date | None = None
    band: ShortText | None = None
    baseline: float | None = None
    change: float | None = None
    rci: float | None = None
    reliable_change: Literal["improved", "deteriorated", "none"] | None = None
    response: bool | None = None
    remission: bool | None = None
    status: ShortText | None = None
    level: float | None = None
    level_sd: float | None = None
    deviation: float | None = None
    coverage: float | None = Field(default=None, ge=0, le=1)
    late: bool = False


class FeatureContribution(BaseModel):
    """How much one feature pushed a risk estimate up or down."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    feature: ShortText
    value: float
    contribution: float


class RiskAssessment(Derived):
    """A relapse-risk estimate from a named, versioned model."""

    kind: Literal["risk_assessment"] = "risk_assessment"
    probability: float = Field(ge=0, le=1)
    horizon_days: int = Field(gt=0, le=365)
    model_name: ShortText
    model_version: int = Field(ge=0)
    contributions: tuple[FeatureContribution, ...] = ()


Scalar = float | int | str | bool | None


class Alert(Derived):
    """A rule's alert, raised once per condition and closed when it recovers.

    ``alert_id`` names the alert across its life; each change of it (raised,
    updated, closed by recovery) is a new event with its own ``event_id``.
    Care-team actions (acknowledge, escalate, resolve) live in the alert history.
    """

    kind: Literal["alert"] = "alert"
    alert_id: UUID
    rule: ShortText
    severity: Literal["info", "warning", "urgent"]
    status: Literal["open", "closed", "acknowledged", "escalated", "resolved"]
    message: LongText
    evidence: dict[ShortText, Scalar] = Field(default_factory=dict, max_length=64)
    first_seen: Moment
    last_seen: Moment
    config_version: ShortText


class SubgroupAssigned(Derived):
    """A patient's subgroup changed: a specifier met or no longer met, or a new cluster.

    Emitted on change only (:mod:`streams.stratification`). ``scheme`` says
    which kind of subgroup: a published rule (``specifier``, e.g.
    ``inflammatory_depression``, with its ``citation``) or a data-driven
    cluster of biomarker profiles (``cluster``, from the population subgroup
    model ``scheme_name`` at ``version``, with its posterior ``probability``).
    ``subgroup`` is ``None`` when the patient left ``previous`` (a specifier no
    longer met). ``description`` says in plain words what sets the subgroup
    apart; ``evidence`` holds the numbers behind the change.
    """

    kind: Literal["subgroup_assigned"] = "subgroup_assigned"
    scheme: Literal["specifier", "cluster"]
    scheme_name: ShortText
    subgroup: ShortText | None
    previous: ShortText | None = None
    version: ShortText
    probability: float | None = Field(default=None, ge=0, le=1)
    description: LongText
    citation: LongText | None = None
    evidence: dict[ShortText, Scalar] = Field(default_factory=dict, max_length=64)

    @model_validator(mode="after")
    def _a_change(self) -> SubgroupAssigned:
        if self.subgroup == self.previous:
            raise ValueError(
                f"subgroup and previous are both {self.subgroup!r}; a SubgroupAssigned event "
                "records a change: accepted: subgroup != previous"
            )
        return self


class FieldError(BaseModel):
    """One reason a record was rejected: which field, what value, what is accepted."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    field: str = Field(max_length=256)
    message: str = Field(max_length=2000)
    value: str | None = Field(default=None, max_length=256)


class DeadLetter(BaseModel):
    """A record psymon could not accept, kept whole with the reason.

    Not an :class:`Envelope`: the patient may be unknown. ``raw`` holds the
    payload as text (undecodable bytes replaced), truncated at
    :data:`MAX_DEAD_LETTER_RAW` characters with ``raw_size`` and ``raw_sha256``
    describing the original, so nothing is silently lost.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["dead_letter"] = "dead_letter"
    event_id: UUID
    patient_id: PatientId | None = None
    received_at: Moment
    topic: ShortText
    reason: LongText
    errors: tuple[FieldError, ...] = ()
    raw: str
    raw_size: int = Field(ge=0)
    raw_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    source: Source
    schema_version: Literal[1] = 1

    @property
    def observed_at(self) -> AwareDatetime:
        """Dead letters are observed when they arrive."""
        return self.received_at


MAX_DEAD_LETTER_RAW = 1_000_000

RawEvent = Annotated[
    ClinicalScore | WearableUpload | WearableSample | LabResult | ClinicalOutcome,
    Field(discriminator="kind"),
]
DerivedEvent = Annotated[
    CourseUpdate | RiskAssessment | Alert | DeadLetter | SubgroupAssigned,
    Field(discriminator="kind"),
]
AnyEvent = Annotated[
    ClinicalScore
    | WearableUpload
    | WearableSample
    | LabResult
    | ClinicalOutcome
    | CourseUpdate
    | RiskAssessment
    | Alert
    | DeadLetter
    | SubgroupAssigned,
    Field(discriminator="kind"),
]

#: Every event model, in a stable order (JSON Schema files, contract tests).
EVENT_MODELS: tuple[type[BaseModel], ...] = (
    ClinicalScore,
    WearableUpload,
    WearableSample,
    LabResult,
    ClinicalOutcome,
    CourseUpdate,
    RiskAssessment,
    Alert,
    DeadLetter,
    SubgroupAssigned,
)

RAW_KINDS: tuple[str, ...] = (
    "clinical_score",
    "wearable_upload",
    "wearable_sample",
    "lab_result",
    "clinical_outcome",
)


def kind_of(model: type[BaseModel]) -> str:
    """The ``kind`` tag of an event model.

    >>> kind_of(LabResult)
    'lab_result'
    """
    default: Any = model.model_fields["kind"].default
    return str(default)
