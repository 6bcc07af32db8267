"""The cohort overview: every monitored patient at a glance, and how complete the data is.

How many patients psymon follows and how many went quiet, open alerts by
severity, patients by current relapse risk and by the course status of their
latest rating, one row per patient (click through to the patient's course),
subgroups (specifiers met and clusters of the population subgroup model, now
and over time), and data coverage over time: wearable hours covered, patients
with wearable data, ratings received.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dashboard_builder
from grafana_foundation_sdk.models import common

from dashboards.panels import (
    PanelBuilder,
    add_section,
    bars,
    colored_text,
    data_table,
    fixed_color,
    patient_link,
    prop,
    series,
    stat_panel,
)
from dashboards.sql import sql_target
from dashboards.thresholds import RISK_BANDS, SEVERITY_COLORS, color_mappings, risk_steps
from dashboards.vocabulary import (
    SEVERITIES,
    instrument_name,
    literal,
    risk_band,
    severity_rank,
)

UID = "psymon-cohort-overview"
TITLE = "psymon · cohort overview"

#: Days without any event after which a patient counts as gone quiet.
QUIET_DAYS = 3

# The course status of each patient's most recent rating (any instrument).
_LATEST_STATUS = """
SELECT DISTINCT ON (patient_id) patient_id, status
FROM v_course_latest
WHERE signal_kind = 'instrument'
ORDER BY patient_id, observed_at DESC
"""

# The coverage of each patient's most recent closed wearable day.
_LATEST_COVERAGE = """
SELECT DISTINCT ON (patient_id) patient_id, coverage
FROM v_course_latest
WHERE signal_kind = 'wearable' AND coverage IS NOT NULL
ORDER BY patient_id, observed_at DESC
"""

COHORT_SQL = f"""
SELECT o.patient_id,
       o.risk_probability AS risk,
       o.risk_model || ' · ' || o.risk_horizon_days || ' d' AS risk_model,
       o.open_alerts,
       o.worst_open_severity AS worst_open_alert,
       s.status AS course_status,
       {instrument_name("o.last_score_instrument")} || ' ' || o.last_score_total AS last_rating,
       o.last_score_at AS last_rating_at,
       w.coverage AS wearable_coverage,
       o.last_received_at AS last_data,
       extract(epoch FROM now() - o.last_received_at) AS quiet_for,
       o.last_outcome,
       o.last_outcome_at
FROM v_cohort_overview o
LEFT JOIN ({_LATEST_STATUS}) s ON s.patient_id = o.patient_id
LEFT JOIN ({_LATEST_COVERAGE}) w ON w.patient_id = o.patient_id
ORDER BY {severity_rank("o.worst_open_severity")}, o.risk_probability DESC NULLS LAST,
         o.patient_id
"""


def _bands_sql() -> str:
    rows = ", ".join(
        f"({literal(label)}, {rank})" for rank, (_, label, _) in enumerate(reversed(RISK_BANDS))
    )
    return f"""
SELECT b.band AS risk, count(p.patient_id) AS patients
FROM (VALUES {rows}, ('no assessment', {len(RISK_BANDS)})) AS b (band, rank)
LEFT JOIN v_cohort_overview p ON {risk_band("p.risk_probability")} = b.band
GROUP BY b.band, b.rank
ORDER BY b.rank
"""


def _headline() -> list[PanelBuilder]:
    patients = stat_panel(
        "Patients monitored",
        f"Patients psymon monitors, and those with no event received for {QUIET_DAYS} days "
        "or more (missing data is itself a warning sign: Barnett 2018, Cohen 2023).",
        sql_target(
            f"""
SELECT count(*) AS monitored,
       count(*) FILTER (WHERE last_received_at < now() - interval '{QUIET_DAYS} days')
           AS "quiet {QUIET_DAYS}+ days"
