"""Observations: rating-scale scores and laboratory results.

The LOINC code of ``Observation.code`` decides what an Observation is
(:func:`schemas.instruments.instrument_for_loinc`,
:func:`schemas.analytes.analyte_for_loinc`):

* an instrument total or panel code (PHQ-9 44261-6 / 44249-1 ...): a
  :class:`~schemas.events.ClinicalScore`. The total is ``value[x]``; items
  come from ``component`` entries and from ``hasMember`` Observations in the
  same document coded with the instrument's item codes (a component or member
  with the total code gives the total). With items and a total, the
  instrument checks that they agree.
* an item code on its own: read only as part of a panel (see
  :func:`schemas.fhir.import_fhir`); alone it is rejected.
* an analyte code (CRP 1988-5, lithium 14334-7 ...): a
  :class:`~schemas.events.LabResult` from ``valueQuantity``, its unit taken
  from the Quantity's UCUM ``code`` or its ``unit`` text and converted to the
  analyte's canonical unit (CRP mg/dL x 10 = mg/L).

Time: ``effectiveDateTime``, ``effectivePeriod.start``, ``effectiveInstant``,
then ``issued``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from schemas.analytes import ANALYTES, Analyte, ImplausibleValue, UnitError, analyte_for_loinc
from schemas.events import LabResult
from schemas.fhir.context import Context, build, clinical_score
from schemas.fhir.document import Entry
from schemas.fhir.elements import (
    answer_score,
    describe_concept,
    first_time,
    loinc_codings,
    mappings,
    text,
)
from schemas.fhir.outcome import Converted, Rejected, Unsupported, shown
from schemas.instruments import INSTRUMENTS, Instrument, Item, instrument_for_loinc

#: Observation statuses whose result exists and may be imported.
ACCEPTED_STATUSES = ("final", "amended", "corrected", "preliminary")

TIME_ELEMENTS = ("effectiveDateTime", "effectivePeriod.start", "effectiveInstant", "issued")

_UCUM = "http://unitsofmeasure.org"


def known_codes() -> str:
    """The LOINC codes psymon imports, for reasons (built from the catalogues).

    >>> "PHQ-9 44261-6/44249-1" in known_codes() and "CRP 1988-5" in known_codes()
    True
    """
    scores = [
        f"{inst.name} {'/'.join(c for c in (inst.loinc_total, inst.loinc_panel) if c)}"
        for inst in INSTRUMENTS.values()
        if inst.loinc_total or inst.loinc_panel
    ]
    labs = [f"{a.name} {'/'.join(a.loinc_codes)}" for a in ANALYTES.values()]
    return f"instrument totals/panels: {', '.join(scores)}; analytes: {', '.join(labs)}"


Meaning = tuple[Instrument, Item | None, str] | tuple[Analyte, None, str]


def meaning(resource: Mapping[str, Any]) -> Meaning | None:
    """What an Observation's (or component's) code stands for: instrument or analyte, and code."""
    for coding in loinc_codings(resource.get("code")):
        code = str(coding["code"]).strip()
        found = instrument_for_loinc(code)
        if found is not None:
            return (found[0], found[1], code)
        analyte = analyte_for_loinc(code)
        if analyte is not None:
            return (analyte, None, code)
    return None


def check_status(resource: Mapping[str, Any], accepted: tuple[str, ...]) -> list[str]:
    """Reject a status that is not a usable result; a missing status is noted."""
    status = resource.get("status")
    if status is None:
        return ["status missing (FHIR requires it); read as final"]
    if status not in accepted:
        raise Rejected(
            f"status {shown(status)}: not a usable result; accepted: {', '.join(accepted)}"
        )
    return []


def observation_events(entry: Entry, resource: Mapping[str, Any], context: Context) -> Converted:
    """Map one Observation to its event (see the module docstring)."""
    notes = check_status(resource, ACCEPTED_STATUSES)
    found = meaning(resource)
    if found is None:
        raise Unsupported(
            f"code {describe_concept(resource.get('code'))} is not a LOINC code psymon imports; "
            f"accepted: {known_codes()}"
        )
    target, item, code = found
    if isinstance(target, Analyte):
        return Converted((lab_result(entry, resource, target, code, context),), notes)
    if item is not None:
        raise Rejected(
            f"{target.name} item {item.key} (LOINC {code}) on its own, not as a member of a "
            f"panel in this document; accepted: the panel {target.loinc_panel or ''} with its "
            f"items as component or hasMember, or the total {target.loinc_total or ''}"
        )
    return _score(entry, resource, target, context, notes)


def lab_result(
    entry: Entry, resource: Mapping[str, Any], analyte: Analyte, code: str, context: Context
) -> LabResult:
    """A LabResult from ``valueQuantity``, in the analyte's canonical unit."""
    accepted = f"accepted units: {', '.join(analyte.accepted_units)}"
    quantity = resource.get("valueQuantity")
    if not isinstance(quantity, Mapping):
        other = next((k for k in resource if k.startswith("value")), None)
        what = f"its value is {other} {shown(resource[other])}" if other else "it has no value"
        absent = resource.get("dataAbsentReason")
        if absent is not None:
            what += f" (dataAbsentReason {describe_concept(absent)})"
        raise Rejected(
            f"{analyte.name} (LOINC {code}): {what}; psymon needs valueQuantity with a "
            f"number and a unit; {accepted}"
        )
    value = quantity.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Rejected(f"{analyte.name}: valueQuantity.value {shown(value)} is not a number")
    comparator = quantity.get("comparator")
    if comparator is not None:
        raise Rejected(
            f"{analyte.name}: valueQuantity {comparator}{value} is a bound (beyond the "
            "measuring range), not a value; psymon stores measured values only"
        )
    unit = _unit(analyte, float(value), quantity)
    observed = first_time(resource, TIME_ELEMENTS)
    fields = context.envelope(entry, resource, observed)
    return build(
        LabResult, {**fields, "analyte": analyte.id, "loinc": code, "value": value, "unit": unit}
    )


