"""0002: how time is laid out: partitions and rollups, or hypertables and continuous aggregates.

Plain PostgreSQL (``postgres`` flavour):

* a DEFAULT partition per time-series table, so no row is ever refused;
* ``psymon_ensure_partitions(from, to)`` creates the monthly partitions
  (UTC months) of every partitioned table that lack them, moving any rows the
  default partition holds for that month into the new partition;
* BRIN indexes on ``observed_at`` (small, and events arrive nearly in time order);
* rollup tables ``daily_wearable``, ``daily_scores``, ``daily_labs`` that the
  sink updates in the same transaction as the rows they summarise, and
  ``psymon_rebuild_daily_rollups(from, to)`` to recompute them from raw rows.

TimescaleDB (``timescale`` flavour): hypertables, compression segmented by
patient, a retention policy on raw wearable data only, and continuous
aggregates with the same names and columns as the rollup tables, refreshed
past the late-arrival window. The views (0003) read either alike.

Days are UTC days (``day`` is the UTC midnight that starts it); features in
the patient's local day are the stream workers' business (course updates).
"""

from __future__ import annotations

from services.store.migrations.v0001_event_tables import TIME_SERIES_TABLES

VERSION = "0002"
NAME = "time layout"

#: Data may arrive this late (a phone offline for a week, a lab result entered
#: days after the specimen); continuous aggregates refresh further back than this.
LATE_ARRIVAL_WINDOW_DAYS = 14

_ENSURE_PARTITIONS = r"""CREATE FUNCTION psymon_ensure_partitions(
    from_time timestamptz, to_time timestamptz
) RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    parent text;
    month_start timestamptz;
    month_end timestamptz;
    part text;
    in_default boolean;
    created integer := 0;
BEGIN
    IF from_time IS NULL OR to_time IS NULL OR to_time < from_time THEN
        RAISE EXCEPTION
            'psymon_ensure_partitions: expected from_time <= to_time, got % and %',
            from_time, to_time;
    END IF;
    -- Two sinks creating the same partition at once must not collide.
    PERFORM pg_advisory_xact_lock(hashtext('psymon_ensure_partitions'));
    FOR parent IN
        SELECT c.relname
        FROM pg_partitioned_table pt
        JOIN pg_class c ON c.oid = pt.partrelid
        WHERE c.relnamespace = current_schema()::regnamespace
          AND to_regclass(quote_ident(c.relname || '_default')) IS NOT NULL
        ORDER BY c.relname
    LOOP
        month_start := date_trunc('month', from_time AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
        WHILE month_start <= to_time LOOP
            month_end := ((month_start AT TIME ZONE 'UTC') + interval '1 month')
                AT TIME ZONE 'UTC';
            part := format('%s_p%s', parent, to_char(month_start AT TIME ZONE 'UTC', 'YYYY_MM'));
            IF to_regclass(quote_ident(part)) IS NULL THEN
                -- The parent first, as every reader locks it: taking the default
                -- partition first would invert the order and deadlock a reader.
                EXECUTE format('LOCK TABLE %I IN ACCESS EXCLUSIVE MODE', parent);
                EXECUTE format(
                    'SELECT EXISTS (SELECT 1 FROM %I WHERE observed_at >= $1 AND observed_at < $2)',
                    parent || '_default')
                    INTO in_default
                    USING month_start, month_end;
                IF in_default THEN
                    -- Rows that arrived before their month had a partition wait in
                    -- the default partition; they move into the new one, which is
                    -- then attached (attaching checks that the default holds none).
                    EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS)', part, parent);
                    EXECUTE format(
                        'WITH moved AS (DELETE FROM %I WHERE observed_at >= $1 '
                        'AND observed_at < $2 RETURNING *) INSERT INTO %I SELECT * FROM moved',
                        parent || '_default', part)
                        USING month_start, month_end;
                    EXECUTE format(
                        'ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                        parent, part, month_start, month_end);
                ELSE
                    EXECUTE format(
                        'CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                        part, parent, month_start, month_end);
                END IF;
                created := created + 1;
            END IF;
            month_start := month_end;
        END LOOP;
    END LOOP;
    RETURN created;
END
$$"""

