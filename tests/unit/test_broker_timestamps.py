"""A record whose broker timestamp no time can hold is a dead letter, not a crash.

A producer sets its records' timestamps (Kafka's ``CreateTime``); one after
the year 9999 used to raise out of the worker's and the sink's decoding, so
the same record stopped them again after every restart.
"""

from __future__ import annotations

import pytest

from schemas.events import ClinicalScore
from schemas.examples import envelope_fields
from schemas.topics import CLINICAL_SCORES, DEAD_LETTER
from services.sink import SinkRecord, decode_record
from streams.app import Record, handle
from streams.config import CoreConfig

HOPELESS_MS = (10**15, 2**62)


def _score() -> ClinicalScore:
    return ClinicalScore(**envelope_fields(), instrument="phq9", rater="self", total=4)


@pytest.mark.parametrize("timestamp_ms", HOPELESS_MS)
def test_the_worker_dead_letters_it_and_keeps_no_state(timestamp_ms: int) -> None:
    score = _score()
    record = Record(
        CLINICAL_SCORES,
        0,
        0,
        score.patient_id.encode(),
        score.model_dump_json().encode(),
        timestamp=timestamp_ms / 1000,
    )
    states: dict[bytes, bytes] = {}
    [(topic, _, value)] = handle(record, states, CoreConfig())
    assert topic == DEAD_LETTER
    assert f"broker timestamp, {timestamp_ms} ms after 1970" in value.decode()
    assert "before the year 10000" in value.decode()
    assert states == {}


@pytest.mark.parametrize("timestamp_ms", HOPELESS_MS)
def test_the_sink_stores_it_as_a_dead_letter(timestamp_ms: int) -> None:
    raw = _score().model_dump_json().encode()
    letter = decode_record(SinkRecord(CLINICAL_SCORES, raw, timestamp_ms))
    assert letter.kind == "dead_letter"
    assert f"broker timestamp, {timestamp_ms} ms after 1970" in letter.reason


def test_a_retried_batch_receives_a_record_without_timestamp_at_the_same_time() -> None:
    from services.sink import DecodedBatch

    score = _score().model_dump_json().encode()
    batch = DecodedBatch(
        [SinkRecord(CLINICAL_SCORES, score, 0), SinkRecord(CLINICAL_SCORES, b"{", 0)]
    )
    first, again = list(batch), list(batch)
    assert [event.kind for event in first] == ["clinical_score", "dead_letter"]
    assert first == again  # the dead letter's received_at included
