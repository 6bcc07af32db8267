"""Run a cohort's events through the pure core and keep what a study needs, per patient.

The study uses the same :func:`streams.process` as the live worker and the
replay (``services.replay.run_core``), with the given configuration and
subgroup model, and keeps per patient:

* the input events it saw (scores, labs, outcomes) and their count and ids
  (the manifest names exactly which events produced the results);
* each closed day's wearable features (the ``CourseUpdate`` outputs);
* every :class:`~schemas.events.SubgroupAssigned` change;
* the :class:`~streams.stratification.state.StratificationState` at the
  **landmark**: as the core knew it just before the first event that
  *arrived* at or after the landmark (no look-ahead), and at the end.

Each patient's index is the window start or, if later, the patient's first
event time; the landmark is ``landmark_days`` after the index.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from schemas.events import (
    ClinicalOutcome,
    ClinicalScore,
    CourseUpdate,
    LabResult,
    SubgroupAssigned,
)
from services.replay.engine import run_core
from services.replay.query import InputEvent
from streams import CoreConfig, PatientState
from streams.stratification.state import StratificationState


@dataclass
class PatientRecord:
    """What the study knows about one patient after the core has seen the events."""

    patient_id: str
    index: datetime
    landmark: datetime
    first_received: datetime
    last_observed: datetime
    scores: list[tuple[datetime, str, int]] = field(default_factory=list)
    labs: list[tuple[datetime, str, float]] = field(default_factory=list)
    outcomes: list[ClinicalOutcome] = field(default_factory=list)
    days: dict[str, list[tuple[datetime, float]]] = field(default_factory=dict)
    subgroups: list[SubgroupAssigned] = field(default_factory=list)
    at_landmark: StratificationState | None = None
    final: StratificationState | None = None
    landmark_reached: bool = False

    def labels_at(self, moment: datetime, scheme: str | None = None) -> dict[str, str]:
        """Each scheme's label at ``moment`` (from the SubgroupAssigned events before it)."""
        labels: dict[str, str] = {}
        for change in self.subgroups:
            if change.observed_at > moment:
                break
            if scheme is not None and change.scheme_name != scheme:
                continue
            if change.subgroup is None:
                labels.pop(change.scheme_name, None)
            else:
                labels[change.scheme_name] = change.subgroup
        return labels


@dataclass
class Collected:
    """Every patient's record, and what the manifest says about the input events."""

    patients: dict[str, PatientRecord]
    events: int
    unique_events: int
    kinds: dict[str, int]
    ids_sha256: str
    first_received: datetime | None
    last_received: datetime | None
    dead_letters: int


def _snapshot(state: PatientState | None) -> StratificationState:
    if state is None or state.strata is None:
        return StratificationState()
    return state.strata.clone()


def collect(
    events: Iterable[InputEvent],
    config: CoreConfig,
    *,
    since: datetime | None,
    until: datetime | None,
    landmark_days: float,
    patients: Iterable[str] | None = None,
) -> Collected:
    """Run ``events`` (each patient's in arrival order) through the core; keep the records.

    Events observed at or after ``until`` are the data cut: left out.
    """
    wanted = None if patients is None else set(patients)
    states: dict[str, PatientState] = {}
    records: dict[str, PatientRecord] = {}
    ids: list[str] = []
    kinds: Counter[str] = Counter()
    first_received = last_received = None
    dead = 0
    landmark = timedelta(days=landmark_days)

    def admitted() -> Iterable[InputEvent]:
        nonlocal first_received, last_received
        for event in events:
            if wanted is not None and event.patient_id not in wanted:
                continue
            if until is not None and event.observed_at >= until:
                continue
            record = records.get(event.patient_id)
            if record is None:
                index = event.observed_at if since is None else max(since, event.observed_at)
                record = records[event.patient_id] = PatientRecord(
                    event.patient_id,
                    index,
                    index + landmark,
                    event.received_at,
                    event.observed_at,
                )
            if not record.landmark_reached and event.received_at >= record.landmark:
                record.at_landmark = _snapshot(states.get(event.patient_id))
                record.landmark_reached = True
            record.last_observed = max(record.last_observed, event.observed_at)
            ids.append(str(event.event_id))
            kinds[event.kind] += 1
            if first_received is None or event.received_at < first_received:
                first_received = event.received_at
            if last_received is None or event.received_at > last_received:
                last_received = event.received_at
            if isinstance(event, ClinicalScore):
                assert event.total is not None
                record.scores.append((event.observed_at, event.instrument, event.total))
            elif isinstance(event, LabResult):
                record.labs.append((event.observed_at, event.analyte, event.value))
            elif isinstance(event, ClinicalOutcome):
                record.outcomes.append(event)
            yield event

    for event, outputs in run_core(admitted(), config, states):
        record = records[event.patient_id]
        for output in outputs:
            if isinstance(output, SubgroupAssigned):
                record.subgroups.append(output)
            elif (
                isinstance(output, CourseUpdate)
                and output.signal_kind == "wearable"
                and output.day is not None
                and output.value is not None
                and not output.late
            ):
                record.days.setdefault(output.signal, []).append((output.observed_at, output.value))
            elif output.kind == "dead_letter":
                dead += 1
    for patient, record in records.items():
        record.final = _snapshot(states.get(patient))
        if record.at_landmark is None:  # nothing arrived after the landmark
            record.at_landmark = _snapshot(states.get(patient))
        record.subgroups.sort(key=lambda e: (e.observed_at, str(e.event_id)))
        record.scores.sort()
        record.labs.sort()
        record.outcomes.sort(key=lambda e: (e.observed_at, str(e.event_id)))
        for series in record.days.values():
            series.sort()
    digest = hashlib.sha256("\n".join(sorted(set(ids))).encode()).hexdigest()
    return Collected(
        dict(sorted(records.items())),
        len(ids),
        len(set(ids)),
        dict(sorted(kinds.items())),
        digest,
        first_received,
        last_received,
        dead,
    )
