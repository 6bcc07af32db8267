"""Pipeline health: is data arriving, how late, and what psymon refused.

* events per second on each input topic, by the time the broker received
  them (``received_at``, the record's Kafka timestamp, as stored);
* how long after the observation an event arrives (device sync, clinic
  systems), median and 95th percentile per topic, and how many course updates
  were applied late (after their family's watermark);
* dead letters per topic and the latest ones, with the reason (never the raw
  record: it may hold a source identifier).

The views give no stored-at time or consumer offsets, so sink delay and
consumer lag are not shown here (docs/dashboards.md).
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as common_builder
from grafana_foundation_sdk.builders import dashboard as dashboard_builder
from grafana_foundation_sdk.models import common

from dashboards.panels import PanelBuilder, add_section, data_table, series, stat_panel
from dashboards.sql import sql_target
from dashboards.vocabulary import topic_of_kind

UID = "psymon-pipeline-health"
TITLE = "psymon · pipeline health"

#: Events observed longer than this before the range are not counted by arrival: the
#: bound keeps the query on recent partitions (twice the 14-day late-arrival window).
LOOKBACK_DAYS = 30

_ARRIVALS = f"""
    SELECT received_at, observed_at, {topic_of_kind("kind")} AS topic
    FROM v_input_events
    WHERE $__timeFilter(received_at)
      AND observed_at >= $__timeFrom()::timestamptz - interval '{LOOKBACK_DAYS} days'
"""


def _arrivals() -> list[PanelBuilder]:
    rate = (
        series(
            "Events per second, by topic",
            "Input events per second by the time the broker received them (v_input_events; "
            "a wearable upload is one event). Events observed more than "
            f"{LOOKBACK_DAYS} days before the range (a historical import) are not counted.",
            sql_target(
                f"""
SELECT $__timeGroupAlias(received_at, $__interval), topic AS metric,
       count(*) / ($__interval_ms / 1000.0) AS events_per_second
FROM ({_ARRIVALS}) AS arrivals
GROUP BY 1, 2
ORDER BY 1
"""
            ),
            unit="short",
            width=12,
        )
        .show_points(common.VisibilityMode.NEVER)
        .axis_label("events per second")
    )
    delay = series(
        "From observation to arrival",
        "How long after the observation an event reached psymon (received_at - "
        "observed_at): median and 95th percentile per topic. A wearable upload is dated by "
        "the start of its window.",
        sql_target(
            f"""
SELECT $__timeGroupAlias(received_at, $__interval), topic AS metric,
       percentile_cont(0.5) WITHIN GROUP (
           ORDER BY extract(epoch FROM received_at - observed_at)) AS median,
       percentile_cont(0.95) WITHIN GROUP (
           ORDER BY extract(epoch FROM received_at - observed_at)) AS p95
FROM ({_ARRIVALS}) AS arrivals
GROUP BY 1, 2
ORDER BY 1
"""
        ),
        unit="s",
        width=12,
    ).show_points(common.VisibilityMode.NEVER)
    return [rate, delay]


def _lateness() -> list[PanelBuilder]:
    last = stat_panel(
        "Since the last event",
        "Time since psymon last received any event of any patient (v_cohort_overview).",
        sql_target(
            """
SELECT extract(epoch FROM now() - max(last_received_at)) AS "since last event"
FROM v_cohort_overview
""",
            format="table",
        ),
        unit="dtdurations",
        width=6,
        height=8,
    ).no_value("no events yet")
    late = (
        series(
            "Late course updates per day",
            "Course updates of events applied after their family's watermark (they are "
            "reported, flagged late, and do not rewrite the course), and counts of wearable "
            "samples that arrived after their local day had closed, by arrival day.",
            sql_target(
                """
SELECT $__timeGroupAlias(received_at, '1d'), signal_kind AS metric, count(*) AS late_updates
FROM v_course
WHERE late AND $__timeFilter(received_at)
GROUP BY 1, 2
ORDER BY 1
"""
            ),
            unit="short",
            width=18,
        )
        .draw_style(common.GraphDrawStyle.BARS)
        .fill_opacity(60)
        .show_points(common.VisibilityMode.NEVER)
        .stacking(common_builder.StackingConfig().mode(common.StackingMode.NORMAL))
    )
    return [last, late]


def _dead_letters() -> list[PanelBuilder]:
    per_topic = (
        series(
            "Dead letters, by topic",
            "Records psymon could not accept, per interval and topic (v_dead_letters).",
            sql_target(
                """
SELECT $__timeGroupAlias(received_at, $__interval), topic AS metric, count(*) AS dead_letters
FROM v_dead_letters
WHERE $__timeFilter(received_at)
GROUP BY 1, 2
ORDER BY 1
"""
            ),
            unit="short",
            width=10,
        )
        .draw_style(common.GraphDrawStyle.BARS)
        .fill_opacity(60)
        .show_points(common.VisibilityMode.NEVER)
        .stacking(common_builder.StackingConfig().mode(common.StackingMode.NORMAL))
    )
    latest = data_table(
        "Latest dead letters",
        "The latest records psymon refused, with the reason. The raw record is not shown "
        "(it may hold a source identifier); find it in the store by its SHA-256.",
        sql_target(
            """
SELECT received_at, topic, reason, raw_size, left(raw_sha256, 16) AS raw_sha256_prefix,
       source_system
FROM v_dead_letters
WHERE $__timeFilter(received_at)
ORDER BY received_at DESC
LIMIT 200
""",
            format="table",
        ),
        width=14,
        height=8,
    )
    return [per_topic, latest]


def pipeline_health() -> dashboard_builder.Dashboard:
    """The pipeline-health dashboard (uid ``psymon-pipeline-health``)."""
    board = (
        dashboard_builder.Dashboard(TITLE)
        .uid(UID)
        .description(__doc__.split("\n\n")[0] if __doc__ else TITLE)
        .tags(["psymon", "operations"])
        .time("now-24h", "now")
        .timezone("browser")
        .refresh("1m")
        .readonly()
    )
    board = add_section(board, "Arrivals", _arrivals())
    board = add_section(board, "Lateness", _lateness())
    return add_section(board, "Dead letters", _dead_letters())
