"""The worker drops a record it was given again, by the input offset kept with the state.

docs/reliability.md, finding 4: after a crash, faust gives the worker again
every record since its last commit. The core recognises only the newest 32
upload ids of a patient (``DedupConfig.remembered_uploads``), so 40 uploads
given again counted the samples of the oldest 8 as late. :func:`streams.app.handle`
now drops a record at or below the offset its patient's state last applied
on that topic and partition, before the core sees it.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from faust.types import TP

from schemas.topics import CLINICAL_SCORES, WEARABLE_SAMPLES
from streams import CoreConfig, PatientState, stored_state
from streams.app import Outgoing, Record, create_app, decode_state, handle
from tests.unit.streams.core_history import PATIENT, at, phq9, upload

KEY = PATIENT.encode()
#: Broker timestamps (seconds) of the records, one a second from here.
SENT = 1_772_442_300.0


def uploads(count: int) -> list[Record]:
    """``count`` half-hourly step uploads of one patient, at offsets 0.. of partition 1."""
    records = []
    for n in range(count):
        start = at(hours=n / 2)
        event = upload([("steps", 100 + n, start, start + timedelta(minutes=30))], tag=str(n))
        records.append(
            Record(WEARABLE_SAMPLES, 1, n, KEY, event.model_dump_json().encode(), SENT + n)
        )
    return records


def apply(records: list[Record], table: dict[bytes, bytes]) -> list[Outgoing]:
    config = CoreConfig()
    return [out for record in records for out in handle(record, table, config)]


def test_forty_uploads_given_again_change_nothing() -> None:
    assert CoreConfig().dedup.remembered_uploads < 40  # more than the core remembers
    table: dict[bytes, bytes] = {}
    history = uploads(40)
    apply(history, table)
    before = table[KEY]

    again = apply(history, table)  # a crash before the commit: all of them once more

    assert again == []
    assert table[KEY] == before
    counters = decode_state(stored_state.decode(table[KEY])[1]).counters
    assert (counters.events, counters.samples, counters.late_samples) == (40, 40, 0)


def test_an_upload_sent_twice_is_still_recognised_by_the_core() -> None:
    table: dict[bytes, bytes] = {}
    first = uploads(1)[0]
    apply([first], table)
    resent = Record(first.topic, 1, 5, KEY, first.value, SENT + 60)  # a new record, same event

    assert apply([resent], table) == []
    counters = decode_state(stored_state.decode(table[KEY])[1]).counters
    assert (counters.events, counters.duplicates) == (1, 1)


def test_records_of_another_topic_or_partition_are_not_taken_for_repeats() -> None:
    table: dict[bytes, bytes] = {}
    apply(uploads(10), table)  # wearable offsets 0..9 applied
    score = phq9(at(days=1), total=12)
    on_scores = Record(CLINICAL_SCORES, 1, 0, KEY, score.model_dump_json().encode(), SENT)

    assert apply([on_scores], table), "a first score at offset 0 of its own topic is new"
    applied, _ = stored_state.decode(table[KEY])
    assert applied == {
        WEARABLE_SAMPLES: (1, 9, round((SENT + 9) * 1000)),
        CLINICAL_SCORES: (1, 0, round(SENT * 1000)),
    }


def test_a_broker_that_lost_its_log_numbers_anew_and_its_records_are_applied() -> None:
    table: dict[bytes, bytes] = {}
    apply(uploads(10), table)
    later = [
        Record(r.topic, r.partition, r.offset, r.key, r.value, r.timestamp + 3600)
        for r in uploads(20)[10:]
    ]
    renumbered = [
        Record(r.topic, r.partition, n, r.key, r.value, r.timestamp)
        for n, r in enumerate(later)  # offsets 0.. again, later timestamps
    ]

    apply(renumbered, table)

    counters = decode_state(stored_state.decode(table[KEY])[1]).counters
    assert (counters.events, counters.duplicates) == (20, 0)


def test_the_table_value_reads_as_the_state_itself() -> None:
    table: dict[bytes, bytes] = {}
    apply(uploads(3), table)
    value = table[KEY]

    assert value.startswith(b'{"applied":')
    assert PatientState.model_validate_json(value) == decode_state(stored_state.decode(value)[1])


@pytest.mark.parametrize(
    "value",
    [
        b'{"applied":[1,2,3],"patient_id":"p"}',
        b'{"applied":{"t":[1,2]},"patient_id":"p"}',
        b'{"applied":{"t":[1,true,3]},"patient_id":"p"}',
        b'{"applied":{"t":[1,2,3]}}',
        b'{"applied":{"t":[1,2,',
    ],
)
def test_a_malformed_applied_member_is_refused_with_a_reason(value: bytes) -> None:
    with pytest.raises(ValueError, match=r"applied|state after"):
        stored_state.decode(value)


def test_a_gap_the_fetcher_saw_and_then_delivered_does_not_hold_the_commits_back(
    tmp_path: Path,
) -> None:
    """faust's consumer commits what the worker acknowledged, even with a gap counted twice.

    Seen when a worker took over a partition: faust noted offsets 302-339 as
    a gap and then delivered them, so they were listed twice, and its commits
    crept forward one offset per commit interval.
    """
    app = create_app("127.0.0.1:9", partitions=1, data_dir=tmp_path)  # never started
    consumer = app.consumer
    tp = TP(WEARABLE_SAMPLES, 0)
    consumer._committed_offset[tp] = 301
    asyncio.run(consumer._add_gap(tp, 302, 340))
    consumer._acked[tp].extend(range(301, 345))  # the gap's records, delivered and acked

    commits = []
    for _ in range(2):
        offset = consumer._new_offset(tp)
        consumer._committed_offset[tp] = offset  # as a successful commit records it
        commits.append(offset)

    assert commits[-1] == 345, f"commits {commits}: faust's own gave 303, 304, ..."
