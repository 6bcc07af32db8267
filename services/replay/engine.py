"""The replay loop: the same pure core as the live worker, over events in a plain loop.

:func:`run_core` is what the faust agent does for each record, minus the
broker: look up the patient's state, call :func:`streams.process`, keep the
new state. Given the events in the order the worker applied them it returns
the outputs the worker produced, bit for bit (ARCHITECTURE.md, "One entry
point for the logic").

>>> from schemas.events import LabResult
>>> from schemas.examples import envelope_fields
>>> lab = LabResult(**envelope_fields(), analyte="lithium", value=1.7, unit="mmol/L")
>>> [(o.kind, getattr(o, "rule", None)) for _, outputs in run_core([lab, lab]) for o in outputs]
[('alert', 'lithium_toxicity'), ('course_update', None), ('alert', 'lithium_range')]
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, MutableMapping

from schemas.dispatch import dead_letter
from schemas.events import DeadLetter
from schemas.topics import topic_for_kind
from services.replay.query import InputEvent
from streams import CoreConfig, Output, PatientState, process

log = logging.getLogger("psymon.replay")


def run_core(
    events: Iterable[InputEvent],
    config: CoreConfig | None = None,
    states: MutableMapping[str, PatientState] | None = None,
    config_for: Callable[[InputEvent], CoreConfig] | None = None,
) -> Iterator[tuple[InputEvent, list[Output]]]:
    """Apply ``events`` in order; yield each event with the outputs it caused.

    Parameters
    ----------
    events
        Input events, each patient's in the order to apply them.
    config
        The core's configuration; default ``CoreConfig()``.
    states
        Patient states to start from and to update in place, keyed by
        pseudonym; default: every patient starts empty (a new dict).
    config_for
        The configuration for each event instead of ``config`` (a replay
        that scores each event with the model version live used for it,
        :class:`services.model_versions.AsLive`).
    """
    core_config = config if config is not None else CoreConfig()
    known: MutableMapping[str, PatientState] = {} if states is None else states
    for event in events:
        patient = event.patient_id
        state = known.get(patient)
        if state is None:
            state = PatientState(patient_id=patient)
        event_config = core_config if config_for is None else config_for(event)
        try:
            new_state, outputs = process(state, event, event_config)
        except Exception as error:
            yield event, [core_failure(event, error)]
            continue
        known[patient] = new_state
        yield event, outputs


def run_patients(
    events: Iterable[InputEvent],
    config: CoreConfig | None = None,
    config_for: Callable[[InputEvent], CoreConfig] | None = None,
) -> Iterator[tuple[InputEvent, list[Output]]]:
    """:func:`run_core` over events grouped by patient, keeping only the current patient's state.

    What a replay runs: its events come patient by patient, so a finished
    patient's state is dropped and memory stays flat however many patients.
    The loop of :func:`run_core` written out with one state instead of a
    dict of them (a replay runs it once per input event).
    """
    core_config = config if config is not None else CoreConfig()
    current: str | None = None
    state: PatientState | None = None  # the current patient's, once an event was applied
    for event in events:
        patient = event.patient_id
        if patient != current:
            current, state = patient, None
        event_config = core_config if config_for is None else config_for(event)
        try:
            state, outputs = process(
                PatientState(patient_id=patient) if state is None else state, event, event_config
            )
        except Exception as error:
            yield event, [core_failure(event, error)]
            continue
        yield event, outputs


def core_failure(event: InputEvent, error: Exception) -> DeadLetter:
    """What the live worker emits when the core raises: the event kept with the reason.

    The state is left as it was, as live (``streams.app.handle``). The raw
    text is the event's JSON, which is what psymon's producers send, so the
    dead letter's id matches the live one; its ``received_at`` is the event's
    (the broker's timestamp is not stored).
    """
    log.exception("the core failed on a %s event during replay", event.kind)
    reason = (
        f"the stream worker could not process this {event.kind} event "
        f"({type(error).__name__}); it is kept here unprocessed for inspection"
    )
    raw = event.model_dump_json().encode()
    topic = topic_for_kind(event.kind)
    return dead_letter(raw, topic, event.received_at, reason, patient_id=event.patient_id)


def final_states(
    events: Iterable[InputEvent], config: CoreConfig | None = None
) -> dict[str, PatientState]:
    """Every patient's state after ``events`` (outputs discarded)."""
    states: dict[str, PatientState] = {}
    for _ in run_core(events, config, states):
        pass
    return states


__all__ = ["core_failure", "final_states", "run_core", "run_patients"]
