"""Panels generated from psymon's clinical catalogues, for the patient-course dashboard.

One time series per rating scale (:mod:`schemas.instruments`) and per
laboratory analyte (:mod:`schemas.analytes`) of the patient ``$patient``:
shaded by the catalogue's bands, with the remission cut-off, the course
tracker's episode baseline and response threshold, or the patient's own
baseline, and a description citing the catalogue's sources.

>>> from schemas.instruments import get_instrument
>>> panel = instrument_panel(get_instrument("phq9")).build()
>>> panel.title, [t.ref_id for t in panel.targets]
('PHQ-9', ['A', 'B', 'C'])
>>> describe_instrument(get_instrument("phq2")).split(". ")[1]
'Bands: 0-2 negative screen; 3-6 positive screen'
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import timeseries

from dashboards.panels import DASHED, NO_POINTS, banded, fixed_color, prop, series
from dashboards.sql import sql_target
from dashboards.thresholds import analyte_steps, instrument_steps
from dashboards.vocabulary import literal
from schemas.analytes import Analyte
from schemas.instruments import Instrument
from schemas.instruments.depression import DEPRESSION_SCALES
from schemas.instruments.global_ import GLOBAL_SCALES
from schemas.instruments.mania import MANIA_SCALES
from schemas.instruments.phq import PHQ_FAMILY
from schemas.instruments.psychosis import PSYCHOSIS_SCALES

#: The patient every panel shows: the dashboard's ``$patient`` variable, quoted.
PATIENT = "'$patient'"

#: Rows of rating scales, in the catalogue's families.
SCALE_FAMILIES: tuple[tuple[str, tuple[Instrument, ...]], ...] = (
    ("Rating scales: depression and anxiety", PHQ_FAMILY + DEPRESSION_SCALES),
    ("Rating scales: mania", MANIA_SCALES),
    ("Rating scales: psychosis", PSYCHOSIS_SCALES),
    ("Rating scales: global impression", GLOBAL_SCALES),
)


# ------------------------------------------------------------------------------ scales


def describe_instrument(inst: Instrument) -> str:
    """The panel description: range, bands, remission and response criteria, the source."""
    bands = "; ".join(f"{b.low}-{b.high} {b.label}" for b in inst.bands) or "no severity bands"
    parts = [f"{inst.name} total ({inst.total_low}-{inst.total_high}). Bands: {bands}."]
    if inst.remission_max is not None:
        parts.append(f"Remission: total <= {inst.remission_max} (dashed green line).")
    elif inst.remission_items:
        parts.append(
            f"Remission is item-level ({', '.join(inst.remission_items)} all <= "
            f"{inst.remission_item_max} for six months): see the course status."
        )
    if inst.response_drop is not None:
        parts.append(
            f"Response: a drop of {inst.response_drop:.0%} of the baseline's distance above "
            f"{inst.total_low} (dotted line, from the course's episode baseline)."
        )
    parts.append(f"Source: {inst.citation}")
    return " ".join(parts)


def remission_sql(inst: Instrument) -> str:
    """A constant series at the remission cut-off, from the start to the end of the range."""
    # Two points spanning the range draw the cut-off across the whole panel.
    name = f"remission (<= {inst.remission_max})"
    return f"""
SELECT $__timeFrom()::timestamptz AS "time", {inst.remission_max} AS "{name}"
UNION ALL
SELECT $__timeTo()::timestamptz, {inst.remission_max}
ORDER BY 1
"""


def instrument_panel(inst: Instrument) -> timeseries.Panel:
    """The patient's totals on one rating scale, in its bands, with its cut-off lines."""
    scores = sql_target(
        f"""
SELECT observed_at AS "time", total AS "{inst.name}"
FROM v_patient_scores
WHERE patient_id = {PATIENT} AND instrument = {literal(inst.id)} AND $__timeFilter(observed_at)
ORDER BY 1
"""
    )
    targets = [scores]
    if inst.response_drop is not None:
        targets.append(
            sql_target(
                f"""
SELECT observed_at AS "time", baseline AS "episode baseline",
       baseline - {inst.response_drop} * (baseline - {inst.total_low}) AS "response threshold"
FROM v_course
WHERE patient_id = {PATIENT} AND signal_kind = 'instrument' AND signal = {literal(inst.id)}
  AND NOT late AND baseline IS NOT NULL AND $__timeFilter(observed_at)
ORDER BY 1
""",
                ref_id="B",
            )
        )
    if inst.remission_max is not None:
        targets.append(sql_target(remission_sql(inst), ref_id="C"))
    panel = series(inst.name, describe_instrument(inst), *targets, width=12)
    panel = banded(panel.min(inst.total_low).max(inst.total_high), instrument_steps(inst))
    if inst.response_drop is not None:
        steps = prop("custom.lineInterpolation", "stepAfter")
        panel = panel.override_by_name(
            "episode baseline", [DASHED, NO_POINTS, fixed_color("text"), steps]
        ).override_by_name(
            "response threshold",
            [prop("custom.lineStyle", {"fill": "dot"}), NO_POINTS, fixed_color("blue"), steps],
        )
    if inst.remission_max is not None:
        panel = panel.override_by_name(
            f"remission (<= {inst.remission_max})", [DASHED, NO_POINTS, fixed_color("green")]
        )
    return panel


# ------------------------------------------------------------------------------ labs


def describe_analyte(analyte: Analyte) -> str:
    """The panel description: unit, LOINC, status bands, sampling rule, the source."""
    if analyte.bands:
        bands = "; ".join(
            f"{'>=' if b.inclusive else '>'} {b.start:g} {b.status.label} ({b.status.severity})"
            for b in analyte.bands
        )
    else:
        bands = "no validated cut-off: judge against the patient's own baseline"
    sampling = f" Sampling: {analyte.sampling}." if analyte.sampling else ""
    return (
        f"{analyte.name} in {analyte.unit} (LOINC {analyte.loinc}). Bands: {bands}.{sampling} "
        f"Dashed: the patient's own baseline (v_course). Source: {analyte.citation}"
    )


def analyte_panel(analyte: Analyte) -> timeseries.Panel:
    """The patient's values of one analyte, in its status bands, with the own baseline."""
    values = sql_target(
        f"""
SELECT observed_at AS "time", value AS "{analyte.name}"
FROM v_patient_labs
WHERE patient_id = {PATIENT} AND analyte = {literal(analyte.id)} AND $__timeFilter(observed_at)
ORDER BY 1
"""
    )
    baseline = sql_target(
        f"""
SELECT observed_at AS "time", baseline AS "personal baseline"
FROM v_course
WHERE patient_id = {PATIENT} AND signal_kind = 'lab' AND signal = {literal(analyte.id)}
  AND NOT late AND baseline IS NOT NULL AND $__timeFilter(observed_at)
ORDER BY 1
""",
        ref_id="B",
    )
    panel = series(
        f"{analyte.name} ({analyte.unit})",
        describe_analyte(analyte),
        values,
        baseline,
        unit=f"suffix: {analyte.unit}",
        width=8,
    ).axis_soft_min(0)
    if analyte.bands:
        panel = banded(panel, analyte_steps(analyte)).axis_soft_max(
            round(max(b.start for b in analyte.bands) * 1.3, 6)
        )
    return panel.override_by_name(
        "personal baseline",
        [DASHED, NO_POINTS, fixed_color("text"), prop("custom.lineInterpolation", "stepAfter")],
    )
