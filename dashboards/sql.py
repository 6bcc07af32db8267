"""PostgreSQL queries for Grafana panels, annotations and variables, as dashboards-as-code.

The Grafana Foundation SDK has builders for panels and dashboards but none for
the PostgreSQL data source's query. :class:`SqlQuery` is that query: it
serialises to the target JSON Grafana's ``grafana-postgresql-datasource``
stores for a query written in code mode::

    {"refId": "A", "datasource": {...}, "rawSql": "...", "format": "time_series",
     "rawQuery": true, "editorMode": "code"}

Every query names psymon's data source by its provisioned uid
(``dashboards/provisioning/datasources/psymon.yaml``) and reads the store's
views (``v_*``, docs/store.md), never its tables.

>>> target = sql_target("SELECT observed_at AS time, total FROM v_patient_scores", ref_id="B")
>>> sorted(target.build().to_json())
['datasource', 'editorMode', 'format', 'rawQuery', 'rawSql', 'refId']
>>> target.build().to_json()["format"]
'time_series'
"""

from __future__ import annotations

import typing
from typing import Literal

from grafana_foundation_sdk.builders import dashboard as dashboard_builder
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import dashboard as model

#: The provisioned PostgreSQL/TimescaleDB data source (dashboards/provisioning/datasources).
DATASOURCE_UID = "psymon-timescaledb"
#: Grafana's plugin id for PostgreSQL (TimescaleDB is the same plugin with ``timescaledb: true``).
DATASOURCE_TYPE = "grafana-postgresql-datasource"

#: How Grafana shapes a result: ``time_series`` needs a ``time`` column, ``table`` takes any.
Format = Literal["time_series", "table"]
FORMATS: tuple[Format, ...] = ("time_series", "table")


def datasource_ref() -> model.DataSourceRef:
    """A reference to psymon's data source, by uid.

    >>> datasource_ref().to_json()
    {'type': 'grafana-postgresql-datasource', 'uid': 'psymon-timescaledb'}
    """
    return model.DataSourceRef(type_val=DATASOURCE_TYPE, uid=DATASOURCE_UID)


class SqlQuery(cogvariants.Dataquery):
    """One PostgreSQL query of a panel, in Grafana's code-mode target shape.

    Parameters
    ----------
    raw_sql
        The statement, with Grafana's macros (``$__timeFilter(col)``...) and
        variables (``'$patient'``) left for Grafana to expand.
    ref_id
        The query's letter within its panel.
    format
        ``time_series`` (a ``time`` column and values) or ``table``.
    """

    def __init__(self, raw_sql: str, ref_id: str = "A", format: Format = "time_series") -> None:
        if format not in FORMATS:
            raise ValueError(
                f"query format {format!r} is not known; accepted: {', '.join(FORMATS)}"
            )
        self.raw_sql = raw_sql
        self.ref_id = ref_id
        self.format = format

    def to_json(self) -> dict[str, object]:
        """The target as Grafana stores it in a dashboard."""
        return {
            "refId": self.ref_id,
            "datasource": datasource_ref(),
            "rawSql": self.raw_sql,
            "format": self.format,
            "rawQuery": True,
            "editorMode": "code",
        }

    @classmethod
    def from_json(cls, data: dict[str, typing.Any]) -> typing.Self:
        """Read a target back from dashboard JSON.

        >>> SqlQuery.from_json({"refId": "C", "rawSql": "SELECT 1", "format": "table"}).ref_id
        'C'
        """
        return cls(str(data["rawSql"]), str(data.get("refId", "A")), data.get("format", "table"))


class SqlTarget(cogbuilder.Builder[SqlQuery]):
    """Builder of a :class:`SqlQuery`, for ``panel.with_target(...)``."""

    def __init__(self, raw_sql: str, ref_id: str = "A", format: Format = "time_series") -> None:
        self._internal = SqlQuery(raw_sql, ref_id, format)

    def build(self) -> SqlQuery:
        """The query."""
        return self._internal


def sql_target(raw_sql: str, *, ref_id: str = "A", format: Format = "time_series") -> SqlTarget:
    """A panel target running ``raw_sql`` (leading/trailing blank lines removed)."""
    return SqlTarget(raw_sql.strip(), ref_id, format)


class SqlAnnotationTarget(model.AnnotationTarget):
    """The query of an SQL annotation: rows with ``time``, ``timeend``, ``text`` and ``tags``."""

    def __init__(self, raw_sql: str) -> None:
        super().__init__(limit=100, match_any=False, tags=[], type_val="dashboard")
        self.raw_sql = raw_sql

    def to_json(self) -> dict[str, object]:
        """The annotation target as Grafana stores it (code mode, table format)."""
        return {
            **super().to_json(),
            "refId": "Anno",
            "rawSql": self.raw_sql,
            "format": "table",
            "rawQuery": True,
            "editorMode": "code",
        }


class _AnnotationTargetBuilder(cogbuilder.Builder[model.AnnotationTarget]):
    def __init__(self, raw_sql: str) -> None:
        self._internal = SqlAnnotationTarget(raw_sql)

    def build(self) -> model.AnnotationTarget:
        return self._internal


def sql_annotation(name: str, raw_sql: str, color: str) -> dashboard_builder.AnnotationQuery:
    """An annotation drawn on every time series of the dashboard from an SQL query.

    >>> anno = sql_annotation("Alerts", "SELECT first_seen AS time FROM v_alerts", "red").build()
    >>> anno.to_json()["target"].to_json()["rawSql"]
    'SELECT first_seen AS time FROM v_alerts'
    """
    return (
        dashboard_builder.AnnotationQuery()
        .name(name)
        .datasource(datasource_ref())
        .enable(True)
        .hide(False)
        .icon_color(color)
        .target(_AnnotationTargetBuilder(raw_sql.strip()))
    )


def sql_variable(
    name: str, label: str, raw_sql: str, *, multi: bool = False, include_all: bool = False
) -> dashboard_builder.QueryVariable:
    """A query variable filled from SQL (``__value``/``__text`` columns, or one column).

    The options are refreshed when the dashboard loads and keep the query's
    order (``sort`` disabled): the SQL decides what comes first.
    """
    variable = (
        dashboard_builder.QueryVariable(name)
        .label(label)
        .datasource(datasource_ref())
        .query(raw_sql.strip())
        .refresh(model.VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(model.VariableSort.DISABLED)
        .multi(multi)
        .include_all(include_all)
    )
    return variable
