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

from schemas.wearables import get_metric
from streams.config import CoreConfig
from streams.dedup import SampleCoverage
from streams.timezones import TimeZoneHistory, day_bounds, local_midnight, zone
from streams.wearable_features import FEATURES, DayTotals, FeatureHistory, day_features

#: One sample as the tracker needs it: metric id, canonical value, start and
#: end in epoch seconds, and the zone key it was taken in.
Sample = tuple[str, float, int, int, str]


@lru_cache(maxsize=256)
def metric_id(name: str) -> str:
    """The catalogue id of a metric name or alias (cached: called per sample)."""
    return get_metric(name).id


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


@dataclass(frozen=True, slots=True)
class Added:
    """What ``WearableDays.add`` did with a batch of samples."""

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
        sleep_shift = timedelta(hours=24 - config.wearable.sleep_window_start_hour)
        new = duplicates = 0
        late: dict[date, int] = {}
        newest: int | None = None
        here: set[tuple[str, int, int]] = set()
        spans: dict[str, tuple[int, int]] = {}
        # Per sample this loop is the wearable path's hot spot: what does not
        # change within one delivery is looked up once (the zone of a key, a
        # metric's dedup stream and where its counted time ends), and nothing
        # here changes ``last_closed`` or the counted time (added after the loop).
        last_closed = self.last_closed
        seen = self.seen
        covers = seen.covers
        opened = self.open
        streams: dict[str, tuple[str, int | None]] = {}
        zone_key: str | None = None
        covered = (-1, -1)  # the hours of the last sample marked (``_cover``)
        tz: tzinfo = UTC  # replaced at the first sample: no key is None
        for metric, value, start, end, key in samples:
            top = end if end > start else start + 1  # max(end, start + 1), without a call
            span = spans.get(metric)
            if span is None:
                spans[metric] = (start, top)
            else:
                first, last = span
                spans[metric] = (start if start < first else first, top if top > last else last)
            if key != zone_key:
                zone_key, tz = key, zone(key)
            local = datetime.fromtimestamp(start, tz)
            taken = local.date()
            if last_closed is not None and taken <= last_closed:
                late[taken] = late.get(taken, 0) + 1
                continue
            if metric == "sleep":
                day = (local + sleep_shift).date()
                middle = datetime.fromtimestamp((start + (end if end > start else start)) // 2, tz)
                minute = (middle.date() - day).days * 1440 + middle.hour * 60 + middle.minute
            else:
                day, minute = taken, 0
            identity = (metric, start, end)
            if identity in here:
                duplicates += 1
                continue
            known = streams.get(metric)
            if known is None:
                seen_as = f"{stream}|{metric}"
                known = streams[metric] = (seen_as, seen.counted_until(seen_as))
            seen_as, until = known
            # Time from the end of the counted time on is not covered: most
            # samples of a new delivery are asked nothing more.
            if until is not None and start < until and covers(seen_as, start, end):
                duplicates += 1
                continue
            here.add(identity)
            new += 1
            totals = opened.get(day)
            if totals is None:
                totals = opened[day] = DayTotals()
            totals.add(metric, value, start, key, minute)
            hours = (start // 3600, (end - 1 if end > start else start) // 3600)
            if hours != covered:  # the same hours again set the same bits: skipped
                covered = hours
                self._cover(start, end)
            if newest is None or start > newest:
                newest = start
        limit = config.dedup.intervals_per_stream
        for metric, (first, last) in spans.items():
            self.seen.add(f"{stream}|{metric}", first, last, limit)
        return Added(new, duplicates, late, newest)

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
            return self.last_closed + timedelta(days=1)
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
            fallback = self.zones.latest() or "+00:00"
            start_key = totals.first[1] if totals is not None and totals.first else fallback
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
            end=local_midnight(day + timedelta(days=1), key),
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
        before it changes them.
        """
        return WearableDays(
            {day: totals.clone() for day, totals in self.open.items()},
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
