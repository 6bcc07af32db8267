"""What the ``psymon db ...`` commands call (the CLI itself is in services/cli.py).

>>> callable(run_migrate)
True
"""

from __future__ import annotations

from typing import Literal

import psycopg

from services.store.migrate import migrate


def run_migrate(
    url: str, *, flavour: Literal["auto", "postgres", "timescale"] = "auto"
) -> list[str]:
    """Bring the database at ``url`` up to date; return the versions applied now.

    An empty list means the schema was already current. Raises
    :class:`services.store.migrate.MigrationError` with a message for people
    when the schema cannot be brought up to date, and
    :class:`psycopg.OperationalError` when the server cannot be reached.
    """
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        return migrate(conn, flavour=flavour)
