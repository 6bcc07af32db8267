"""Everything the core remembers about one patient, in bounded memory.

:class:`PatientState` is plain data: it pickles, and it round-trips through
JSON (``model_dump_json`` / ``model_validate_json``, the form the stream
worker writes to its changelog topic, where pickle would let whoever can
write the topic run code). Every buffer in it is bounded: recent event ids,
held-back events, open wearable days, 28 days of daily features, a few lab
values per analyte, one course per instrument, one open alert per rule and
signal, a few numbers per wearable feature for the risk model.
:func:`state_size` measures it.

The core never changes a state it was given: :meth:`PatientState.copy` makes
a new state that shares what the next step will not touch and copies what
it will (copy-on-write, so a wearable upload does not copy the courses).

>>> state = PatientState(patient_id="p-0123456789abcdef01234567")
>>> PatientState.model_validate_json(state.model_dump_json()) == state
True
>>> state_size(state) < 2048
True
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field, fields, replace

from pydantic import TypeAdapter

from streams.course import InstrumentCourse
from streams.dedup import EventMemory
from streams.labs import LabCourse
from streams.models.features import RiskFeatures
from streams.models.risk_rule import RiskAlert
from streams.ordering import EventTimeOrder
from streams.rules import (
    DataLoss,
    Inflammation,
    LabStatusRule,
    LithiumRange,
    ManiaRule,
    RelapseRule,
    ReliableDeterioration,
    SeverityBand,
    SleepLoss,
)
from streams.stratification.state import StratificationState
from streams.wearable_days import WearableDays


@dataclass(slots=True)
class Counters:
    """What the core did with the patient's events (for monitoring, not for decisions)."""

    events: int = 0
    duplicates: int = 0
    late: int = 0
    samples: int = 0
    duplicate_samples: int = 0
    late_samples: int = 0

    def clone(self) -> Counters:
        """An independent copy (written out: ``dataclasses.replace`` costs 5x more)."""
        return Counters(
            self.events,
            self.duplicates,
            self.late,
            self.samples,
            self.duplicate_samples,
            self.late_samples,
        )


@dataclass(slots=True)
class RuleStates:
    """The state of every stateful alert rule (safety rules keep none)."""

    deterioration: ReliableDeterioration = field(default_factory=ReliableDeterioration)
    bands: SeverityBand = field(default_factory=SeverityBand)
    mania: ManiaRule = field(default_factory=ManiaRule)
    relapse: RelapseRule = field(default_factory=RelapseRule)
    lithium: LithiumRange = field(default_factory=LithiumRange)
    inflammation: Inflammation = field(default_factory=Inflammation)
    lab_status: LabStatusRule = field(default_factory=LabStatusRule)
    sleep_loss: SleepLoss = field(default_factory=SleepLoss)
    data_loss: DataLoss = field(default_factory=DataLoss)
    relapse_risk: RiskAlert = field(default_factory=RiskAlert)

    def clone(self) -> RuleStates:
        """An independent copy."""
        return RuleStates(
            self.deterioration.clone(),
            self.bands.clone(),
            self.mania.clone(),
            self.relapse.clone(),
            self.lithium.clone(),
            self.inflammation.clone(),
            self.lab_status.clone(),
            self.sleep_loss.clone(),
            self.data_loss.clone(),
            self.relapse_risk.clone(),
        )

    def clone_only(self, names: frozenset[str]) -> RuleStates:
        """A copy in which the rules ``names`` are copied and every other rule is shared.

        For a step that changes only some rules (a score's course rules, a lab's
        lab rules): the others are shared with the state given, which is never
        changed (copy-on-write, as :meth:`PatientState.copy` does for its parts).
        """
        if not names <= _RULE_NAMES:
            raise ValueError(
                f"no such rule state: {sorted(names - _RULE_NAMES)}; accepted: "
                f"{', '.join(_RULE_ORDER)}"
            )
        return RuleStates(
            self.deterioration.clone() if "deterioration" in names else self.deterioration,
            self.bands.clone() if "bands" in names else self.bands,
            self.mania.clone() if "mania" in names else self.mania,
            self.relapse.clone() if "relapse" in names else self.relapse,
            self.lithium.clone() if "lithium" in names else self.lithium,
            self.inflammation.clone() if "inflammation" in names else self.inflammation,
            self.lab_status.clone() if "lab_status" in names else self.lab_status,
            self.sleep_loss.clone() if "sleep_loss" in names else self.sleep_loss,
            self.data_loss.clone() if "data_loss" in names else self.data_loss,
            self.relapse_risk.clone() if "relapse_risk" in names else self.relapse_risk,
        )


