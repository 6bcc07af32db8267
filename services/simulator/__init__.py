"""The cohort simulator: seeded, deterministic patients and the events psymon would receive.

Patients with depression, bipolar disorder or schizophrenia follow a latent
course (stable, prodrome, relapse, recovery) that shows in wearables (sleep,
steps, heart rate, HRV), self-reports (PHQ-9, GAD-7), clinician ratings
(MADRS, YMRS, PANSS), labs (CRP, lithium) and outcomes (relapse,
hospitalisation, medication change), with the artefacts of real data:
missing data, duplicates, late uploads, travel across time zones, wrong device
clocks and outcomes recorded weeks late. The generative model and its
parameters are described in ``docs/simulator.md``.

>>> from datetime import UTC, datetime
>>> cohort = simulate_cohort(2, 10, seed=7, start=datetime(2026, 1, 5, tzinfo=UTC),
...                          samples_per_hour=2)
>>> {t.diagnosis for t in cohort.ground_truth.values()} <= {"depression", "bipolar",
...                                                          "schizophrenia"}
True
>>> next(iter(cohort.events())).kind in {"clinical_score", "wearable_upload", "lab_result"}
True
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime

from services.simulator.cli import SimulationSummary, cli_simulate
from services.simulator.cohort import SIMULATOR_VERSION, Cohort, SimulatedEvent, simulate_cohort
from services.simulator.config import (
    SIMULATOR_KEY,
    Arm,
    DiagnosisProfile,
    EpisodeProfile,
    Signature,
    SimulationConfig,
)
from services.simulator.truth import PatientTruth, RelapseTruth


def stream(
    patients: int,
    days: int,
    seed: int,
    start: datetime,
    *,
    speedup: float | None = None,
    samples_per_hour: int = 12,
    config: SimulationConfig | None = None,
    arms: Sequence[Arm] = (),
) -> Iterator[SimulatedEvent]:
    """Simulate a cohort and yield its events in arrival order, lazily.

    ``speedup`` paces the events: simulated time runs ``speedup`` times faster
    than the wall clock (``None``: as fast as they are consumed). The latent
    course is drawn at the first ``next()``; each event is built when yielded.

    >>> from datetime import UTC, datetime
    >>> events = stream(1, 3, seed=2, start=datetime(2026, 1, 5, tzinfo=UTC),
    ...                 samples_per_hour=1)
    >>> first, second = next(events), next(events)
    >>> (first.received_at, first.event_id) <= (second.received_at, second.event_id)
    True
    """
    cohort = simulate_cohort(
        patients, days, seed, start, samples_per_hour=samples_per_hour, config=config, arms=arms
    )
    yield from cohort.stream(speedup)


__all__ = [
    "SIMULATOR_KEY",
    "SIMULATOR_VERSION",
    "Arm",
    "Cohort",
    "DiagnosisProfile",
    "EpisodeProfile",
    "PatientTruth",
    "RelapseTruth",
    "Signature",
    "SimulatedEvent",
    "SimulationConfig",
    "SimulationSummary",
    "cli_simulate",
    "simulate_cohort",
    "stream",
]
