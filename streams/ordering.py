"""Event-time order: per-family watermarks and the buffer of held-back events.

Events of one family (scores, labs, outcomes, wearable data) arrive roughly in
event-time order, but not exactly: a clinician enters yesterday's rating after
today's self-report, two devices upload at different times. The core applies
an event once the newest event time seen in its family has passed the event's
own time by the family's *lateness* (the watermark), releasing held-back
events in the order ``(release time, event time, event id)``. Whatever order
events arrive in, as long as each arrives within the lateness, they are
applied in the same order; an event older than the watermark is *late*: it is
still processed and reported, flagged ``late=True``, and never rewrites the
course. With a lateness of 0 an event is applied at once.

>>> from datetime import UTC, datetime
>>> from schemas.events import LabResult
>>> from schemas.examples import envelope_fields, example_uuid
>>> def lab(n, hour):
...     when = datetime(2026, 3, 2, hour, tzinfo=UTC)
...     fields = envelope_fields(observed_at=when, received_at=when, event_id=example_uuid(n))
...     return LabResult(**fields, analyte="crp", value=1.0, unit="mg/L")
>>> order, hour = EventTimeOrder(), 3_600_000_000
>>> order.admit(lab(1, 9), "lab_result", lateness=2 * hour)
'held'
>>> order.admit(lab(2, 8), "lab_result", lateness=2 * hour)  # out of order, within lateness
'held'
>>> order.admit(lab(3, 12), "lab_result", lateness=2 * hour)
'held'
>>> [e.observed_at.hour for e in order.release("lab_result", max_held=64)]
[8, 9]
>>> order.admit(lab(4, 7), "lab_result", lateness=2 * hour)
'late'
"""

from __future__ import annotations

from bisect import insort
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from pydantic import Field

from schemas.events import ClinicalOutcome, ClinicalScore, LabResult

#: Events that wait for the watermark (wearable data is summed per day instead).
HeldEvent = Annotated[ClinicalScore | LabResult | ClinicalOutcome, Field(discriminator="kind")]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def micros(moment: datetime) -> int:
    """Exact epoch microseconds of an aware datetime.

    >>> micros(datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC))
    1000000
    """
    return (moment - _EPOCH) // _MICROSECOND


def from_micros(value: int) -> datetime:
    """The UTC datetime of epoch microseconds.

    >>> from_micros(1_000_000).isoformat()
    '1970-01-01T00:00:01+00:00'
    """
    return _EPOCH + timedelta(microseconds=value)


def event_time(observed_at: datetime, received_at: datetime) -> int:
    """The time an event moves its family's watermark to, in epoch microseconds.

    ``observed_at``, but never later than ``received_at``: a device whose clock
    runs ahead must not make everyone else's data late.

    >>> t = datetime(2026, 3, 2, 9, tzinfo=UTC)
    >>> event_time(t + timedelta(hours=1), t) == micros(t)
    True
    """
    return min(micros(observed_at), micros(received_at))


@dataclass(slots=True, order=True)
class Held:
    """An event waiting for its family's watermark, sortable by release order."""

    release: int
    observed: int
    event_id: str
    family: str = field(compare=False)
    event: HeldEvent = field(compare=False)


@dataclass(slots=True)
class EventTimeOrder:
    """Per-family watermarks and the events held back until they pass.

    A family is what must be ordered among itself: one instrument's ratings
    (``clinical_score:phq9``), one analyte's results (``lab_result:lithium``),
    the outcomes, the wearable data. ``newest`` is the newest event time seen
    per family, in epoch microseconds.

    >>> order = EventTimeOrder()
    >>> order.observe("wearable", 5_000_000)
    >>> order.watermark("wearable", lateness=2_000_000), order.watermark("lab_result:crp", 0)
    (3000000, None)
    """

    newest: dict[str, int] = field(default_factory=dict)
    held: list[Held] = field(default_factory=list)

    def watermark(self, family: str, lateness: int) -> int | None:
        """The family's watermark: newest event time minus ``lateness``; None before any."""
        newest = self.newest.get(family)
        return None if newest is None else newest - lateness

    def observe(self, family: str, at: int) -> None:
        """Note an event time seen in ``family`` (moves the watermark forward only)."""
        if at > self.newest.get(family, at - 1):
            self.newest[family] = at

    def admit(
        self,
        event: ClinicalScore | LabResult | ClinicalOutcome,
        family: str,
        lateness: int,
    ) -> Literal["held", "late"]:
        """Hold ``event`` until its family's watermark passes it, or call it late."""
        at = event_time(event.observed_at, event.received_at)
        mark = self.watermark(family, lateness)
        if mark is not None and at < mark:
            return "late"
        self.observe(family, at)
        insort(self.held, Held(at + lateness, at, str(event.event_id), family, event))
        return "held"

    def release(
        self, family: str, max_held: int
    ) -> list[ClinicalScore | LabResult | ClinicalOutcome]:
        """Events of ``family`` the watermark has passed, in release order.

        Beyond ``max_held`` waiting events the oldest are released early.
        """
        newest = self.newest.get(family)
        ready: list[ClinicalScore | LabResult | ClinicalOutcome] = []
        keep: list[Held] = []
        waiting = sum(1 for h in self.held if h.family == family)
        for held in self.held:
            if held.family != family:
                keep.append(held)
            elif (newest is not None and held.release <= newest) or waiting > max_held:
                ready.append(held.event)
                waiting -= 1
            else:
                keep.append(held)
        self.held = keep
        return ready

    def clone(self) -> EventTimeOrder:
        """An independent copy (held events are frozen and shared)."""
        return EventTimeOrder(dict(self.newest), list(self.held))
