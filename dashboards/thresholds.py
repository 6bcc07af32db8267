"""Colours and threshold steps taken from psymon's clinical catalogues.

Grafana draws a threshold step from its value upwards; a panel's steps shade
its background in bands. The bands come from the catalogues, never from
numbers typed into a dashboard:

* rating scales: the severity bands of :mod:`schemas.instruments`, coloured
  from green (least severe) to dark red (most severe);
* laboratory analytes: the status bands of :mod:`schemas.analytes`, coloured
  by their severity (ok, info, warning, urgent);
* relapse risk: :data:`RISK_BANDS`, a display grouping.

Grafana's steps start *at* their value (``>=``); an analyte band that starts
just above its value (lithium "> 1.2 mmol/L") is drawn from that value, which
differs only on the boundary itself.

>>> from schemas.instruments import get_instrument
>>> [(s.value, s.color) for s in instrument_steps(get_instrument("phq9"))]
[(None, 'green'), (5, 'yellow'), (10, 'orange'), (15, 'red'), (20, 'dark-red')]
>>> from schemas.analytes import get_analyte
>>> [(s.value, s.color) for s in analyte_steps(get_analyte("lithium"))]
[(None, 'blue'), (0.6, 'green'), (1.2, 'orange'), (1.5, 'red')]
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dashboard_builder
from grafana_foundation_sdk.models import dashboard as model

from schemas.analytes import Analyte
from schemas.instruments import Instrument

#: Colour of each alert / analyte severity (``schemas.events.Alert.severity``, analyte bands).
SEVERITY_COLORS: dict[str, str] = {
    "ok": "green",
    "info": "blue",
    "warning": "orange",
    "urgent": "red",
}

#: Colours of severity bands, least to most severe.
BAND_PALETTE: tuple[str, ...] = ("green", "yellow", "orange", "red", "dark-red")

#: Relapse-risk probability bands: (lower bound, label, colour). A display grouping
#: for colour and for counting patients, not a validated cut-off: psymon's risk
#: models are judged by calibration and alert burden (docs/model-card.md), and
#: these bands should follow the deployed model's alert threshold.
RISK_BANDS: tuple[tuple[float, str, str], ...] = (
    (0.0, "low", "green"),
    (0.2, "elevated", "orange"),
    (0.5, "high", "red"),
)

#: Colours of the states an alert can be in (``v_alerts.status``).
ALERT_STATUS_COLORS: dict[str, str] = {
    "open": "red",
    "escalated": "purple",
    "acknowledged": "yellow",
    "resolved": "green",
    "closed": "green",
}


def band_color(rank: int, bands: int) -> str:
    """The colour of band ``rank`` (0 = least severe) out of ``bands``.

    >>> [band_color(r, 2) for r in range(2)], [band_color(r, 7) for r in range(7)]
    (['green', 'dark-red'], ['green', 'yellow', 'yellow', 'orange', 'red', 'red', 'dark-red'])
    """
    if bands <= 1:
        return BAND_PALETTE[0]
    return BAND_PALETTE[round(rank * (len(BAND_PALETTE) - 1) / (bands - 1))]


def instrument_steps(instrument: Instrument) -> list[model.Threshold]:
    """Threshold steps at the lower bound of each severity band of a rating scale.

    An instrument without bands (CGI-C) gets a single neutral step.
    """
    if not instrument.bands:
        return [model.Threshold(value=None, color="text")]
    count = len(instrument.bands)
    return [
        model.Threshold(
            value=None if band.rank == 0 else band.low, color=band_color(band.rank, count)
        )
        for band in instrument.bands
    ]


def analyte_steps(analyte: Analyte) -> list[model.Threshold]:
    """Threshold steps at the start of each status band of an analyte, coloured by severity.

    IL-6 has no validated cut-off (CLINICAL.md): a single neutral step.
    """
    if not analyte.bands:
        return [model.Threshold(value=None, color="text")]
    return [
        model.Threshold(
            value=None if i == 0 else band.start, color=SEVERITY_COLORS[band.status.severity]
        )
        for i, band in enumerate(analyte.bands)
    ]


def risk_steps() -> list[model.Threshold]:
    """Threshold steps of :data:`RISK_BANDS`.

    >>> [(s.value, s.color) for s in risk_steps()]
    [(None, 'green'), (0.2, 'orange'), (0.5, 'red')]
    """
    return [
        model.Threshold(value=None if i == 0 else low, color=color)
        for i, (low, _, color) in enumerate(RISK_BANDS)
    ]


def absolute(steps: list[model.Threshold]) -> dashboard_builder.ThresholdsConfig:
    """Absolute thresholds from ``steps``, for ``panel.thresholds(...)``."""
    return dashboard_builder.ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE).steps(steps)


def color_mappings(colors: dict[str, str]) -> list[model.ValueMapping]:
    """Value mappings that colour text cells by their value (severity, status).

    >>> mapping = color_mappings({"urgent": "red"})[0]
    >>> mapping.to_json()["options"]["urgent"].to_json()
    {'color': 'red', 'index': 0}
    """
    options = {
        value: model.ValueMappingResult(color=color, index=i)
        for i, (value, color) in enumerate(colors.items())
    }
    return [model.ValueMap(options=options)]
