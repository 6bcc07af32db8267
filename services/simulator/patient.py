"""One simulated patient: identity, timeline, course, wearables, reports, clinic."""

from __future__ import annotations

import numpy as np

from schemas.envelope import Source
from schemas.identity import pseudonymise
from services.simulator.clinic import Clinic
from services.simulator.config import SIMULATOR_KEY, Arm, SimulationConfig
from services.simulator.context import EagerEvent, PatientContext, Symptoms
from services.simulator.course import day_effects, simulate_course
from services.simulator.ids import IdFactory
from services.simulator.scores import ScoreWriter
from services.simulator.timeline import simulate_timeline
from services.simulator.truth import (
    PatientTruth,
    daily_states,
    relapse_truth,
    skew_truth,
    travel_truth,
)
from services.simulator.wearables import Grid, WearableTrace, simulate_wearables

#: Random streams per patient: one generator each, so parts vary independently.
IDENTITY, TIMELINE, COURSE, WEARABLES, REPORTS, CLINIC = range(6)

DEVICES = ("sim-watch", "sim-ring")


def simulate_patient(
    n: int, seed: int, grid: Grid, config: SimulationConfig, arms: tuple[Arm, ...]
) -> tuple[PatientTruth, list[EagerEvent], WearableTrace]:
    """Draw patient ``n``: ground truth, eager events and wearable trace.

    Each part has its own generator ``default_rng([seed, n, stream])``, so
    changing one part's draws (e.g. ``samples_per_hour``) leaves the others.
    """

    def rng(stream: int) -> np.random.Generator:
        return np.random.default_rng([seed, n, stream])

    source_id = f"sim-patient-{n}"
    patient_id = pseudonymise(source_id, SIMULATOR_KEY, system="simulator")
    first_day = grid.t0.date()

    who = rng(IDENTITY)
    shares = np.array([d.share for d in config.diagnoses], dtype=float)
    profile = config.diagnoses[int(who.choice(len(shares), p=shares / shares.sum()))]
    inflammatory = bool(who.random() < profile.inflammatory_fraction)
    on_lithium = bool(who.random() < profile.lithium_fraction)
    hypersomnia = bool(who.random() < config.hypersomnia_fraction)
    device = DEVICES[int(who.integers(len(DEVICES)))]
    symptoms = Symptoms(
        depressive=float(who.uniform(*profile.depressive)),
        manic=float(who.uniform(*profile.manic)),
        psychotic=float(who.uniform(*profile.psychotic)),
        anxiety=float(who.uniform(*profile.anxiety)),
    )
    arm = arms[int(who.integers(len(arms)))] if arms else None
    hazard_ratio = 1.0
    if arm is not None and (arm.subgroup == "all" or inflammatory):
        hazard_ratio = arm.hazard_ratio

    timeline = simulate_timeline(rng(TIMELINE), grid.t0, grid.days, config)
    course = simulate_course(rng(COURSE), profile, grid.days, config, hazard_ratio)
    effects = day_effects(course, hypersomnia)
    prefix = ("simulator", str(seed), source_id)
    trace = simulate_wearables(
        rng(WEARABLES),
        grid=grid,
        course=course,
        effects=effects,
        timeline=timeline,
        config=config,
        patient_id=patient_id,
        source=Source(system="sim-wearable", device=device),
        id_prefix=(*prefix, device),
    )
    ctx = PatientContext(
        t0=grid.t0,
        days=grid.days,
        patient_id=patient_id,
        ids=IdFactory(*prefix),
        profile=profile,
        config=config,
        course=course,
        effects=effects,
        timeline=timeline,
        symptoms=symptoms,
        inflammatory=inflammatory,
        on_lithium=on_lithium,
    )
    scores = ScoreWriter(ctx, rng(REPORTS))
    events: list[EagerEvent] = [*scores.self_reports()]
    events.extend(Clinic(ctx, rng(CLINIC), scores).events())
    truth = PatientTruth(
        patient_id=patient_id,
        source_id=source_id,
        diagnosis=profile.name,
        inflammatory=inflammatory,
        on_lithium=on_lithium,
        arm=None if arm is None else arm.name,
        home_time_zone=timeline.home_zone,
        device=device,
        hypersomnia=hypersomnia,
        phq9_interval_days=scores.phq9_interval,
        first_day=first_day,
        relapses=tuple(relapse_truth(e, first_day) for e in course.episodes),
        travel=travel_truth(timeline, first_day),
        clock_skews=skew_truth(timeline, first_day),
        daily_states=daily_states(course),
        wearable_baseline=trace.baseline,
        symptoms={
            "depressive": symptoms.depressive,
            "manic": symptoms.manic,
            "psychotic": symptoms.psychotic,
            "anxiety": symptoms.anxiety,
        },
    )
    return truth, events, trace
