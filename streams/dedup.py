"""Recognising what the patient state has already seen, in bounded memory.

The same event can arrive twice: a producer sends it again (a retry, a
re-sent file), or the broker delivers a record again (at least once,
ARCHITECTURE.md). The stream worker drops a record the broker gives again by
its input offset before the core sees it (:mod:`streams.stored_state`), so the
core's memories below meet mostly events sent twice, and bound how far back
it recognises one. Two memories make a repeat harmless:

* :class:`EventMemory` remembers event ids (scores, labs, outcomes, whole
  uploads), the newest ``capacity`` of them by event time. What it keeps does
  not depend on arrival order.
* :class:`SampleCoverage` remembers which time of each device's metric has
  been delivered. An upload holds every sample of its device over a
  contiguous window (:class:`~schemas.events.WearableUpload`), so once it is
  counted, the span from its first to its last sample of each metric is
  covered for that metric, and a later sample of the device and metric
  wholly inside covered time is a duplicate: a re-sent upload whose window
  overlaps the last one counts only its new samples, and so does a
  re-aggregated one (five one-minute samples re-sent as one five-minute
  sample would otherwise count twice). For samples whose ids derive from
  their source's identity this is dedup by event id, in memory that grows
  with the number of uploads of the open days rather than with the number of
  samples (a device that reports only the minutes with steps would otherwise
  need one interval per minute). Covered time is forgotten as days close.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from itertools import islice
from uuid import UUID


def short_id(event_id: UUID) -> int:
    """The first 64 bits of an event id: unique enough within one patient.

    >>> short_id(UUID(int=(5 << 64) | 7))
    5
    """
    return event_id.int >> 64


@dataclass(slots=True)
class EventMemory:
    """The newest ``capacity`` event ids by event time, in bounded memory.

    >>> from schemas.examples import example_uuid
    >>> memory = EventMemory()
    >>> memory.remember(example_uuid(1), at=10, capacity=2)
    >>> memory.remember(example_uuid(2), at=30, capacity=2)
    >>> memory.remember(example_uuid(3), at=20, capacity=2)  # forgets the oldest (at=10)
    >>> [memory.seen(example_uuid(n)) for n in (1, 2, 3)]
    [False, True, True]
    """

    ids: dict[int, int] = field(default_factory=dict)

    def seen(self, event_id: UUID) -> bool:
        """Whether ``event_id`` is remembered."""
        return short_id(event_id) in self.ids

    def remember(self, event_id: UUID, at: int, capacity: int) -> None:
        """Remember ``event_id`` observed at ``at``; forget the oldest beyond ``capacity``."""
        ids = self.ids
        ids[short_id(event_id)] = at
        while len(ids) > capacity:
            # Events mostly arrive in time order, so the oldest is mostly the
            # first remembered: taken when every other time is later. Else the
            # oldest by (time, id), compared as tuples in C.
            first = next(iter(ids))
            if ids[first] < min(islice(ids.values(), 1, None), default=ids[first] + 1):
                del ids[first]
            else:
                del ids[min(zip(ids.values(), ids.keys(), strict=True))[1]]

    def clone(self) -> EventMemory:
        """An independent copy."""
        return EventMemory(dict(self.ids))


@dataclass(slots=True)
class SampleCoverage:
    """Counted time per stream (device and metric) as merged intervals.

    Each stream holds a flat sorted list ``[start0, end0, start1, end1, ...]``
    of disjoint half-open intervals in epoch seconds; touching intervals merge,
    so a continuous minute-by-minute stream costs two numbers. An instant
    sample (``start == end``) stands for one second.

    >>> coverage = SampleCoverage()
    >>> coverage.add("watch|steps", 0, 60, limit=100)
    True
    >>> coverage.add("watch|steps", 60, 120, limit=100)
    True
    >>> coverage.spans["watch|steps"]
    [0, 120]
    >>> coverage.add("watch|steps", 30, 90, limit=100)  # already counted: a duplicate
    False
    """

    spans: dict[str, list[int]] = field(default_factory=dict)

    def covers(self, stream: str, start: int, end: int) -> bool:
        """Whether ``[start, end)`` of ``stream`` was wholly counted already."""
        spans = self.spans.get(stream)
        if spans is None:
            return False
        end = max(end, start + 1)
        i = bisect_right(spans, start) - 1
        i -= i % 2
        return i >= 0 and spans[i + 1] >= end

    def counted_until(self, stream: str) -> int | None:
        """Where the counted time of ``stream`` ends (None: none counted).

        Nothing from there on is covered: :meth:`covers` is False for any
        ``[start, end)`` with ``start`` at or after it.
        """
        spans = self.spans.get(stream)
        return spans[-1] if spans else None

    def add(self, stream: str, start: int, end: int, limit: int) -> bool:
        """Count ``[start, end)`` of ``stream``; False when it was wholly counted already."""
        if end <= start:
            end = start + 1
        spans = self.spans.get(stream)
        if spans is None:
            self.spans[stream] = [start, end]
            return True
        if spans[-2] <= start:
            # In or after the last interval, as a stream's next delivery mostly
            # is: what the general merge below does there, without searching.
            last = spans[-1]
            if last >= end:
                return False
            spans = self.spans[stream] = list(spans)  # may be shared with clones
            if last >= start:
                spans[-1] = end
            else:
                spans += (start, end)
            if len(spans) > 2 * limit:
                del spans[: len(spans) - 2 * limit]
            return True
        # Index of the last interval starting at or before ``start``.
        i = bisect_right(spans, start, 0, len(spans)) - 1
        i -= i % 2
        if i >= 0 and spans[i + 1] >= end:
            return False
        # Merge with every interval that overlaps or touches [start, end).
        lo = i if i >= 0 and spans[i + 1] >= start else i + 2
        hi = lo
        new_start, new_end = start, end
        while hi < len(spans) and spans[hi] <= new_end:
            if spans[hi] < new_start:
                new_start = spans[hi]
            if spans[hi + 1] > new_end:
                new_end = spans[hi + 1]
            hi += 2
        # Changed in a copy: the list may be shared with clones (:meth:`clone`).
        spans = self.spans[stream] = list(spans)
        spans[lo:hi] = [new_start, new_end]
        if len(spans) > 2 * limit:
            del spans[: len(spans) - 2 * limit]
        return True

    def forget_before(self, moment: int) -> None:
        """Drop intervals that end before ``moment`` (their days have closed)."""
        for stream in list(self.spans):
            spans = self.spans[stream]
            keep = 0
            while keep < len(spans) and spans[keep + 1] < moment:
                keep += 2
            if keep == len(spans):
                del self.spans[stream]
            elif keep:
                self.spans[stream] = spans[keep:]

    def clone(self) -> SampleCoverage:
        """An independent copy.

        The lists of intervals are shared: this class never changes one in
        place (:meth:`add` and :meth:`forget_before` replace it), so copying
        the dict is enough, and an upload replaces only its own streams' lists.
        """
        return SampleCoverage(dict(self.spans))