FROM v_cohort_overview
""",
            format="table",
        ),
        width=8,
    ).override_by_name(f"quiet {QUIET_DAYS}+ days", [fixed_color("orange")])
    alerts = stat_panel(
        "Open alerts",
        "Alerts open, escalated or acknowledged, by severity (v_alerts_open).",
        sql_target(
            """
SELECT count(*) FILTER (WHERE severity = 'urgent') AS urgent,
       count(*) FILTER (WHERE severity = 'warning') AS warning,
       count(*) FILTER (WHERE severity = 'info') AS info
FROM v_alerts_open
""",
            format="table",
        ),
        width=8,
        color_mode=common.BigValueColorMode.BACKGROUND,
    )
    for severity in SEVERITIES:
        alerts = alerts.override_by_name(severity, [fixed_color(SEVERITY_COLORS[severity])])
    by_risk = bars(
        "Patients by current relapse risk",
        "Latest assessment of any model (v_cohort_overview), grouped by psymon's display "
        "bands: "
        + ", ".join(f"{label} from {low:.0%}" for low, label, _ in RISK_BANDS)
        + ". The bands are for display, not validated cut-offs.",
        sql_target(_bands_sql(), format="table"),
        height=5,
        width=8,
    )
    for _, label, color in RISK_BANDS:
        by_risk = by_risk.override_by_name(label, [fixed_color(color)])
    return [patients, alerts, by_risk]


def _table() -> list[PanelBuilder]:
    by_status = bars(
        "Patients by course status",
        "The course status of each patient's most recent rating (v_course_latest): active, "
        "response, remission, subthreshold, relapse, recurrence (Frank 1991; Moeller 2011), "
        "stable (PANSS), or the CGI-C anchor.",
        sql_target(
            f"""
SELECT coalesce(s.status, 'no rating yet') AS course_status, count(*) AS patients
FROM v_cohort_overview o
LEFT JOIN ({_LATEST_STATUS}) s ON s.patient_id = o.patient_id
GROUP BY 1
ORDER BY 2 DESC, 1
""",
            format="table",
        ),
        height=12,
        width=6,
    )
    cohort = data_table(
        "All patients",
        "One row per patient, those with urgent open alerts and the highest risk first. "
        "Click a patient to open the patient's course.",
        sql_target(COHORT_SQL, format="table"),
        height=12,
        width=18,
    )
    cohort = (
        cohort.override_by_name("patient_id", [prop("links", [patient_link()])])
        .override_by_name(
            "risk",
            [
                prop("unit", "percentunit"),
                prop("thresholds", {"mode": "absolute", "steps": risk_steps()}),
                prop("custom.cellOptions", {"type": "color-background", "mode": "basic"}),
            ],
        )
        .override_by_name("worst_open_alert", colored_text(color_mappings(SEVERITY_COLORS)))
        .override_by_name("wearable_coverage", [prop("unit", "percentunit")])
        .override_by_name("quiet_for", [prop("unit", "dtdurations")])
    )
    return [by_status, cohort]


# A subgroup's name on the cohort panels: the specifier, or "model · cluster".
_SUBGROUP_NAME = (
    "CASE WHEN scheme = 'specifier' THEN {label} ELSE scheme_name || ' · ' || {label} END"
)

# Membership over time: +1 when a patient enters a subgroup, -1 when they leave it,
# summed per subgroup up to each change (all changes at one instant count together).
SUBGROUP_SIZES_SQL = f"""
SELECT DISTINCT "time", metric, patients
FROM (
    SELECT observed_at AS "time", metric,
           sum(delta) OVER (PARTITION BY metric ORDER BY observed_at) AS patients
    FROM (
        SELECT observed_at, {_SUBGROUP_NAME.format(label="subgroup")} AS metric, 1 AS delta
        FROM v_subgroup_changes
        WHERE subgroup IS NOT NULL
        UNION ALL
        SELECT observed_at, {_SUBGROUP_NAME.format(label="previous")}, -1
        FROM v_subgroup_changes
        WHERE previous IS NOT NULL
    ) AS changes
) AS sizes
WHERE $__timeFilter("time")
ORDER BY 1, 2
"""


def _subgroups() -> list[PanelBuilder]:
    now = bars(
        "Patients per subgroup now",
        "Patients in each subgroup now (v_subgroups): specifiers met (published rules, e.g. "
        "depression with low-grade inflammation, Osimo 2019) and clusters of the population "
        "subgroup model. A patient can be in a specifier and a cluster at once.",
        sql_target(
            f"""
