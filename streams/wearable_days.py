"""Wearable samples into local days, and days closed by the watermark.

:class:`WearableDays` is the per-patient wearable tracker. ``add`` puts each
new sample into the open local day it belongs to (in the zone the sample was
taken in) and marks the hours it covers; ``close`` closes every day the
watermark has passed (local midnight at the day's end plus the wearable
lateness) in calendar order and returns a :class:`ClosedDay` with its
features, baselines and deviations. Days without any data between days with
data are closed as well (coverage 0), up to ``max_gap_days`` in a row.

A sample taken on a local day that has already closed is *late*: it is
counted and reported, never folded into a day whose features were already
emitted. (Sleep from noon on is counted for the next day, but an evening
sleep sample is still late once its own calendar day has closed: the day's
coverage already counted that hour as empty.)

Sums are integers and days close in calendar order, so the result does not
depend on the order samples arrive in, as long as each arrives before its
day closes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from functools import lru_cache
from typing import NamedTuple

from schemas.wearables import get_metric
from streams.config import CoreConfig
from streams.dedup import SampleCoverage
from streams.timezones import TimeZoneHistory, day_bounds, local_midnight, zone
from streams.wearable_features import FEATURES, DayTotals, FeatureHistory, day_features

#: One sample as the tracker needs it: metric id, canonical value, start and
#: end in epoch seconds, and the zone key it was taken in.
Sample = tuple[str, float, int, int, str]

_ONE_DAY = timedelta(days=1)


@lru_cache(maxsize=256)
def metric_id(name: str) -> str:
    """The catalogue id of a metric name or alias (cached: called per sample)."""
    return get_metric(name).id


def _widen(spans: dict[str, tuple[int, int]], metric: str, first: int, last: int) -> None:
    """Widen ``metric``'s span in ``spans`` to take in ``[first, last)``."""
    span = spans.get(metric)
    if span is None:
        spans[metric] = (first, last)
    else:
        spans[metric] = (min(first, span[0]), max(last, span[1]))


@dataclass(frozen=True, slots=True)
class ClosedDay:
    """One local day's features, closed by the watermark."""

    day: date
    end: datetime
    has_data: bool
    coverage: float
    hours_without_data: float | None
    values: dict[str, float | None]
    baselines: dict[str, float | None]
    deviations: dict[str, float | None]


class Added(NamedTuple):
    """What ``WearableDays.add`` did with a batch of samples.

    A named tuple: made once per event, in less than half a frozen dataclass's time.
    """

    new: int
    duplicates: int
    late: dict[date, int]
    newest: int | None


