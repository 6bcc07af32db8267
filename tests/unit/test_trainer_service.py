"""The trainer service's pure parts: order across partitions, checkpoints, numbering, minimums."""

from __future__ import annotations

import random
from collections import OrderedDict
from datetime import timedelta
from pathlib import Path

import pytest

from schemas.events import ClinicalOutcome, RiskAssessment
from services.trainer import Checkpoint, ReorderBuffer, load_checkpoint, save_checkpoint
from services.training import MemoryModelStore, Trainer
from tests.unit.test_training import OTHER, assessment, history, relapse

Event = RiskAssessment | ClinicalOutcome


def options() -> dict[str, object]:
    return {"publish_every": timedelta(days=3), "grace_days": 0}


def dealt(events: list[Event], partitions: int, seed: int) -> list[tuple[tuple[str, int], Event]]:
    """``events`` (in received_at order) dealt to partitions, then read interleaved at random:
    each partition keeps its order, as a broker does."""
    queues: list[list[Event]] = [[] for _ in range(partitions)]
    for n, event in enumerate(events):
        queues[n % partitions].append(event)
    rng = random.Random(seed)
    read: list[tuple[tuple[str, int], Event]] = []
    while any(queues):
        p = rng.choice([i for i, q in enumerate(queues) if q])
        read.append((("t", p), queues[p].pop(0)))
    return read


def ordered(events: list[Event]) -> list[Event]:
    return sorted(events, key=lambda e: (e.received_at, e.kind, str(e.event_id)))


def test_the_buffer_releases_every_partition_in_received_at_order() -> None:
    events = ordered(history(60))
    read = dealt(events, partitions=3, seed=7)
    buffer = ReorderBuffer(grace=timedelta(0))
    remaining = {("t", p): sum(1 for s, _ in read if s == ("t", p)) for p in range(3)}
    released: list[Event] = []
    for source, event in read:
        buffer.add(source, event)
        remaining[source] -= 1
        active = [s for s, n in remaining.items() if n]
        released += [e for e, _ in buffer.release(active)]
    released += [e for e, _ in buffer.release(())]
    assert released == events
    assert buffer.late == 0


def test_an_event_behind_the_clock_is_learnt_when_it_was_read_never_earlier() -> None:
    buffer = ReorderBuffer(grace=timedelta(0))
    buffer.add(("t", 0), assessment(10))
    [(first, at)] = buffer.release(())
    assert at == first.received_at
    late = relapse(onset_day=5, received_day=8)  # arrives after day 10 was learnt
    buffer.add(("t", 1), late)
    [(event, at)] = buffer.release(())
    assert event is late and at == first.received_at and buffer.late == 1
    trainer = Trainer(**options())  # type: ignore[arg-type]
    trainer.observe(first)
    trainer.observe(late, at=at)  # does not raise: the clock does not run backwards
    assert trainer.clock == first.received_at


def test_grace_holds_events_until_the_slowest_partition_has_caught_up() -> None:
    buffer = ReorderBuffer(grace=timedelta(hours=6))
    buffer.add(("t", 0), assessment(3))  # received day 4, 12:00
    assert buffer.release([("t", 0), ("t", 1)]) == []  # nothing read from partition 1 yet
    buffer.add(("t", 1), assessment(3, OTHER))
    assert buffer.release([("t", 0), ("t", 1)]) == []  # within the grace of both
    buffer.add(("t", 0), assessment(4))
    assert buffer.release([("t", 0), ("t", 1)]) == []  # partition 1 is still at day 4
    buffer.add(("t", 1), assessment(4, OTHER))
    released = [e for e, _ in buffer.release([("t", 0), ("t", 1)])]
    assert released == ordered([assessment(3), assessment(3, OTHER)])


def test_outcomes_wait_for_the_assessments_to_catch_up_with_them() -> None:
    """After a backlog the edge's outcomes are read long before the workers' assessments."""
    buffer = ReorderBuffer(grace=timedelta(0))
    early = relapse(onset_day=20, received_day=30)
    buffer.add(("outcomes", 0), early, paced=False)
    buffer.add(("risk", 0), assessment(5))
    assert [e for e, _ in buffer.release([("risk", 0)])] == [assessment(5)]
    for day in range(6, 31):
        buffer.add(("risk", 0), assessment(day))
    released = [e for e, _ in buffer.release([("risk", 0)])]
    assert released == ordered([*(assessment(d) for d in range(6, 31)), early])
    assert buffer.late == 0


def test_a_trainer_restored_from_a_checkpoint_publishes_what_an_uninterrupted_one_does(
    tmp_path: Path,
) -> None:
    events = ordered([*history(120), relapse(onset_day=100, received_day=104, patient=OTHER)])
    whole = Trainer(**options())  # type: ignore[arg-type]
    for event in events:
        whole.observe(event)

    first = Trainer(store=MemoryModelStore(), **options())  # type: ignore[arg-type]
    half = len(events) // 2
    for event in events[:half]:
        first.observe(event)
    path = tmp_path / "trainer.checkpoint"
    save_checkpoint(path, Checkpoint(first, ReorderBuffer(), {}, OrderedDict(), []))
    restored = load_checkpoint(path)
    assert restored is not None
    second = restored.trainer
    assert isinstance(second.store, MemoryModelStore)  # the store is not pickled
    for event in events[half:]:
        second.observe(event)

    assert [s.model_dump_json() for s in second.published] == [
        s.model_dump_json() for s in whole.published
    ]
    assert len(whole.published) > 5 and whole.latest.positives > 0


def test_a_trainer_without_its_checkpoint_numbers_after_the_newest_version_in_time_order() -> None:
    events = ordered(history(120))
    before = Trainer(**options())  # type: ignore[arg-type]
    for event in events:
        before.observe(event)
    newest = before.latest
    assert newest.version > 3 and newest.trained_until is not None

    store = MemoryModelStore()
    rebuilt = Trainer(store=store, resume=newest, **options())  # type: ignore[arg-type]
    for event in events:  # the history again, with a fresh learner
        rebuilt.observe(event)
        if rebuilt.clock is not None and rebuilt.clock < newest.trained_until:
            assert store.published == []  # nothing before the clock passes the newest version
    rebuilt.observe(assessment(125))
    numbers = [s.version for s in store.published]
    assert numbers == list(range(newest.version + 1, newest.version + 1 + len(numbers)))
    assert numbers and all(s.trained_until >= newest.trained_until for s in store.published)


def test_resuming_another_model_is_refused() -> None:
    other = Trainer(features=("a", "b")).latest
    with pytest.raises(ValueError, match="cannot resume"):
        Trainer(resume=other)


def test_no_trained_version_before_the_minimum_of_each_label() -> None:
    events = ordered(history(150))  # the relapse is recorded 30 days late: default grace
    gated = Trainer(min_positives=1, min_negatives=50, publish_every=timedelta(days=3))
    free = Trainer(publish_every=timedelta(days=3))
    for event in events:
        gated.observe(event)
        free.observe(event)
        for version in gated.published[1:]:
            assert version.positives >= 1 and version.examples - version.positives >= 50
    assert len(gated.published) > 1
    assert len(gated.published) < len(free.published)
    first_free = free.published[1]
    assert first_free.positives == 0  # what the minimum keeps off the workers
    with pytest.raises(ValueError, match="min_positives"):
        Trainer(min_positives=-1)
