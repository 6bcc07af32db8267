"""The one entry point for the logic: ``process(state, event, config)``.

The stream worker calls it for each event of a partition and the replay
engine in a plain loop; both get the same outputs for the same history
(ARCHITECTURE.md). It reads like a routing table:

1. an event the patient state has seen already changes nothing but a counter;
2. safety rules act on arrival (PHQ-9 item 9, self-harm and suicidal-ideation
   outcomes, lithium toxicity), whatever the watermark;
3. scores, labs and outcomes wait for their family's watermark and are
   applied in event-time order (:mod:`streams.ordering`); a late one is still
   reported, flagged ``late=True``, and does not rewrite the course;
4. wearable samples go straight into their local day (:mod:`streams.wearable_days`);
5. every event's time may close wearable days: their features, the
   sleep-loss and data-loss rules, and the risk models (:mod:`streams.models`):
   the day's anomaly rate and drift, and, when ``config.model`` holds a
   population model version, a :class:`~schemas.events.RiskAssessment` and the
   ``relapse_risk`` alert.

``process`` never changes the state it is given: it returns a new one.

>>> from datetime import UTC, datetime
>>> from schemas.events import ClinicalScore
>>> from schemas.examples import envelope_fields
>>> items = {str(i): 2 for i in range(1, 10)} | {"9": 1}
>>> score = ClinicalScore(**envelope_fields(), instrument="phq9", rater="self", items=items)
>>> state, outputs = process(PatientState(), score, CoreConfig())
>>> [(o.kind, getattr(o, "rule", getattr(o, "signal", None))) for o in outputs]
[('alert', 'phq9_item9'), ('course_update', 'phq9'), ('alert', 'severity_band')]
>>> process(state, score, CoreConfig())[1]  # the same event again: nothing new
[]
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from functools import lru_cache

from schemas.envelope import FIXED_OFFSETS
from schemas.events import (
    ClinicalOutcome,
    ClinicalScore,
    LabResult,
    WearableSample,
    WearableUpload,
)
from schemas.wearables import Metric, get_metric
from streams import outputs as out
from streams.config import CoreConfig
from streams.course import InstrumentCourse
from streams.labs import LabCourse
from streams.models import emit
from streams.models.snapshot import sigmoid
from streams.ordering import micros
from streams.outputs import InputEvent, Output
from streams.rules import LithiumToxicity, SafetyOutcome, SelfHarmItem, Trigger
from streams.rules.base import AlertChange
from streams.state import PatientState
from streams.stratification import stratify
from streams.timezones import zone_key
from streams.wearable_days import ClosedDay, Sample, metric_id

_HOUR_US = 3_600_000_000
_SELF_HARM, _SAFETY_OUTCOME, _LITHIUM_TOXICITY = SelfHarmItem(), SafetyOutcome(), LithiumToxicity()
WEARABLE = "wearable"

SparseEvent = ClinicalScore | LabResult | ClinicalOutcome


def process(
    state: PatientState, event: InputEvent, config: CoreConfig
) -> tuple[PatientState, list[Output]]:
    """Apply one event to a patient's state; return the new state and what to emit.

    Parameters
    ----------
    state
        The patient's state (``PatientState()`` or ``PatientState(patient_id=...)``
        for a patient not seen before). Never modified.
    event
        One validated raw event of that patient.
    config
        Thresholds and windows; its ``version`` is named in every alert. Its
        ``model`` (a :class:`~streams.models.snapshot.ModelSnapshot`, or None)
        is the population relapse-risk model version to score with.

    Returns
    -------
    The new state and the outputs, in the order they arose:
    :class:`~schemas.events.CourseUpdate`, :class:`~schemas.events.RiskAssessment`
    and :class:`~schemas.events.Alert` events; for an input the core cannot
    use (a derived event, another patient's event) the given state itself and one
    :class:`~schemas.events.DeadLetter`. A duplicate gives no outputs and a
    new state that differs only in its counters.
    """
    if not isinstance(
        event, (ClinicalScore, WearableUpload, WearableSample, LabResult, ClinicalOutcome)
    ):
        kind = getattr(event, "kind", type(event).__name__)
        return state, [
            out.dead_letter(
                event,
                f"the core processes raw events only (clinical_score, wearable_upload, "
                f"wearable_sample, lab_result, clinical_outcome), not {kind!r}",
            )
        ]
    if state.patient_id is not None and event.patient_id != state.patient_id:
        return state, [
            out.dead_letter(
                event,
                "the event's patient_id is not the patient of the state it was given to "
                "(neither value is shown: they may identify a patient)",
            )
        ]
    if isinstance(event, (WearableUpload, WearableSample)):
        return _wearable(state, event, config)
    return _sparse(state, event, config)


# --------------------------------------------------------------------------- sparse events


def _family(event: SparseEvent) -> str:
    """What ``event`` is ordered among: its instrument's ratings, its analyte's results."""
    if isinstance(event, ClinicalScore):
        return f"clinical_score:{event.instrument}"
    if isinstance(event, LabResult):
        return f"lab_result:{event.analyte}"
    return "clinical_outcome"


def _lateness_us(event: SparseEvent, config: CoreConfig) -> int:
    ordering = config.ordering
    if isinstance(event, ClinicalScore):
        hours = ordering.score_lateness_hours
    elif isinstance(event, LabResult):
        hours = ordering.lab_lateness_hours
    else:
        hours = ordering.outcome_lateness_hours
    return round(hours * _HOUR_US)


def _sparse(
    state: PatientState, event: SparseEvent, config: CoreConfig
) -> tuple[PatientState, list[Output]]:
    if state.events.seen(event.event_id):
        new = state.copy()
        new.counters.duplicates += 1
        return new, []
    is_lab = isinstance(event, LabResult)
    days_may_close = bool(state.wearable.open) or state.wearable.tracking
    new = state.copy(
        events=True,
        order=True,
        courses=not is_lab,
        labs=is_lab,
        wearable=days_may_close,
        rules=_rules_changed(event),
    )
    new.patient_id = event.patient_id
    new.events.remember(event.event_id, micros(event.observed_at), config.dedup.remembered_events)
    new.counters.events += 1
    outputs = _alerts(event, _safety(event, config), config)
    family = _family(event)
    if new.order.admit(event, family, _lateness_us(event, config)) == "late":
        new.counters.late += 1
        outputs += _apply(new, event, config, late=True)
    else:
        for released in new.order.release(family, config.ordering.max_pending_events):
            outputs += _apply(new, released, config, late=False)
    outputs += _close_days(new, event, config)
    return new, outputs


#: The rule states a sparse event can change in its own family (safety rules
#: keep none): :func:`_apply_score`, :func:`_apply_lab`, :func:`_apply_outcome`;
#: an event releases only held events of its own family. The day rules and the
#: risk alert change only when a day closes, and are copied then (:func:`_close_days`).
_SCORE_RULES = frozenset({"deterioration", "bands", "mania", "relapse"})
_LAB_RULES = frozenset({"lithium", "inflammation", "lab_status"})
_OUTCOME_RULES = frozenset({"relapse"})
_DAY_RULES = frozenset({"sleep_loss", "data_loss", "relapse_risk"})


def _rules_changed(event: SparseEvent) -> frozenset[str]:
    """The rule states :func:`_sparse` copies for ``event``: its family's."""
    if isinstance(event, ClinicalScore):
        return _SCORE_RULES
    if isinstance(event, LabResult):
        return _LAB_RULES
    return _OUTCOME_RULES


def _safety(event: SparseEvent, config: CoreConfig) -> list[AlertChange]:
    if isinstance(event, ClinicalScore):
        return _SELF_HARM.evaluate(event, config)
    if isinstance(event, LabResult):
        return _LITHIUM_TOXICITY.evaluate(event, config)
    return _SAFETY_OUTCOME.evaluate(event, config)


def _alerts(cause: InputEvent, changes: Iterable[AlertChange], config: CoreConfig) -> list[Output]:
    return [out.alert(cause, change, config.version) for change in changes]


def _apply(
    state: PatientState, event: SparseEvent, config: CoreConfig, *, late: bool
) -> list[Output]:
    """Apply one event in event-time order (or, when ``late``, report it against the course)."""
    trigger = Trigger(event.patient_id, event.observed_at, str(event.event_id))
    if isinstance(event, ClinicalScore):
        outputs = _apply_score(state, event, trigger, config, late=late)
    elif isinstance(event, LabResult):
        outputs = _apply_lab(state, event, trigger, config, late=late)
    else:
        outputs = _apply_outcome(state, event, trigger, config, late=late)
    return outputs + stratify.observe_event(state, event, config)


def _apply_score(
    state: PatientState, score: ClinicalScore, trigger: Trigger, config: CoreConfig, *, late: bool
) -> list[Output]:
    assert score.total is not None
    course = state.courses.get(score.instrument)
    if late and course is not None:
        return [out.course_update(score, course.view_late(score.total), late=True)]
    if course is None:
        course = state.courses[score.instrument] = InstrumentCourse(score.instrument)
    view = course.update(score.total, score.items, micros(score.observed_at), config)
    outputs: list[Output] = [out.course_update(score, view, late=late)]
    if late:
        return outputs
    rules = state.rules
    changes = rules.deterioration.evaluate(view, trigger, config)
    changes += rules.bands.evaluate(view, trigger, config)
    changes += rules.mania.evaluate(view, trigger, config)
    changes += rules.relapse.evaluate(view.instrument, view.status, trigger, config)
    panss = state.courses.get("panss")
    cgi_relapse = score.instrument == "cgi_c" and score.total >= config.course.cgi_c_relapse_min
    if cgi_relapse and panss is not None and panss.status != "relapse":
        panss.status = "relapse"
        changes += rules.relapse.evaluate("panss", panss.status, trigger, config)
    return outputs + _alerts(score, changes, config)


def _apply_lab(
    state: PatientState, lab: LabResult, trigger: Trigger, config: CoreConfig, *, late: bool
) -> list[Output]:
    course = state.labs.get(lab.analyte)
    if late and course is not None:
        return [out.lab_update(lab, course.view_late(lab.value, config), late=True)]
    if course is None:
        course = state.labs[lab.analyte] = LabCourse(lab.analyte)
    view = course.update(lab.value, config)
    outputs: list[Output] = [out.lab_update(lab, view, late=late)]
    if late:
        return outputs
    rules = state.rules
    changes = rules.lithium.evaluate(view, trigger, config)
    changes += rules.inflammation.evaluate(view, trigger, config)
    changes += rules.lab_status.evaluate(view, trigger, config)
    return outputs + _alerts(lab, changes, config)


def _apply_outcome(
    state: PatientState,
    outcome: ClinicalOutcome,
    trigger: Trigger,
    config: CoreConfig,
    *,
    late: bool,
) -> list[Output]:
    """Outcomes are labels that often arrive weeks late: applied even when late."""
    outputs: list[Output] = []
    at = micros(outcome.observed_at)
    for instrument in sorted(state.courses):
        course = state.courses[instrument]
        if course.latest is None or not course.mark_outcome(
            outcome.outcome, outcome.episode, at, config
        ):
            continue
        view = course.view_late(course.latest)
        outputs.append(out.status_update(outcome, view, late=late))
        changes = state.rules.relapse.evaluate(instrument, course.status, trigger, config)
        outputs += _alerts(outcome, changes, config)
    return outputs


# --------------------------------------------------------------------------- wearable data


@lru_cache(maxsize=256)
def _metric(name: str) -> Metric:
    return get_metric(name)


#: Up to 2**33 s after the epoch (the year 2242) a float timestamp is within
#: half a microsecond of the true time, so ``int`` of it is the whole second.
_EXACT_SECONDS = 2**33


def _end_second(start: int, end: datetime, span: timedelta) -> int:
    """``int(end.timestamp())``, from ``start``, that of the instant ``span`` (real time) before.

    A span of whole seconds after a start in the years 1970-2242 ends that many
    whole seconds later: an addition instead of the timestamp's division (and
    its UTC offset, a call into pydantic's ``TzInfo`` for a validated reading).
    """
    if span.microseconds == 0 and 0 < start < _EXACT_SECONDS:
        second = start + span.days * 86_400 + span.seconds
        if 0 <= second < _EXACT_SECONDS:
            return second
    return int(end.timestamp())


def _wearable(
    state: PatientState, event: WearableUpload | WearableSample, config: CoreConfig
) -> tuple[PatientState, list[Output]]:
    upload = isinstance(event, WearableUpload)
    if upload and state.uploads.seen(event.event_id):
        new = state.copy()
        new.counters.duplicates += 1
        return new, []
    new = state.copy(uploads=upload, order=True, wearable=True)
    new.patient_id = event.patient_id
    new.counters.events += 1
    stream = f"{event.source.system}|{event.source.device or ''}"
    samples: list[Sample] = []
    if isinstance(event, WearableUpload):
        new.uploads.remember(
            event.event_id, micros(event.observed_at), config.dedup.remembered_uploads
        )
        fixed = event.time_zone
        append = samples.append
        # A reading mostly starts where the one before it ended (the same
        # instant, often the same object): its epoch second is known already,
        # and its end is its start plus its span. Python compares and subtracts
        # times that share a ``tzinfo`` object by wall time: the same as in UTC
        # only for a fixed offset (every validated time), so only then.
        # An upload lists each metric's readings together: the metric is
        # looked up once per run of them.
        previous_end: object = None
        end = 0
        name: str | None = None
        for r in event.readings:
            if r.metric != name:
                name = r.metric
                metric = _metric(name)
                metric_key, unit, low, high = metric.id, metric.unit, metric.low, metric.high
            begins, ends = r.start, r.end
            if type(begins.tzinfo) in FIXED_OFFSETS and type(ends.tzinfo) in FIXED_OFFSETS:
                start = end if begins == previous_end else int(begins.timestamp())
                end = _end_second(start, ends, ends - begins)
            else:
                start, end = int(begins.timestamp()), int(ends.timestamp())
            previous_end = ends
            value = r.value
            if not (type(value) is float and r.unit == unit and low <= value <= high):
                # Validation left it canonical: converting again would give the
                # value itself. Anything else (a reading built without
                # validation) is converted, or refused, as before.
                value = metric.to_canonical(value, r.unit)
            append((metric_key, value, start, end, fixed or zone_key(None, r.start)))
    else:
        key = zone_key(event.time_zone, event.observed_at)
        start, end = int(event.observed_at.timestamp()), int(event.interval_end.timestamp())
        samples.append((metric_id(event.metric), event.value, start, end, key))
    added = new.wearable.add(samples, stream, config)
    counters = new.counters
    counters.samples += added.new
    counters.duplicate_samples += added.duplicates
    outputs: list[Output] = []
    if added.late:
        counters.late_samples += sum(added.late.values())
        outputs += [out.late_samples_update(event, day, n) for day, n in sorted(added.late.items())]
    if added.newest is not None:
        new.order.observe(WEARABLE, min(added.newest * 1_000_000, micros(event.received_at)))
    outputs += _close_days(new, event, config)
    return new, outputs


def _close_days(state: PatientState, cause: InputEvent, config: CoreConfig) -> list[Output]:
    """Close every wearable day the newest event time has passed.

    The wearable family's own newest time counts as it is; other families' only
    ``other_families_close_after_hours`` later (see :class:`streams.config.OrderingConfig`),
    so days still close, and data loss is still noticed, when a patient sends scores but
    no wearable data, while a score topic read ahead of the wearable topic closes nothing.
    """
    wearable = state.wearable
    if not wearable.open and not wearable.tracking:
        return []
    ordering = config.ordering
    slack = round(ordering.other_families_close_after_hours * 3600 * 1_000_000)
    newest: int | None = None
    for family, at in state.order.newest.items():
        if family != WEARABLE:
            at -= slack
        if newest is None or at > newest:
            newest = at
    if newest is None:
        return []
    lateness = round(ordering.wearable_lateness_hours * 3600)
    closed = wearable.close(newest // 1_000_000, lateness, config)
    if not closed:
        return []
    # Copy-on-write: the day rules and the risk features are still those of the
    # state ``process`` was given, shared because most events close no day.
    state.rules = state.rules.clone_only(_DAY_RULES)
    state.risk = state.risk.clone()
    outputs: list[Output] = []
    for day in closed:
        outputs += out.day_updates(cause, day)
        trigger = Trigger(cause.patient_id, day.end, f"day:{day.day.isoformat()}")
        changes = state.rules.sleep_loss.evaluate(day, trigger, config)
        changes += state.rules.data_loss.evaluate(day, trigger, config)
        outputs += _alerts(cause, changes, config)
        outputs += _risk(state, cause, day, config)
        outputs += stratify.observe_day(state, cause, day, config)
    return outputs


def _risk(
    state: PatientState, cause: InputEvent, day: ClosedDay, config: CoreConfig
) -> list[Output]:
    """The risk models on one closed day: anomaly rate and drift, then the population model."""
    inputs = state.risk.learn_one(day, state.courses, config.risk, state.strata, config.subgroups)
    if inputs is None:
        return []
    outputs: list[Output] = [emit.anomaly_update(cause, inputs)]
    model = config.model
    if model is None:
        return outputs
    terms = model.contributions(inputs.values)
    probability = round(sigmoid(model.bias + sum(c for _, _, c in terms)), 6)
    ranked = emit.ordered(terms)
    outputs.append(emit.risk_assessment(cause, inputs, model, probability, ranked, config.risk))
    changes = state.rules.relapse_risk.observe(
        probability, inputs.day, inputs.end, cause.patient_id, model, ranked, config
    )
    return outputs + _alerts(cause, changes, config)


__all__ = ["CoreConfig", "Output", "PatientState", "process"]
