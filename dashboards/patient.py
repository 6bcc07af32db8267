"""The patient-course dashboard: one patient's scores, wearables, labs, risk and alerts.

Pick the patient with ``$patient`` (a pseudonym; the list puts patients with
urgent open alerts and high risk first). Every time series shares the time
range and shows the patient's alerts (red regions, first to last seen) and
clinical outcomes (relapse, hospitalisation, medication changes) as
annotations.

* **Rating scales**: one panel per instrument of :mod:`schemas.instruments`,
  shaded by its severity bands, with its remission cut-off as a dashed line
  and, from the course tracker (``v_course``), the episode baseline and the
  response threshold (the instrument's response drop from that baseline).
* **Wearables**: each daily feature against the patient's own robust
  baseline (median of the last weeks), repeated per feature (``$feature``),
  the robust z-score of every feature, and the data coverage.
* **Laboratory**: one panel per analyte of :mod:`schemas.analytes`, shaded by
  its published status bands, with the patient's own baseline.
* **Relapse risk**: the risk trajectory of every model and horizon.
* **Subgroups**: the specifiers the patient meets and the cluster of the
  population subgroup model, each in plain words and since when.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dashboard_builder
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

from dashboards.clinical_panels import PATIENT, SCALE_FAMILIES, analyte_panel, instrument_panel
from dashboards.panels import (
    DASHED,
    NO_POINTS,
    PATIENT_COURSE_UID,
    PanelBuilder,
    add_section,
    banded,
    colored_text,
    data_table,
    fixed_color,
    prop,
    series,
    stat_panel,
)
from dashboards.sql import sql_annotation, sql_target, sql_variable
from dashboards.thresholds import (
    ALERT_STATUS_COLORS,
    SEVERITY_COLORS,
    absolute,
    color_mappings,
    risk_steps,
)
from dashboards.vocabulary import severity_rank, signal_name
from schemas.analytes import ANALYTES

TITLE = "psymon · patient course"

PATIENT_VARIABLE_SQL = f"""
SELECT patient_id AS __value,
       patient_id
       || CASE WHEN risk_probability IS NULL THEN ''
               ELSE ' · risk ' || round((100 * risk_probability)::numeric) || ' %' END
       || CASE WHEN open_alerts > 0 THEN ' · ' || open_alerts || ' open alert(s)' ELSE '' END
       AS __text
FROM v_cohort_overview
ORDER BY {severity_rank("worst_open_severity")}, risk_probability DESC NULLS LAST, patient_id
"""

FEATURE_VARIABLE_SQL = """
SELECT DISTINCT signal
FROM v_course
WHERE patient_id = '$patient' AND signal_kind = 'wearable' AND NOT late
ORDER BY 1
"""

ALERT_ANNOTATION_SQL = """
SELECT first_seen AS "time", last_seen AS "timeend",
       severity || ': ' || message || ' [' || status || ']' AS text,
       rule || ',' || severity AS tags
FROM v_alerts
WHERE patient_id = '$patient' AND first_seen <= $__timeTo() AND last_seen >= $__timeFrom()
ORDER BY 1
"""

OUTCOME_ANNOTATION_SQL = """
SELECT observed_at AS "time",
       outcome || coalesce(' (' || episode || ')', '')
       || coalesce(': ' || medication_name || ' ' || medication_action, '')
       || coalesce(' ' || medication_dose || ' ' || medication_dose_unit, '') AS text,
       outcome AS tags
FROM v_patient_outcomes
WHERE patient_id = '$patient' AND $__timeFilter(observed_at)
ORDER BY 1
"""


def _variables() -> list[cogbuilder.Builder[model.VariableModel]]:
    patient = sql_variable("patient", "Patient", PATIENT_VARIABLE_SQL).description(
        "Pseudonymous patient id; patients with urgent open alerts and high risk first."
    )
    feature = sql_variable(
        "feature", "Wearable feature", FEATURE_VARIABLE_SQL, multi=True, include_all=True
    ).current(model.VariableOption(selected=True, text=["All"], value=["$__all"]))
    return [patient, feature]


# ------------------------------------------------------------------------------ summary


def _summary() -> list[PanelBuilder]:
    risk_now = stat_panel(
        "Relapse risk now",
        "The latest estimate of each risk model and horizon (v_risk_latest).",
        sql_target(
            f"""
