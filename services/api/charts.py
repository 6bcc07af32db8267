"""The patient page's charts as plotly figure specs (``data`` + ``layout``), built server-side.

The browser only calls ``Plotly.newPlot(element, spec.data, spec.layout)``
(``static/charts.js``), so what a chart shows is decided and tested here.
Times are UTC (plotly.js ignores time-zone offsets, so they are sent as
naive UTC strings and the axes say so).

* risk: probability per model over time, alert markers (by severity) at the
  time each alert was first seen, outcomes as dotted vertical lines;
* scores: one chart per instrument with its severity band lines
  (:mod:`schemas.instruments`);
* labs: one chart per analyte with its published cut-offs (:mod:`schemas.analytes`);
* wearable: one chart per daily feature.

>>> from datetime import UTC, datetime
>>> plotly_time(datetime(2026, 3, 2, 9, 30, tzinfo=UTC))
'2026-03-02 09:30:00'
"""

from __future__ import annotations

import html
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

from schemas.analytes import UnknownAnalyte, get_analyte
from schemas.instruments import get_instrument
from services.api.patient_reader import PatientRecord

Figure = dict[str, Any]

SEVERITY_COLOURS = {"urgent": "#b3261e", "warning": "#c26a00", "info": "#1f6fb2"}
_LINE = "#3b5b7a"
_BAND = "#8a8f98"


def plain(text: str) -> str:
    """``text`` safe inside plotly labels, which read a little HTML (``<b>``, ``<a href>``).

    >>> plain("<a href='x'>lithium</a> & co")
    "&lt;a href='x'&gt;lithium&lt;/a&gt; &amp; co"
    """
    return html.escape(text, quote=False)


def plotly_time(moment: datetime | date) -> str:
    """A time as plotly.js reads it: naive UTC ``YYYY-MM-DD HH:MM:SS`` (dates stay dates)."""
    if isinstance(moment, datetime):
        return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    return moment.isoformat()


def patient_charts(record: PatientRecord) -> list[Figure]:
    """The patient page's charts, in order: dicts of ``id``, ``title``, ``data``, ``layout``."""
    # The window, shortened to where this patient has data, so a short record is not squeezed.
    first = max(record.window_start, record.summary.first_observed_at - timedelta(days=1))
    x_range = [plotly_time(first), plotly_time(record.summary.last_observed_at + timedelta(days=1))]
    figures = [_risk_chart(record, x_range)]
    figures += _score_charts(record, x_range)
    figures += _lab_charts(record, x_range)
    figures += _wearable_charts(record, x_range)
    return figures


def _layout(title: str, y_title: str, x_range: list[str], **extra: Any) -> dict[str, Any]:
    layout: dict[str, Any] = {
        "title": {"text": title, "font": {"size": 14}, "x": 0.01},
        "height": 240,
        "margin": {"l": 56, "r": 110, "t": 36, "b": 36},
        "xaxis": {"type": "date", "range": x_range, "title": {"text": "UTC"}},
        "yaxis": {"title": {"text": y_title}, "zeroline": False},
        "hovermode": "closest",
        "showlegend": False,
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "#ffffff",
    }
    layout.update(extra)
    return layout


def _hline(y: float, label: str) -> tuple[dict[str, Any], dict[str, Any]]:
    shape = {
        "type": "line",
        "xref": "paper",
        "x0": 0,
        "x1": 1,
        "yref": "y",
        "y0": y,
        "y1": y,
        "line": {"color": _BAND, "width": 1, "dash": "dot"},
    }
    note = {
        "xref": "paper",
        "x": 1.01,
        "xanchor": "left",
        "yref": "y",
        "y": y,
        "text": label,
        "showarrow": False,
        "font": {"size": 10, "color": _BAND},
    }
    return shape, note


