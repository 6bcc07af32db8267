"""The events the risk models emit, with the core's conventions (:mod:`streams.outputs`).

* a :class:`~schemas.events.CourseUpdate` with ``signal="anomaly_rate"`` for
  every closed day once the patient has a baseline; its ``status`` names the
  features whose drift was signalled that day;
* a :class:`~schemas.events.RiskAssessment` for every such day when a model
  is configured. Its ``contributions`` list the inputs, largest
  ``|weight x standardised value|`` first: all of them by default, so the
  trainer can learn from the assessments themselves.

Ids derive from the patient, the day and (for assessments) the model name and
version, so a replay with the same versions gives the same ids.
"""

from __future__ import annotations

from collections.abc import Sequence

from schemas.events import CourseUpdate, FeatureContribution, RiskAssessment
from schemas.identity import event_id_for
from streams.config import RiskConfig
from streams.models.features import DayInputs
from streams.models.snapshot import Contribution, ModelSnapshot
from streams.outputs import CORE_SOURCE, InputEvent

_STATUS_MAX = 128


def drift_status(drift: Sequence[tuple[str, int]]) -> str | None:
    """The drift signals of a day as a short status text (None: no drift).

    >>> drift_status([("resting_hr", 1), ("steps", -1)])
    'drift: resting_hr up, steps down'
    >>> drift_status([]) is None
    True
    """
    if not drift:
        return None
    text = "drift: " + ", ".join(f"{f} {'up' if s > 0 else 'down'}" for f, s in drift)
    return text if len(text) <= _STATUS_MAX else text[: _STATUS_MAX - 3] + "..."


def anomaly_update(cause: InputEvent, inputs: DayInputs) -> CourseUpdate:
    """The day's anomaly rate (Barnett 2018) and drift signals."""
    return CourseUpdate(
        event_id=event_id_for(cause.patient_id, "wearable-day", "anomaly_rate", str(inputs.day)),
        patient_id=cause.patient_id,
        observed_at=inputs.end,
        received_at=cause.received_at,
        source=CORE_SOURCE,
        caused_by=cause.event_id,
        signal="anomaly_rate",
        signal_kind="wearable",
        value=inputs.anomaly_rate,
        unit="1",
        day=inputs.day,
        status=drift_status(inputs.drift),
    )


def ordered(contributions: Sequence[Contribution]) -> list[Contribution]:
    """Contributions largest ``|contribution|`` first (ties by name, for determinism).

    >>> ordered([("a", 1.0, 0.1), ("b", 2.0, -0.5), ("c", 0.0, 0.1)])
    [('b', 2.0, -0.5), ('a', 1.0, 0.1), ('c', 0.0, 0.1)]
    """
    return sorted(contributions, key=lambda c: (-abs(c[2]), c[0]))


def risk_assessment(
    cause: InputEvent,
    inputs: DayInputs,
    model: ModelSnapshot,
    probability: float,
    contributions: Sequence[Contribution],
    config: RiskConfig,
) -> RiskAssessment:
    """One day's relapse-risk estimate (``contributions`` already ordered)."""
    named = contributions[: config.contributions] if config.contributions else contributions
    return RiskAssessment(
        event_id=event_id_for(
            cause.patient_id, "risk", model.name, str(model.version), str(inputs.day)
        ),
        patient_id=cause.patient_id,
        observed_at=inputs.end,
        received_at=cause.received_at,
        source=CORE_SOURCE,
        caused_by=cause.event_id,
        probability=probability,
        horizon_days=model.horizon_days,
        model_name=model.name,
        model_version=model.version,
        contributions=tuple(
            FeatureContribution(feature=name, value=value, contribution=round(c, 4))
            for name, value, c in named
        ),
    )