SELECT observed_at AS "time", model_name || ' · ' || horizon_days || ' d' AS metric,
       probability
FROM v_risk_latest
WHERE patient_id = {PATIENT}
ORDER BY 1
"""
        ),
        unit="percentunit",
        width=8,
    ).thresholds(absolute(risk_steps()))
    open_alerts = stat_panel(
        "Open alerts",
        "Alerts of this patient still open, escalated or acknowledged (v_alerts_open).",
        sql_target(
            f"""
SELECT count(*) FILTER (WHERE severity = 'urgent') AS urgent,
       count(*) FILTER (WHERE severity = 'warning') AS warning,
       count(*) FILTER (WHERE severity = 'info') AS info
FROM v_alerts_open
WHERE patient_id = {PATIENT}
""",
            format="table",
        ),
        width=8,
        color_mode=common.BigValueColorMode.BACKGROUND,
    )
    for severity in ("urgent", "warning", "info"):
        open_alerts = open_alerts.override_by_name(
            severity, [fixed_color(SEVERITY_COLORS[severity])]
        )
    standing = data_table(
        "Where the patient stands",
        "The latest course of every rating scale and lab value (v_course_latest): band, "
        "change from the episode baseline, reliable change (Jacobson & Truax 1991), "
        "response and remission by each instrument's criteria, and the course status.",
        sql_target(
            f"""
SELECT {signal_name("signal")} AS signal, signal_kind AS kind, value, unit, band, status,
       baseline, change, reliable_change, response, remission, observed_at AS updated
FROM v_course_latest
WHERE patient_id = {PATIENT} AND signal_kind IN ('instrument', 'lab')
ORDER BY signal_kind DESC, observed_at DESC
""",
            format="table",
        ),
        height=8,
        width=8,
    )
    return [risk_now, open_alerts, standing]


# ------------------------------------------------------------------------------ risk


def _risk() -> list[PanelBuilder]:
    trajectory = banded(
        series(
            "Relapse risk",
            "Probability of relapse within each model's horizon (v_risk), shaded by psymon's "
            "display bands (not validated cut-offs).",
            sql_target(
                f"""
SELECT observed_at AS "time", model_name || ' · ' || horizon_days || ' d' AS metric,
       probability
FROM v_risk
WHERE patient_id = {PATIENT} AND $__timeFilter(observed_at)
ORDER BY 1
"""
            ),
            unit="percentunit",
            width=16,
        )
        .min(0)
        .max(1),
        risk_steps(),
    )
    alerts = data_table(
        "Alerts in this range",
        "Every alert of this patient seen in the time range, with what the care team did.",
        sql_target(
            f"""
SELECT severity, status, rule, message, first_seen, last_seen, last_action, last_actor,
       last_action_at
FROM v_alerts
WHERE patient_id = {PATIENT} AND first_seen <= $__timeTo() AND last_seen >= $__timeFrom()
ORDER BY {severity_rank("severity")}, first_seen DESC
""",
            format="table",
        ),
        height=8,
        width=8,
    )
    alerts = alerts.override_by_name(
        "severity", colored_text(color_mappings(SEVERITY_COLORS))
    ).override_by_name("status", colored_text(color_mappings(ALERT_STATUS_COLORS)))
    return [trajectory, alerts]


# ------------------------------------------------------------------------------ subgroups


def _subgroups() -> list[PanelBuilder]:
    now = data_table(
        "Subgroups and specifiers",
        "Where the patient stands in every subgroup scheme (v_subgroups): published rules "
        "(specifiers, e.g. depression with low-grade inflammation: CRP > 3 mg/L on repeated "
        "measures, Osimo 2019) and the cluster of the population subgroup model, with what "
        "sets the subgroup apart and since when. 'none' means the patient left it.",
        sql_target(
            f"""
SELECT CASE WHEN scheme = 'specifier' THEN 'published rule'
            ELSE 'cluster model v' || version END AS kind,
       scheme_name AS scheme,
       coalesce(subgroup, 'none (left ' || previous || ')') AS "subgroup now",
       description, since, probability
FROM v_subgroups
WHERE patient_id = {PATIENT}
ORDER BY subgroup IS NULL, scheme DESC, scheme_name
""",
            format="table",
        ),
        height=6,
        width=24,
    )
    return [now.override_by_name("probability", [prop("unit", "percentunit")])]


# ------------------------------------------------------------------------------ wearables


def _wearables() -> list[PanelBuilder]:
    feature = (
        series(
            "Wearable: $feature",
            "The daily feature in the patient's local day (v_course) against the patient's "
            "own robust baseline (the median of the remembered days; Barnett 2018, Cohen "
            "2023: change against one's own baseline is what precedes relapse).",
            sql_target(
                f"""