def _risk_chart(record: PatientRecord, x_range: list[str]) -> Figure:
    by_model: dict[str, list[Any]] = defaultdict(list)
    for point in record.risk:
        by_model[plain(f"{point.model_name} ({point.horizon_days} d)")].append(point)
    data: list[dict[str, Any]] = [
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": name,
            "x": [plotly_time(p.observed_at) for p in points],
            "y": [p.probability for p in points],
            "line": {"color": _LINE, "width": 2},
            "marker": {"size": 5},
            "hovertemplate": "%{x}<br>risk %{y:.0%}<extra>" + name + "</extra>",
        }
        for name, points in sorted(by_model.items())
    ]
    for severity in ("info", "warning", "urgent"):
        alerts = [a for a in record.alerts if a.severity == severity]
        if not alerts:
            continue
        data.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": f"{severity} alerts",
                "x": [plotly_time(a.first_seen) for a in alerts],
                "y": [1.04] * len(alerts),
                "text": [plain(f"{a.rule}: {a.message} ({a.status})") for a in alerts],
                "hovertemplate": "%{x}<br>%{text}<extra>" + severity + "</extra>",
                "marker": {
                    "symbol": "triangle-down",
                    "size": 11,
                    "color": SEVERITY_COLOURS[severity],
                },
            }
        )
    shapes, notes = [], []
    for outcome in record.outcomes:
        when = plotly_time(outcome.observed_at)
        shapes.append(
            {
                "type": "line",
                "xref": "x",
                "x0": when,
                "x1": when,
                "yref": "paper",
                "y0": 0,
                "y1": 1,
                "line": {"color": _BAND, "width": 1, "dash": "dot"},
            }
        )
        notes.append(
            {
                "xref": "x",
                "x": when,
                "yref": "paper",
                "y": 0,
                "yanchor": "bottom",
                "text": plain(outcome.outcome.replace("_", " ")),
                "showarrow": False,
                "textangle": -90,
                "font": {"size": 10, "color": _BAND},
            }
        )
    layout = _layout(
        "Relapse risk, with alerts (▼) and outcomes",
        "probability",
        x_range,
        shapes=shapes,
        annotations=notes,
    )
    layout["yaxis"].update({"range": [0, 1.1], "tickformat": ".0%"})
    return {"id": "chart-risk", "title": "Relapse risk", "data": data, "layout": layout}


def _score_charts(record: PatientRecord, x_range: list[str]) -> list[Figure]:
    by_instrument: dict[str, list[Any]] = defaultdict(list)
    for point in record.scores:
        by_instrument[point.instrument].append(point)
    figures = []
    for instrument_id, points in sorted(by_instrument.items()):
        instrument = get_instrument(instrument_id)
        shapes, notes = [], []
        for band in instrument.bands[1:]:
            shape, note = _hline(band.low, band.label)
            shapes.append(shape)
            notes.append(note)
        data = [
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": instrument.name,
                "x": [plotly_time(p.observed_at) for p in points],
                "y": [p.total for p in points],
                "line": {"color": _LINE, "width": 2},
                "marker": {"size": 6},
                "hovertemplate": "%{x}<br>total %{y}<extra>" + instrument.name + "</extra>",
            }
        ]
        layout = _layout(
            f"{instrument.name} total, with severity bands",
            "total",
            x_range,
            shapes=shapes,
            annotations=notes,
        )
        layout["yaxis"]["range"] = [instrument.total_low - 0.5, instrument.total_high + 0.5]
        figures.append(
            {
                "id": f"chart-score-{instrument.id}",
                "title": instrument.name,
                "data": data,
                "layout": layout,
            }
        )
    return figures


def _lab_charts(record: PatientRecord, x_range: list[str]) -> list[Figure]:
    by_analyte: dict[str, list[Any]] = defaultdict(list)
    for point in record.labs:
        by_analyte[point.analyte].append(point)
    figures = []
    for analyte_id, points in sorted(by_analyte.items()):
        unit = plain(points[-1].unit)
        try:
            analyte = get_analyte(analyte_id)
            name, bands = analyte.name, analyte.bands[1:]
        except UnknownAnalyte:
            name, bands = plain(analyte_id), ()
        shapes, notes = [], []
        for band in bands:
            shape, note = _hline(band.start, plain(band.status.label))
            shapes.append(shape)
            notes.append(note)
        data = [
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": name,
                "x": [plotly_time(p.observed_at) for p in points],
                "y": [p.value for p in points],
                "line": {"color": _LINE, "width": 2},
                "marker": {"size": 6},
                "hovertemplate": "%{x}<br>%{y} " + unit + "<extra>" + name + "</extra>",
            }
        ]
        title = f"{name} ({unit})" + (", with cut-offs" if bands else "")
        figures.append(
            {
                "id": f"chart-lab-{analyte_id}",
                "title": name,
                "data": data,
                "layout": _layout(title, unit, x_range, shapes=shapes, annotations=notes),
            }
        )
    return figures


def _wearable_charts(record: PatientRecord, x_range: list[str]) -> list[Figure]:
    by_feature: dict[str, list[Any]] = defaultdict(list)
    for point in record.wearable:
        by_feature[point.feature].append(point)
    source = "daily feature" if record.wearable_source == "daily_features" else "daily mean"
    figures = []
    for feature, points in sorted(by_feature.items()):
        unit = plain(points[-1].unit or "")
        label = plain(feature.replace("_", " "))
        data = [
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": label,
                "x": [plotly_time(p.day) for p in points],
                "y": [p.value for p in points],
                "line": {"color": "#4f7f52", "width": 1.5},
                "marker": {"size": 4},
                "hovertemplate": "%{x}<br>%{y} " + unit + "<extra>" + label + "</extra>",
            }
        ]
        figures.append(
            {
                "id": f"chart-wearable-{feature}",
                "title": label,
                "data": data,
                "layout": _layout(f"{label} ({source}, {unit})", unit, x_range, height=200),
            }
        )
    return figures
