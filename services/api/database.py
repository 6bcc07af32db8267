"""The API's connections to the store: a small psycopg 3 pool.

Routes never hold a connection themselves: :class:`~services.api.alert_store.AlertStore`
and :class:`~services.api.patient_reader.PatientReader` borrow one per call.
Connections are in autocommit mode; a caller that needs a transaction opens
one (``with conn.transaction():``). Rows come back as dicts.

>>> db = Database("postgresql://127.0.0.1:1/none", open_now=False)  # nothing connects yet
>>> db.close()
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import DictRow, dict_row
from psycopg_pool import ConnectionPool, PoolTimeout


class StoreUnavailable(RuntimeError):
    """The database did not answer in time; the API answers 503 with this message."""


class Database:
    """A pool of connections to a migrated psymon database.

    Parameters
    ----------
    url
        A PostgreSQL URL (it may hold a password: never logged).
    max_size
        Most connections held at once (FastAPI runs sync routes in a thread pool).
    timeout
        Seconds to wait for a free or new connection before giving up (503).
    open_now
        Open the pool now (the default); ``False`` opens it on first use.
    """

    def __init__(
        self, url: str, *, max_size: int = 8, timeout: float = 5.0, open_now: bool = True
    ) -> None:
        self._pool: ConnectionPool[psycopg.Connection[DictRow]] = ConnectionPool(
            url,
            connection_class=psycopg.Connection[DictRow],
            kwargs={"autocommit": True, "row_factory": dict_row},
            min_size=1,
            max_size=max_size,
            timeout=timeout,
            open=False,
            name="psymon-api",
        )
        self._opened = False
        if open_now:
            self._open()

    def _open(self) -> None:
        if not self._opened:
            self._pool.open(wait=False)
            self._opened = True

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[DictRow]]:
        """Borrow a connection for the length of the ``with`` block."""
        self._open()
        try:
            with self._pool.connection() as conn:
                yield conn
        except PoolTimeout as error:
            raise StoreUnavailable(
                "the database did not answer in time; check that PostgreSQL is running and "
                "PSYMON_DATABASE_URL points at it"
            ) from error

    def fetch_all(self, statement: str, params: Any = None) -> list[dict[str, Any]]:
        """Run one query and return every row as a dict."""
        with self.connection() as conn:
            return conn.execute(statement, params).fetchall()

    def close(self) -> None:
        """Close every connection; the database object is unusable afterwards."""
        self._pool.close()
