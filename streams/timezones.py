"""The patient's local time: zone keys, local days, and a per-patient zone history.

Daily features follow the patient's local calendar, so a day in which the
patient flew from Berlin to New York, or a daylight-saving day, is still one
day: a spring-forward day has 23 hours, a fall-back day 25, and coverage is
measured against the day's real length.

A *zone key* is the event's IANA ``time_zone`` when the producer sent one,
otherwise the UTC offset of its ``observed_at`` written as ``+HH:MM``. Both
kinds give the right local clock time for the event itself; the IANA name
also gives the right length of a daylight-saving day.

>>> from datetime import datetime, timezone, timedelta
>>> zone_key(None, datetime(2026, 3, 29, 9, 0, tzinfo=timezone(timedelta(hours=2))))
'+02:00'
>>> day_hours(date(2026, 3, 29), "Europe/Berlin"), day_hours(date(2026, 10, 25), "Europe/Berlin")
(23.0, 25.0)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo

#: Changes remembered in a patient's zone history (the oldest are forgotten).
HISTORY_LIMIT = 16


@lru_cache(maxsize=1024)
def zone(key: str) -> tzinfo:
    """The tzinfo of a zone key: an IANA name or a ``+HH:MM`` offset.

    >>> zone("-05:30").utcoffset(None)
    datetime.timedelta(days=-1, seconds=66600)
    >>> str(zone("Europe/Berlin"))
    'Europe/Berlin'
    """
    if key[:1] in "+-" and len(key) == 6 and key[3] == ":":
        sign = -1 if key[0] == "-" else 1
        offset = timedelta(hours=int(key[1:3]), minutes=int(key[4:6]))
        return UTC if not offset else timezone(sign * offset)
    return ZoneInfo(key)


def offset_key(moment: datetime) -> str:
    """The ``+HH:MM`` key of an aware datetime's UTC offset.

    >>> offset_key(datetime(2026, 1, 1, tzinfo=UTC))
    '+00:00'
    """
    return _offset_text(moment.utcoffset() or timedelta(0))


@lru_cache(maxsize=256)
def _offset_text(offset: timedelta) -> str:
    sign = "-" if offset < timedelta(0) else "+"
    minutes = abs(offset) // timedelta(minutes=1)
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def zone_key(time_zone: str | None, observed_at: datetime) -> str:
    """The zone key of an event: its IANA ``time_zone``, else its offset.

    >>> zone_key("Europe/Berlin", datetime(2026, 1, 1, tzinfo=UTC))
    'Europe/Berlin'
    """
    return time_zone if time_zone else offset_key(observed_at)


def local_midnight(day: date, key: str) -> datetime:
    """The instant local ``day`` begins in the zone ``key`` (aware, in that zone).

    >>> local_midnight(date(2026, 3, 29), "Europe/Berlin").isoformat()
    '2026-03-29T00:00:00+01:00'
    """
    return datetime.combine(day, time(0), tzinfo=zone(key))


@lru_cache(maxsize=4096)
def day_bounds(day: date, start_key: str, end_key: str) -> tuple[float, float]:
    """Epoch seconds of the start and end of a local day.

    The day starts at local midnight in the zone the patient was in when it
    began and ends at the next local midnight in the zone they were in at its
    end (after a flight west the day is longer than 24 hours).

    Cached, as :func:`zone` is: the core asks for the bounds of a patient's
    next day at every event until the day closes, and patients in one zone
    share their days.

    >>> start, end = day_bounds(date(2026, 2, 10), "Europe/Berlin", "America/New_York")
    >>> (end - start) / 3600
    30.0
    """
    start = local_midnight(day, start_key).timestamp()
    end = local_midnight(day + timedelta(days=1), end_key).timestamp()
    return start, max(end, start + 3600.0)


def day_hours(day: date, key: str) -> float:
    """Hours in a local day of zone ``key`` (23 or 25 on daylight-saving days).

    >>> day_hours(date(2026, 3, 30), "Europe/Berlin")
    24.0
    """
    start, end = day_bounds(day, key, key)
    return (end - start) / 3600.0


@dataclass(slots=True)
class TimeZoneHistory:
    """Which zone each local day of the patient was lived in, as change points.

    Days are recorded in calendar order as they close, so the history is the
    same whatever order the underlying samples arrived in. ``zone_on`` answers
    for any day (before the first change: the first zone).

    >>> h = TimeZoneHistory()
    >>> for d, z in [(1, "Europe/Berlin"), (2, "Europe/Berlin"), (5, "America/New_York")]:
    ...     h.record(date(2026, 3, d), z)
    >>> h.changes
    [(datetime.date(2026, 3, 1), 'Europe/Berlin'), (datetime.date(2026, 3, 5), 'America/New_York')]
    >>> h.zone_on(date(2026, 3, 4)), h.latest()
    ('Europe/Berlin', 'America/New_York')
    """

    changes: list[tuple[date, str]] = field(default_factory=list)

    def record(self, day: date, key: str) -> None:
        """Note that the patient lived ``day`` in zone ``key`` (days in calendar order)."""
        if self.changes and self.changes[-1][1] == key:
            return
        if self.changes and self.changes[-1][0] >= day:
            # A day recorded again (or out of order) replaces what followed it.
            self.changes = [c for c in self.changes if c[0] < day]
            if self.changes and self.changes[-1][1] == key:
                return
        self.changes.append((day, key))
        if len(self.changes) > HISTORY_LIMIT:
            del self.changes[0]

    def zone_on(self, day: date) -> str | None:
        """The zone of ``day``, or None before anything was recorded."""
        found: str | None = None
        for start, key in self.changes:
            if start > day:
                break
            found = key
        if found is None and self.changes:
            return self.changes[0][1]
        return found

    def latest(self) -> str | None:
        """The most recent zone, or None."""
        return self.changes[-1][1] if self.changes else None

    def clone(self) -> TimeZoneHistory:
        """An independent copy."""
        return TimeZoneHistory(list(self.changes))
