"""The alert inbox: what the care team still has to look at, oldest and most urgent first.

Open, escalated and acknowledged alerts (``v_alerts_open``) with their age,
rule and last action, filtered by ``$severity`` and ``$status``; how many
alerts are raised per day, the alert burden per patient-month (alert fatigue
is a top complaint of care teams), and what was closed or resolved in the
time range. Acknowledge, escalate and resolve alerts in psymon's alert API:
Grafana only reads.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as common_builder
from grafana_foundation_sdk.builders import dashboard as dashboard_builder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

from dashboards.panels import (
    PanelBuilder,
    add_section,
    colored_text,
    data_table,
    fixed_color,
    patient_link,
    prop,
    series,
    stat_panel,
)
from dashboards.sql import sql_target
from dashboards.thresholds import ALERT_STATUS_COLORS, SEVERITY_COLORS, color_mappings
from dashboards.vocabulary import OPEN_STATUSES, SEVERITIES, severity_rank, status_rank

UID = "psymon-alert-inbox"
TITLE = "psymon · alert inbox"

INBOX_SQL = f"""
SELECT patient_id, severity, status, rule, message, first_seen, last_seen,
       extract(epoch FROM now() - first_seen) AS age,
       last_action, last_actor, last_action_at, alert_id
FROM v_alerts_open
WHERE severity IN ($severity) AND status IN ($status)
ORDER BY {severity_rank("severity")}, {status_rank("status")}, first_seen
"""


def _choice(name: str, label: str, values: tuple[str, ...]) -> dashboard_builder.CustomVariable:
    return (
        dashboard_builder.CustomVariable(name)
        .label(label)
        .values(",".join(values))
        .multi(True)
        .include_all(True)
        .current(model.VariableOption(selected=True, text=["All"], value=["$__all"]))
        .options([model.VariableOption(selected=False, text=v, value=v) for v in values])
    )


def _counts() -> list[PanelBuilder]:
    waiting = stat_panel(
        "Open, nobody has acted yet",
        "Open alerts not yet acknowledged or escalated, by severity.",
        sql_target(
            """
SELECT count(*) FILTER (WHERE severity = 'urgent') AS urgent,
       count(*) FILTER (WHERE severity = 'warning') AS warning,
       count(*) FILTER (WHERE severity = 'info') AS info
FROM v_alerts_open
WHERE status = 'open'
""",
            format="table",
        ),
        width=8,
        color_mode=common.BigValueColorMode.BACKGROUND,
    )
    for severity in SEVERITIES:
        waiting = waiting.override_by_name(severity, [fixed_color(SEVERITY_COLORS[severity])])
    oldest = stat_panel(
        "Oldest urgent alert nobody has acted on",
        "Time since the oldest open urgent alert was first seen.",
        sql_target(
            """
SELECT extract(epoch FROM now() - min(first_seen)) AS "waiting for"
FROM v_alerts_open
WHERE status = 'open' AND severity = 'urgent'
""",
            format="table",
        ),
        unit="dtdurations",
        width=8,
    ).no_value("none")
    burden = stat_panel(
        "Alert burden",
        "Alerts first seen in the time range per patient-month (30.44 days), over the "
        "patients psymon monitors. Alert fatigue is a top complaint of care teams: watch "
        "this when rules or thresholds change.",
        sql_target(
            """
SELECT (SELECT count(*) FROM v_alerts WHERE $__timeFilter(first_seen))::double precision
       / nullif((SELECT count(*) FROM v_cohort_overview), 0)
       / (extract(epoch FROM $__timeTo()::timestamptz - $__timeFrom()::timestamptz)
          / (30.44 * 86400)) AS "alerts per patient-month"
""",
            format="table",
        ),
        width=8,
    ).decimals(2)
    return [waiting, oldest, burden]


def _inbox() -> PanelBuilder:
    inbox = data_table(
        "Inbox",
        "Alerts still needing the care team, most urgent first, then those nobody has "
        "acted on, oldest first. Age is since the alert was first seen. Click a patient to "
        "open the patient's course.",
        sql_target(INBOX_SQL, format="table"),
        height=14,
    )
    return (
        inbox.override_by_name("patient_id", [prop("links", [patient_link()])])
        .override_by_name("severity", colored_text(color_mappings(SEVERITY_COLORS)))
        .override_by_name("status", colored_text(color_mappings(ALERT_STATUS_COLORS)))
        .override_by_name("age", [prop("unit", "dtdurations")])
        .override_by_name("alert_id", [prop("custom.hidden", True)])
    )


def _history() -> list[PanelBuilder]:
    raised = (
        series(
            "Alerts raised per day",
            "Alerts first seen per day, by severity.",
            sql_target(
                """
SELECT $__timeGroupAlias(first_seen, '1d'), severity AS metric, count(*) AS alerts
FROM v_alerts
WHERE $__timeFilter(first_seen)
GROUP BY 1, 2
ORDER BY 1
"""
            ),
            unit="short",
            width=12,
        )
        .draw_style(common.GraphDrawStyle.BARS)
        .fill_opacity(60)
        .stacking(common_builder.StackingConfig().mode(common.StackingMode.NORMAL))
        .show_points(common.VisibilityMode.NEVER)
    )
    for severity in SEVERITIES:
        raised = raised.override_by_name(severity, [fixed_color(SEVERITY_COLORS[severity])])
    done = data_table(
        "Closed and resolved in this range",
        "Alerts the rule closed (the condition recovered) or the care team resolved.",
        sql_target(
            """
SELECT patient_id, severity, status, rule, message, first_seen, last_seen,
       last_action_at, last_actor
FROM v_alerts
WHERE status IN ('closed', 'resolved')
  AND coalesce(last_action_at, updated_at) BETWEEN $__timeFrom() AND $__timeTo()
ORDER BY coalesce(last_action_at, updated_at) DESC
""",
            format="table",
        ),
        height=8,
        width=12,
    )
    done = done.override_by_name("patient_id", [prop("links", [patient_link()])])
    done = done.override_by_name("severity", colored_text(color_mappings(SEVERITY_COLORS)))
    return [raised, done]


def alert_inbox() -> dashboard_builder.Dashboard:
    """The alert-inbox dashboard (uid ``psymon-alert-inbox``)."""
    board = (
        dashboard_builder.Dashboard(TITLE)
        .uid(UID)
        .description(__doc__.split("\n\n")[0] if __doc__ else TITLE)
        .tags(["psymon", "alerts"])
        .time("now-30d", "now")
        .timezone("browser")
        .refresh("1m")
        .readonly()
        .variables(
            [
                _choice("severity", "Severity", SEVERITIES),
                _choice("status", "Status", OPEN_STATUSES),
            ]
        )
    )
    board = add_section(board, "Waiting", [*_counts(), _inbox()])
    return add_section(board, "History", _history())