_ROLLUP_TABLES = (
    """CREATE TABLE daily_wearable (
    patient_id text NOT NULL,
    metric text NOT NULL,
    day timestamptz NOT NULL,
    n bigint NOT NULL,
    value_sum double precision NOT NULL,
    value_min double precision NOT NULL,
    value_max double precision NOT NULL,
    unit text NOT NULL,
    PRIMARY KEY (patient_id, metric, day)
)""",
    """CREATE TABLE daily_scores (
    patient_id text NOT NULL,
    instrument text NOT NULL,
    day timestamptz NOT NULL,
    n bigint NOT NULL,
    total_sum bigint NOT NULL,
    total_min integer NOT NULL,
    total_max integer NOT NULL,
    last_total integer NOT NULL,
    last_observed_at timestamptz NOT NULL,
    PRIMARY KEY (patient_id, instrument, day)
)""",
    """CREATE TABLE daily_labs (
    patient_id text NOT NULL,
    analyte text NOT NULL,
    day timestamptz NOT NULL,
    n bigint NOT NULL,
    value_sum double precision NOT NULL,
    value_min double precision NOT NULL,
    value_max double precision NOT NULL,
    last_value double precision NOT NULL,
    last_observed_at timestamptz NOT NULL,
    unit text NOT NULL,
    PRIMARY KEY (patient_id, analyte, day)
)""",
)

_REBUILD_ROLLUPS = r"""CREATE FUNCTION psymon_rebuild_daily_rollups(
    from_time timestamptz, to_time timestamptz
) RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    first_day timestamptz := date_trunc('day', from_time AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    after_last timestamptz :=
        (date_trunc('day', to_time AT TIME ZONE 'UTC') + interval '1 day') AT TIME ZONE 'UTC';
BEGIN
    DELETE FROM daily_wearable WHERE day >= first_day AND day < after_last;
    INSERT INTO daily_wearable
    SELECT patient_id, metric,
           date_trunc('day', observed_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
           count(*), sum(value), min(value), max(value), max(unit)
    FROM wearable_samples
    WHERE observed_at >= first_day AND observed_at < after_last
    GROUP BY 1, 2, 3;

    DELETE FROM daily_scores WHERE day >= first_day AND day < after_last;
    INSERT INTO daily_scores
    SELECT patient_id, instrument,
           date_trunc('day', observed_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
           count(*), sum(total), min(total), max(total),
           (array_agg(total ORDER BY observed_at DESC, received_at DESC))[1],
           max(observed_at)
    FROM clinical_scores
    WHERE observed_at >= first_day AND observed_at < after_last
    GROUP BY 1, 2, 3;

    DELETE FROM daily_labs WHERE day >= first_day AND day < after_last;
    INSERT INTO daily_labs
    SELECT patient_id, analyte,
           date_trunc('day', observed_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
           count(*), sum(value), min(value), max(value),
           (array_agg(value ORDER BY observed_at DESC, received_at DESC))[1],
           max(observed_at), max(unit)
    FROM lab_results
    WHERE observed_at >= first_day AND observed_at < after_last
    GROUP BY 1, 2, 3;
END
$$"""


def _postgres() -> list[str]:
    result = []
    for table in TIME_SERIES_TABLES:
        result.append(f"CREATE TABLE {table}_default PARTITION OF {table} DEFAULT")
        result.append(f"CREATE INDEX {table}_time_brin ON {table} USING brin (observed_at)")
    result += [
        _ENSURE_PARTITIONS,
        *_ROLLUP_TABLES,
        _REBUILD_ROLLUPS,
        "CREATE FUNCTION psymon_store_flavour() RETURNS text LANGUAGE sql IMMUTABLE "
        "AS $$ SELECT 'postgres'::text $$",
    ]
    return result


#: Chunk length per hypertable: about a few million rows per chunk at cohort scale.
_CHUNK_INTERVAL = {
    "clinical_scores": "30 days",
    "wearable_samples": "7 days",
    "wearable_uploads": "7 days",
    "lab_results": "90 days",
    "clinical_outcomes": "365 days",
    "course_updates": "7 days",
    "risk_assessments": "30 days",
    "alerts": "90 days",
}

