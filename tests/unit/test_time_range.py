"""A time with no UTC equivalent is refused with a reason, never an exception.

``0001-01-01T00:30:00+01:00`` is valid ISO 8601, but its UTC instant falls
before the year 1; Python raises ``OverflowError`` converting it. Every
comparison psymon makes is in UTC, so the edge, the worker and the sink must
turn such a record into a dead letter that names the field.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.dispatch import decode
from schemas.envelope import _convertible_to_utc
from schemas.events import DeadLetter, LabResult
from schemas.examples import envelope_fields
from schemas.topics import LAB_RESULTS

NOW = datetime(2026, 11, 29, tzinfo=UTC)


def _lab(**changes: str) -> bytes:
    lab = LabResult(**envelope_fields(), analyte="crp", value=0.45, unit="mg/dL")
    document = json.loads(lab.model_dump_json())
    document.update(changes)
    return json.dumps(document).encode()


@pytest.mark.parametrize("field", ["observed_at", "received_at"])
@pytest.mark.parametrize("moment", ["0001-01-01T00:30:00+01:00", "9999-12-31T23:30:00-01:00"])
def test_a_time_outside_utc_range_is_a_dead_letter_naming_the_field(
    field: str, moment: str
) -> None:
    outcome = decode(_lab(**{field: moment}), topic=LAB_RESULTS, received_at=NOW)
    assert isinstance(outcome, DeadLetter)
    assert f"field '{field}'" in outcome.reason
    assert "once converted to UTC" in outcome.reason


def test_the_edges_of_the_utc_range_are_still_times() -> None:
    outcome = decode(_lab(observed_at="1970-01-01T00:00:00Z"), topic=LAB_RESULTS, received_at=NOW)
    assert isinstance(outcome, LabResult)


@given(
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59)),
    st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1),
)
def test_a_time_is_refused_exactly_when_it_has_no_utc_equivalent(
    wall: datetime, offset_minutes: int
) -> None:
    # Only the first and the last year are converted to find out (a fast path skips the rest).
    moment = wall.replace(tzinfo=timezone(timedelta(minutes=offset_minutes)))
    try:
        moment.astimezone(UTC)
        convertible = True
    except OverflowError:
        convertible = False
    if convertible:
        assert _convertible_to_utc(moment) is moment
    else:
        with pytest.raises(ValueError, match="once converted to UTC"):
            _convertible_to_utc(moment)
