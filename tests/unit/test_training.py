"""The trainer: delayed labels without look-ahead, numbered versions, determinism."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from schemas.events import ClinicalOutcome, FeatureContribution, RiskAssessment
from schemas.examples import EXAMPLE_PATIENT, example_uuid
from schemas.identity import event_id_for, pseudonymise
from services.training import FileModelStore, LatestModel, Trainer, train
from streams.config import CoreConfig
from streams.models.features import INPUTS

T0 = datetime(2026, 1, 5, tzinfo=UTC)
OTHER = pseudonymise("someone-else", b"k" * 32, system="test")


def assessment(day: int, patient: str = EXAMPLE_PATIENT, signal: float = 0.0) -> RiskAssessment:
    """The assessment of ``day`` (ends at midnight), received the next noon."""
    end = T0 + timedelta(days=day + 1)
    values = dict.fromkeys(INPUTS, 0.0) | {"resting_hr_z": signal}
    return RiskAssessment(
        event_id=event_id_for("test-risk", patient, str(day)),
        patient_id=patient,
        observed_at=end,
        received_at=end + timedelta(hours=12),
        source={"system": "psymon-core"},
        caused_by=example_uuid(day),
        probability=0.05,
        horizon_days=28,
        model_name="relapse_risk",
        model_version=0,
        contributions=tuple(
            FeatureContribution(feature=f, value=v, contribution=0.0) for f, v in values.items()
        ),
    )


def relapse(onset_day: int, received_day: int, patient: str = EXAMPLE_PATIENT) -> ClinicalOutcome:
    return ClinicalOutcome(
        event_id=event_id_for("test-outcome", patient, str(onset_day)),
        patient_id=patient,
        observed_at=T0 + timedelta(days=onset_day, hours=12),
        received_at=T0 + timedelta(days=received_day, hours=15),
        source={"system": "ehr"},
        outcome="relapse",
        episode="depressive",
    )


def history(days: int = 90) -> list[RiskAssessment | ClinicalOutcome]:
    events: list[RiskAssessment | ClinicalOutcome] = []
    for day in range(days):
        events.append(assessment(day, signal=2.0 if 32 <= day < 40 else 0.0))
        events.append(assessment(day, OTHER))
    events.append(relapse(onset_day=40, received_day=70))
    return events


def test_no_label_is_learnt_from_an_outcome_before_it_was_received() -> None:
    trainer = train(history(), until=T0 + timedelta(days=69), trainer=Trainer(record=True))
    assert trainer.learned and not any(x.label for x in trainer.learned)
    assert all(v.positives == 0 for v in trainer.published)
    later = train(history(), until=T0 + timedelta(days=71), trainer=Trainer(record=True))
    positives = sorted(x.at for x in later.learned if x.label)
    assert positives and later.final().positives == len(positives)
    onset = T0 + timedelta(days=40, hours=12)
    assert all(0 < (onset.timestamp() * 1e6 - at) <= 28 * 86_400e6 for at in positives)


def test_handing_the_trainer_an_outcome_ahead_of_time_fails() -> None:
    """A leak attempt: feed the outcome first, then the days it would label."""
    trainer = Trainer()
    trainer.observe(assessment(0))
    trainer.observe(relapse(onset_day=40, received_day=70))
    with pytest.raises(ValueError, match="received_at order"):
        trainer.observe(assessment(35))


def test_what_arrives_after_the_cut_off_changes_nothing() -> None:
    cut = T0 + timedelta(days=60)
    future = [relapse(onset_day=50, received_day=61, patient=OTHER), assessment(95)]
    with_future = train(history() + future, until=cut)
    without = train([e for e in history() if e.received_at <= cut], until=cut)
    assert with_future.final() == without.final()


def test_versions_are_numbered_published_weekly_and_deterministic(tmp_path: Path) -> None:
    store = FileModelStore(tmp_path)
    first = train(history(), trainer=Trainer(store=store))
    second = train(history())
    assert [v.version for v in first.published] == list(range(len(first.published)))
    assert first.published == second.published
    gaps = [
        b.trained_until - a.trained_until  # type: ignore[operator]
        for a, b in zip(first.published[1:], first.published[2:], strict=False)
    ]
    assert gaps and all(g >= timedelta(days=7) for g in gaps)
    assert [v.version for v in store.versions("relapse_risk")] == [
        v.version for v in first.published
    ]
    timeline = store.timeline("relapse_risk")
    assert timeline.at(T0).version == 0
    assert timeline.at(T0 + timedelta(days=400)).version == first.latest.version
    latest = LatestModel(store, CoreConfig())
    assert latest.refresh() and latest.config.model == first.latest
    assert not latest.refresh()


def test_an_assessment_listing_only_some_inputs_is_learnt_with_the_rest_at_their_mean() -> None:
    trainer = Trainer()
    event = assessment(0).model_copy(update={"contributions": assessment(0).contributions[:3]})
    trainer.observe(event)
    (pending,) = [x for queue in trainer.labeller.pending.values() for _, x in queue]
    assert sum(not math.isnan(v) for v in pending) == 3
