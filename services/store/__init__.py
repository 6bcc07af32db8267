"""psymon's system of record: schema migrations, event tables, loading, views.

* :func:`migrate` creates and updates the schema (``psymon db migrate``);
* :func:`ensure_partitions` keeps monthly partitions ahead of the data;
* :class:`StoreWriter` loads events exactly once (the sink uses it);
* the views dashboards and the API read are described in docs/store.md.
"""

from __future__ import annotations

from services.store.migrate import (
    FLAVOURS,
    MigrationError,
    applied_versions,
    ensure_partitions,
    migrate,
    recorded_flavour,
)
from services.store.writer import StoreWriter, WriteReport

__all__ = [
    "FLAVOURS",
    "MigrationError",
    "StoreWriter",
    "WriteReport",
    "applied_versions",
    "ensure_partitions",
    "migrate",
    "recorded_flavour",
]
