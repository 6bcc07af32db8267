"""``decode``'s one-pass happy path judges every record as the full path does.

:func:`schemas.dispatch.decode` first tries pydantic's ``validate_json``; the
full path (``json.loads`` without NaN, then ``validate_python``) decides
everything that one pass does not accept. These records are where the two
parsers could disagree.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.dispatch import _lenient_json
from schemas.events import ClinicalScore, LabResult
from schemas.examples import envelope_fields
from schemas.topics import CLINICAL_SCORES, LAB_RESULTS
from tests.factories import assert_decoded_as_by_full_path


def _lab(**changes: Any) -> bytes:
    lab = LabResult(**envelope_fields(), analyte="crp", value=0.45, unit="mg/dL")
    document = json.loads(lab.model_dump_json())
    document.update(changes)
    return json.dumps(document).encode()


def _score_with_a_repeated_total(first: bytes) -> bytes:
    """A PHQ-9 total given twice: pydantic keeps the last and never reads ``first``."""
    score = ClinicalScore(**envelope_fields(), instrument="phq9", rater="self", total=3)
    return score.model_dump_json().encode()[:-1] + b',"total":' + first + b',"total":3}'


def _with(raw: bytes, old: bytes, new: bytes) -> bytes:
    assert raw.count(old) == 1, old
    return raw.replace(old, new)


@pytest.mark.parametrize(
    ("raw", "topic"),
    [
        (_lab(), LAB_RESULTS),
        (_lab(), CLINICAL_SCORES),  # a lab result on the scores topic
        (_lab(reported_value=1.5), LAB_RESULTS),
        (
            _with(_lab(reported_value=2), b'"reported_value": 2', b'"reported_value": NaN'),
            LAB_RESULTS,
        ),
        (_with(_lab(), b'"value": 4.5', b'"value": -Infinity'), LAB_RESULTS),
        (_with(_lab(reported_value=7), b": 7,", b": " + b"7" * 400 + b","), LAB_RESULTS),
        (_lab()[:-1] + b', "value": 0.9}', LAB_RESULTS),  # a repeated key: the last one counts
        (b"\xef\xbb\xbf" + _lab(), LAB_RESULTS),  # a byte-order mark
        (_lab(source={"system": "NHS Infirmary"}), LAB_RESULTS),  # capital N and I, no NaN
        (_lab(source={"system": "NaN -Infinity"}), LAB_RESULTS),  # the words, inside a string
        (_lab()[:-1] + b', "value": NaN, "value": 0.9}', LAB_RESULTS),  # NaN, then repeated
        (_score_with_a_repeated_total(b"NaN"), CLINICAL_SCORES),
        (_score_with_a_repeated_total(b"7" * 5000), CLINICAL_SCORES),  # json.loads: too long
    ],
    ids=[
        "valid",
        "wrong-topic",
        "reported",
        "nan",
        "infinity",
        "huge-int",
        "repeat",
        "bom",
        "capitals",
        "words",
        "nan-repeated",
        "score-nan-repeated",
        "score-long-int-repeated",
    ],
)
def test_decode_agrees_with_the_full_path(raw: bytes, topic: str) -> None:
    assert_decoded_as_by_full_path(raw, topic)


def _lenient_by_regex(data: bytes) -> bool:
    return re.search(rb"NaN|Infinity|[0-9]{300}", data) is not None


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from([b"NaN", b"Infinity", b"N", b"I", b"{", b'"', b" ", b"a"]),
            st.integers(1, 420).map(lambda n: b"7" * n),
            st.binary(max_size=40),
        ),
        max_size=30,
    ).map(b"".join)
)
def test_the_search_for_lenient_json_finds_what_a_regular_expression_finds(data: bytes) -> None:
    """Digits at two offsets 150 apart decide whether a record is searched for a long number."""
    assert _lenient_json(data) == _lenient_by_regex(data)


@pytest.mark.parametrize("start", range(0, 160, 7))
def test_a_long_number_is_found_wherever_it_starts(start: int) -> None:
    for length in (299, 300, 301):
        data = b"x" * start + b"5" * length + b"}" * 200
        assert _lenient_json(data) == (length >= 300)
