"""The daily rollups (plain PostgreSQL): each batch's new rows added in the same transaction.

Two ways in, with the same ``ON CONFLICT`` arithmetic as
``psymon_rebuild_daily_rollups`` (migration 0002) and the same results:

* :attr:`Rollup.from_inserted` groups the rows an ``INSERT ... RETURNING``
  just inserted (``ins``): the writer's careful path, where only the database
  knows which rows of a re-delivered batch are new.
* :meth:`Rollup.add_rows` groups rows the writer COPYed straight in (all of
  them new) here, in Python, as they were COPYed, and sends one partial per
  day, patient, group and unit: a few hundred values instead of a second COPY
  of every row.

A group's sum is added up in row order, as PostgreSQL's ``sum(float8)`` adds
up a table scan. Partials are split by unit, so that ``max(unit)`` is the
server's own (its collation); one metric or analyte has one canonical unit,
so in practice a group has one partial. The latest value of a group is that
of the latest ``observed_at``, then ``received_at``; ties keep the first row.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

import psycopg

from schemas.envelope import FIXED_OFFSETS

_DAY = "date_trunc('day', observed_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_DAY = _EPOCH.toordinal()
#: The source columns every rollup reads besides its own.
_ENVELOPE = ("patient_id", "observed_at", "received_at")

#: Every partial as unnest() reads it: the group, then what summarises it.
_PARTIAL_COLUMNS = (
    "patient_id, grouped, day, unit, n, measure_sum, measure_min, measure_max, "
    "last_measure, last_observed_at, last_received_at"
)

_WEARABLE_CONFLICT = """ON CONFLICT (patient_id, metric, day) DO UPDATE SET
            n = d.n + EXCLUDED.n,
            value_sum = d.value_sum + EXCLUDED.value_sum,
            value_min = least(d.value_min, EXCLUDED.value_min),
            value_max = greatest(d.value_max, EXCLUDED.value_max),
            unit = EXCLUDED.unit"""

_SCORES_CONFLICT = """ON CONFLICT (patient_id, instrument, day) DO UPDATE SET
            n = d.n + EXCLUDED.n,
            total_sum = d.total_sum + EXCLUDED.total_sum,
            total_min = least(d.total_min, EXCLUDED.total_min),
            total_max = greatest(d.total_max, EXCLUDED.total_max),
            last_total = CASE WHEN EXCLUDED.last_observed_at >= d.last_observed_at
                              THEN EXCLUDED.last_total ELSE d.last_total END,
            last_observed_at = greatest(d.last_observed_at, EXCLUDED.last_observed_at)"""

_LABS_CONFLICT = """ON CONFLICT (patient_id, analyte, day) DO UPDATE SET
            n = d.n + EXCLUDED.n,
            value_sum = d.value_sum + EXCLUDED.value_sum,
            value_min = least(d.value_min, EXCLUDED.value_min),
            value_max = greatest(d.value_max, EXCLUDED.value_max),
            last_value = CASE WHEN EXCLUDED.last_observed_at >= d.last_observed_at
                              THEN EXCLUDED.last_value ELSE d.last_value END,
            last_observed_at = greatest(d.last_observed_at, EXCLUDED.last_observed_at),
            unit = EXCLUDED.unit"""


def _partials(measure: str) -> str:
    """unnest() of the partials' arrays, the measure as type ``measure``.

    Sent in binary (``%b``): psycopg writes a timestamp as text at ~2 µs.
    """
    return (
        f"unnest(%b::text[], %b::text[], %b::timestamptz[], %b::text[], %b::bigint[], "
        f"%b::{measure}[], %b::{measure}[], %b::{measure}[], %b::{measure}[], "
        f"%b::timestamptz[], %b::timestamptz[]) AS p({_PARTIAL_COLUMNS})"
    )


@dataclass(frozen=True)
class Rollup:
    """One daily rollup table and the table it summarises.

    ``grouped``, ``measure`` and ``unit`` name the source table's columns it
    groups by (besides patient and day), sums up, and keeps the unit of.
    """

    source: str
    grouped: str
    measure: str
    unit: str | None
    #: The columns the careful path's ``INSERT ... RETURNING`` gives ``ins``.
    returning: str
    #: The rollup of the rows in ``ins``.
    from_inserted: str
    #: The rollup of the partials (:meth:`add_rows`).
    from_partials: str

    def add_rows(
        self, cursor: psycopg.Cursor[Any], columns: Sequence[str], rows: Iterable[Sequence[Any]]
    ) -> None:
        """Add ``rows`` (of the source table, in ``columns`` order, all new) to the rollup."""
        arrays = self.partials(columns, rows)
        if arrays[0]:
            cursor.execute(self.from_partials, arrays)

    def partials(
        self, columns: Sequence[str], rows: Iterable[Sequence[Any]]
    ) -> tuple[list[Any], ...]:
        """One partial per patient, group, UTC day and unit of ``rows``, as column arrays."""
        patient, observed, received = (columns.index(c) for c in _ENVELOPE)
        grouped, measure = columns.index(self.grouped), columns.index(self.measure)
        unit = None if self.unit is None else columns.index(self.unit)
        found: dict[tuple[Any, ...], list[Any]] = {}
        utc_zone: tzinfo = UTC  # a fixed zone of offset zero: pydantic's, once a time has it
        for row in rows:
            when = row[observed]
            zone = when.tzinfo
            if zone is not utc_zone and type(zone) in FIXED_OFFSETS and not when.utcoffset():
                utc_zone = zone
            # A UTC time's day is its date: no conversion, no timedelta.
            day = when.toordinal() - _EPOCH_DAY if zone is utc_zone else (when - _EPOCH).days
            key = (row[patient], row[grouped], day, None if unit is None else row[unit])
            value = row[measure]
            partial = found.get(key)
            if partial is None:
                found[key] = [1, value, value, value, value, when, row[received]]
                continue
            partial[0] += 1
            partial[1] += value
            if value < partial[2]:
                partial[2] = value
            if value > partial[3]:
                partial[3] = value
            latest = partial[5]
            if when > latest or (when == latest and row[received] > partial[6]):
                partial[4], partial[5], partial[6] = value, when, row[received]
        days: dict[int, datetime] = {}
        arrays: tuple[list[Any], ...] = tuple([] for _ in range(11))
        for (who, group, day, unit_text), partial in found.items():
            start = days.get(day)
            if start is None:
                start = days[day] = _EPOCH + timedelta(days=day)
            for array, value in zip(arrays, (who, group, start, unit_text, *partial), strict=True):
                array.append(value)
        return arrays


#: The daily rollups (plain PostgreSQL), by the table each summarises.
ROLLUPS: dict[str, Rollup] = {
    rollup.source: rollup
    for rollup in (
        Rollup(
            "wearable_samples",
            "metric",
            "value",
            "unit",
            "patient_id, metric, observed_at, value, unit",
            f"""INSERT INTO daily_wearable AS d
            (patient_id, metric, day, n, value_sum, value_min, value_max, unit)
        SELECT patient_id, metric, {_DAY}, count(*), sum(value), min(value), max(value), max(unit)
        FROM ins GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        {_WEARABLE_CONFLICT}""",
            f"""INSERT INTO daily_wearable AS d
            (patient_id, metric, day, n, value_sum, value_min, value_max, unit)
        SELECT patient_id, grouped, day, sum(n), sum(measure_sum), min(measure_min),
               max(measure_max), max(unit)
        FROM {_partials("float8")} GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        {_WEARABLE_CONFLICT}""",
        ),
        Rollup(
            "clinical_scores",
            "instrument",
            "total",
            None,
            "patient_id, instrument, observed_at, received_at, total",
            f"""INSERT INTO daily_scores AS d
            (patient_id, instrument, day, n, total_sum, total_min, total_max,
             last_total, last_observed_at)
        SELECT patient_id, instrument, {_DAY}, count(*), sum(total), min(total), max(total),
               (array_agg(total ORDER BY observed_at DESC, received_at DESC))[1],
               max(observed_at)
        FROM ins GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        {_SCORES_CONFLICT}""",
            f"""INSERT INTO daily_scores AS d
            (patient_id, instrument, day, n, total_sum, total_min, total_max,
             last_total, last_observed_at)
        SELECT patient_id, grouped, day, sum(n), sum(measure_sum), min(measure_min),
               max(measure_max),
               (array_agg(last_measure ORDER BY last_observed_at DESC,
                          last_received_at DESC))[1],
               max(last_observed_at)
        FROM {_partials("bigint")} GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        {_SCORES_CONFLICT}""",
        ),
        Rollup(
            "lab_results",
            "analyte",
            "value",
            "unit",
            "patient_id, analyte, observed_at, received_at, value, unit",
            f"""INSERT INTO daily_labs AS d
            (patient_id, analyte, day, n, value_sum, value_min, value_max,
             last_value, last_observed_at, unit)
        SELECT patient_id, analyte, {_DAY}, count(*), sum(value), min(value), max(value),
               (array_agg(value ORDER BY observed_at DESC, received_at DESC))[1],
               max(observed_at), max(unit)
        FROM ins GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        {_LABS_CONFLICT}""",
            f"""INSERT INTO daily_labs AS d
            (patient_id, analyte, day, n, value_sum, value_min, value_max,
             last_value, last_observed_at, unit)
        SELECT patient_id, grouped, day, sum(n), sum(measure_sum), min(measure_min),
               max(measure_max),
               (array_agg(last_measure ORDER BY last_observed_at DESC,
                          last_received_at DESC))[1],
               max(last_observed_at), max(unit)
        FROM {_partials("float8")} GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        {_LABS_CONFLICT}""",
        ),
    )
}
