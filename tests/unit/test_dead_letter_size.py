"""A dead letter fits in one broker message whatever the record it keeps (finding 2).

A 5.4 MB upload became a 1.13 MB dead letter, over aiokafka's 1 MiB request
limit: the worker crashed and the record vanished. Every edge builds its dead
letters with :func:`schemas.dispatch.dead_letter`, which keeps them under
:data:`~schemas.dispatch.MAX_DEAD_LETTER_BYTES` of JSON.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.dispatch import MAX_DEAD_LETTER_BYTES, dead_letter, decode, with_raw_text
from schemas.events import DeadLetter, FieldError
from schemas.examples import envelope_fields
from schemas.topics import CLINICAL_SCORES, WEARABLE_SAMPLES
from services.intake import judge_documents

WHEN = datetime(2026, 3, 2, 9, 10, tzinfo=UTC)
#: Below the 1 MiB that aiokafka, kafka-python and Kafka accept by default.
ONE_MIB = 1024 * 1024


def _size(letter: DeadLetter) -> int:
    return len(letter.model_dump_json().encode())


def _upload(readings: int) -> bytes:
    """An upload of ``readings`` (at most 10,080 are accepted), a few megabytes of JSON."""
    from tests.reliability.hostile import _upload as hostile_upload

    return json.dumps(hostile_upload(1, readings)).encode()


def test_a_multi_megabyte_record_becomes_a_dead_letter_under_the_limit_that_says_so() -> None:
    raw = _upload(24_000)
    assert len(raw) > 4_000_000  # 4 times the default limit of a broker message
    letter = decode(raw, topic=WEARABLE_SAMPLES, received_at=WHEN)
    assert isinstance(letter, DeadLetter)
    assert _size(letter) <= MAX_DEAD_LETTER_BYTES < ONE_MIB
    assert letter.raw_size == len(raw)
    assert letter.raw_sha256 == hashlib.sha256(raw).hexdigest()
    assert raw.decode().startswith(letter.raw)
    assert f"of {len(raw):,} (" in letter.reason
    assert f"first {len(letter.raw.encode()):,} bytes" in letter.reason
    assert letter.reason.startswith("field 'readings'"), letter.reason[:200]


def test_the_same_big_record_gets_the_same_dead_letter_id() -> None:
    raw = b"[" * 2_000_000
    first = dead_letter(raw, CLINICAL_SCORES, WHEN, "not valid JSON")
    again = dead_letter(raw, CLINICAL_SCORES, WHEN, "not valid JSON")
    assert first == again


def test_characters_that_json_escapes_count_by_their_encoded_bytes() -> None:
    # U+0000 is written as six bytes, U+1F600 as four: a character limit would overshoot.
    for text in ("\x00" * 700_000, "\U0001f600" * 400_000, "\x01é\U0001f600" * 200_000):
        letter = dead_letter(text.encode(), CLINICAL_SCORES, WHEN, "bad")
        assert _size(letter) <= MAX_DEAD_LETTER_BYTES
        assert text.startswith(letter.raw)
        assert len(letter.raw) > 10_000, "the cut keeps as much as fits, not a sliver"


def test_a_small_record_is_kept_whole_without_a_note() -> None:
    letter = dead_letter(b'{"kind": 3}', CLINICAL_SCORES, WHEN, "field 'kind': bad")
    assert letter.raw == '{"kind": 3}'
    assert letter.reason == "field 'kind': bad"


def test_a_long_reason_and_many_long_errors_leave_the_letter_under_the_limit() -> None:
    errors = tuple(
        FieldError(field="f" * 256, message="\x01" * 2000, value="v" * 200) for _ in range(50)
    )
    letter = dead_letter(b"x" * 3_000_000, CLINICAL_SCORES, WHEN, "r" * 5000, errors=errors)
    assert _size(letter) <= MAX_DEAD_LETTER_BYTES
    assert len(letter.reason) <= 2000
    assert "bytes of 3,000,000" in letter.reason
    assert letter.errors, "some errors are kept"


def test_a_redacted_text_is_cut_too_and_the_note_describes_it() -> None:
    letter = dead_letter(b"x" * 900_000, CLINICAL_SCORES, WHEN, "bad row")
    assert "bytes of 900,000" in letter.reason
    long_redacted = with_raw_text(letter, "y" * 2_000_000)
    assert _size(long_redacted) <= MAX_DEAD_LETTER_BYTES
    assert long_redacted.reason.count("'raw' keeps the first") == 1
    assert "bytes of 2,000,000" in long_redacted.reason
    short = with_raw_text(letter, "[withheld]")
    assert (short.raw, short.reason) == ("[withheld]", "bad row")
    assert short.raw_size == 900_000


def test_the_edges_make_dead_letters_under_the_limit() -> None:
    big_line = _upload(24_000)
    broken = b'{"kind": "clinical_score", "note": "' + b"z" * 3_000_000
    verdicts = list(
        judge_documents(
            [("line 1", big_line), ("line 2", broken)],
            received_at=WHEN,
            source=envelope_fields()["source"],
        )
    )
    letters = [v.dead_letter for v in verdicts]
    assert all(letter is not None and _size(letter) <= MAX_DEAD_LETTER_BYTES for letter in letters)


@settings(max_examples=40, deadline=None)
@given(
    st.text(min_size=0, max_size=3000).map(lambda t: t * 400),
    st.text(max_size=3000),
)
def test_any_text_gives_a_letter_under_the_limit_whose_raw_is_a_prefix(
    text: str, reason: str
) -> None:
    raw = text.encode("utf-8", errors="replace")
    letter = dead_letter(raw, CLINICAL_SCORES, WHEN, reason)
    assert _size(letter) <= MAX_DEAD_LETTER_BYTES
    assert raw.decode("utf-8", errors="replace").startswith(letter.raw)
