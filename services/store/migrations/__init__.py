"""psymon's schema migrations, in the order they apply.

A migration is a module with ``VERSION`` (four digits), ``NAME`` and
``statements(flavour) -> list[str]``: one SQL statement per string (no
multi-statement strings, so that engines that accept one simple statement at a
time can run them). ``flavour`` is ``"postgres"`` (declarative partitioning,
rollup tables) or ``"timescale"`` (hypertables, continuous aggregates); it is
chosen once, when the first migration is applied, and recorded.

Never edit a migration that has shipped: add a new one. :func:`services.store.migrate`
refuses to run when an applied migration's checksum no longer matches its code.
"""

from __future__ import annotations

from types import ModuleType

from services.store.migrations import (
    v0001_event_tables,
    v0002_time_layout,
    v0003_views,
    v0004_alert_delivery,
    v0005_audit,
    v0006_subgroups,
    v0007_subgroup_views,
    v0008_model_versions,
    v0009_standalone_samples_index,
    v0010_partitions_table_by_table,
)

MIGRATIONS: tuple[ModuleType, ...] = (
    v0001_event_tables,
    v0002_time_layout,
    v0003_views,
    v0004_alert_delivery,
    v0005_audit,
    v0006_subgroups,
    v0007_subgroup_views,
    v0008_model_versions,
    v0009_standalone_samples_index,
    v0010_partitions_table_by_table,
)

__all__ = ["MIGRATIONS"]
