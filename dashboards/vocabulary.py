"""SQL expressions that put psymon's names into the dashboards' queries.

The catalogues in :mod:`schemas` are the one source of instrument names, topic
names and severities; these functions write them into SQL ``CASE``
expressions, so that a renamed scale or a new topic reaches every panel when
the dashboards are regenerated (``python -m dashboards``).

>>> severity_rank("severity")
"CASE severity WHEN 'urgent' THEN 0 WHEN 'warning' THEN 1 WHEN 'info' THEN 2 ELSE 3 END"
>>> instrument_name("instrument").startswith("CASE instrument WHEN 'phq9' THEN 'PHQ-9'")
True
"""

from __future__ import annotations

from dashboards.thresholds import RISK_BANDS
from schemas.analytes import ANALYTES
from schemas.instruments import INSTRUMENTS
from schemas.topics import KINDS_BY_TOPIC

#: Alert severities (``schemas.events.Alert.severity``), most urgent first.
SEVERITIES: tuple[str, ...] = ("urgent", "warning", "info")
#: States of an alert that still needs the care team (``v_alerts_open``).
OPEN_STATUSES: tuple[str, ...] = ("open", "escalated", "acknowledged")


def literal(text: str) -> str:
    """A SQL string literal.

    >>> literal("it's")
    "'it''s'"
    """
    return "'" + text.replace("'", "''") + "'"


def _case(column: str, mapping: dict[str, str], default: str) -> str:
    whens = " ".join(f"WHEN {literal(key)} THEN {value}" for key, value in mapping.items())
    return f"CASE {column} {whens} ELSE {default} END"


def severity_rank(column: str) -> str:
    """0 for the most urgent severity, for ``ORDER BY``."""
    return _case(column, {s: str(i) for i, s in enumerate(SEVERITIES)}, str(len(SEVERITIES)))


def status_rank(column: str) -> str:
    """0 for an alert nobody has acted on, then escalated, then acknowledged."""
    return _case(column, {s: str(i) for i, s in enumerate(OPEN_STATUSES)}, str(len(OPEN_STATUSES)))


def instrument_name(column: str) -> str:
    """The display name (``PHQ-9``) of an instrument id column (``phq9``)."""
    return _case(column, {i.id: literal(i.name) for i in INSTRUMENTS.values()}, column)


def signal_name(column: str) -> str:
    """The display name of a course signal: an instrument (``PHQ-9``) or analyte (``CRP``).

    Other signals (wearable features) keep their id.

    >>> "WHEN 'crp' THEN 'CRP'" in signal_name("signal")
    True
    """
    names = {i.id: literal(i.name) for i in INSTRUMENTS.values()}
    names |= {a.id: literal(a.name) for a in ANALYTES.values()}
    return _case(column, names, column)


def topic_of_kind(column: str) -> str:
    """The broker topic an event kind travels on (``schemas.topics``).

    >>> "WHEN 'lab_result' THEN 'psymon.lab-results.v1'" in topic_of_kind("kind")
    True
    """
    mapping = {
        kind: literal(topic) for topic, kinds in KINDS_BY_TOPIC.items() for kind in sorted(kinds)
    }
    return _case(column, mapping, column)


def risk_band(column: str) -> str:
    """The :data:`~dashboards.thresholds.RISK_BANDS` label of a probability column.

    >>> risk_band("p")
    "CASE WHEN p >= 0.5 THEN 'high' WHEN p >= 0.2 THEN 'elevated' WHEN p >= 0.0 THEN 'low' \
ELSE 'no assessment' END"
    """
    whens = " ".join(
        f"WHEN {column} >= {low} THEN {literal(label)}" for low, label, _ in reversed(RISK_BANDS)
    )
    return f"CASE {whens} ELSE 'no assessment' END"
