"""Apply psymon's schema migrations, once each, and keep partitions ahead of time.

:func:`migrate` creates ``psymon_schema_migrations`` if needed, applies the
migrations not yet recorded there (all in one transaction, under an advisory
lock, so two processes migrating at once do not collide), then makes sure the
monthly partitions from last month to a few months ahead exist. Running it
again applies nothing.

The *flavour* is chosen on the first run: ``timescale`` when the
``timescaledb`` extension is available on the server
(``pg_available_extensions``), ``postgres`` otherwise. It is recorded with
every migration and kept for the life of the database.

>>> [m.version for m in plan("postgres")]
['0001', '0002', '0003', '0004', '0005', '0006', '0007', '0008', '0009', '0010']
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import psycopg
from psycopg import pq

from services.store.migrations import MIGRATIONS

Flavour = Literal["postgres", "timescale"]
FLAVOURS: tuple[Flavour, ...] = ("postgres", "timescale")

MIGRATIONS_TABLE = "psymon_schema_migrations"

#: Key of the advisory lock held while migrating ("psymon" as an integer).
_LOCK_KEY = int.from_bytes(b"psymon", "big")

#: Monthly partitions kept ready before and after the current month.
MONTHS_BEHIND = 1
MONTHS_AHEAD = 3


class MigrationError(RuntimeError):
    """The schema cannot be brought up to date; the message says why and what to do."""


@dataclass(frozen=True)
class Migration:
    """One migration rendered for a flavour."""

    version: str
    name: str
    statements: tuple[str, ...]

    @property
    def checksum(self) -> str:
        """SHA-256 of the statements: an applied migration must never change."""
        return hashlib.sha256("\n;\n".join(self.statements).encode()).hexdigest()


def plan(flavour: Flavour) -> list[Migration]:
    """Every migration, in order, as it applies to ``flavour``."""
    if flavour not in FLAVOURS:
        raise ValueError(f"flavour {flavour!r} is not known; accepted: {', '.join(FLAVOURS)}")
    return [
        Migration(module.VERSION, module.NAME, tuple(module.statements(flavour)))
        for module in MIGRATIONS
    ]


def timescale_available(conn: psycopg.Connection[Any]) -> bool:
    """Whether the server offers the ``timescaledb`` extension."""
    row = conn.execute(
        "SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'"
    ).fetchone()
    return bool(row and row[0])


def recorded_flavour(conn: psycopg.Connection[Any]) -> Flavour | None:
    """The flavour the database was migrated with, ``None`` before the first migration."""
    if not _table_exists(conn, MIGRATIONS_TABLE):
        return None
    row = conn.execute(f"SELECT min(flavour) FROM {MIGRATIONS_TABLE}").fetchone()
    flavour = row[0] if row else None
    return flavour if flavour in FLAVOURS else None


def applied_versions(conn: psycopg.Connection[Any]) -> list[str]:
    """Versions recorded in ``psymon_schema_migrations``, oldest first."""
    if not _table_exists(conn, MIGRATIONS_TABLE):
        return []
    rows = conn.execute(f"SELECT version FROM {MIGRATIONS_TABLE} ORDER BY version").fetchall()
    return [str(r[0]) for r in rows]


def migrate(
    conn: psycopg.Connection[Any],
    *,
    flavour: Literal["auto", "postgres", "timescale"] = "auto",
    now: datetime | None = None,
) -> list[str]:
    """Bring the schema up to date; return the versions applied by this call.

    Parameters
    ----------
    conn
        A connection with no transaction in progress; it is left the same way.
    flavour
        ``auto`` (TimescaleDB when available), or force one. Forcing a flavour
        other than the one the database was migrated with is an error.
    now
        The time that decides which monthly partitions must exist; default: now.
    """
    if conn.info.transaction_status != pq.TransactionStatus.IDLE:
        raise MigrationError(
            "migrate() needs a connection with no transaction in progress; "
            "commit or roll back first"
        )
    applied_now: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        conn.execute(
            f"""CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (
                version text PRIMARY KEY,
                name text NOT NULL,
                flavour text NOT NULL,
                checksum text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )"""
        )
        chosen = _choose_flavour(conn, flavour)
        done = {
            str(version): str(checksum)
            for version, checksum in conn.execute(
                f"SELECT version, checksum FROM {MIGRATIONS_TABLE}"
            ).fetchall()
        }
        for migration in plan(chosen):
            if migration.version in done:
                if done[migration.version] != migration.checksum:
                    raise MigrationError(
                        f"migration {migration.version} ({migration.name}) was applied with "
                        f"checksum {done[migration.version][:12]}… but the code now gives "
                        f"{migration.checksum[:12]}…: a migration was edited after it shipped. "
                        "Restore it and put the change in a new migration"
                    )
                continue
            for statement in migration.statements:
                try:
                    conn.execute(statement)
                except psycopg.Error as error:
                    first_line = statement.strip().splitlines()[0]
                    raise MigrationError(
                        f"migration {migration.version} ({migration.name}, {chosen}) failed at "
                        f"{first_line!r}: {error}"
                    ) from error
            conn.execute(
                f"INSERT INTO {MIGRATIONS_TABLE} (version, name, flavour, checksum) "
                "VALUES (%s, %s, %s, %s)",
                (migration.version, migration.name, chosen, migration.checksum),
            )
            applied_now.append(migration.version)
    ensure_partitions_around(conn, now or datetime.now(UTC))
    return applied_now


def ensure_partitions(conn: psycopg.Connection[Any], from_time: datetime, to_time: datetime) -> int:
    """Create the missing monthly partitions covering ``from_time``..``to_time``.

    Rows already held by a default partition for such a month are moved into
    it. On TimescaleDB this does nothing (chunks are created on insert).
    Returns how many partitions were created. Commits when ``conn`` is not in
    autocommit mode and no transaction was open.
    """
    for name, value in (("from_time", from_time), ("to_time", to_time)):
        if value.tzinfo is None:
            raise ValueError(f"{name} {value.isoformat()} has no time zone; give a tz-aware time")
    if to_time < from_time:
        raise ValueError(
            f"to_time {to_time.isoformat()} is before from_time {from_time.isoformat()}"
        )
    # One transaction per table (migration 0010): holding no table's lock while
    # waiting for another's, this cannot deadlock a reader that locks the same
    # tables in another order.
    with conn.transaction():
        parents = [row[0] for row in conn.execute("SELECT psymon_partitioned_parents()")]
    created = 0
    for parent in parents:
        with conn.transaction():
            row = conn.execute(
                "SELECT psymon_ensure_table_partitions(%s, %s, %s)", (parent, from_time, to_time)
            ).fetchone()
        created += int(row[0]) if row else 0
    return created


def ensure_partitions_around(conn: psycopg.Connection[Any], now: datetime) -> int:
    """Partitions from :data:`MONTHS_BEHIND` months before ``now`` to :data:`MONTHS_AHEAD` after."""
    return ensure_partitions(conn, _add_months(now, -MONTHS_BEHIND), _add_months(now, MONTHS_AHEAD))


def _add_months(moment: datetime, months: int) -> datetime:
    """The first instant of the UTC month ``months`` after ``moment``'s.

    >>> _add_months(datetime(2026, 11, 30, tzinfo=UTC), 3).isoformat()
    '2027-02-01T00:00:00+00:00'
    """
    moment = moment.astimezone(UTC)
    index = moment.year * 12 + moment.month - 1 + months
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def _choose_flavour(conn: psycopg.Connection[Any], wanted: str) -> Flavour:
    recorded = recorded_flavour(conn)
    if wanted not in ("auto", *FLAVOURS):
        raise ValueError(f"flavour {wanted!r} is not known; accepted: auto, {', '.join(FLAVOURS)}")
    if recorded is not None:
        if wanted not in ("auto", recorded):
            raise MigrationError(
                f"this database was migrated as {recorded!r}; it cannot switch to {wanted!r}. "
                "Use a new database to change flavour"
            )
        return recorded
    available = timescale_available(conn)
    if wanted == "timescale" and not available:
        raise MigrationError(
            "flavour 'timescale' was asked for but the server does not offer the timescaledb "
            "extension (pg_available_extensions); install TimescaleDB or use flavour 'postgres'"
        )
    if wanted == "postgres":
        return "postgres"
    return "timescale" if available else "postgres"


def _table_exists(conn: psycopg.Connection[Any], name: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
    return bool(row and row[0])
