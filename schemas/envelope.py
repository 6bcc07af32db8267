"""The envelope every psymon event carries.

Every event, raw or derived, has the same identity and time fields so that the
broker, the store and the replay engine treat them alike:

* ``event_id``: a UUID, the idempotency key. Where the source record has an
  identity of its own (a FHIR resource id and version, a device's sample id)
  the id is derived from it with :func:`schemas.identity.event_id_for`, so a
  re-imported export yields the same ids and changes nothing.
* ``patient_id``: the keyed pseudonym made at the ingest edge
  (:func:`schemas.identity.pseudonymise`), never a source identifier.
* ``observed_at``: event time, when the thing happened; tz-aware.
* ``received_at``: when psymon's edge received it; tz-aware.
* ``source``: which system, device and rater produced it.
* ``time_zone``: the patient's IANA time zone where the producer knows it
  (phones do); daily features follow it across travel and daylight saving.
  Without it the UTC offset of ``observed_at`` stands for the local time.
* ``schema_version``: the contract version, 1 for this module.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Literal
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)
from pydantic_core import TzInfo

from schemas.identity import PSEUDONYM_PATTERN

SCHEMA_VERSION: Literal[1] = 1

#: How far ``observed_at`` may lie after ``received_at``: device clocks drift,
#: but an observation from the future is a broken clock or a broken producer.
MAX_CLOCK_SKEW = timedelta(hours=24)

#: The earliest plausible observation; earlier dates are typing errors.
EARLIEST_OBSERVATION = datetime(1970, 1, 1, tzinfo=UTC)


def _check_pseudonym(value: str) -> str:
    """Reject anything that is not a psymon pseudonym, without echoing it.

    A value that fails here may be a raw medical record number, so the error
    names the field and the expected shape but never the value itself.
    """
    if not PSEUDONYM_PATTERN.fullmatch(value):
        raise ValueError(
            "patient_id must be a psymon pseudonym ('p-' followed by 24 lowercase hex "
            "characters, made by the ingest edge from the source identifier with the "
            "pseudonym key); the value given is not shown because it may identify a patient"
        )
    return value


def _convertible_to_utc(moment: datetime) -> datetime:
    """Refuse a time that has no UTC equivalent (the years 1 and 9999 at the edges).

    ``0001-01-01T00:30:00+01:00`` is a valid ISO 8601 time whose UTC instant
    falls before the year 1: Python cannot convert it, and every comparison
    psymon makes is in UTC (:func:`utc`).
    """
    if 1 < moment.year < 9999:
        return moment  # an offset is under a day: only the first and the last year can overflow
    try:
        moment.astimezone(UTC)
    except OverflowError:
        raise ValueError(
            f"{moment.isoformat()} falls outside the years 1 to 9999 once converted to UTC; "
            "accepted: a tz-aware time between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z"
        ) from None
    return moment


#: A tz-aware time that can be converted to UTC: every time field of an event.
Moment = Annotated[AwareDatetime, AfterValidator(_convertible_to_utc)]


def utc(moment: datetime) -> datetime:
    """``moment`` in UTC, for comparing and subtracting.

    Python compares two datetimes that share a ``tzinfo`` object by wall time,
    ignoring their offsets, which is wrong across a daylight-saving fall-back
    (02:30+02:00 would count as after 02:00+01:00). Comparing in UTC is not.

    >>> from zoneinfo import ZoneInfo
    >>> berlin = ZoneInfo("Europe/Berlin")
    >>> first = datetime(2026, 10, 25, 2, 30, tzinfo=berlin)           # +02:00
    >>> later = datetime(2026, 10, 25, 2, 0, fold=1, tzinfo=berlin)    # +01:00
    >>> later < first, utc(later) < utc(first)
    (True, False)
    """
    return moment.astimezone(UTC)


#: Time zones whose offset never changes: pydantic's for parsed offsets, ``datetime.timezone``.
FIXED_OFFSETS = (TzInfo, timezone)


def utc_difference(later: datetime, earlier: datetime) -> timedelta:
    """``utc(later) - utc(earlier)``, without converting either when that gives the same.

    Python subtracts (and compares) two aware datetimes in UTC unless they
    share one ``tzinfo`` object; then it uses wall time, which is the same
    thing only when that zone's offset is fixed. Validation does this for
    every event and every wearable reading, so the conversions are skipped
    where they cannot change the answer. Times in the first or last year
    Python can hold take the converting path: there :func:`utc` itself can
    overflow, and it must fail as before.

    >>> from zoneinfo import ZoneInfo
    >>> berlin = ZoneInfo("Europe/Berlin")
    >>> first = datetime(2026, 10, 25, 2, 30, tzinfo=berlin)           # +02:00
    >>> later = datetime(2026, 10, 25, 2, 0, fold=1, tzinfo=berlin)    # +01:00
    >>> utc_difference(later, first)
    datetime.timedelta(seconds=1800)
    """
    zone = later.tzinfo
    if (
        (zone is not earlier.tzinfo or type(zone) in FIXED_OFFSETS)
        and 1 < later.year < 9999
        and 1 < earlier.year < 9999
    ):
        return later - earlier
    return utc(later) - utc(earlier)


def utc_before(earlier: datetime, later: datetime) -> bool:
    """``utc(earlier) < utc(later)``, converting only where it could matter (see above).

    >>> from zoneinfo import ZoneInfo
    >>> berlin = ZoneInfo("Europe/Berlin")
    >>> first = datetime(2026, 10, 25, 2, 30, tzinfo=berlin)           # +02:00
    >>> later = datetime(2026, 10, 25, 2, 0, fold=1, tzinfo=berlin)    # +01:00
    >>> utc_before(later, first), utc_before(first, later)
    (False, True)
    """
    zone = earlier.tzinfo
    if (
        (zone is not later.tzinfo or type(zone) in FIXED_OFFSETS)
        and 1 < earlier.year < 9999
        and 1 < later.year < 9999
    ):
        return earlier < later
    return utc(earlier) < utc(later)


def _check_time_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"time_zone {value!r} is not an IANA time zone name; accepted: names such as "
            "'Europe/Berlin' or 'America/New_York'"
        ) from None
    return value


PatientId = Annotated[str, Field(max_length=64), AfterValidator(_check_pseudonym)]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=128, strip_whitespace=True)]
TimeZoneName = Annotated[str, Field(max_length=64), AfterValidator(_check_time_zone)]
LongText = Annotated[str, StringConstraints(max_length=2000)]


class Source(BaseModel):
    """Who produced an event.

    ``system`` names the producing system (an EHR, an app, psymon itself);
    ``device`` a device model or a pseudonymised device id (never a raw serial);
    ``rater`` a clinician's role or staff id for clinician-rated scores.

    >>> Source(system="ehr-north", rater="clinician:42").system
    'ehr-north'
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    system: ShortText
    device: ShortText | None = None
    rater: ShortText | None = None


class Envelope(BaseModel):
    """Fields common to every psymon event."""

    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="strings")

    event_id: UUID
    patient_id: PatientId
    observed_at: Moment
    received_at: Moment
    source: Source
    time_zone: TimeZoneName | None = None
    schema_version: Literal[1] = SCHEMA_VERSION

    @model_validator(mode="after")
    def _observed_not_in_future(self) -> Envelope:
        if utc_difference(self.observed_at, self.received_at) > MAX_CLOCK_SKEW:
            raise ValueError(
                f"observed_at {self.observed_at.isoformat()} is more than "
                f"{MAX_CLOCK_SKEW} after received_at {self.received_at.isoformat()}; "
                "an observation cannot come from the future (check the device clock)"
            )
        # A wall-clock year after 1970 is after 1970-01-01 in UTC too, whatever
        # the offset (under a day): only earlier years are converted and compared.
        if self.observed_at.year <= 1970 and utc_before(self.observed_at, EARLIEST_OBSERVATION):
            raise ValueError(
                f"observed_at {self.observed_at.isoformat()} is before 1970-01-01; "
                "accepted: a tz-aware timestamp of the observation"
            )
        return self