SELECT observed_at AS "time", value AS "day value", baseline AS "personal baseline"
FROM v_course
WHERE patient_id = {PATIENT} AND signal_kind = 'wearable' AND signal IN ($feature)
  AND NOT late AND $__timeFilter(observed_at)
ORDER BY 1
"""
            ),
            width=24,  # Grafana gives each repeated copy 24 / maxPerRow columns
            height=7,
        )
        .repeat("feature")
        .repeat_direction("h")
        .max_per_row(3)
        .override_by_name("personal baseline", [DASHED, NO_POINTS, fixed_color("text")])
    )
    deviation = banded(
        series(
            "Deviation from personal baseline",
            "Robust z-score of each daily feature, (x - median) / (1.4826 MAD), against the "
            "patient's own days. Shaded beyond 2 and 3 robust SDs.",
            sql_target(
                f"""
SELECT observed_at AS "time", signal AS metric, deviation
FROM v_course
WHERE patient_id = {PATIENT} AND signal_kind = 'wearable' AND NOT late
  AND deviation IS NOT NULL AND $__timeFilter(observed_at)
ORDER BY 1
"""
            ),
            width=12,
        )
        .axis_soft_min(-4)
        .axis_soft_max(4),
        [
            model.Threshold(value=None, color="red"),
            model.Threshold(value=-3, color="orange"),
            model.Threshold(value=-2, color="transparent"),
            model.Threshold(value=2, color="orange"),
            model.Threshold(value=3, color="red"),
        ],
    )
    coverage = (
        series(
            "Wearable data coverage",
            "Share of the local day's hours with any wearable sample (v_course); missing "
            "data is itself a signal (Barnett 2018, Cohen 2023). Bars: samples stored per "
            "UTC day and metric (v_daily_wearable).",
            sql_target(
                f"""
SELECT observed_at AS "time", max(coverage) AS "share of hours with data"
FROM v_course
WHERE patient_id = {PATIENT} AND signal_kind = 'wearable' AND NOT late
  AND coverage IS NOT NULL AND $__timeFilter(observed_at)
GROUP BY observed_at
ORDER BY 1
"""
            ),
            sql_target(
                f"""
SELECT day AS "time", metric, n AS samples
FROM v_daily_wearable
WHERE patient_id = {PATIENT} AND day BETWEEN $__timeFrom()::date AND $__timeTo()::date
ORDER BY 1
""",
                ref_id="B",
            ),
            unit="percentunit",
            width=12,
        )
        .override_by_query(
            "B",
            [
                prop("custom.drawStyle", "bars"),
                prop("custom.fillOpacity", 40),
                prop("unit", "short"),
                prop("custom.axisPlacement", "right"),
                NO_POINTS,
            ],
        )
        .override_by_name("share of hours with data", [prop("max", 1), prop("min", 0)])
    )
    return [feature, deviation, coverage]


# ------------------------------------------------------------------------------ dashboard


def patient_course() -> dashboard_builder.Dashboard:
    """The patient-course dashboard (uid ``psymon-patient-course``)."""
    board = (
        dashboard_builder.Dashboard(TITLE)
        .uid(PATIENT_COURSE_UID)
        .description(__doc__.split("\n\n")[0] if __doc__ else TITLE)
        .tags(["psymon", "patient"])
        .time("now-90d", "now")
        .timezone("browser")
        .refresh("5m")
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .readonly()
        .variables(_variables())
        .annotations(
            [
                sql_annotation("Alerts", ALERT_ANNOTATION_SQL, "red"),
                sql_annotation("Clinical outcomes", OUTCOME_ANNOTATION_SQL, "purple"),
            ]
        )
    )
    board = add_section(board, "Now", _summary())
    board = add_section(board, "Relapse risk", _risk())
    board = add_section(board, "Subgroups", _subgroups())
    for title, family in SCALE_FAMILIES:
        board = add_section(board, title, [instrument_panel(i) for i in family])
    board = add_section(board, "Wearables", _wearables())
    return add_section(board, "Laboratory", [analyte_panel(a) for a in ANALYTES.values()])