@dataclass(slots=True)
class WearableDays:
    """Open days, the hours covered, closed-day history and sample dedup of one patient."""

    open: dict[date, DayTotals] = field(default_factory=dict)
    last_closed: date | None = None
    tracking: bool = False
    gap_run: int = 0
    anchor: int | None = None
    hours: int = 0
    last_data: int | None = None
    history: FeatureHistory = field(default_factory=FeatureHistory)
    zones: TimeZoneHistory = field(default_factory=TimeZoneHistory)
    seen: SampleCoverage = field(default_factory=SampleCoverage)

    def add(self, samples: Iterable[Sample], stream: str, config: CoreConfig) -> Added:
        """Fold in one delivery (an upload, or one sample) of one source (``stream``).

        A delivery holds every sample of its device from its first to its last
        sample of each metric, so once delivered that span counts as seen for
        the metric, and a later sample of the device and metric inside it is a
        duplicate (:class:`~streams.dedup.SampleCoverage`).

        >>> from datetime import UTC
        >>> days, t = WearableDays(), int(datetime(2026, 3, 2, 9, tzinfo=UTC).timestamp())
        >>> steps = [("steps", 100.0, t + m * 180, t + m * 180 + 60, "+01:00") for m in range(3)]
        >>> added = days.add([*steps, steps[0]], "watch", CoreConfig())
        >>> added.new, added.duplicates, list(days.open)
        (3, 1, [datetime.date(2026, 3, 2)])
        >>> days.add(steps[1:], "watch", CoreConfig()).duplicates  # re-sent
        2
        """
        sleep_from = config.wearable.sleep_window_start_hour
        new = duplicates = 0
        late: dict[date, int] = {}
        newest = -1 << 63  # the latest start of a new sample (reported only if there is one)
        here: set[tuple[str, int, int]] = set()
        spans: dict[str, tuple[int, int]] = {}
        # Per sample this loop is the wearable path's hot spot. A delivery lists
        # each metric's samples together, so what depends only on the metric
        # (its dedup stream, where that stream's counted time ends, the span of
        # the delivery's samples of it) is kept for the run of samples of one
        # metric; what depends on the zone, for the run of one zone key; and
        # the local time of a start, for the samples at that start (several
        # metrics share them). Nothing here changes ``last_closed`` or the
        # counted time (added after the loop).
        last_closed = self.last_closed
        seen = self.seen
        covers = seen.covers
        opened = self.open
        mine: dict[date, DayTotals] = {}  # the open days' totals this delivery changes
        streams: dict[str, tuple[str, int | None]] = {}
        run: str | None = None  # the metric of the current run
        first = last = 0  # the span of the run's samples
        seen_as, until, sleep = "", None, False
        zone_key: str | None = None
        tz: tzinfo = UTC  # replaced at the first sample: no key is None
        local_at: dict[int, tuple[datetime, date]] = {}  # of the current zone
        covered_first = covered_last = -1  # the hours last marked (``_cover``)
        for metric, value, start, end, key in samples:
            top = end if end > start else start + 1  # max(end, start + 1), without a call
            if metric != run:
                if run is not None:
                    _widen(spans, run, first, last)
                run, first, last = metric, start, top
                known = streams.get(metric)
                if known is None:
                    seen_as = f"{stream}|{metric}"
                    known = streams[metric] = (seen_as, seen.counted_until(seen_as))
                seen_as, until = known
                sleep = metric == "sleep"
            else:
                if start < first:
                    first = start
                if top > last:
                    last = top
            if key != zone_key:
                zone_key, tz, local_at = key, zone(key), {}
            found = local_at.get(start)
            if found is None:
                local = datetime.fromtimestamp(start, tz)
                found = local_at[start] = (local, local.date())
            local, taken = found
            if last_closed is not None and taken <= last_closed:
                late[taken] = late.get(taken, 0) + 1
                continue
            if sleep:
                # Sleep from the window's start hour on counts for the next day
                # (the local time moved on by 24 - that hour, without making it).
                day = taken + _ONE_DAY if local.hour >= sleep_from else taken
                middle = datetime.fromtimestamp((start + (end if end > start else start)) // 2, tz)
                minute = (middle.date() - day).days * 1440 + middle.hour * 60 + middle.minute
            else:
                day, minute = taken, 0
            identity = (metric, start, end)
            if identity in here:
                duplicates += 1
                continue
            # Time from the end of the counted time on is not covered: most
            # samples of a new delivery are asked nothing more.
            if until is not None and start < until and covers(seen_as, start, end):
                duplicates += 1
                continue
            here.add(identity)
            new += 1
            totals = mine.get(day)
            if totals is None:
                # Copy-on-write: an open day's totals may be shared with the
                # state this one was cloned from (:meth:`clone`).
                shared = opened.get(day)
                totals = DayTotals() if shared is None else shared.clone()
                mine[day] = opened[day] = totals
            totals.add(metric, value, start, key, minute)
            hour = start // 3600
            end_hour = (end - 1 if end > start else start) // 3600
            if hour != covered_first or end_hour != covered_last:
                # The same hours again would set the same bits: skipped.
                covered_first, covered_last = hour, end_hour
                self._cover(start, end)
            if start > newest:
                newest = start
        if run is not None:
            _widen(spans, run, first, last)
        limit = config.dedup.intervals_per_stream
        for metric, (first, last) in spans.items():
            seen.add(streams[metric][0], first, last, limit)  # "stream|metric"
        return Added(new, duplicates, late, newest if new else None)

    def _cover(self, start: int, end: int) -> None:
        first, last = start // 3600, max(start, end - 1) // 3600
        if self.anchor is None:
            self.anchor = first
        elif first < self.anchor:
            self.hours <<= self.anchor - first
            self.anchor = first
        span = min(last - first + 1, 72)
        self.hours |= ((1 << span) - 1) << (first - self.anchor)

    def _next_day(self) -> date | None:
        if self.tracking and self.last_closed is not None:
            return self.last_closed + _ONE_DAY
        return min(self.open) if self.open else None

    def close(self, newest: int, lateness: int, config: CoreConfig) -> list[ClosedDay]:
        """Close, in calendar order, every day whose end plus ``lateness`` (s) is <= ``newest``.

        ``newest`` is the newest event time of any of the patient's events
        (epoch seconds), so a patient who stops wearing the device but keeps
        answering questionnaires still gets coverage-0 days and a data-loss alert.
        """
        closed: list[ClosedDay] = []
        while (day := self._next_day()) is not None:
            totals = self.open.get(day)
            if totals is not None and totals.first:
                start_key = totals.first[1]
            else:
                start_key = self.zones.latest() or "+00:00"
            end_key = totals.last[1] if totals is not None and totals.last else start_key
            start, end = day_bounds(day, start_key, end_key)
            if end + lateness > newest:
                break
            if not closed:
                # Copy-on-write: a clone shares these with the days it was made from.
                self.history, self.zones = self.history.clone(), self.zones.clone()
            if totals is None:
                self.gap_run += 1
                if self.gap_run > config.wearable.max_gap_days:
                    # Stop reporting empty days; a later sample starts a new run.
                    self.tracking = False
                    continue
            else:
                self.gap_run = 0
                del self.open[day]
                self.zones.record(day, end_key)
            closed.append(self._close(day, int(start), int(end), end_key, totals, config))
            self.last_closed, self.tracking = day, True
        return closed

    def _close(
        self,
        day: date,
        start: int,
        end: int,
        key: str,
        totals: DayTotals | None,
        config: CoreConfig,
    ) -> ClosedDay:
        start_h, end_h = start // 3600, max(end // 3600, start // 3600 + 1)
        covered, last_hour = 0, None
        if self.anchor is not None:
            lo = max(start_h, self.anchor)
            if end_h > lo:
                window = (self.hours >> (lo - self.anchor)) & ((1 << (end_h - lo)) - 1)
                covered = window.bit_count()
                if window:
                    last_hour = lo + window.bit_length() - 1
            if end_h > self.anchor:
                self.hours >>= end_h - self.anchor
                self.anchor = end_h
        if last_hour is not None:
            self.last_data = (last_hour + 1) * 3600
        coverage = min(1.0, covered / ((end - start) / 3600))
        wearable = config.wearable
        values = day_features(totals, coverage, self.history.recent("steps"), wearable)
        baselines: dict[str, float | None] = {}
        deviations: dict[str, float | None] = {}
        for feature in FEATURES:
            base = self.history.baseline(feature, wearable)
            value = values[feature]
            baselines[feature] = base.median if base is not None else None
            deviations[feature] = base.z(value) if base is not None and value is not None else None
        self.history.push(day, values, wearable)
        self.seen.forget_before(start)
        without = None if self.last_data is None else max(0, end - self.last_data) / 3600
        return ClosedDay(
            day=day,
            end=local_midnight(day + _ONE_DAY, key),
            has_data=totals is not None,
            coverage=coverage,
            hours_without_data=without,
            values=values,
            baselines=baselines,
            deviations=deviations,
        )

    def clone(self) -> WearableDays:
        """A copy to change, independent of this one.

        The feature and zone histories change only when a day closes, which
        most events do not do: they are shared, and :meth:`close` copies them
        before it changes them. So are the open days' totals, which only
        :meth:`add` changes, and copies first; a delivery adds to one or two
        of them.
        """
        return WearableDays(
            dict(self.open),
            self.last_closed,
            self.tracking,
            self.gap_run,
            self.anchor,
            self.hours,
            self.last_data,
            self.history,
            self.zones,
            self.seen.clone(),
        )
