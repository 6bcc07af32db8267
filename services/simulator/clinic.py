"""Clinic visits, laboratory draws and clinical outcomes, with their delays.

* **Visits** every 4-8 weeks (10 % missed), on weekdays in office hours at
  home (a visit due while the patient travels waits for the return), plus an
  unscheduled visit 2-10 days after each relapse onset: the visit that
  recognises the relapse.
* **CRP** at the first visit and at half of the others. Patients in the
  inflammatory subgroup have a usual level around 5.5 mg/L (about 90 % of
  draws > 3 mg/L), the others around 1 mg/L (Osimo 2019: CRP > 3 mg/L in
  27 % of depressed patients); it rises 30 % x s in relapse in the subgroup;
  3 % of draws catch an intercurrent infection (x 4-15). Labs at patients'
  homes in the Americas report in mg/dL half the time.
* **Lithium** trough levels (12 h after the dose, NICE CG185) every 4-13
  weeks for patients on lithium: a patient target of 0.6-0.95 mmol/L, lower
  by up to 0.25 in relapse (missed doses); 4 % of draws are toxic (1.55-2.4),
  followed by a dose reduction and a repeat level 5-8 days later.
* **Outcomes**: ``relapse`` (observed at onset, recorded 1-50 days after the
  recognising visit), ``hospitalisation`` (observed at admission, received
  with the discharge letter), ``medication_change`` (at the recognising visit,
  received 0.5-14 days later).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from schemas.envelope import Source
from schemas.events import ClinicalOutcome, LabResult
from schemas.events import Medication as MedicationEvent
from services.simulator.config import Medication
from services.simulator.context import EagerEvent, PatientContext
from services.simulator.scores import ScoreWriter

EHR = Source(system="sim-ehr")
LAB = Source(system="sim-lab")
LITHIUM_REDUCED = Medication("lithium", "N05AN01", "dose_change", 600.0)


@dataclass(frozen=True)
class Visit:
    """A clinic visit: its day, when it took place, and a stable name for ids."""

    day: int
    seen_at: datetime
    name: str


class Clinic:
    """Generates a patient's visits, labs and outcomes (consuming ``rng`` in a fixed order)."""

    def __init__(self, ctx: PatientContext, rng: np.random.Generator, scores: ScoreWriter) -> None:
        self.ctx = ctx
        self.rng = rng
        self.scores = scores
        self.crp_level = float(
            rng.lognormal(math.log(5.5), 0.3) if ctx.inflammatory else rng.lognormal(0.0, 0.5)
        )
        self.lithium_target = float(rng.uniform(0.6, 0.95))
        self.americas = ctx.timeline.home_zone.startswith("America/")

    def events(self) -> list[EagerEvent]:
        """Every visit score, lab result and outcome of the patient."""
        ctx = self.ctx
        detection = {
            index: episode.onset
            + int(self.rng.integers(*self._inclusive(ctx.config.detection_days)))
            for index, episode in enumerate(ctx.course.episodes)
        }
        events: list[EagerEvent] = []
        visits = self.visits(detection)
        for visit_number, visit in enumerate(visits):
            events.extend(self.scores.visit_scores(visit.day, visit.seen_at, visit.name))
            if visit_number == 0 or self.rng.random() < ctx.config.crp_probability:
                events.append(self._crp(visit))
        if ctx.on_lithium:
            events.extend(self._lithium())
        recognised: dict[int, datetime] = {}
        by_name = {visit.name: visit for visit in visits}
        for index, day in detection.items():
            seen = by_name.get(f"relapse-{index}")
            recognised[index] = (
                seen.seen_at
                if seen is not None
                else ctx.clinic_time(day, 9 * 60 + self.rng.uniform(0, 480))
            )
        events.extend(self._outcomes(recognised))
        return events

    @staticmethod
    def _inclusive(bounds: tuple[int, int]) -> tuple[int, int]:
        return bounds[0], bounds[1] + 1

    # -- visits ----------------------------------------------------------------------------------

    def visits(self, detection: dict[int, int]) -> list[Visit]:
        """Scheduled visits (some missed) and the relapse-recognising visits, in time order."""
        ctx, rng, config = self.ctx, self.rng, self.ctx.config
        planned: list[tuple[int, str]] = []
        day = int(rng.integers(0, 14))
        number = 0
        while day < ctx.days:
            if number == 0 or rng.random() >= config.visit_miss_probability:
                planned.append((day, f"visit-{number}"))
            number += 1
            day += int(rng.integers(*self._inclusive(config.visit_interval_days)))
        planned += [(d, f"relapse-{i}") for i, d in detection.items() if d < ctx.days]
        visits: list[Visit] = []
        for wanted, name in sorted(planned):
            day = self._weekday(ctx.back_home_after(wanted))
            if day >= ctx.days:
                continue
            visits.append(Visit(day, ctx.clinic_time(day, 9 * 60 + rng.uniform(0, 480)), name))
        return visits

    def _weekday(self, day: int) -> int:
        weekday = (self.ctx.t0 + timedelta(days=day)).weekday()
        return day + (7 - weekday if weekday >= 5 else 0)

    # -- labs ------------------------------------------------------------------------------------

    def _crp(self, visit: Visit) -> LabResult:
        ctx, rng = self.ctx, self.rng
        value = self.crp_level * math.exp(rng.normal(0, 0.25))
        if ctx.inflammatory:
            value *= 1 + 0.3 * float(ctx.course.severity[visit.day])
        if rng.random() < ctx.config.acute_crp_probability:
            value *= rng.uniform(4, 15)
        value = max(round(value, 1), 0.2)
        mg_dl = self.americas and rng.random() < 0.5
        collected = visit.seen_at + timedelta(minutes=15)
        return LabResult(
            event_id=ctx.ids(f"crp:{visit.name}"),
            patient_id=ctx.patient_id,
            observed_at=collected,
            received_at=collected + timedelta(hours=rng.uniform(4, 30)),
            source=LAB,
            analyte="crp",
            value=round(value / 10, 2) if mg_dl else value,
            unit="mg/dL" if mg_dl else "mg/L",
        )

    def _lithium(self) -> list[EagerEvent]:
        ctx, rng, config = self.ctx, self.rng, self.ctx.config
        events: list[EagerEvent] = []
        day = int(rng.integers(0, 28))
        draw = 0
        while day < ctx.days:
            toxic = rng.random() < config.lithium_toxicity_probability
            level = self.lithium_target + rng.normal(0, 0.08) - 0.25 * ctx.course.severity[day]
            if toxic:
                level = rng.uniform(1.55, 2.4)
            lab = self._lithium_draw(day, draw, float(level))
            events.append(lab)
            draw += 1
            if toxic:
                events.extend(self._toxicity_response(lab, draw))
                repeat = day + int(rng.integers(5, 9))
                if repeat < ctx.days:
                    level = self.lithium_target - 0.1 + rng.normal(0, 0.05)
                    events.append(self._lithium_draw(repeat, draw, float(level)))
                    draw += 1
            day += int(rng.integers(*self._inclusive(config.lithium_interval_days)))
        return events

    def _lithium_draw(self, day: int, draw: int, level: float) -> LabResult:
        ctx, rng = self.ctx, self.rng
        collected = ctx.clinic_time(day, 8 * 60 + rng.uniform(0, 120))
        us_unit = self.americas and rng.random() < 0.5
        return LabResult(
            event_id=ctx.ids(f"lithium:{draw}"),
            patient_id=ctx.patient_id,
            observed_at=collected,
            received_at=collected + timedelta(hours=rng.uniform(3, 30)),
            source=LAB,
            analyte="lithium",
            value=round(max(level, 0.1), 2),
            unit="mEq/L" if us_unit else "mmol/L",
            hours_since_dose=round(float(np.clip(rng.normal(12, 1), 9, 15)), 1),
        )

    def _toxicity_response(self, lab: LabResult, draw: int) -> list[EagerEvent]:
        changed = lab.received_at + timedelta(hours=self.rng.uniform(2, 48))
        return [
            self._medication(
                LITHIUM_REDUCED, f"lithium-reduced:{draw}", changed, timedelta(hours=1), 72
            )
        ]

    # -- outcomes --------------------------------------------------------------------------------

    def _outcomes(self, recognised_at: dict[int, datetime]) -> list[EagerEvent]:
        """Relapse, admission and medication outcomes; ``recognised_at`` per episode index."""
        ctx, rng, config = self.ctx, self.rng, self.ctx.config
        events: list[EagerEvent] = []
        for index, episode in enumerate(ctx.course.episodes):
            recognised = recognised_at[index]
            lag = float(
                np.clip(
                    rng.lognormal(math.log(config.relapse_report_median_days), 0.7),
                    *config.relapse_report_days,
                )
            )
            events.append(
                ClinicalOutcome(
                    event_id=ctx.ids(f"relapse:{index}"),
                    patient_id=ctx.patient_id,
                    observed_at=ctx.clinic_time(episode.onset, 12 * 60),
                    received_at=recognised + timedelta(days=lag),
                    source=EHR,
                    outcome="relapse",
                    episode=episode.kind,
                )
            )
            if episode.admission is not None and episode.discharge is not None:
                letter = rng.uniform(*config.discharge_letter_days)
                discharged = ctx.clinic_time(episode.discharge, 11 * 60)
                events.append(
                    ClinicalOutcome(
                        event_id=ctx.ids(f"hospitalisation:{index}"),
                        patient_id=ctx.patient_id,
                        observed_at=ctx.clinic_time(episode.admission, rng.uniform(8, 22) * 60),
                        received_at=discharged + timedelta(days=letter),
                        source=EHR,
                        outcome="hospitalisation",
                        episode=episode.kind,
                    )
                )
            low, high = config.medication_report_days
            events.append(
                self._medication(
                    episode.profile.medication,
                    f"medication:{index}",
                    recognised,
                    timedelta(days=low),
                    (high - low) * 24,
                )
            )
        return events

    def _medication(
        self,
        medication: Medication,
        name: str,
        observed: datetime,
        least: timedelta,
        spread_hours: float,
    ) -> ClinicalOutcome:
        ctx = self.ctx
        return ClinicalOutcome(
            event_id=ctx.ids(name),
            patient_id=ctx.patient_id,
            observed_at=observed,
            received_at=observed + least + timedelta(hours=self.rng.uniform(0, spread_hours)),
            source=EHR,
            outcome="medication_change",
            medication=MedicationEvent(
                name=medication.name,
                atc=medication.atc,
                action=medication.action,
                dose=medication.dose,
                dose_unit=medication.dose_unit,
            ),
        )