_RULE_ORDER: tuple[str, ...] = tuple(f.name for f in fields(RuleStates))
_RULE_NAMES = frozenset(_RULE_ORDER)
#: Each rule state of a new patient by name (compared with, never handed out).
_NEW_RULES = tuple((name, getattr(RuleStates(), name)) for name in _RULE_ORDER)


@dataclass(slots=True)
class PatientState:
    """The core's memory of one patient.

    Attributes
    ----------
    patient_id
        The pseudonym, set by the first event (or by whoever creates the state).
    events, uploads
        Recently seen event ids, for dedup (:mod:`streams.dedup`).
    order
        Watermarks and held-back events (:mod:`streams.ordering`).
    courses
        Course of illness per instrument (:mod:`streams.course`).
    labs
        Recent values per analyte (:mod:`streams.labs`).
    wearable
        Open days, daily-feature history, zones, sample dedup (:mod:`streams.wearable_days`).
    rules
        Open alerts and rule memory (:mod:`streams.rules`).
    counters
        Events, duplicates and late arrivals counted (changes nothing else).
    risk
        The per-patient part of the relapse-risk model: smoothed deviations,
        drift and anomaly rate (:mod:`streams.models.features`). The population
        model is not here: it arrives in ``CoreConfig.model``.
    strata
        The biomarker profile, specifiers met and cluster label
        (:mod:`streams.stratification`), from the first score, lab, outcome or
        closed day on; the population subgroup model arrives in
        ``CoreConfig.subgroups``.
    """

    patient_id: str | None = None
    events: EventMemory = field(default_factory=EventMemory)
    uploads: EventMemory = field(default_factory=EventMemory)
    order: EventTimeOrder = field(default_factory=EventTimeOrder)
    courses: dict[str, InstrumentCourse] = field(default_factory=dict)
    labs: dict[str, LabCourse] = field(default_factory=dict)
    wearable: WearableDays = field(default_factory=WearableDays)
    rules: RuleStates = field(default_factory=RuleStates)
    counters: Counters = field(default_factory=Counters)
    risk: RiskFeatures = field(default_factory=RiskFeatures)
    strata: StratificationState | None = None

    def copy(
        self,
        *,
        events: bool = False,
        uploads: bool = False,
        order: bool = False,
        courses: bool = False,
        labs: bool = False,
        wearable: bool = False,
        rules: bool | frozenset[str] = False,
        risk: bool = False,
        strata: bool = False,
    ) -> PatientState:
        """A new state sharing every part not named; named parts (and counters) are copied.

        ``rules`` may name the rule states to copy (:meth:`RuleStates.clone_only`)
        instead of copying all of them.
        """
        if isinstance(rules, frozenset):
            rule_states = self.rules.clone_only(rules) if rules else self.rules
        else:
            rule_states = self.rules.clone() if rules else self.rules
        return PatientState(
            self.patient_id,
            self.events.clone() if events else self.events,
            self.uploads.clone() if uploads else self.uploads,
            self.order.clone() if order else self.order,
            {k: v.clone() for k, v in self.courses.items()} if courses else self.courses,
            {k: v.clone() for k, v in self.labs.items()} if labs else self.labs,
            self.wearable.clone() if wearable else self.wearable,
            rule_states,
            self.counters.clone(),
            self.risk.clone() if risk else self.risk,
            self.strata.clone() if strata and self.strata is not None else self.strata,
        )

    def without_counters(self) -> PatientState:
        """The same state with zeroed counters: what decisions depend on.

        Two histories that differ only by duplicates or by arrival order give
        states equal in this view.
        """
        return replace(self, counters=Counters())

    def model_dump_json(self) -> str:
        """The state as JSON text (the stream worker's changelog form)."""
        return self.json_bytes().decode()

    def json_bytes(self) -> bytes:
        """:meth:`model_dump_json` as UTF-8 bytes, as the table stores it.

        A rule state that is still as new (no alert open, none closed, nothing
        remembered) is left out: it reads back as a new one. Most patients meet
        a few of the ten rules only, and an empty rule state cost as much to
        decode as a full one. States written with every rule read back the same.
        """
        rules = self.rules
        idle: set[str] = set()
        for name, new in _NEW_RULES:
            rule = getattr(rules, name)
            if not rule.book.open and not rule.book.closed_at and rule == new:
                idle.add(name)
        return _ADAPTER.dump_json(self, exclude={"rules": idle} if idle else None)

    @classmethod
    def model_validate_json(cls, data: str | bytes) -> PatientState:
        """A state read back from :meth:`model_dump_json`."""
        return _ADAPTER.validate_json(data)


_ADAPTER: TypeAdapter[PatientState] = TypeAdapter(PatientState)


def state_size(state: PatientState) -> int:
    """Bytes of the pickled state: the budget is 8 KB for a few months of data."""
    return len(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))