#: Chunks older than this are compressed: past the late-arrival window and the
#: continuous-aggregate refresh window, when rows no longer change.
_COMPRESS_AFTER = "45 days"
#: Raw wearable samples and uploads are dropped after this; daily aggregates stay.
#: Clinical scores, labs, outcomes, derived events and alerts are kept for good.
_WEARABLE_RETENTION = "1095 days"

_CONTINUOUS_AGGREGATES = {
    "daily_wearable": """CREATE MATERIALIZED VIEW daily_wearable
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT patient_id, metric, time_bucket(INTERVAL '1 day', observed_at) AS day,
       count(*) AS n, sum(value) AS value_sum, min(value) AS value_min,
       max(value) AS value_max, max(unit) AS unit
FROM wearable_samples
GROUP BY patient_id, metric, time_bucket(INTERVAL '1 day', observed_at)
WITH NO DATA""",
    "daily_scores": """CREATE MATERIALIZED VIEW daily_scores
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT patient_id, instrument, time_bucket(INTERVAL '1 day', observed_at) AS day,
       count(*) AS n, sum(total) AS total_sum, min(total) AS total_min,
       max(total) AS total_max, last(total, observed_at) AS last_total,
       max(observed_at) AS last_observed_at
FROM clinical_scores
GROUP BY patient_id, instrument, time_bucket(INTERVAL '1 day', observed_at)
WITH NO DATA""",
    "daily_labs": """CREATE MATERIALIZED VIEW daily_labs
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT patient_id, analyte, time_bucket(INTERVAL '1 day', observed_at) AS day,
       count(*) AS n, sum(value) AS value_sum, min(value) AS value_min,
       max(value) AS value_max, last(value, observed_at) AS last_value,
       max(observed_at) AS last_observed_at, max(unit) AS unit
FROM lab_results
GROUP BY patient_id, analyte, time_bucket(INTERVAL '1 day', observed_at)
WITH NO DATA""",
}


def _timescale() -> list[str]:
    result = ["CREATE EXTENSION IF NOT EXISTS timescaledb"]
    for table in TIME_SERIES_TABLES:
        result += [
            f"SELECT create_hypertable('{table}', by_range('observed_at', "
            f"INTERVAL '{_CHUNK_INTERVAL[table]}'))",
            f"ALTER TABLE {table} SET (timescaledb.compress, "
            "timescaledb.compress_segmentby = 'patient_id', "
            "timescaledb.compress_orderby = 'observed_at DESC')",
            f"SELECT add_compression_policy('{table}', INTERVAL '{_COMPRESS_AFTER}')",
        ]
    for table in ("wearable_samples", "wearable_uploads"):
        result.append(f"SELECT add_retention_policy('{table}', INTERVAL '{_WEARABLE_RETENTION}')")
    refresh_from = f"{2 * LATE_ARRIVAL_WINDOW_DAYS} days"
    for name, ddl in _CONTINUOUS_AGGREGATES.items():
        result += [
            ddl,
            f"SELECT add_continuous_aggregate_policy('{name}', "
            f"start_offset => INTERVAL '{refresh_from}', end_offset => INTERVAL '1 hour', "
            "schedule_interval => INTERVAL '30 minutes')",
        ]
    result += [
        # Chunks are created by TimescaleDB itself: nothing to ensure.
        "CREATE FUNCTION psymon_ensure_partitions(from_time timestamptz, to_time timestamptz) "
        "RETURNS integer LANGUAGE sql STABLE AS $$ SELECT 0 $$",
        "CREATE FUNCTION psymon_store_flavour() RETURNS text LANGUAGE sql IMMUTABLE "
        "AS $$ SELECT 'timescale'::text $$",
    ]
    return result


def statements(flavour: str) -> list[str]:
    """The DDL of this migration for ``flavour`` (``postgres`` or ``timescale``)."""
    return _timescale() if flavour == "timescale" else _postgres()
