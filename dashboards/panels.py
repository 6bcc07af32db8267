"""Panel shapes psymon's dashboards share, built with the Grafana Foundation SDK.

Each function returns an SDK panel builder with psymon's defaults (data
source, legend, tooltip, no-value text) so that a dashboard module reads as a
list of what it shows. Column names in overrides must match the columns the
panel's SQL returns; the integration tests check that they do.

>>> panel = series("Risk", "Relapse risk.", sql_target("SELECT 1 AS time"), unit="percentunit")
>>> panel.build().type_val
'timeseries'
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from grafana_foundation_sdk.builders import bargauge, stat, table, timeseries
from grafana_foundation_sdk.builders import common as common_builder
from grafana_foundation_sdk.builders import dashboard as dashboard_builder
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

from dashboards.sql import SqlTarget, datasource_ref, sql_target
from dashboards.thresholds import absolute

__all__ = ["PanelBuilder", "sql_target"]

#: Any panel builder (time series, table, stat...), as dashboards and rows take them.
PanelBuilder = cogbuilder.Builder[model.Panel]

#: The patient-course dashboard's uid; other dashboards link patients to it.
PATIENT_COURSE_UID = "psymon-patient-course"

NO_DATA = "no data in this range"


def patient_link(title: str = "Open the patient's course") -> dict[str, object]:
    """A data link from a ``patient_id`` cell to the patient-course dashboard (same range)."""
    return {
        "title": title,
        "url": f"/d/{PATIENT_COURSE_UID}?var-patient=${{__value.raw}}&${{__url_time_range}}",
    }


def prop(id_val: str, value: object) -> model.DynamicConfigValue:
    """One field-config property of an override (``unit``, ``custom.lineStyle``...)."""
    return model.DynamicConfigValue(id_val=id_val, value=value)


DASHED = prop("custom.lineStyle", {"fill": "dash", "dash": [10, 10]})
NO_POINTS = prop("custom.showPoints", "never")


def fixed_color(color: str) -> model.DynamicConfigValue:
    """An override property painting a series in one colour."""
    return prop("color", {"mode": "fixed", "fixedColor": color})


def _legend() -> common_builder.VizLegendOptions:
    return (
        common_builder.VizLegendOptions()
        .display_mode(common.LegendDisplayMode.LIST)
        .placement(common.LegendPlacement.BOTTOM)
        .show_legend(True)
    )


def _tooltip() -> common_builder.VizTooltipOptions:
    return (
        common_builder.VizTooltipOptions()
        .mode(common.TooltipDisplayMode.MULTI)
        .sort(common.SortOrder.NONE)
    )


def series(
    title: str,
    description: str,
    *targets: SqlTarget,
    unit: str = "none",
    height: int = 8,
    width: int = 12,
) -> timeseries.Panel:
    """A time series panel: lines with points, gaps between sparse points bridged."""
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(datasource_ref())
        .height(height)
        .span(width)
        .unit(unit)
        .no_value(NO_DATA)
        .legend(_legend())
        .tooltip(_tooltip())
        .line_width(2)
        .fill_opacity(0)
        .show_points(common.VisibilityMode.ALWAYS)
        .point_size(5)
        .span_nulls(True)
    )
    for target in targets:
        panel = panel.with_target(target)
    return panel


def banded(panel: timeseries.Panel, steps: list[model.Threshold]) -> timeseries.Panel:
    """``panel`` with its background shaded by threshold ``steps`` (bands, not lines)."""
    return panel.thresholds(absolute(steps)).thresholds_style(
        common_builder.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.AREA)
    )


def data_table(
    title: str,
    description: str,
    target: SqlTarget,
    *,
    height: int = 10,
    width: int = 24,
    sort_by: Sequence[tuple[str, bool]] = (),
) -> table.Panel:
    """A table panel; ``sort_by`` is ``(column, descending)`` pairs."""
    panel = (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(datasource_ref())
        .height(height)
        .span(width)
        .no_value(NO_DATA)
        .filterable(True)
        .with_target(target)
    )
    if sort_by:
        panel = panel.sort_by(
            [
                common_builder.TableSortByFieldState().display_name(name).desc(desc)
                for name, desc in sort_by
            ]
        )
    return panel


def colored_text(colors_by_value: list[model.ValueMapping]) -> list[model.DynamicConfigValue]:
    """Override properties colouring a text column by value (severity, status)."""
    return [
        prop("mappings", colors_by_value),
        prop("custom.cellOptions", common.TableColorTextCellOptions()),
    ]


def stat_panel(
    title: str,
    description: str,
    target: SqlTarget,
    *,
    unit: str = "none",
    height: int = 5,
    width: int = 6,
    color_mode: common.BigValueColorMode = common.BigValueColorMode.VALUE,
) -> stat.Panel:
    """A big-number panel showing every numeric column of the query's (single) row."""
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(datasource_ref())
        .height(height)
        .span(width)
        .unit(unit)
        .no_value("0")
        .color_mode(color_mode)
        .graph_mode(common.BigValueGraphMode.NONE)
        .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
        .reduce_options(
            common_builder.ReduceDataOptions().calcs(["lastNotNull"]).values(False).fields("")
        )
        .with_target(target)
    )


def bars(
    title: str,
    description: str,
    target: SqlTarget,
    *,
    height: int = 7,
    width: int = 8,
) -> bargauge.Panel:
    """A bar gauge of one numeric column per label row (counts per category)."""
    return (
        bargauge.Panel()
        .title(title)
        .description(description)
        .datasource(datasource_ref())
        .height(height)
        .span(width)
        .no_value("0")
        .display_mode(common.BarGaugeDisplayMode.BASIC)
        .orientation(common.VizOrientation.HORIZONTAL)
        .show_unfilled(True)
        .reduce_options(
            common_builder.ReduceDataOptions().calcs(["lastNotNull"]).values(True).fields("")
        )
        .with_target(target)
    )


def add_section(
    dashboard: dashboard_builder.Dashboard,
    title: str,
    panels: Iterable[PanelBuilder],
    *,
    collapsed: bool = False,
) -> dashboard_builder.Dashboard:
    """Add a row titled ``title`` and its panels.

    Grafana keeps an open row's panels *after* the row, and a collapsed row's
    panels *inside* it; this does either.
    """
    if collapsed:
        row = dashboard_builder.Row(title)
        for panel in panels:
            row = row.with_panel(panel)
        return dashboard.with_row(row.collapsed(True))
    dashboard = dashboard.with_row(dashboard_builder.Row(title).collapsed(False))
    for panel in panels:
        dashboard = dashboard.with_panel(panel)
    return dashboard
