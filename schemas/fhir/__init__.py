"""FHIR import: rating-scale scores and lab results from EHR exports, as psymon events.

:func:`import_fhir` reads one document (a resource, a Bundle of any type, a
JSON array or NDJSON) and says what happened to every resource in it:

* ``Observation`` coded with a LOINC instrument total or panel code becomes a
  :class:`~schemas.events.ClinicalScore`; with an analyte code a
  :class:`~schemas.events.LabResult` in the canonical unit
  (:mod:`schemas.fhir.observation`);
* ``QuestionnaireResponse`` of a known instrument becomes a ClinicalScore
  (:mod:`schemas.fhir.questionnaire`);
* anything else (Patient, Encounter, unknown codes) is reported
  ``unsupported``; a resource that is understood but unusable is ``rejected``
  with the reason; the same resource and version seen again is ``duplicate``.

Resources are checked against FHIR R4/R4B, then STU3 (``fhir.resources``), and
read element by element either way, so STU3-era shapes and slightly broken
exports still import; the report notes how each was read.

Privacy: the patient is taken from ``subject`` and pseudonymised at once
(:mod:`schemas.fhir.subject`); no report shows a subject's reference or
identifier, and Patient resources are labelled without their id.

Example
-------
>>> from datetime import UTC, datetime
>>> observation = {
...     "resourceType": "Observation", "id": "phq9-total", "status": "final",
...     "code": {"coding": [{"system": "http://loinc.org", "code": "44261-6"}]},
...     "subject": {"reference": "Patient/p1"},
...     "effectiveDateTime": "2026-03-02T09:30:00+01:00", "valueInteger": 14}
>>> [report] = import_fhir(observation, pseudonym_key=b"k" * 32,
...                        received_at=datetime(2026, 3, 2, 12, 0, tzinfo=UTC))
>>> report.status, report.resource, report.events[0].total, report.events[0].rater
('accepted', 'Observation/phq9-total', 14, 'self')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from schemas.envelope import Source
from schemas.fhir.context import Context
from schemas.fhir.document import DocumentError, Entry, References, read_document, release_note
from schemas.fhir.elements import mappings, text
from schemas.fhir.observation import meaning, observation_events
from schemas.fhir.outcome import Converted, Rejected, ResourceReport, Status
from schemas.fhir.questionnaire import questionnaire_events
from schemas.identity import pseudonymise
from schemas.instruments import Instrument

__all__ = ["ResourceReport", "Status", "import_fhir"]

_IMPORTED = (
    "psymon imports Observation (LOINC-coded rating-scale scores and lab results) and "
    "QuestionnaireResponse (rating scales such as PHQ-9, PHQ-2, GAD-7)"
)


def import_fhir(
    document: Mapping[str, Any] | bytes | str,
    *,
    pseudonym_key: bytes,
    received_at: datetime,
    system: str = "fhir",
) -> list[ResourceReport]:
    """Import a FHIR document; one report per resource, in document order.

    Parameters
    ----------
    document
        Parsed JSON, or JSON/NDJSON text or bytes (UTF-8, a BOM is allowed).
    pseudonym_key
        The secret key of :func:`schemas.identity.pseudonymise` (>= 32 bytes).
    received_at
        When psymon received the document (tz-aware); every event carries it.
    system
        The source system: scopes patient identifiers and event ids, and is the
        events' ``source.system``.

    Returns
    -------
    list[ResourceReport]
        One report per resource (a document that holds no resource at all
        gives one ``rejected`` report labelled ``"document"``).

    Raises
    ------
    ValueError
        If the key is too short, ``received_at`` is naive or ``system`` is empty
        or longer than 128 characters: mistakes of the caller, not of the document.
    """
    pseudonymise("key check", pseudonym_key)  # fails early, naming the key's required length
    if received_at.tzinfo is None or received_at.utcoffset() is None:
        raise ValueError("received_at must be tz-aware, e.g. datetime.now(UTC)")
    Source(system=system)  # a ValidationError (a ValueError) names what system accepts
    try:
        entries = read_document(document)
    except DocumentError as error:
        return [ResourceReport(0, "document", "rejected", str(error), ())]
    references = References(entries)
    context = Context(pseudonym_key, received_at, system, references)
    reports: dict[int, ResourceReport] = {}
    converted: dict[int, Converted] = {}
    first_seen: dict[tuple[str, ...], Entry] = {}
    unique: list[Entry] = []
    for entry in entries:
        earlier = first_seen.setdefault(entry.identity, entry) if entry.resource else None
        if earlier is not None and earlier is not entry:
            reports[entry.index] = _duplicate(entry, earlier)
        else:
            unique.append(entry)
    member_of = _panel_members(unique, references)
    for entry in unique:
        # A member waits for its panel (and that panel for its own); walking the
        # chain up first keeps deep or cyclic hasMember links from recursing.
        chain = [entry]
        while (panel := member_of.get(chain[-1].index)) is not None:
            if panel.index in reports or panel in chain:
                break
            chain.append(panel)
        for link in reversed(chain):
            if link.index in reports:
                continue
            panel = member_of.get(link.index)
            if panel is None or panel.index not in reports:
                reports[link.index] = _import(link, context, converted)
            else:
                reports[link.index] = _member(link, panel, reports[panel.index], converted, context)
    return [reports[index] for index in sorted(reports)]


def _import(entry: Entry, context: Context, converted: dict[int, Converted]) -> ResourceReport:
    """Map one resource; a :class:`Rejected` becomes its report."""
    resource = entry.resource
    if resource is None:
        if (entry.method or "").upper() == "DELETE":
            return _report(entry, "unsupported", "a DELETE request; psymon does not delete results")
        return _report(entry, "rejected", "the entry has no resource (or it is not a JSON object)")
    kind = entry.resource_type
    if kind not in ("Observation", "QuestionnaireResponse"):
        return _report(entry, "unsupported", _unsupported_reason(kind))
    note = release_note(resource)
    try:
        if kind == "Observation":
            result = observation_events(entry, resource, context)
        else:
            result = questionnaire_events(entry, resource, context)
    except Rejected as error:
        reason = f"{error} ({note})" if note else str(error)
        return _report(entry, error.status, reason)
    converted[entry.index] = result
    notes = ([note] if note else []) + result.notes
    return ResourceReport(
        entry.index, entry.label, "accepted", "; ".join(notes) or None, result.events
    )


def _unsupported_reason(kind: str | None) -> str:
    if kind is None:
        return f"not a FHIR resource (no resourceType); {_IMPORTED}"
    if kind == "Patient":
        return (
            "Patient resources are not imported: psymon takes the patient from each result's "
            f"subject and keeps only a pseudonym; {_IMPORTED}"
        )
    if kind == "Bundle":
        return "a Bundle inside a Bundle is not read; import it as a document of its own"
    return f"{kind[:40]} is not imported; {_IMPORTED}"


def _member(
    entry: Entry,
    panel: Entry,
    panel_report: ResourceReport,
    converted: dict[int, Converted],
    context: Context,
) -> ResourceReport:
    """The report of an Observation that a panel lists in ``hasMember``."""
    used = converted.get(panel.index)
    if used is not None and entry.index in used.members:
        return _report(entry, "accepted", f"{used.members[entry.index]} (entry {panel.index})")
    resource = entry.resource or {}
    found = meaning(resource)
    if panel_report.status == "rejected" and found is not None and isinstance(found[0], Instrument):
        return _report(
            entry,
            "rejected",
            f"a member of {panel.label} (entry {panel.index}), which was rejected; see that entry",
        )
    return _import(entry, context, converted)


def _panel_members(entries: Sequence[Entry], references: References) -> dict[int, Entry]:
    """Entries listed in another Observation's ``hasMember``, with the (first) panel."""
    member_of: dict[int, Entry] = {}
    for entry in entries:
        if entry.resource_type != "Observation" or entry.resource is None:
            continue
        for reference in mappings(entry.resource.get("hasMember")):
            literal = text(reference.get("reference"))
            member = references.find(literal) if literal else None
            if member is not None and member.resource_type == "Observation" and member is not entry:
                member_of.setdefault(member.index, entry)
    return member_of


def _duplicate(entry: Entry, earlier: Entry) -> ResourceReport:
    same = entry.resource == earlier.resource
    contents = "" if same else "; its contents differ from the first, which was kept"
    version = f" version {entry.version}" if entry.version else ""
    return _report(
        entry,
        "duplicate",
        f"the same resource{version} as entry {earlier.index}; imported once{contents}",
    )


def _report(entry: Entry, status: Status, reason: str) -> ResourceReport:
    return ResourceReport(entry.index, entry.label, status, reason, ())
