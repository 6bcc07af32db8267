"""0010: monthly partitions created one table at a time, each in its own transaction.

``psymon_ensure_partitions`` (0002) created a month's partitions of every
partitioned table in one transaction, locking the tables one after the other
in name order and holding each lock to the end. A reader that locks the same
tables in another order (a view such as ``v_input_events`` starts with
``clinical_scores`` and ends with ``clinical_outcomes``) could hold one of them
while waiting for one the creator held: a deadlock, which the server breaks by
failing one of the two (a fresh-clone test run lost a read to it).

Now :func:`services.store.migrate.ensure_partitions` asks for the tables
(``psymon_partitioned_parents()``) and creates each table's partitions with
``psymon_ensure_table_partitions(parent, from, to)`` in a transaction of its
own: it never holds one table's lock while it waits for another's, so it
cannot be part of a cycle. ``psymon_ensure_partitions(from, to)`` remains for
SQL callers (a scheduled job), now a loop over the same two functions in the
caller's one transaction. On TimescaleDB there are no such partitions (chunks
are created on insert): the list is empty and the functions create nothing.
"""

from __future__ import annotations

VERSION = "0010"
NAME = "partitions table by table"

_PARENTS = """CREATE FUNCTION psymon_partitioned_parents() RETURNS SETOF text
LANGUAGE sql STABLE
AS $$
    SELECT c.relname::text
    FROM pg_partitioned_table pt
    JOIN pg_class c ON c.oid = pt.partrelid
    WHERE c.relnamespace = current_schema()::regnamespace
      AND to_regclass(quote_ident(c.relname || '_default')) IS NOT NULL
    ORDER BY c.relname
$$"""

_TABLE_PARTITIONS = r"""CREATE FUNCTION psymon_ensure_table_partitions(
    parent text, from_time timestamptz, to_time timestamptz
) RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    month_start timestamptz;
    month_end timestamptz;
    part text;
    in_default boolean;
    created integer := 0;
BEGIN
    IF from_time IS NULL OR to_time IS NULL OR to_time < from_time THEN
        RAISE EXCEPTION
            'psymon_ensure_table_partitions: expected from_time <= to_time, got % and %',
            from_time, to_time;
    END IF;
    -- Two sinks creating the same partition at once must not collide.
    PERFORM pg_advisory_xact_lock(hashtext('psymon_ensure_partitions'));
    month_start := date_trunc('month', from_time AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    WHILE month_start <= to_time LOOP
        month_end := ((month_start AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC';
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
    RETURN created;
END
$$"""

_ALL_PARTITIONS = r"""CREATE OR REPLACE FUNCTION psymon_ensure_partitions(
    from_time timestamptz, to_time timestamptz
) RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    parent text;
    created integer := 0;
BEGIN
    IF from_time IS NULL OR to_time IS NULL OR to_time < from_time THEN
        RAISE EXCEPTION
            'psymon_ensure_partitions: expected from_time <= to_time, got % and %',
            from_time, to_time;
    END IF;
    FOR parent IN SELECT psymon_partitioned_parents() LOOP
        created := created + psymon_ensure_table_partitions(parent, from_time, to_time);
    END LOOP;
    RETURN created;
END
$$"""

_TIMESCALE_TABLE_PARTITIONS = (
    "CREATE FUNCTION psymon_ensure_table_partitions("
    "parent text, from_time timestamptz, to_time timestamptz) "
    "RETURNS integer LANGUAGE sql STABLE AS $$ SELECT 0 $$"
)


def statements(flavour: str) -> list[str]:
    """The functions; on TimescaleDB the per-table one creates nothing, as 0002's does."""
    if flavour == "timescale":
        return [_PARENTS, _TIMESCALE_TABLE_PARTITIONS]
    return [_PARENTS, _TABLE_PARTITIONS, _ALL_PARTITIONS]