def _unit(analyte: Analyte, value: float, quantity: Mapping[str, Any]) -> str:
    """The first of the Quantity's UCUM ``code`` and ``unit`` text that the analyte accepts."""
    system = quantity.get("system")
    candidates = [text(quantity.get("code")) if system in (None, _UCUM) else None]
    candidates.append(text(quantity.get("unit")))
    units = [unit for unit in candidates if unit is not None]
    if not units:
        raise Rejected(
            f"{analyte.name}: valueQuantity {value:g} has no unit (neither unit nor code); "
            f"psymon never guesses a lab unit; accepted units: {', '.join(analyte.accepted_units)}"
        )
    problem = ""
    for unit in units:
        try:
            analyte.to_canonical(value, unit)
        except UnitError as error:
            problem = problem or str(error)
            continue
        except ImplausibleValue:
            pass  # the event model reports it with the value and range
        return unit
    raise Rejected(problem)


def _score(
    entry: Entry,
    resource: Mapping[str, Any],
    instrument: Instrument,
    context: Context,
    notes: list[str],
) -> Converted:
    items: dict[str, int] = {}
    total: int | None = None
    members: dict[int, str] = {}
    if any(key.startswith("value") for key in resource):
        total = answer_score("value", resource, instrument.id)
    for index, component in enumerate(mappings(resource.get("component"))):
        part = _part(instrument, component, f"component[{index}]", items, notes)
        if part == "total":
            total = answer_score(f"component[{index}] (total)", component, instrument.id)
    missing: list[str] = []
    for reference in mappings(resource.get("hasMember")):
        literal = text(reference.get("reference")) or ""
        member = context.references.find(literal) if literal else None
        if member is None or member.resource is None:
            missing.append(shown(literal or reference.get("display")))
            continue
        part = _part(instrument, member.resource, member.label, items, notes)
        if part == "total":
            total = answer_score(f"{member.label} (total)", member.resource, instrument.id)
        if part is not None:
            what = "the total" if part == "total" else f"item {part}"
            members[member.index] = f"read as {what} of {instrument.name} {entry.label}"
    if missing and (total is None or items):
        raise Rejected(
            f"{instrument.name}: hasMember {', '.join(missing)} not found in this document; "
            "psymon reads a panel's member Observations from the same Bundle"
        )
    if missing:
        notes.append(f"hasMember {', '.join(missing)} not in the document; the total was used")
    if not items and total is None:
        raise Rejected(
            f"{instrument.name}: no score: no value, and no component or hasMember with an item "
            f"or total code; accepted: value[x] with the total, or the items as components "
            f"or members coded {', '.join(i.loinc for i in instrument.items if i.loinc)}"
        )
    observed = first_time(resource, TIME_ELEMENTS)
    fields = context.envelope(entry, resource, observed)
    rater = context.rater(instrument, resource.get("performer"), questionnaire=False)
    score = clinical_score(fields, instrument, rater, items, total)
    return Converted((score,), notes, members)


def _part(
    instrument: Instrument,
    element: Mapping[str, Any],
    where: str,
    items: dict[str, int],
    notes: list[str],
) -> str | None:
    """Read an item of ``instrument`` from a component or member into ``items``.

    Returns the item key, ``"total"`` when the element carries the total
    (read by the caller), or ``None`` when it is not part of the instrument.
    """
    for coding in loinc_codings(element.get("code")):
        code = str(coding["code"]).strip()
        if code == instrument.loinc_total:
            return "total"
        item = instrument.item_for_loinc(code)
        if item is not None:
            if item.key in items:
                raise Rejected(f"{instrument.name} item {item.key} appears twice ({where})")
            items[item.key] = answer_score(f"{where} (item {item.key})", element, instrument.id)
            return item.key
    notes.append(
        f"{where} ({describe_concept(element.get('code'))}) ignored: not part of {instrument.name}"
    )
    return None
