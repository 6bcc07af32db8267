"""The core's two hooks into stratification: fold data into the profile, then re-assign.

:func:`observe_event` takes a rating, a lab result or a medication change
(in the order the core applies them); :func:`observe_day` a closed wearable
day. Each updates the patient's
:class:`~streams.stratification.profile.BiomarkerProfile`, re-judges every
specifier and, when ``CoreConfig.subgroups`` holds a population subgroup
model, weighs the patient's cluster (with hysteresis). A change of subgroup
becomes a :class:`~schemas.events.SubgroupAssigned` event when
``config.stratification.emit_events`` is on (the default).

Ids derive from the patient, the scheme, the new subgroup and the cause (the
input event, or the closed day), so a replay gives the same events.

>>> from datetime import UTC, datetime, timedelta
>>> from schemas.events import ClinicalScore, LabResult
>>> from schemas.examples import envelope_fields, example_uuid
>>> from streams.config import CoreConfig
>>> config = CoreConfig()
>>> from streams.state import PatientState
>>> state, t0 = PatientState(), datetime(2026, 3, 2, 9, tzinfo=UTC)
>>> def at(n):
...     when = t0 + timedelta(days=n)
...     return envelope_fields(observed_at=when, received_at=when, event_id=example_uuid(n))
>>> madrs = ClinicalScore(**at(0), instrument="madrs", rater="clinician", total=24)
>>> events = [madrs] + [LabResult(**at(n), analyte="crp", value=v, unit="mg/L")
...                     for n, v in [(1, 4.5), (30, 5.2)]]
>>> [[(e.scheme_name, e.subgroup) for e in observe_event(state, ev, config)] for ev in events]
[[], [], [('inflammatory_depression', 'inflammatory_depression')]]
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from schemas.events import ClinicalOutcome, ClinicalScore, LabResult, SubgroupAssigned
from schemas.identity import event_id_for
from streams.config import CoreConfig
from streams.ordering import micros
from streams.outputs import CORE_SOURCE, InputEvent
from streams.state import PatientState
from streams.stratification.snapshot import SubgroupSnapshot
from streams.stratification.specifiers import SPECIFIERS, Scalar
from streams.stratification.state import StratificationState
from streams.wearable_days import ClosedDay

_DAY_US = 86_400_000_000


def _strata(state: PatientState) -> StratificationState:
    """The state's stratification, copied before it is written (copy-on-write).

    ``process`` shares unchanged parts between the old and the new state; the
    stratification is copied here, when it changes, rather than on every
    event (most wearable uploads close no day).
    """
    state.strata = StratificationState() if state.strata is None else state.strata.clone()
    return state.strata


def observe_event(
    state: PatientState,
    event: ClinicalScore | LabResult | ClinicalOutcome,
    config: CoreConfig,
) -> list[SubgroupAssigned]:
    """Fold one rating, lab result or medication change into ``state``; return subgroup changes."""
    strata = _strata(state)
    profile, settings = strata.profile, config.stratification
    at = micros(event.observed_at)
    if isinstance(event, ClinicalScore):
        assert event.total is not None
        onset = config.course.episode_onset_totals.get(event.instrument)
        profile.observe_score(
            event.instrument,
            event.total,
            event.items,
            at,
            clinician=event.rater == "clinician",
            episode_level=onset is not None and event.total >= onset,
            config=settings,
        )
    elif isinstance(event, LabResult):
        if event.analyte not in ("crp", "il6"):
            return []
        profile.observe_lab(event.analyte, event.value, at, settings)
    else:
        if event.medication is None:
            return []
        medication = event.medication
        profile.observe_medication(medication.name, medication.action, at)
        return []  # treatment exposure is part of the profile, not of the cluster features
    return _assign(strata, event, str(event.event_id), event.observed_at, config)


def observe_day(
    state: PatientState, cause: InputEvent, day: ClosedDay, config: CoreConfig
) -> list[SubgroupAssigned]:
    """Fold one closed wearable day into ``state``; return the subgroup changes."""
    strata = _strata(state)
    at = micros(day.end)
    strata.profile.observe_day(day.values, day.coverage, at, config.stratification)
    if not day.has_data or day.coverage < config.stratification.min_day_coverage:
        return []
    return _assign(strata, cause, f"day:{day.day.isoformat()}", day.end, config)


def _assign(
    strata: StratificationState,
    cause: InputEvent,
    trigger: str,
    observed_at: datetime,
    config: CoreConfig,
) -> list[SubgroupAssigned]:
    settings = config.stratification
    changes: list[SubgroupAssigned] = []
    for specifier in SPECIFIERS:
        judgement = specifier.judge(strata.profile, settings)
        was = specifier.name in strata.specifiers
        if judgement.met is None or judgement.met == was:
            continue
        if judgement.met:
            strata.specifiers.append(specifier.name)
            strata.specifiers.sort()
        else:
            strata.specifiers.remove(specifier.name)
        if settings.emit_events:
            subgroup = specifier.name if judgement.met else None
            changes.append(
                SubgroupAssigned(
                    **_envelope(cause, specifier.name, subgroup, trigger, observed_at),
                    scheme="specifier",
                    scheme_name=specifier.name,
                    subgroup=subgroup,
                    previous=None if judgement.met else specifier.name,
                    version=config.version,
                    description=(
                        specifier.description
                        if judgement.met
                        else f"no longer meets: {specifier.description}"
                    )
                    + f" ({judgement.reason})",
                    citation=specifier.citation,
                    evidence=judgement.evidence,
                )
            )
    model = config.subgroups
    if model is not None:
        change = _cluster(strata, cause, trigger, observed_at, model, config)
        if change is not None:
            changes.append(change)
    return changes


def _cluster(
    strata: StratificationState,
    cause: InputEvent,
    trigger: str,
    observed_at: datetime,
    model: SubgroupSnapshot,
    config: CoreConfig,
) -> SubgroupAssigned | None:
    settings = config.stratification
    vector = strata.profile.vector(settings)
    present = [f for f in model.features if f in vector]
    if len(present) < min(settings.min_features, len(model.features)):
        return None
    posterior = model.posterior(vector)
    label, probability = max(posterior, key=lambda lp: (lp[1], lp[0]))
    before = strata.cluster.label
    day = micros(observed_at) // _DAY_US
    if not strata.cluster.observe(label, probability, day, settings):
        return None
    if not settings.emit_events:
        return None
    z = model.standardise(vector)
    evidence: dict[str, Scalar] = {"features_present": len(present)}
    ranked = sorted(
        ((f, v) for f, v in zip(model.features, z, strict=True) if v is not None),
        key=lambda fv: (-abs(fv[1]), fv[0]),
    )
    for feature, value in ranked[:8]:
        evidence[f"{feature}_z"] = round(value, 3)
    for other, p in posterior:
        evidence[f"p_{other}"] = round(p, 4)
    return SubgroupAssigned(
        **_envelope(cause, model.name, label, trigger, observed_at),
        scheme="cluster",
        scheme_name=model.name,
        subgroup=label,
        previous=before,
        version=str(model.version),
        probability=round(min(1.0, max(0.0, probability)), 6),
        description=model.description(label),
        evidence=evidence,
    )


def _envelope(
    cause: InputEvent, scheme: str, subgroup: str | None, trigger: str, observed_at: datetime
) -> dict[str, Any]:
    return {
        "event_id": event_id_for(cause.patient_id, "subgroup", scheme, subgroup or "-", trigger),
        "patient_id": cause.patient_id,
        "observed_at": observed_at,
        "received_at": cause.received_at,
        "source": CORE_SOURCE,
        "caused_by": cause.event_id,
    }
