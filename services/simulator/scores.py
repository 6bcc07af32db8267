"""Rating-scale results: self-reports on schedules and clinician ratings at visits.

Items are drawn from the day's latent symptom level ``x`` (a fraction of the
scale's range): item ``i`` is ``round(low + (high - low) * x * w_i + noise)``
clipped to its range, with patient-level item weights ``w_i`` (0.7-1.3), so
each patient has a stable item profile and totals move with the course.

* PHQ-9 (items 1-8 from the depressive level; item 9 > 0 with a probability
  by state: 0 stable, 5 % prodrome, 25 % in a depressive or mixed relapse),
  weekly or biweekly per patient; GAD-7 from the anxiety level, biweekly.
  Reports are missed (5-30 % per patient, plus 35 % x s), answered 0-2 days
  late, in the evening local time; 5 % reach psymon hours to days late (app
  offline), 2 % twice (app retry, same event id).
* MADRS (depressive level), YMRS (manic level; items 5, 6, 8, 9 score 0-8),
  PANSS (psychotic level; positive items rise most in relapse, negative items
  least) at clinic visits every 4-8 weeks and at the visit that recognises a
  relapse; the scores are entered within hours, 20 % 1-7 days later.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import numpy as np

from schemas.envelope import Source
from schemas.events import ClinicalScore
from schemas.instruments import get_instrument
from services.simulator.context import PatientContext, Symptoms
from services.simulator.course import PRODROME, RELAPSE

APP = Source(system="sim-app")

#: PANSS subscale weights: (stable level, relapse increment).
_PANSS_WEIGHTS = {"P": (1.2, 1.6), "N": (1.1, 0.4), "G": (0.9, 1.0)}


def _items(
    rng: np.random.Generator,
    instrument: str,
    level: float | np.ndarray,
    weights: np.ndarray,
    noise: float,
) -> dict[str, int]:
    spec = get_instrument(instrument)
    low = np.array([i.low for i in spec.items], dtype=float)
    high = np.array([i.high for i in spec.items], dtype=float)
    raw = low + (high - low) * np.asarray(level) * weights + rng.normal(0, noise, len(low))
    values = np.clip(np.round(raw), low, high).astype(int).tolist()
    return dict(zip(spec.item_keys, values, strict=True))


class ScoreWriter:
    """Draws a patient's self-reports and clinician ratings.

    Item weights are drawn once per patient at construction, from ``rng``.
    """

    def __init__(self, ctx: PatientContext, rng: np.random.Generator) -> None:
        self.ctx = ctx
        self.rng = rng
        self.weights = {
            name: rng.uniform(0.7, 1.3, len(get_instrument(name).items))
            for name in ("phq9", "gad7", "madrs", "ymrs", "panss")
        }
        self.clinician = f"clinician:{int(rng.integers(1, 21))}"
        self.phq9_interval: int | None = None

    # -- self-reports ---------------------------------------------------------------------------

    def self_reports(self) -> list[ClinicalScore]:
        """Every self-report the patient sends, duplicates included."""
        ctx, rng, config = self.ctx, self.rng, self.ctx.config
        miss = float(rng.uniform(*config.report_miss))
        intervals = config.phq9_intervals
        weights = np.array([w for _, w in intervals], dtype=float)
        phq9_every = intervals[int(rng.choice(len(intervals), p=weights / weights.sum()))][0]
        self.phq9_interval = phq9_every if "phq9" in ctx.profile.self_reports else None
        events: list[ClinicalScore] = []
        for instrument in ctx.profile.self_reports:
            every = phq9_every if instrument == "phq9" else config.gad7_interval_days
            first = int(rng.integers(0, every))
            for due in range(first, ctx.days, every):
                skip = rng.random() < miss + config.report_miss_prodrome * ctx.course.severity[due]
                delay = int(rng.choice(3, p=[0.8, 0.15, 0.05]))
                day = due + delay
                if skip or day >= ctx.days:
                    continue
                observed = ctx.phone_time(day, 18 * 60 + rng.uniform(0, 300))
                received = observed + timedelta(seconds=rng.uniform(5, 600))
                if rng.random() < config.report_late_probability:
                    received += timedelta(
                        hours=float(np.clip(rng.lognormal(math.log(6), 1), 1, 72))
                    )
                symptoms = ctx.symptoms.on(ctx.effects, day)
                items = self._self_items(instrument, symptoms, day)
                event = ClinicalScore(
                    event_id=ctx.ids(f"{instrument}:{due}"),
                    patient_id=ctx.patient_id,
                    observed_at=observed,
                    received_at=received,
                    source=APP,
                    time_zone=ctx.timeline.zone_of_day[day],
                    instrument=instrument,
                    rater="self",
                    items=items,
                )
                events.append(event)
                if rng.random() < config.report_duplicate_probability:
                    again = received + timedelta(seconds=rng.uniform(30, 300))
                    events.append(event.model_copy(update={"received_at": again}))
        return events

    def _self_items(self, instrument: str, symptoms: Symptoms, day: int) -> dict[str, int]:
        if instrument == "gad7":
            return _items(self.rng, "gad7", symptoms.anxiety, self.weights["gad7"], 0.35)
        items = _items(self.rng, "phq9", symptoms.depressive, self.weights["phq9"], 0.35)
        items["9"] = self._item9(day)
        return items

    def _item9(self, day: int) -> int:
        """PHQ-9 item 9 (thoughts of death or self-harm): rare, and mostly in relapse."""
        ctx, rng = self.ctx, self.rng
        stable, prodrome, relapse = ctx.config.item9_probability
        state = int(ctx.course.state[day])
        p = stable
        if state == PRODROME:
            p = prodrome
        elif state == RELAPSE:
            episode = ctx.course.episodes[int(ctx.course.episode_of_day[day])]
            p = relapse if episode.kind in ("depressive", "mixed") else prodrome
        positive = rng.random() < p
        value = int(rng.choice([1, 2, 3], p=[0.7, 0.25, 0.05]))
        return value if positive else 0

    # -- clinician ratings ----------------------------------------------------------------------

    def visit_scores(self, day: int, seen_at: datetime, visit: str) -> list[ClinicalScore]:
        """The clinician ratings of one visit on ``day`` at ``seen_at``."""
        ctx, rng = self.ctx, self.rng
        entered = seen_at + timedelta(hours=rng.uniform(0.5, 8))
        if rng.random() < ctx.config.note_late_probability:
            entered += timedelta(days=rng.uniform(1, 7))
        symptoms = ctx.symptoms.on(ctx.effects, day)
        source = Source(system="sim-ehr", rater=self.clinician)
        return [
            ClinicalScore(
                event_id=ctx.ids(f"{instrument}:{visit}"),
                patient_id=ctx.patient_id,
                observed_at=seen_at,
                received_at=entered,
                source=source,
                instrument=instrument,
                rater="clinician",
                items=self._clinician_items(instrument, symptoms, day),
            )
            for instrument in ctx.profile.clinician_instruments
        ]

    def _clinician_items(self, instrument: str, symptoms: Symptoms, day: int) -> dict[str, int]:
        weights = self.weights[instrument]
        if instrument == "madrs":
            return _items(self.rng, "madrs", symptoms.depressive, weights, 0.5)
        if instrument == "ymrs":
            return _items(self.rng, "ymrs", symptoms.manic, weights, 0.4)
        if instrument == "panss":
            keys = get_instrument("panss").item_keys
            stable = self.ctx.symptoms.psychotic
            extra = float(self.ctx.effects.psychotic[day])
            level = np.array(
                [_PANSS_WEIGHTS[k[0]][0] * stable + _PANSS_WEIGHTS[k[0]][1] * extra for k in keys]
            )
            return _items(self.rng, "panss", level, weights, 0.4)
        raise ValueError(f"the simulator has no item model for instrument {instrument!r}")