SELECT {_SUBGROUP_NAME.format(label="subgroup")} AS subgroup, count(*) AS patients
FROM v_subgroups
WHERE subgroup IS NOT NULL
GROUP BY 1
ORDER BY 2 DESC, 1
""",
            format="table",
        ),
        height=8,
        width=8,
    )
    sizes = (
        series(
            "Subgroup sizes over time",
            "Patients in each subgroup after every change (v_subgroup_changes): entering "
            "counts +1, leaving -1, from the first stored change on. Changes are emitted "
            "with hysteresis, so one noisy day moves nobody.",
            sql_target(SUBGROUP_SIZES_SQL),
            unit="short",
            height=8,
            width=16,
        )
        .line_interpolation(common.LineInterpolation.STEP_AFTER)
        .show_points(common.VisibilityMode.NEVER)
        .min(0)
        .decimals(0)
    )
    return [now, sizes]


def _coverage() -> list[PanelBuilder]:
    wearable = (
        series(
            "Wearable data coverage",
            "Mean share of each closed local day's hours with any wearable sample (v_course), "
            "and the share of today's cohort with any wearable sample that UTC day "
            "(v_daily_wearable).",
            sql_target(
                """
SELECT day AS "time", avg(coverage) AS "hours covered (mean)"
FROM (
    SELECT DISTINCT patient_id, day, coverage
    FROM v_course
    WHERE signal_kind = 'wearable' AND NOT late AND coverage IS NOT NULL
      AND day BETWEEN $__timeFrom()::date AND $__timeTo()::date
) AS days
GROUP BY day
ORDER BY 1
"""
            ),
            sql_target(
                """
SELECT day AS "time",
       count(DISTINCT patient_id)::double precision
       / nullif((SELECT count(*) FROM v_cohort_overview), 0) AS "patients with wearable data"
FROM v_daily_wearable
WHERE day BETWEEN $__timeFrom()::date AND $__timeTo()::date
GROUP BY day
ORDER BY 1
""",
                ref_id="B",
            ),
            unit="percentunit",
        )
        .min(0)
        .max(1)
    )
    ratings = (
        series(
            "Ratings received per day",
            "Rating-scale results per UTC day and instrument (v_daily_scores).",
            sql_target(
                f"""
SELECT day AS "time", {instrument_name("instrument")} AS metric, sum(n) AS ratings
FROM v_daily_scores
WHERE day BETWEEN $__timeFrom()::date AND $__timeTo()::date
GROUP BY 1, 2
ORDER BY 1
"""
            ),
            unit="short",
        )
        .draw_style(common.GraphDrawStyle.BARS)
        .fill_opacity(60)
        .show_points(common.VisibilityMode.NEVER)
    )
    return [wearable, ratings]


def cohort_overview() -> dashboard_builder.Dashboard:
    """The cohort-overview dashboard (uid ``psymon-cohort-overview``)."""
    board = (
        dashboard_builder.Dashboard(TITLE)
        .uid(UID)
        .description(__doc__.split("\n\n")[0] if __doc__ else TITLE)
        .tags(["psymon", "cohort"])
        .time("now-30d", "now")
        .timezone("browser")
        .refresh("5m")
        .readonly()
    )
    board = add_section(board, "Today", _headline())
    board = add_section(board, "Patients", _table())
    board = add_section(board, "Subgroups", _subgroups())
    return add_section(board, "Data coverage", _coverage())
